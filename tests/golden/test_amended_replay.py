"""Replaying a run a person amended: the replay starts from the plan as submitted, runs the attempts recorded before
the amendment, is amended where the recording was (through ``amend_step``) and resumed, and matches the recording;
a document whose amendments do not undo to its ``plan_hash`` is refused and nothing starts. Through a real worker."""

from __future__ import annotations

import copy
import json
import time

import pytest
from sqlalchemy import func, select, text

from aos.db.models import Run
from aos.db.session import session_scope
from aos.errors import AosError
from aos.golden.record import seal
from aos.plan.model import plan_hash
from aos.services import golden, recovery
from aos.services.amendments import undone
from aos.services.replay_amendments import submitted_plan
from aos.services.runs import get_run, get_timeline, submit_run
from tests.golden.helpers import PUB
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run


def _amended_run(ctx, worker, plan: dict, mode: str, parameters: dict) -> str:
    """Run ``plan`` until it fails, then apply a suggestion changing the step (as a person does), until it ends."""
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).status in ("failed", "dead_lettered"), worker.tail()
    deadline = time.monotonic() + 30
    while not (offered := recovery.list_for_run(ctx, run_id)):
        assert time.monotonic() < deadline, f"no suggestion for run {run_id}"
        time.sleep(0.2)
    with session_scope() as s:  # what a model writer may answer (the offline writer only suggests timing)
        s.execute(text("UPDATE recovery_suggestions SET mode = :m, parameters = CAST(:p AS jsonb) WHERE id = :i"),
                  {"m": mode, "p": json.dumps(parameters), "i": offered[0]["id"]})
    recovery.apply_suggestion(ctx, run_id, offered[0]["id"], PUB)
    assert wait_for_run(run_id).status == "succeeded", worker.tail()
    return run_id


def _replayed_as_recorded(ctx, doc: dict) -> dict:
    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"], report["divergence"]
    replayed = golden.record_run(ctx, report["run_id"])["body"]
    assert replayed["amendments"] == doc["body"]["amendments"]  # same step, attempt, changes and step hashes
    assert replayed["plan_hash"] == doc["body"]["plan_hash"] and replayed["plan"] == doc["body"]["plan"]
    [made] = get_run(ctx, report["run_id"])["amendments"]
    assert (made["applied_by"], made["suggestion_id"], made["plan_revision"]) == ("replay", None, 1)
    return report


def test_a_timeout_amendment_is_re_enacted_and_the_replay_is_identical(tenant, worker, golden_key):
    ctx, _ = tenant
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=1.0)}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/slow")},
                           "timeout_s": 0.3, "retry": {"max_attempts": 1}},
                          {"id": "ok", "skill": "json.transform", "args": {"input": "${steps.fetch.output.body}",
                                                                            "expr": "ok"}}]}
        doc = golden.record_run(ctx, _amended_run(ctx, worker, plan, "RETRY", {"timeout_s": 10}))
    fetch = doc["body"]["steps"][0]
    assert [a["status"] for a in fetch["attempts"]] == ["failed", "succeeded"]  # before and after the amendment
    report = _replayed_as_recorded(ctx, doc)
    with session_scope() as s:
        replay = s.get(Run, report["run_id"])
        assert replay.plan_revision == 1
    events = [e["type"] for e in get_timeline(ctx, report["run_id"])]
    assert events.index("run.failed") < events.index("run.amended") < events.index("run.resumed")


def test_a_fallback_amendment_is_re_enacted_and_the_replay_is_identical(tenant, worker, golden_key):
    ctx, _ = tenant
    with serve_http({"/gone": Reply(404, json={"error": "gone"})}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/gone")}}]}
        doc = golden.record_run(ctx, _amended_run(ctx, worker, plan, "FALLBACK", {
            "fallback_skill": "json.transform", "args": {"input": {"cached": "yes"}, "expr": "cached"}}))
    assert doc["body"]["steps"][0]["outcome"]["output"] == "yes"
    _replayed_as_recorded(ctx, doc)


def _runs(ctx) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Run).where(Run.tenant_id == ctx.tenant_id))


def test_amendments_that_do_not_undo_to_the_plan_hash_are_refused_and_nothing_starts(tenant, worker, golden_key):
    ctx, _ = tenant
    plan = {"steps": [{"id": "one", "skill": "json.transform", "args": {"input": {"a": 1}, "expr": "a"},
                       "timeout_s": 5}]}
    doc = golden.record_run(ctx, wait_for_run(submit_run(ctx, plan, PUB)).id)
    body = copy.deepcopy(doc["body"])
    step = body["plan"]["steps"][0]
    amended = {**step, "timeout_s": 60}
    body["plan"]["steps"][0] = amended
    body["amendments"] = [{"step_index": 0, "step_id": "one", "after_attempt": 1,
                           "changes": {"timeout_s": {"from": 7, "to": 60}},  # 7: the step was submitted with 5
                           "step_hash_before": plan_hash(step), "step_hash_after": plan_hash(amended)}]
    before = _runs(ctx)
    with pytest.raises(AosError) as err:
        golden.start_replay(ctx, seal(body, golden.keyring(ctx)), PUB)
    assert err.value.code == "GOLDEN_FORMAT_INVALID" and "amendments[0].changes" in err.value.message
    body["amendments"][0]["step_hash_before"] = plan_hash(amended)  # consistent with itself, not with plan_hash
    body["amendments"][0]["changes"]["timeout_s"]["from"] = 60
    with pytest.raises(AosError) as err:
        golden.start_replay(ctx, seal(body, golden.keyring(ctx)), PUB)
    assert err.value.code == "GOLDEN_FORMAT_INVALID" and "plan_hash" in err.value.message
    assert _runs(ctx) == before


