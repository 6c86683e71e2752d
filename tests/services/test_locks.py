"""Leases in distributed_locks: one leader among racing processes, takeover with a bigger fencing token,
a stale leader's write refused, and the singleton() wrapper the beat jobs run in."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from sqlalchemy import text

from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.listings import locks as list_locks
from aos.services.locks import acquire, release, renew, singleton, singleton_job


def _name(prefix: str = "test") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def _race_acquire(names: list[str], holder: str, barrier, results) -> None:  # noqa: ANN001 — spawned child
    from aos.services.locks import acquire

    for name in names:
        barrier.wait(timeout=60)  # all processes fire their INSERT … ON CONFLICT at the same moment
        lease = acquire(name, holder, 30)
        results.put((name, holder, lease.fencing_token if lease else None))


def test_processes_racing_for_a_lease_elect_exactly_one_leader(aos_env):
    ctx = multiprocessing.get_context("spawn")
    n, names = 4, [_name("race") for _ in range(3)]
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_acquire, args=(names, f"p{i}", barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=90) for _ in range(n * len(names))]
    for p in procs:
        p.join(timeout=30)
    rows = {r["name"]: r for r in list_locks()}
    for name in names:
        leaders = [(h, tok) for nm, h, tok in got if nm == name and tok is not None]
        assert len(leaders) == 1, got
        assert leaders[0][1] == 1
        assert rows[name]["holder"] == leaders[0][0] and rows[name]["held"]


def test_an_expired_lease_is_taken_over_with_a_bigger_token_and_renewal_keeps_it(aos_env):
    name = _name()
    first = acquire(name, "a", 0.5)
    assert first is not None and first.fencing_token == 1
    assert acquire(name, "b", 5) is None  # live: refused
    again = acquire(name, "a", 0.5)       # the holder itself: a renewal, same token
    assert again is not None and again.fencing_token == 1
    time.sleep(0.8)
    taken = acquire(name, "b", 5)
    assert taken is not None and taken.fencing_token == 2
    assert renew(first) is False          # the old tenure cannot renew itself back
    assert renew(taken, 10) is True and taken.expires_at > first.expires_at
    assert release(taken) is True
    back = acquire(name, "a", 5)          # released: free at once, and the token still grows
    assert back is not None and back.fencing_token == 3


STALE_LEADER = textwrap.dedent("""
    import sys
    from sqlalchemy import text
    from aos.db.session import session_scope
    from aos.errors import AosError
    from aos.services.locks import acquire

    name, marker = sys.argv[1], sys.argv[2]
    lease = acquire(name, "stale-leader", 1.0)
    print("leader", lease.fencing_token, flush=True)
    sys.stdin.readline()  # the process stalls here (a GC pause, a partition) past its lease
    try:
        with session_scope() as s:
            lease.fence(s)
            s.execute(text("UPDATE tenants SET name = :m WHERE name = :m"), {"m": marker})
            s.execute(text("CREATE TEMP TABLE wrote_after_fence (x int)"))
        print("wrote", flush=True)
    except AosError as exc:
        print("refused", exc.code, flush=True)
""")


def test_a_stale_leader_in_another_process_is_refused_when_it_writes(aos_env):
    name = _name("stale")
    proc = subprocess.Popen([sys.executable, "-c", STALE_LEADER, name, "marker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline().split()
        assert line[:2] == ["leader", "1"], line
        time.sleep(1.3)  # its lease lapses while it stalls
        new = acquire(name, "new-leader", 30)
        assert new is not None and new.fencing_token == 2
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["refused", "LEASE_HELD"]
    finally:
        proc.kill()
        proc.wait()
    with session_scope() as s:  # the current leader still writes
        new.fence(s)
        assert new.still_valid(s)


def test_a_takeover_waits_for_a_fenced_write_in_flight(aos_env):
    name = _name("inflight")
    old = acquire(name, "old", 0.3)
    events: list[tuple[str, float]] = []

    def take_over() -> None:
        lease = acquire(name, "new", 30)
        events.append(("acquired" if lease else "refused", time.monotonic()))

    with session_scope() as s:
        old.fence(s)      # row-locked until this transaction ends; extends the lease by its ttl (0.3 s)
        time.sleep(0.6)   # ... and the lease lapses while the write is still in flight
        t = threading.Thread(target=take_over)
        t.start()
        time.sleep(0.5)
        assert events == []  # the takeover is waiting for our commit
        s.execute(text("SELECT 1"))
        committed = time.monotonic()
    t.join(timeout=10)
    assert events and events[0][0] == "acquired" and events[0][1] >= committed


def test_singleton_yields_the_lease_to_one_caller_and_none_to_the_others(aos_env):
    job = _name("job")
    inside = threading.Event()
    leave = threading.Event()
    seen: list[object] = []

    def leader() -> None:
        with singleton(job, ttl_s=30) as lease:
            seen.append(lease)
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=leader)
    t.start()
    assert inside.wait(10)
    with singleton(job, ttl_s=30) as other:
        assert other is None
    leave.set()
    t.join(10)
    first = seen[0]
    assert first is not None and first.fencing_token == 1
    (row,) = [r for r in list_locks() if r["name"] == job]
    assert not row["held"]  # released on exit: the next tick need not wait for the ttl
    with singleton(job) as nxt:
        assert nxt is not None and nxt.fencing_token == 2


def test_singleton_job_decorator_passes_the_lease_and_skips_when_held(aos_env):
    job = _name("deco")

    @singleton_job(job, ttl_s=30)
    def work(x: int, *, lease) -> tuple[int, int]:  # noqa: ANN001
        return x, lease.fencing_token

    assert work(7) == (7, 1)
    holder = acquire(job, "someone-else", 30)
    assert holder is not None
    assert work(7) is None
    release(holder)


def test_fence_raises_lease_held_after_a_takeover(aos_env):
    name = _name()
    old = acquire(name, "a", 0.2)
    time.sleep(0.4)
    acquire(name, "b", 30)
    with pytest.raises(AosError) as e, session_scope() as s:
        old.fence(s)
    assert e.value.code == "LEASE_HELD"
    with session_scope() as s:
        assert old.still_valid(s) is False


def test_singleton_ends_quietly_when_leadership_is_lost_mid_job(aos_env):
    job = _name("lost")
    reached_end = []
    with singleton(job, ttl_s=0.2) as lease:
        time.sleep(0.4)
        assert acquire(job, "usurper", 30) is not None
        with session_scope() as s:
            lease.fence(s)  # refused: LEASE_HELD ends the block, the job does not crash
        reached_end.append(True)
    assert reached_end == []
    with pytest.raises(AosError), singleton(_name("other")):
        raise AosError("CONFLICT", "other errors still propagate")
