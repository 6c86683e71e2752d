"""The OpenAPI document describes every operation, in words and in schemas, errors included."""

from __future__ import annotations

METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_every_operation_has_a_description_from_its_docstring(client, aos_env):
    spec = client.get("/api/v1/openapi.json").json
    missing = [f"{m.upper()} {p}" for p, m, op in _operations(spec) if not op.get("summary")]
    assert not missing, f"operations without a docstring: {missing}"


def test_every_error_response_is_problem_json_with_the_catalog_code(client, aos_env):
    spec = client.get("/api/v1/openapi.json").json
    responses = spec["components"]["responses"]
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for path, method, op in _operations(spec):
        statuses = set(op["responses"])
        # each status listed (no catch-all): what every operation, every protected one, every one about an
        # object and every one with a body can answer
        assert "default" not in statuses and "500" in statuses, (method, path)
        if op.get("security") != []:
            assert {"401", "403", "503"} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= statuses, (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[-1]]
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}


def test_lists_are_pages_and_protected_operations_declare_bearer_auth(client, aos_env):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["security"] == [{"bearerAuth": []}] and spec["info"]["version"].startswith("v1")
    for path in ("/api/v1/runs", "/api/v1/workflows", "/api/v1/agents", "/api/v1/agents/{agent_id}/runs",
                 "/api/v1/agents/{agent_id}/provenance"):
        op = spec["paths"][path]["get"]
        params = {p["name"] for p in op["parameters"]}
        assert {"limit", "cursor"} <= params, path
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        page = spec["components"]["schemas"][ref]
        assert set(page["required"]) == {"items", "next_cursor"} and page["properties"]["next_cursor"]["nullable"]
    assert spec["paths"]["/api/v1/errors"]["get"]["security"] == []
    events = spec["paths"]["/api/v1/runs/{run_id}/events"]["get"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "Last-Event-ID" in {p["name"] for p in events["parameters"]}