def test_a_never_amended_run_replays_as_before_with_nothing_to_re_enact(tenant, worker, golden_key):
    ctx, _ = tenant
    plan = {"steps": [{"id": "one", "skill": "json.transform", "args": {"input": {"a": 1}, "expr": "a"}}]}
    doc = golden.record_run(ctx, wait_for_run(submit_run(ctx, plan, PUB)).id)
    assert "amendments" not in doc["body"] and submitted_plan(doc["body"]) is doc["body"]["plan"]
    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"], report["divergence"]
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM golden_replay_calls WHERE run_id = :r"),
                         {"r": report["run_id"]}).scalar() == 0
        assert s.get(Run, report["run_id"]).plan_revision == 0


def test_an_ambiguous_undo_is_decided_by_the_step_hash():
    # a change keeps the value in force before (a skill's default included), not whether the step wrote it
    written = {"id": "s", "skill": "http.request", "args": {"url": "u"}, "timeout_s": 30, "retry": {"max_attempts": 3}}
    absent = {"id": "s", "skill": "http.request", "args": {"url": "u"}}
    amended = {**absent, "timeout_s": 60, "retry": {"max_attempts": 5}, "on_error": {
        "mode": "FALLBACK", "fallback": {"skill": "json.transform", "args": {"url": "u"}}}}
    changes = {"timeout_s": {"from": 30, "to": 60}, "max_attempts": {"from": 3, "to": 5},
               "fallback_skill": {"from": None, "to": "json.transform", "args": {"url": "u"}}}
    hashes = {plan_hash(c) for c in undone(amended, changes)}
    assert plan_hash(written) in hashes and plan_hash(absent) in hashes
    args = undone({**absent, "args": {"url": "v", "method": "POST"}},
                  {"args": {"from": {"url": "u"}, "to": {"url": "v", "method": "POST"}}})
    assert args[0]["args"] == {"url": "u"}


def test_a_replay_that_fails_as_recorded_gets_no_recovery_suggestion(tenant, worker, golden_key):
    """The recorded run had its suggestion; one for the replay (auto-applied above all) would make it diverge."""
    ctx, _ = tenant
    plan = {"steps": [{"id": "check", "skill": "json.validate", "retry": {"max_attempts": 1},
                       "args": {"input": {}, "schema": {"required": ["x"]}, "raise_on_invalid": True}}]}
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).status == "failed", worker.tail()
    deadline = time.monotonic() + 30
    while not recovery.list_for_run(ctx, run_id):  # the recorded run gets its suggestion from the worker
        assert time.monotonic() < deadline, f"no suggestion for run {run_id}"
        time.sleep(0.2)
    report = golden.replay(ctx, golden.record_run(ctx, run_id), PUB, timeout_s=60)
    assert report["identical"] and report["status"] == "failed", report
    assert recovery.suggest_for_run(report["run_id"]) is None  # asked directly, as the worker's task asks
    time.sleep(1.0)  # the worker's recovery task for the replay's failure has had its turn
    assert recovery.list_for_run(ctx, report["run_id"]) == []


def test_the_reaper_re_enacts_an_amendment_a_dead_worker_left_due(tenant, worker, golden_key):
    """A worker killed between committing the replay's failure and re-enacting leaves the replay failed with its
    amendment due; the reaper re-enacts it once the failure is older than its grace, exactly once."""
    from aos.services.reaper import reap_silent_runs
    from tests.services.recovery.helpers import drain_until_final

    ctx, _ = tenant
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=1.0)}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/slow")},
                           "timeout_s": 0.3, "retry": {"max_attempts": 1}}]}
        doc = golden.record_run(ctx, _amended_run(ctx, worker, plan, "RETRY", {"timeout_s": 10}))
    replay_id = golden.start_replay(ctx, doc, None)  # stored, not published
    failure = {"r": replay_id, "code": doc["body"]["steps"][0]["attempts"][0]["call"]["outcome"]["error"]["code"]}
    with session_scope() as s:
        # the state the step task commits when the replay fails at the recorded attempt — then the worker dies
        s.execute(text("UPDATE outbox SET status = 'delivered' WHERE payload->>'run_id' = CAST(:r AS text)"),
                  {"r": replay_id})
        s.execute(text("UPDATE runs SET status = 'failed', next_step = 0, attempt = 1, error_code = :code, "
                       "finished_at = now(), updated_at = now() WHERE id = :r"), failure)
    reap_silent_runs(step_queue=None)
    assert get_run(ctx, replay_id)["status"] == "failed"  # younger than the reaper's grace: left to its worker
    with session_scope() as s:
        s.execute(text("UPDATE runs SET finished_at = now() - interval '1 hour' WHERE id = :r"), {"r": replay_id})
    reap_silent_runs(step_queue=None)
    reap_silent_runs(step_queue=None)  # once only: the run is resumed, nothing is due any more
    run = get_run(ctx, replay_id)
    assert run["status"] == "queued", run
    [made] = run["amendments"]
    assert (made["applied_by"], made["plan_revision"], made["after_attempt"]) == ("replay", 1, 1)
    assert drain_until_final(replay_id, PUB) == "succeeded", worker.tail()
