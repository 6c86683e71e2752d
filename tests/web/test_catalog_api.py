"""Skills and the error catalog over HTTP."""

from __future__ import annotations

from aos.runtime.catalog import CATALOG
from aos.skills.registry import default_registry
from tests.web.api_helpers import auth


def test_skills_list_all_or_the_recommended_ones_in_rank_order(client, tenant):
    _, key = tenant
    everything = client.get("/api/v1/skills", headers=auth(key)).json["items"]
    registry = default_registry()
    assert {s["ref"] for s in everything} == {s.ref for s in registry.all()}
    transform = next(s for s in everything if s["name"] == "json.transform")
    assert transform["args_schema"] == registry.resolve("json.transform").input_schema
    assert transform["deterministic"] is True and transform["version"] == 1 and transform["default_timeout_s"] > 0
    recommended = client.get("/api/v1/skills?recommended=true", headers=auth(key)).json["items"]
    assert [s["ref"] for s in recommended] == [s.ref for s in registry.recommended()]
    assert all(s["recommended"] for s in recommended) and recommended[0]["rank"] == 1
    assert [s["rank"] for s in recommended] == sorted(s["rank"] for s in recommended)
    assert client.get("/api/v1/skills?recommended=false", headers=auth(key)).json["items"] == everything
    assert client.get("/api/v1/skills?recommended=maybe", headers=auth(key)).json["code"] == "VALIDATION_ERROR"
    assert client.get("/api/v1/skills").json["code"] == "AUTH_MISSING"


def test_the_error_catalog_is_public_and_explains_every_code(client, aos_env):
    items = client.get("/api/v1/errors").json["items"]  # no API key: problem `type` links point here
    assert [e["code"] for e in items] == CATALOG.codes() and len(items) >= 50
    entry = client.get("/api/v1/errors/BUDGET_EXCEEDED").json
    expected = CATALOG.get("BUDGET_EXCEEDED")
    assert entry["category"] == "policy" and entry["recovery_mode"] == "ESCALATE" and entry["http_status"] == 402
    assert entry["description"] == expected.description
    assert entry["suggestion"].startswith("Raise the budget")
    missing = client.get("/api/v1/errors/NO_SUCH_CODE")
    assert missing.status_code == 404 and missing.json["code"] == "NOT_FOUND"
    # every problem's `type` resolves to its catalog entry
    problem = client.get("/api/v1/runs")
    assert client.get(problem.json["type"]).json["code"] == problem.json["code"] == "AUTH_MISSING"
