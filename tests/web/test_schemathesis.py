"""The OpenAPI document is exact: schemathesis, with every one of its checks, against the live app.

Every check schemathesis has runs (no 5xx; each status documented for its operation; bodies, headers and
content types as documented; schema-invalid requests rejected; schema-valid requests accepted; 405 with
`Allow`; authentication not ignored; …). Each operation gets valid (positive) and invalid (negative)
requests with generated parameters, and, where its path names objects, valid requests about real objects
of the caller's tenant (a finished run, a failed one, a stored workflow, an agent with state, a dead
letter), so that the schemas of real runs, steps, errors and pages are checked, not only those of empty
lists and 404s. Generation is derandomized (the same cases every run) and sized to finish well within a
minute. The app is the real one: Postgres, and the Celery publisher to this session's queue.

What no JSON Schema can say is listed in SEMANTIC, per operation, with the code and path of the problem:
a schema-valid request may be refused only for one of those reasons (a cursor this API did not write, step
ids that repeat, a reference to an unknown step, a golden document whose signature does not verify, …).
Strings are generated without NUL (U+0000), which Postgres cannot store and the API refuses everywhere
(tests/web/test_bad_input.py); the API's description says so.

schemathesis's pytest integration (``from_fixture``) does not run on pytest 9, so the operations are
driven through its Python API: one hypothesis test per operation and pass, failures collected and
reported together.
"""

from __future__ import annotations

import re
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks, positive_data_acceptance
from schemathesis.core.failures import Failure

from aos.db.models import DeadLetter
from aos.db.session import session_scope
from aos.services import recovery
from aos.services.agents import create_agent, put_state
from aos.services.runs import submit_run
from aos.services.workflows import run_workflow, save_workflow
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run
from tests.web.api_helpers import FAILING_PLAN, TRANSFORM_PLAN, new_tenant

load_all_checks()
ANY = r".*"
PLAN = [("PLAN_INVALID", r"\$\.steps\[\d+\]\.id"),  # step ids unique in the plan
        ("REF_UNRESOLVED", ANY), ("EXPR_INVALID", ANY), ("EXPR_TOO_COMPLEX", ANY),  # references, expressions
        ("SKILL_ARGS_INVALID", ANY),  # literal args against the skill's input schema
        ("BUDGET_EXCEEDED", r"\$\.budget\.max_steps")]  # max_steps below the number of steps
BODY = [("JSON_TOO_DEEP", ANY), ("JSON_NUMBER_TOO_LARGE", ANY)]  # JSON Schema has no depth or digit limit
GOLDEN = [("GOLDEN_KEY_UNKNOWN", ANY), ("GOLDEN_SIGNATURE_INVALID", ANY), ("GOLDEN_HASH_MISMATCH", ANY),
          ("GOLDEN_FORMAT_INVALID", r"\$\.body\b.*")]  # the signed body's inner structure, checked after the MAC
CURSOR = [("CURSOR_INVALID", ANY)]  # only a cursor this API wrote is valid
SEMANTIC: dict[str, list[tuple[str, str]]] = {
    "POST /api/v1/runs": PLAN + BODY,
    "POST /api/v1/simulate": PLAN + BODY,
    "POST /api/v1/workflows": PLAN + BODY,
    "POST /api/v1/workflows/{name}/runs": BODY,
    "PUT /api/v1/agents/{agent_id}/state": BODY,
    # a concurrency key matches `^inputs` but must also parse as an expression over the inputs
    "POST /api/v1/agents": BODY + [("VALIDATION_ERROR", r"\$\.capabilities\.concurrency\.key")],
    "POST /api/v1/golden/verify": GOLDEN + BODY,
    "POST /api/v1/golden/replay": GOLDEN + PLAN + BODY,
    "POST /api/v1/golden/replay/{run_id}/report": GOLDEN + BODY,
    "PUT /api/v1/webhook": [("HTTP_DNS_ERROR", r"\$\.url"),  # the host must resolve
                            ("HTTP_INVALID_URL", r"\$\.url")],  # an xn-- label must be valid punycode
    # quotas are the operator's (the seeded key is a tenant admin): another tenant's, or a change, is refused
    "GET /api/v1/quotas": [("FORBIDDEN_SCOPE", ANY)],
    "PUT /api/v1/quotas": [("FORBIDDEN_SCOPE", ANY)] + BODY,
    # a suggestion applies only to a run failed at its step, in a mode AOS carries out (docs/recovery.md)
    "POST /api/v1/runs/{run_id}/recovery/{suggestion_id}/apply": [("SUGGESTION_NOT_APPLICABLE", ANY)],
    **{f"GET {p}": CURSOR for p in ("/api/v1/runs", "/api/v1/workflows", "/api/v1/agents", "/api/v1/dead-letters",
                                    "/api/v1/agents/{agent_id}/runs", "/api/v1/agents/{agent_id}/provenance")},
}


