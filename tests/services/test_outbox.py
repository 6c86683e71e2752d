"""The outbox processor against real receivers, a real worker and real concurrent drainers.

Receivers are tests/support/http_server.py servers whose handler records each request and how many
requests were in flight at once (overall and per AOS-Webhook-Id). Counts only ever consider the
webhook ids a test created itself, since one session database holds every test's rows.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from aos.db.models import DeadLetter, OutboxMessage
from aos.db.session import session_scope
from aos.services import listings, outbox, webhooks
from aos.services.outbox import claim, deliver_one, drain_outbox, settle
from aos.services.runs import submit_run
from aos.services.webhooks import DeliveryResult, verify_signature
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import RecordedRequest, Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()
FAST = {"AOS_OUTBOX_BACKOFF_S": "0.05", "AOS_OUTBOX_BACKOFF_MAX_S": "0.1"}


class Receiver:
    """A webhook receiver: answers each webhook id with its scripted statuses (then 200), after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0, script: list[int] | None = None, always: int | None = None) -> None:
        self.delay_s, self.script, self.always = delay_s, script or [], always
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.seen: Counter[str] = Counter()
        self.active = self.max_active = 0
        self.active_per_id: Counter[str] = Counter()
        self.max_per_id = 0

    def __call__(self, req: RecordedRequest) -> Reply:
        wid = req.headers.get("aos-webhook-id", "")
        with self.lock:
            self.requests.append(req)
            n = self.seen[wid]
            self.seen[wid] += 1
            self.active += 1
            self.active_per_id[wid] += 1
            self.max_active = max(self.max_active, self.active)
            self.max_per_id = max(self.max_per_id, self.active_per_id[wid])
        try:
            time.sleep(self.delay_s)
        finally:
            with self.lock:
                self.active -= 1
                self.active_per_id[wid] -= 1
        status = self.always if self.always is not None else (self.script[n] if n < len(self.script) else 200)
        return Reply(status, json={"ok": status < 300})

    def of(self, ids) -> list[RecordedRequest]:
        wanted = {str(i) for i in ids}
        with self.lock:
            return [r for r in self.requests if r.headers.get("aos-webhook-id") in wanted]


def _hook(ctx, url: str) -> str | None:
    """Point the tenant's webhooks at ``url``; the signing secret when it was generated now."""
    with session_scope() as s:
        return webhooks.set_webhook(s, ctx.tenant_id, url).get("secret")


def _rows(ctx, n: int, topic: str = "run.failed") -> list[int]:
    """Webhook rows as timeline.record writes them (a run id, the event, its data)."""
    with session_scope() as s:
        msgs = [OutboxMessage(tenant_id=ctx.tenant_id, topic=topic,
                              payload={"run_id": str(uuid.uuid4()), "event": topic, "data": {"code": "X", "i": i}})
                for i in range(n)]
        s.add_all(msgs)
        s.flush()
        return [m.id for m in msgs]


def _row(outbox_id: int) -> OutboxMessage:
    with session_scope() as s:
        return s.get(OutboxMessage, outbox_id)


