"""`aos runs signal` and what `--follow` shows of a waiting run, against the live API."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.sdk import Client
from tests.support.worker import wait_for_run

APPROVE = {"name": "cli-approve", "steps": [
    {"id": "ok", "skill": "human.approve", "args": {"reason": "deploy v2 to production?", "timeout_s": 3600}},
    {"id": "done", "skill": "json.transform", "args": {"input": {"$ref": "steps.ok.output"}, "expr": "by"}}]}


@pytest.fixture
def aos(live_api, tenant):
    runner = CliRunner(env={"COLUMNS": "200"})
    key = tenant[1]

    def invoke(*args: str):
        return runner.invoke(cli, [*args, "--url", live_api, "--api-key", key])

    invoke.url, invoke.key = live_api, key
    return invoke


def test_follow_shows_what_a_run_waits_for_and_signal_finishes_it(aos, worker, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(APPROVE))
    res = aos("runs", "submit", str(plan), "--follow", "--timeout", "4")
    assert res.exit_code == 1, res.output  # still waiting when the timeout passed
    out = res.stdout
    run_id = out.split()[1]
    assert "ok" in out and "waits for signal approval until" in out and "deploy v2 to production?" in out
    assert f"aos runs signal {run_id} approval --data" in out

    show = aos("runs", "show", run_id)
    assert "waiting" in show.stdout and "waits for signal approval" in show.stdout
    assert '"approved"' in show.stdout  # the payload's schema

    bad = aos("runs", "signal", run_id, "approval", "--data", "{approved: yes}")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: BODY_MALFORMED: ") and \
        len(bad.stderr.strip().splitlines()) == 1
    wrong = aos("runs", "signal", run_id, "approval", "--data", '{"approved": "yes"}')
    assert wrong.exit_code == 1 and wrong.stderr.startswith("error: SIGNAL_PAYLOAD_INVALID: "), wrong.stderr

    res = aos("runs", "signal", run_id, "approval", "--data", '{"approved": true, "by": "ann"}', "--key", "k1",
              "--follow", "--timeout", "30")
    assert res.exit_code == 0, res.output
    assert "signal approval received" in res.stdout and "run succeeded" in res.stdout
    again = aos("runs", "signal", run_id, "approval", "--data", '{"approved": true, "by": "ann"}', "--key", "k1")
    assert again.exit_code == 0 and "already delivered with this key: nothing changed" in again.stdout
    with Client(aos.url, aos.key) as sdk:
        assert sdk.runs.get(run_id).step("done").output == "ann"


def test_signal_to_a_run_that_does_not_wait_is_one_error_line(aos, worker):
    with Client(aos.url, aos.key) as sdk:
        run = sdk.runs.create({"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]})
    wait_for_run(uuid.UUID(run.id))
    res = aos("runs", "signal", run.id, "approval", "--data", "{}")
    assert res.exit_code == 1 and res.stderr.startswith("error: RUN_NOT_WAITING: ") and \
        len(res.stderr.strip().splitlines()) == 1
