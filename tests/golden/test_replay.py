"""Record → verify → replay through the real engine (a real prefork worker), with the stubs stopped."""

from __future__ import annotations

import copy
import time
import uuid

import pytest
from sqlalchemy import func, select

from aos.db.models import Checkpoint, Run
from aos.db.session import session_scope
from aos.errors import AosError
from aos.golden.record import seal
from aos.services import golden
from aos.services.runs import submit_run
from tests.golden.helpers import PUB, mixed_plan, record, run_plan, short_plan
from tests.support.worker import wait_for_run


def test_mixed_run_recorded_then_replayed_with_the_stubs_stopped_is_identical(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    http, llm = stubs["http"], stubs["llm"]
    run_id = run_plan(ctx, mixed_plan(http.base_url, llm.openai_url))
    assert stubs["flaky"].calls == 3  # failed twice, then succeeded
    doc = record(ctx, run_id)
    golden.verify(ctx, doc)
    steps = {s["id"]: s for s in doc["body"]["steps"]}
    assert [a["status"] for a in steps["price"]["attempts"]] == ["failed", "failed", "succeeded"]
    assert steps["quote"]["attempts"][-1]["fallback"]["outcome"]["output"] == 42.5
    requests_before = (len(http.requests), len(llm.requests))
    stubs["stop"]()

    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"], report["divergence"]
    assert report["divergence"] is None and len(report["steps"]) == 8
    assert (len(http.requests), len(llm.requests)) == requests_before  # nothing was called


def test_changing_a_transform_expression_names_the_step_and_the_path(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    run_id = run_plan(ctx, mixed_plan(stubs["http"].base_url, stubs["llm"].openai_url))
    doc = record(ctx, run_id)
    stubs["stop"]()
    body = copy.deepcopy(doc["body"])
    body["plan"]["steps"][1]["args"]["expr"] = "current.wind"
    changed = seal(body, golden.keyring(ctx))
    report = golden.replay(ctx, changed, PUB, timeout_s=60)
    assert not report["identical"]
    d = report["divergence"]
    assert (d["step_id"], d["step_index"], d["path"]) == ("temp", 1, "args.expr")
    assert (d["recorded"], d["replayed"]) == ("current.temp_c", "current.wind")
    assert [s["identical"] for s in report["steps"]][:2] == [True, False]


def test_one_recording_replayed_100_times_shows_zero_diffs(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    doc = record(ctx, run_plan(ctx, short_plan(stubs["http"].base_url, stubs["llm"].openai_url)))
    golden.verify(ctx, doc)
    stubs["stop"]()
    t0 = time.perf_counter()
    # submitted in waves of 20, so both worker processes are busy; each is a full replay run of 4 steps
    # (HTTP, transform, schema check, LLM); bench/determinism.py does the same with every kind of step
    reports = []
    for _ in range(5):
        run_ids = [golden.start_replay(ctx, doc, PUB) for _ in range(20)]
        for rid in run_ids:
            golden.wait_for_replay(ctx, rid, timeout_s=120)
            reports.append(golden.replay_report(ctx, doc, rid))
    elapsed = time.perf_counter() - t0
    diffs = [r["divergence"] for r in reports if not r["identical"]]
    print(f"\n100 replays of a 4-step recording in {elapsed:.1f}s ({100 / elapsed:.1f} replays/s), "
          f"{len(diffs)} diffs")
    assert len(reports) == 100 and len({r["run_id"] for r in reports}) == 100
    assert diffs == []


def test_a_recorded_failure_replays_as_the_same_failure(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    url = stubs["http"].base_url
    plan = {"steps": [
        {"id": "ok", "skill": "http.request", "args": {"url": f"{url}/weather"}},
        {"id": "gone", "skill": "http.request", "args": {"url": f"{url}/missing"}},
        {"id": "never", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).status == "failed"
    doc = record(ctx, run_id)
    assert [s["status"] for s in doc["body"]["steps"]] == ["succeeded", "failed", "not_run"]
    assert doc["body"]["source"]["error_code"] == "HTTP_NOT_FOUND"
    stubs["stop"]()
    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"] and report["status"] == "failed"


def test_a_call_the_recording_does_not_have_fails_the_step_and_calls_nothing(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    http = stubs["http"]
    plan = mixed_plan(http.base_url, stubs["llm"].openai_url)
    doc = record(ctx, run_plan(ctx, plan))
    requests_before = len(http.requests)
    stubs["stop"]()
    edited = copy.deepcopy(plan)
    edited["steps"].insert(2, {"id": "extra", "skill": "http.request", "args": {"url": f"{http.base_url}/weather"}})
    report = golden.replay(ctx, doc, PUB, plan=edited, timeout_s=60)
    assert not report["identical"] and report["status"] == "failed"
    d = report["divergence"]
    assert (d["step_index"], d["step_id"], d["path"]) == (2, "check", "id")
    assert (d["recorded"], d["replayed"]) == ("check", "extra")
    with session_scope() as s:
        cp = s.scalar(select(Checkpoint).where(Checkpoint.run_id == uuid.UUID(report["run_id"]),
                                               Checkpoint.step_id == "extra"))
        assert cp.status == "failed" and cp.error_code == "GOLDEN_REPLAY_MISSING"
    assert len(http.requests) == requests_before


def test_changed_args_of_a_recorded_call_are_a_divergence_at_the_args_path(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    plan = mixed_plan(stubs["http"].base_url, stubs["llm"].openai_url)
    doc = record(ctx, run_plan(ctx, plan))
    stubs["stop"]()
    edited = copy.deepcopy(plan)
    edited["inputs"]["city"] = "Lyon"  # the recorded plan's inputs win; change the URL template instead
    edited["steps"][0]["args"]["url"] = edited["steps"][0]["args"]["url"].replace("city=", "town=")
    report = golden.replay(ctx, doc, PUB, plan=edited, timeout_s=60)
    d = report["divergence"]
    assert (d["step_index"], d["step_id"], d["path"]) == (0, "fetch", "args.url")
    assert d["recorded"].endswith("/weather?city=Paris") and d["replayed"].endswith("/weather?town=Paris")


def test_a_tampered_document_is_refused_before_any_run_exists(tenant, golden_key):
    ctx, _ = tenant
    from tests.golden.docs import sample_body

    doc = seal(sample_body(), golden.keyring(ctx))
    doc["body"]["steps"][1]["outcome"]["output"] = 99
    with session_scope() as s:
        before = s.scalar(select(func.count()).select_from(Run).where(Run.tenant_id == ctx.tenant_id))
    with pytest.raises(AosError) as exc:
        golden.replay(ctx, doc, PUB)
    assert exc.value.code == "GOLDEN_SIGNATURE_INVALID" and "steps[1] ('temp')" in exc.value.message
    with session_scope() as s:
        after = s.scalar(select(func.count()).select_from(Run).where(Run.tenant_id == ctx.tenant_id))
    assert after == before


def test_a_non_deterministic_fallback_is_answered_from_the_recording(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    url = stubs["http"].base_url
    plan = {"steps": [
        {"id": "quote", "skill": "http.request", "args": {"url": f"{url}/down"},
         "retry": {"max_attempts": 1},
         "on_error": {"mode": "FALLBACK", "fallback": {"skill": "http.request", "args": {"url": f"{url}/weather"}}}},
        {"id": "temp", "skill": "json.transform",
         "args": {"input": {"$ref": "steps.quote.output.json"}, "expr": "current.temp_c"}}]}
    doc = record(ctx, run_plan(ctx, plan))
    attempt = doc["body"]["steps"][0]["attempts"][0]
    assert attempt["call"]["outcome"]["error"]["code"] == "HTTP_SERVER_ERROR"
    assert attempt["fallback"]["skill"] == "http.request@1" and attempt["fallback"]["raw"]["status"] == 200
    sent = len(stubs["http"].requests)
    stubs["stop"]()
    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"], report["divergence"]
    assert len(stubs["http"].requests) == sent