def _drain_until(done, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the outbox did not get there in time"
        drain_outbox(PUB)
        time.sleep(0.05)


@pytest.fixture
def fast(settings_env):
    return settings_env(**FAST)


# --- delivery ---------------------------------------------------------------------------------------------------


def test_a_succeeding_run_sends_exactly_one_run_succeeded_webhook_that_verifies(tenant, worker):
    ctx, _ = tenant
    receiver = Receiver()
    with serve_http({"POST /hook": receiver}) as srv:
        secret = _hook(ctx, srv.url("/hook"))
        plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": {"v": 1}, "expr": "v"}}]}
        run_id = submit_run(ctx, plan, PUB)
        assert wait_for_run(run_id).status == "succeeded"
        with session_scope() as s:
            (row_id,) = s.scalars(select(OutboxMessage.id).where(
                OutboxMessage.topic == "run.succeeded", OutboxMessage.payload["run_id"].astext == str(run_id))).all()
        _drain_until(lambda: _row(row_id).status == "delivered")
        drain_outbox(PUB)  # draining again sends nothing more
        got = receiver.of([row_id])
    assert len(got) == 1
    req = got[0]
    assert req.headers["aos-event"] == "run.succeeded" and req.headers["aos-webhook-id"] == str(row_id)
    assert verify_signature(secret, req.headers["aos-signature"], req.body)
    body = req.json()
    assert body["type"] == "run.succeeded" and body["id"] == str(row_id)
    assert body["data"]["run_id"] == str(run_id) and body["data"]["steps"] == 1
    assert _row(row_id).attempts == 1


def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times_and_the_row_ends_delivered(tenant, fast):
    ctx, _ = tenant
    receiver = Receiver(script=[500, 503])
    with serve_http({"POST /hook": receiver}) as srv:
        secret = _hook(ctx, srv.url("/hook"))
        (row_id,) = _rows(ctx, 1)
        _drain_until(lambda: _row(row_id).status == "delivered")
        got = receiver.of([row_id])
    assert [r.headers["aos-webhook-id"] for r in got] == [str(row_id)] * 3
    assert [r.headers["aos-delivery-attempt"] for r in got] == ["1", "2", "3"]
    assert len({r.body for r in got}) == 1  # the same body every time; only the signature's timestamp moves
    assert all(verify_signature(secret, r.headers["aos-signature"], r.body) for r in got)
    row = _row(row_id)
    assert row.attempts == 3 and row.delivered_at is not None and row.last_error is None


def test_a_receiver_always_failing_ends_in_a_dead_letter_and_no_more_attempts(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_OUTBOX_MAX_ATTEMPTS="3", **FAST)
    receiver = Receiver(always=500)
    with serve_http({"POST /hook": receiver}) as srv:
        _hook(ctx, srv.url("/hook"))
        (row_id,) = _rows(ctx, 1)
        _drain_until(lambda: _row(row_id).status == "dead")
        for _ in range(3):
            drain_outbox(PUB)
        assert len(receiver.of([row_id])) == 3
    row = _row(row_id)
    assert row.attempts == 3 and row.last_error.startswith("HTTP_SERVER_ERROR")
    with session_scope() as s:
        (dl,) = s.scalars(select(DeadLetter).where(DeadLetter.kind == "outbox",
                                                   DeadLetter.payload["outbox_id"].astext == str(row_id))).all()
        assert (dl.tenant_id, dl.status, dl.error_code, dl.attempts) == (ctx.tenant_id, "open", "HTTP_SERVER_ERROR", 3)
        assert dl.payload["topic"] == "run.failed" and dl.payload["last_status"] == 500


def test_410_gone_dead_letters_at_once(tenant, fast):
    ctx, _ = tenant
    receiver = Receiver(always=410)
    with serve_http({"POST /hook": receiver}) as srv:
        _hook(ctx, srv.url("/hook"))
        (row_id,) = _rows(ctx, 1)
        _drain_until(lambda: _row(row_id).status == "dead")
        assert len(receiver.of([row_id])) == 1


def test_a_tenant_without_an_endpoint_gets_its_rows_delivered_with_a_note(tenant):
    ctx, _ = tenant
    (row_id,) = _rows(ctx, 1, topic="budget.warning")
    assert deliver_one(row_id, PUB) is True
    row = _row(row_id)
    assert row.status == "delivered" and row.last_error == outbox.NO_ENDPOINT


def test_a_failed_attempt_waits_a_jittered_exponential_backoff_or_the_receivers_retry_after(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_OUTBOX_BACKOFF_S="10", AOS_OUTBOX_BACKOFF_MAX_S="100")
    receiver = Receiver(always=500)
    with serve_http({"POST /hook": receiver, "POST /slow-down": Reply(429, headers={"Retry-After": "60"})}) as srv:
        _hook(ctx, srv.url("/hook"))
        (row_id,) = _rows(ctx, 1)
        waits = []
        for attempt in (1, 2):
            with session_scope() as s:  # due now, whatever the previous backoff was
                s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                          .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
            assert deliver_one(row_id, PUB) is False
            row = _row(row_id)
            waits.append((row.next_attempt_at - datetime.now(UTC)).total_seconds())
            assert row.attempts == attempt and row.status == "pending"
        _hook(ctx, srv.url("/slow-down"))
        with session_scope() as s:
            s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                      .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        deliver_one(row_id, PUB)
        retry_after_wait = (_row(row_id).next_attempt_at - datetime.now(UTC)).total_seconds()
    # the seeded full jitter: uniform in [0, 10 * 2**(n-1)], and the same every time for (row, attempt)
    assert -1 <= waits[0] <= 10 and -1 <= waits[1] <= 20
    assert abs(waits[0] - outbox.backoff_s(row_id, 1)) < 1 and abs(waits[1] - outbox.backoff_s(row_id, 2)) < 1
    assert 58 <= retry_after_wait <= 61


def test_a_run_enqueue_never_dies_however_often_the_broker_refuses(tenant, settings_env, worker):
    ctx, _ = tenant
    settings_env(AOS_OUTBOX_MAX_ATTEMPTS="1")
    run_id = submit_run(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]},
                        None)
    with session_scope() as s:
        row_id = s.scalar(select(OutboxMessage.id).where(OutboxMessage.topic == "run.enqueue",
                                                         OutboxMessage.payload["run_id"].astext == str(run_id)))
    (job,) = claim(1, only_id=row_id)
    assert job.publish is not None
    settle(job.row, DeliveryResult(False, "BROKER_UNAVAILABLE", "connection refused"))
    row = _row(row_id)
    assert row.status == "pending" and row.attempts == 1 and row.last_error.startswith("BROKER_UNAVAILABLE")
    with session_scope() as s:
        assert s.scalar(select(DeadLetter.id).where(DeadLetter.run_id == run_id)) is None
        s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(next_attempt_at=datetime.now(UTC)))
    assert deliver_one(row_id, PUB) is True  # the broker is back
    assert wait_for_run(run_id).status == "succeeded"