def _semantic_reasons(case, response) -> list[tuple[str, str]]:  # noqa: ANN001
    """(code, path) of each reason the server gave for refusing the request."""
    try:
        body = response.json()
    except ValueError:
        return [("?", "")]
    problems = body.get("problems") or []
    if problems:
        return [(p.get("code", "?"), p.get("path", "")) for p in problems]
    return [(body.get("code", "?"), (body.get("details") or {}).get("path", ""))]


def positive_data_acceptance_but_semantics(ctx, response, case):  # noqa: ANN001, ANN201
    """schemathesis's positive_data_acceptance, except for the refusals SEMANTIC lists for the operation."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except Failure:
        allowed = SEMANTIC.get(f"{case.operation.method.upper()} {case.operation.path}", [])
        reasons = _semantic_reasons(case, response)
        if not all(any(code == c and re.fullmatch(p, path or "") for c, p in allowed) for code, path in reasons):
            raise
        return True


CHECKS = [positive_data_acceptance_but_semantics if c is positive_data_acceptance else c
          for c in REGISTERED_CHECKS.get_all()]
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
GENERATED = ((POSITIVE, 8), (NEGATIVE, 4))
SEEDED_EXAMPLES = 4


@pytest.fixture
def seeded(worker, settings_env):
    """A tenant with real objects, and the path parameters that name them (one set per kind of run)."""
    # a stream or a ping never holds a case long; golden files need their key on a configured server;
    # small outputs count as large, so the output_ref path is exercised too
    settings_env(AOS_SSE_MAX_S="2", AOS_INSPECT_TIMEOUT_S="0.3", AOS_GOLDEN_SECRET="schemathesis",
                 AOS_LARGE_OUTPUT_BYTES="20")
    ctx, key = new_tenant()
    agent = create_agent(ctx, "seeded-agent", {"allowed_skills": ["json.transform", "json.validate"]})
    put_state(ctx, agent["id"], {"memory": ["a", "b"], "count": 2})
    save_workflow(ctx, "seeded", TRANSFORM_PLAN)
    done = submit_run(ctx, TRANSFORM_PLAN, CeleryPublisher(), agent_id=uuid.UUID(agent["id"]))
    failed = submit_run(ctx, FAILING_PLAN, CeleryPublisher(), agent_id=uuid.UUID(agent["id"]))
    from_flow = run_workflow(ctx, "seeded", CeleryPublisher())
    for r in (done, failed, from_flow):
        wait_for_run(r)
    with session_scope() as s:
        dl = DeadLetter(tenant_id=ctx.tenant_id, kind="step", run_id=failed, step_id="check",
                        payload={"run_id": str(failed), "step_index": 1}, error_code="JSON_SCHEMA_MISMATCH",
                        error_message="seeded")
        s.add(dl)
        s.flush()
        dead_letter_id = dl.id
    suggestion = recovery.suggest_for_run(failed)  # the worker makes the same one (once per failure)
    common = {"name": "seeded", "version": 1, "agent_id": agent["id"], "dead_letter_id": dead_letter_id,
              "code": "BUDGET_EXCEEDED", "suggestion_id": suggestion["id"]}
    return key, [{**common, "run_id": str(done), "step_id": "items"},
                 {**common, "run_id": str(failed), "step_id": "check"}]


def test_every_operation_answers_as_documented(app, seeded):
    key, seeds = seeded
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.generation.update(allow_x00=False)
    # a schema-invalid body larger than AOS_MAX_REQUEST_BYTES (10,001 steps) is refused, before it is read, by
    # the documented 413
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    headers = {"Authorization": f"Bearer {key}"}
    # the key as configured headers (the CLI's -H): schemathesis then knows the security scheme is satisfied
    # and does not count a request whose generated Authorization it dropped as a schema-violating one
    schema.config.update(headers=headers)
    failures: list[str] = []
    unsatisfiable: list[str] = []
    cases = {"n": 0}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        names = re.findall(r"\{(\w+)\}", operation.path)
        passes = [(mode, examples, None) for mode, examples in GENERATED]
        if names:
            run_seeds = seeds if "run_id" in names else seeds[:1]
            passes += [(POSITIVE, SEEDED_EXAMPLES, {n: seed[n] for n in names}) for seed in run_seeds]
        for mode, examples, path_parameters in passes:
            label = f"{operation.label} [{mode.value}{', ' + str(path_parameters) if path_parameters else ''}]"

            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:  # noqa: ANN001
                cases["n"] += 1
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # nothing about the operation can be invalid (no parameters, free text)
                unsatisfiable.append(label)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 — collected: one report for all
                failures.append(f"{label}: {exc}"[:3000])
    assert operations >= 30
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)
    assert cases["n"] >= 300, cases
    assert all("[negative" in u for u in unsatisfiable), unsatisfiable
