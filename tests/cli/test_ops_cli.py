"""`aos doctor`, `aos locks list`, `aos retention run [--dry-run]` and `aos schedules …` on the session's
real database and brokers this test starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from aos.cli.main import cli
from aos.db.models import OutboxMessage
from aos.db.session import session_scope
from aos.services.locks import acquire, release
from aos.services.workflows import save_workflow
from tests.services.test_doctor import CarelessRedis
from tests.support.broker import PrivateRedis


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def test_doctor_exits_non_zero_and_prints_each_fix_for_a_broker_that_may_lose_messages(aos_env, runner, tmp_path):
    careless = CarelessRedis(tmp_path / "careless")
    try:
        res = runner.invoke(cli, ["doctor"], env={"AOS_BROKER_URL": careless.url, "COLUMNS": "300"})
        assert res.exit_code == 1, res.output
        lines = res.stdout.splitlines()
        fail = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
        assert [lines[i].split(":")[0] for i in fail] == ["FAIL broker.maxmemory-policy", "FAIL broker.persistence"]
        for i in fail:
            assert lines[i + 1].strip().startswith("fix: ")
        assert "2 check(s) failed" in res.stdout and "Traceback" not in res.output

        res = runner.invoke(cli, ["doctor", "--json"], env={"AOS_BROKER_URL": careless.url})
        assert res.exit_code == 1
        report = json.loads(res.stdout)
        assert report["ok"] is False
        assert {f["check"] for f in report["findings"] if not f["ok"]} == {"broker.maxmemory-policy",
                                                                        "broker.persistence"}
        assert all(f["fix"] for f in report["findings"] if not f["ok"])
    finally:
        careless.stop()


def test_doctor_exits_zero_on_a_well_configured_broker(aos_env, runner, tmp_path):
    broker = PrivateRedis(tmp_path / "redis").start()
    try:
        res = runner.invoke(cli, ["doctor"], env={"AOS_BROKER_URL": broker.url})
        assert res.exit_code == 0, res.output
        assert "all checks passed" in res.stdout and "FAIL" not in res.stdout
    finally:
        broker.stop()


def test_doctor_checks_the_database_without_sqlalchemy_or_alembic(aos_env):
    """Importing SQLAlchemy and alembic cost `aos doctor` 0.3 s of CPU, more than all its checks: it reads the
    database on plain psycopg (aos.db.revisions, aos.db.rls) and still judges migrations, row security, pgvector
    and the beat leader; nor does it load Celery or kombu to look at a Redis broker."""
    probe = ("import sys, json\nfrom aos.cli.main import cli\n"
             "try:\n    cli(['doctor', '--json'], prog_name='aos')\nexcept SystemExit as exc:\n    assert exc.code in (0, 1)\n"
             "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'celery', "
             "'kombu'}))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, **aos_env}, timeout=60)
    assert "LOADED []" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    findings = {f["check"]: f for f in json.loads(res.stdout[:res.stdout.rindex("LOADED")])["findings"]}
    for check in ("database", "migrations", "row security"):
        assert findings[check]["ok"], findings[check]
    assert "pgvector" in findings and "beat" in findings


def test_locks_list_shows_holders_and_tokens(aos_env, runner):
    name = f"cli-lock.{uuid.uuid4().hex[:8]}"
    lease = acquire(name, "cli-test-holder", 60)
    res = runner.invoke(cli, ["locks", "list", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = [r for r in json.loads(res.stdout) if r["name"] == name]
    assert row["held"] and row["holder"] == "cli-test-holder" and row["fencing_token"] == 1
    assert 0 < row["expires_in_s"] <= 60
    res = runner.invoke(cli, ["locks", "list"])
    assert res.exit_code == 0 and name in res.stdout and "cli-test-holder" in res.stdout
    release(lease)
    (row,) = [r for r in json.loads(runner.invoke(cli, ["locks", "list", "--json"]).stdout) if r["name"] == name]
    assert not row["held"]


def test_retention_dry_run_deletes_nothing_and_run_shows_progress(tenant, runner, settings_env):
    ctx, _ = tenant
    settings_env(**{"AOS_RETENTION_CHECKPOINTS_DAYS": "0", "AOS_RETENTION_RUNS_DAYS": "0",
                   "AOS_RETENTION_REPLAY_LOG_DAYS": "0", "AOS_RETENTION_ARCHIVE_DAYS": "0",
                    "AOS_RETENTION_OUTBOX_DAYS": "7"})
    with session_scope() as s:
        rows = [OutboxMessage(tenant_id=ctx.tenant_id, topic="run.succeeded", payload={}, status="delivered",
                              delivered_at=datetime.now(UTC) - timedelta(days=9)) for _ in range(5)]
        s.add_all(rows)
        s.flush()
        ids = [r.id for r in rows]

    def left() -> int:
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.id.in_(ids)))

    res = runner.invoke(cli, ["retention", "run", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split()[:2] == ["outbox", "5"] and "would delete 5 rows" in res.stdout
    assert left() == 5
    res = runner.invoke(cli, ["retention", "run", "--batch", "2"])
    assert res.exit_code == 0, res.output
    assert [ln.strip() for ln in res.stdout.splitlines() if ln.startswith("  outbox:")] == \
        ["outbox: 2/5 deleted", "outbox: 4/5 deleted", "outbox: 5/5 deleted"]
    assert "deleted 5 rows" in res.stdout and left() == 0


def test_schedules_create_list_disable_delete_and_a_bad_cron_is_one_error_line(tenant, runner, tmp_path):
    ctx, _ = tenant
    wf = f"wf-{uuid.uuid4().hex[:8]}"
    save_workflow(ctx, wf, {"inputs": {"n": 1},
                            "steps": [{"id": "s", "skill": "json.transform",
                                       "args": {"input": {"$ref": "inputs.n"}, "expr": "@"}}]})
    tenant_opt = ["--tenant", ctx.tenant_name]
    inputs = tmp_path / "inputs.json"
    inputs.write_text('{"n": 42}')

    res = runner.invoke(cli, ["schedules", "create", wf, "--cron", "*/5 * * * *", "--tz", "Europe/Paris",
                              "--inputs", str(inputs), "--json", *tenant_opt])
    assert res.exit_code == 0, res.output
    sc = json.loads(res.stdout)
    assert sc["workflow"] == wf and sc["inputs"] == {"n": 42} and sc["timezone"] == "Europe/Paris"

    res = runner.invoke(cli, ["schedules", "list", *tenant_opt])
    assert res.exit_code == 0 and sc["id"] in res.stdout and wf in res.stdout
    assert runner.invoke(cli, ["schedules", "disable", sc["id"], *tenant_opt]).exit_code == 0
    listed = json.loads(runner.invoke(cli, ["schedules", "list", "--json", *tenant_opt]).stdout)
    assert [(s["id"], s["enabled"]) for s in listed] == [(sc["id"], False)]
    res = runner.invoke(cli, ["schedules", "enable", sc["id"], *tenant_opt])
    assert res.exit_code == 0 and "enabled; next run" in res.stdout

    res = runner.invoke(cli, ["schedules", "create", wf, "--cron", "every day", *tenant_opt])
    assert res.exit_code == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: VALIDATION_ERROR: $.cron: ") and "Traceback" not in res.output

    assert runner.invoke(cli, ["schedules", "delete", sc["id"], *tenant_opt]).exit_code == 0
    res = runner.invoke(cli, ["schedules", "delete", sc["id"], *tenant_opt])
    assert res.exit_code == 1 and res.stderr.startswith("error: NOT_FOUND: ")
    assert json.loads(runner.invoke(cli, ["schedules", "list", "--json", *tenant_opt]).stdout) == []