# --- leases and fencing ---------------------------------------------------------------------------------------------


def test_a_claimed_row_is_hidden_and_a_drainer_whose_lease_ran_out_settles_nothing(tenant):
    ctx, _ = tenant
    with serve_http({"POST /hook": Reply(200)}) as srv:
        _hook(ctx, srv.url("/hook"))
        (row_id,) = _rows(ctx, 1)
        (first,) = claim(1, only_id=row_id)
        assert claim(1, only_id=row_id) == []  # leased: no other drainer sees it
        assert first.row.lease_until > datetime.now(UTC) + timedelta(seconds=outbox.lease_seconds() - 5)
        with session_scope() as s:  # the first drainer stalls past its lease
            s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id)
                      .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        (second,) = claim(1, only_id=row_id)
        assert (first.row.attempts, second.row.attempts) == (1, 2)
        assert settle(first.row, DeliveryResult(True)) is False  # stale token: refused
        assert _row(row_id).status == "pending"
        assert settle(second.row, DeliveryResult(True)) is True
    row = _row(row_id)
    assert row.status == "delivered" and row.attempts == 2


def test_concurrency_is_bounded_by_the_setting(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_OUTBOX_CONCURRENCY="3")
    receiver = Receiver(delay_s=0.5)
    with serve_http({"POST /hook": receiver}) as srv:
        _hook(ctx, srv.url("/hook"))
        drain_outbox(PUB, limit=100_000)  # other tests' due rows first, so that the drain below is about ours
        ids = _rows(ctx, 9)
        t0 = time.monotonic()
        drain_outbox(PUB, limit=100_000)  # one drain delivers all nine, three at a time
        elapsed = time.monotonic() - t0
        got = receiver.of(ids)
    assert len(got) == 9 and all(_row(i).status == "delivered" for i in ids)
    assert receiver.max_active == 3  # never more than the setting, and really in parallel
    assert elapsed >= 1.45, elapsed  # three waves of 0.5 s: not nine at once


def _drain_in_child(env: dict[str, str]) -> int:
    os.environ.update(env)
    from aos.config import reset_settings
    from aos.db.session import reset_engine

    reset_settings()
    reset_engine()
    from aos.services.outbox import drain_outbox as drain
    from aos.tasks.publisher import CeleryPublisher as Publisher

    return drain(Publisher())


def test_two_drainer_processes_never_deliver_one_row_twice_at_the_same_time(tenant, aos_env):
    ctx, _ = tenant
    receiver = Receiver(delay_s=0.25)
    spawn = multiprocessing.get_context("spawn")
    env = {**aos_env, "AOS_OUTBOX_CONCURRENCY": "2", "AOS_OUTBOX_BATCH": "100000"}
    with serve_http({"POST /hook": receiver}) as srv:
        _hook(ctx, srv.url("/hook"))
        drain_outbox(PUB, limit=100_000)  # other tests' due rows first: the race below is about ours
        ids = _rows(ctx, 16)
        pools = [spawn.Pool(1) for _ in range(2)]
        try:
            for p in pools:  # warm both up (imports) so that their drains really overlap
                p.apply(os.getpid)
            results = [p.apply_async(_drain_in_child, (env,)) for p in pools]
            delivered = [r.get(timeout=60) for r in results]
        finally:
            for p in pools:
                p.terminate()
                p.join()
        got = receiver.of(ids)
    per_id = Counter(r.headers["aos-webhook-id"] for r in got)
    assert sorted(per_id) == sorted(str(i) for i in ids) and set(per_id.values()) == {1}  # each once
    assert receiver.max_per_id == 1
    assert 2 < receiver.max_active <= 4, receiver.max_active  # both drainers at once, each within its bound
    assert all(n >= 1 for n in delivered) and all(_row(i).status == "delivered" for i in ids)


def test_outbox_status_counts_rows_and_the_oldest_pending_age(tenant):
    ctx, _ = tenant
    ids = _rows(ctx, 3)
    with session_scope() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ids[0])
                  .values(created_at=datetime.now(UTC) - timedelta(seconds=120)))
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ids[1]).values(status="dead"))
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ids[2])
                  .values(next_attempt_at=datetime.now(UTC) + timedelta(hours=1)))
    st = listings.outbox_status(ctx.tenant_id)
    assert (st["pending"], st["dead"], st["due"]) == (2, 1, 1)
    assert st["by_topic"] == {"run.failed": {"pending": 2, "dead": 1}}
    assert 119 <= st["oldest_pending_age_s"] < 200
    by_tenant = defaultdict(int)
    for status in ("pending", "delivered", "dead"):
        by_tenant[status] = listings.outbox_status()[status]
    assert by_tenant["pending"] >= 2 and by_tenant["dead"] >= 1
