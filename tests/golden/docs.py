"""Golden documents built without a database, for the tests of verification and atomic writes."""

from __future__ import annotations

from typing import Any

from aos.golden.record import AttemptFacts, RunFacts, build_body, seal
from aos.golden.sign import KeyRing

KEYS = KeyRing(signing_key_id="k1", keys={"k1": "secret-one"})


def skill_info(ref: str) -> tuple[str, bool]:
    name = ref.split("@")[0]
    return f"{name}@1", name not in ("http.request", "llm.complete", "postgres.query")


def sample_body(tag: str = "a", *, padding: int = 0) -> dict[str, Any]:
    """A two-step recording (an HTTP call, a transform) with the values canonical JSON must get right."""
    plan = {"name": f"sample-{tag}", "steps": [
        {"id": "fetch", "skill": "http.request", "args": {"url": "http://example.test/w"}},
        {"id": "temp", "skill": "json.transform",
         "args": {"input": {"$ref": "steps.fetch.output.json"}, "expr": "t"}}]}
    response = {"status": 200, "headers": {"content-type": "application/json"}, "url": "http://example.test/w",
                "json": {"t": 21.5, "big": 1e21, "small": 1.5e-7, "note": f"caf\u00e9 \U0001F600 {tag}",
                         "pad": "x" * padding},
                "text": "{}"}
    run = RunFacts(id=f"00000000-0000-0000-0000-00000000000{1 if tag == 'a' else 2}",
                   identity=f"00000000-0000-0000-0000-00000000000{1 if tag == 'a' else 2}", name=plan["name"],
                   status="succeeded", error_code=None, plan=plan, plan_hash="0" * 64, inputs={},
                   skill_versions={"fetch": "http.request@1", "temp": "json.transform@1"})
    ok = {"status": "ok", "error": None, "usage": {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0},
          "timing": {"started_at": "2026-01-01T00:00:00+00:00", "duration_ms": 12.5}}
    attempts = [
        AttemptFacts(0, 1, "succeeded", "http.request@1", {"url": "http://example.test/w"},
                     {**ok, "output": response}, raw=response),
        AttemptFacts(1, 1, "succeeded", "json.transform@1", {"input": response["json"], "expr": "t"},
                     {**ok, "output": 21.5}),
    ]
    return build_body(run, attempts, skill_info)


def sample_document(tag: str = "a", keys: KeyRing = KEYS, *, padding: int = 0) -> dict[str, Any]:
    return seal(sample_body(tag, padding=padding), keys)
