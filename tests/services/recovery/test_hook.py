"""The step task's hook: only a failed run enqueues a recovery lookup, and nothing it does can reach the run."""

from __future__ import annotations

import pytest

from aos.tasks import recovery as tasks


@pytest.fixture
def sent(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(tasks.suggest, "apply_async", lambda args, **kw: calls.append((args, kw)))
    return calls


def test_only_a_failed_run_enqueues_its_recovery_lookup(sent, aos_env):
    for reason in ("run finished", "run is failed", "lost the step's lease before finishing", "no such step"):
        tasks.after_step_stopped("r1", reason)
    assert sent == []
    tasks.after_step_stopped("r2", "run failed: HTTP_TIMEOUT")
    assert sent == [(("r2",), {"queue": aos_env["AOS_STEP_QUEUE"], "retry": False})]


def test_a_broker_error_never_reaches_the_step_task(monkeypatch, aos_env):
    def broken(*_, **__):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.suggest, "apply_async", broken)
    tasks.after_step_stopped("r3", "run failed: HTTP_TIMEOUT")  # does not raise


def test_recovery_can_be_turned_off(sent, settings_env):
    settings_env(AOS_RECOVERY_ENABLED="false")
    tasks.after_step_stopped("r4", "run failed: HTTP_TIMEOUT")
    assert sent == []
