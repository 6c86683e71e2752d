"""The OpenAPI document is true: schemathesis generates requests for every operation of the live app.

Checks: no 5xx, every response conforms to its documented schema, and its content type is the documented
one. Each operation gets valid (positive) and invalid (negative) requests with generated parameters, and,
where its path names objects, valid requests about real objects of the caller's tenant (a finished run, a
failed one, a stored workflow, an agent with state, a dead letter), so that the schemas of real runs, steps,
errors and pages are checked, not only those of empty lists and 404s. Generation is derandomized (the same
cases every run) and sized to finish well within a minute. The app is the real one: Postgres, and the
Celery publisher to this session's queue.

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
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from aos.db.models import DeadLetter
from aos.db.session import session_scope
from aos.services.agents import create_agent, put_state
from aos.services.runs import submit_run
from aos.services.workflows import run_workflow, save_workflow
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run
from tests.web.api_helpers import FAILING_PLAN, TRANSFORM_PLAN, new_tenant

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
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
    common = {"name": "seeded", "version": 1, "agent_id": agent["id"], "dead_letter_id": dead_letter_id,
              "code": "BUDGET_EXCEEDED"}
    return key, [{**common, "run_id": str(done), "step_id": "items"},
                 {**common, "run_id": str(failed), "step_id": "check"}]


def test_every_operation_answers_as_documented(app, seeded):
    key, seeds = seeded
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
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
