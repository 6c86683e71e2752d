"""`aos dlq`, `aos outbox` and `aos tenants webhook` against the session database."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.db.models import DeadLetter, OutboxMessage
from aos.db.session import session_scope
from aos.services.tenancy import create_tenant


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def tenant_name(aos_env) -> tuple[str, uuid.UUID]:
    with session_scope() as s:
        t = create_tenant(s, f"cli-{uuid.uuid4().hex[:10]}")
        return t.name, t.id


def _ok(res) -> str:
    assert res.exit_code == 0, (res.output, res.stderr)
    return res.stdout


def _one_line_error(res, code: str) -> str:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def _dead_webhook(tenant_id: uuid.UUID) -> tuple[int, int]:
    """A dead outbox row and its dead letter: (row id, dead letter id)."""
    with session_scope() as s:
        row = OutboxMessage(tenant_id=tenant_id, topic="run.failed", status="dead", attempts=12,
                            payload={"run_id": str(uuid.uuid4()), "event": "run.failed", "data": {}})
        s.add(row)
        s.flush()
        dl = DeadLetter(tenant_id=tenant_id, kind="outbox", payload={"outbox_id": row.id, "topic": "run.failed"},
                        error_code="HTTP_SERVER_ERROR", error_message="POST http://x/ answered 500", attempts=12)
        s.add(dl)
        s.flush()
        return row.id, dl.id


def test_webhook_set_prints_the_secret_once_and_show_never(runner, tenant_name):
    name, _ = tenant_name
    out = _ok(runner.invoke(cli, ["tenants", "webhook", "set", name, "--url", "http://127.0.0.1:9/hook"]))
    secret = [line for line in out.splitlines() if line.startswith("whsec_")]
    assert len(secret) == 1 and "webhooks to http://127.0.0.1:9/hook" in out
    shown = json.loads(_ok(runner.invoke(cli, ["tenants", "webhook", "show", name, "--json"])))
    assert shown == {"tenant": name, "url": "http://127.0.0.1:9/hook", "secret_set": True,
                     "events": ["run.succeeded", "run.failed", "budget.warning", "run.waiting", "run.recovery"]}
    rotated = json.loads(_ok(runner.invoke(cli, ["tenants", "webhook", "rotate-secret", name, "--json"])))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret[0]
    cleared = json.loads(_ok(runner.invoke(cli, ["tenants", "webhook", "clear", name, "--json"])))
    assert cleared["url"] is None


def test_webhook_set_refuses_a_bad_url_or_unknown_tenant_in_one_line(runner, tenant_name):
    name, _ = tenant_name
    _one_line_error(runner.invoke(cli, ["tenants", "webhook", "set", name, "--url", "gopher://x"]), "VALIDATION_ERROR")
    _one_line_error(runner.invoke(cli, ["tenants", "webhook", "set", name, "--url", "http://10.9.8.7/"]),
                    "HTTP_SSRF_BLOCKED")
    _one_line_error(runner.invoke(cli, ["tenants", "webhook", "show", "no-such-tenant-x"]), "NOT_FOUND")


def test_dlq_list_show_replay_discard(runner, tenant_name):
    name, tenant_id = tenant_name
    row_id, dl_id = _dead_webhook(tenant_id)
    _, other = _dead_webhook(tenant_id)
    listed = json.loads(_ok(runner.invoke(cli, ["dlq", "list", "--tenant", name, "--json"])))
    assert [d["id"] for d in listed["items"]] == [other, dl_id] and listed["next_cursor"] is None
    table = _ok(runner.invoke(cli, ["dlq", "list", "--tenant", name, "--kind", "outbox"]))
    assert str(dl_id) in table and "HTTP_SERVER_ERROR" in table
    shown = _ok(runner.invoke(cli, ["dlq", "show", str(dl_id)]))
    assert f"dead letter {dl_id}  outbox  open" in shown and f"aos dlq replay {dl_id}" in shown

    first = _ok(runner.invoke(cli, ["dlq", "replay", str(dl_id)]))
    assert f"webhook {row_id} queued for delivery again" in first
    again = _ok(runner.invoke(cli, ["dlq", "replay", str(dl_id)]))
    assert "already replayed" in again
    with session_scope() as s:
        row = s.get(OutboxMessage, row_id)
        assert (row.status, row.attempts) == ("pending", 0)

    assert f"dead letter {other} discarded" in _ok(runner.invoke(cli, ["dlq", "discard", str(other)]))
    _one_line_error(runner.invoke(cli, ["dlq", "replay", str(other)]), "DEAD_LETTER_NOT_REPLAYABLE")
    _one_line_error(runner.invoke(cli, ["dlq", "show", "987654321987"]), "DEAD_LETTER_NOT_FOUND")
    _one_line_error(runner.invoke(cli, ["dlq", "show", "abc"]), "DEAD_LETTER_NOT_FOUND")
    assert "no dead letters" in _ok(runner.invoke(cli, ["dlq", "list", "--tenant", name]))
    every = json.loads(_ok(runner.invoke(cli, ["dlq", "list", "--tenant", name, "--all-statuses", "--json"])))
    assert sorted(d["status"] for d in every["items"]) == ["discarded", "replayed"]


def test_outbox_status_reconcile_and_drain(runner, tenant_name):
    name, tenant_id = tenant_name
    _dead_webhook(tenant_id)
    st = json.loads(_ok(runner.invoke(cli, ["outbox", "status", "--tenant", name, "--json"])))
    assert (st["dead"], st["pending"]) == (1, 0) and st["by_topic"] == {"run.failed": {"dead": 1}}
    text = _ok(runner.invoke(cli, ["outbox", "status", "--tenant", name]))
    assert "dead 1" in text and "aos dlq list --kind outbox" in text
    counts = json.loads(_ok(runner.invoke(cli, ["dlq", "reconcile", "--json"])))
    assert set(counts) == {"resolved", "redriven", "archived"}
    assert "delivered" in json.loads(_ok(runner.invoke(cli, ["outbox", "drain", "--json"])))
