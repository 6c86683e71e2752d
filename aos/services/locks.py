"""Leases in ``distributed_locks``: leader election with fencing tokens for singleton jobs.

Celery beat is meant to run once, yet two beats happen (celery#2856, #4808), a slow
job overlaps its next tick, and an operator triggers a job by hand. Each singleton
job therefore takes a lease in Postgres before it works:

- ``acquire`` is one atomic ``INSERT … ON CONFLICT DO UPDATE … WHERE expired OR
  same holder``: of any number of racing processes exactly one gets the row.
- The **fencing token** grows by one at every takeover (and never restarts: rows
  are never deleted, a release only expires them). A leader that stalled past its
  lease (GC pause, SIGSTOP, a network partition) still holds its old token; every
  write it makes is preceded by ``Lease.fence(session)`` in the same transaction,
  which row-locks the lease and checks the token, so its write is refused once
  another process took over — and a takeover waits for an in-flight fenced write
  to commit, so the two never interleave.
- ``singleton(job)`` wraps a job: it yields the lease to the leader and ``None`` to
  everybody else, and releases on exit.

Times come from the database clock (``now()``), never from the callers' clocks.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db.session import session_scope
from aos.errors import AosError

log = logging.getLogger(__name__)

T = TypeVar("T")

_ACQUIRE = text("""
INSERT INTO distributed_locks AS l (name, holder, fencing_token, acquired_at, expires_at)
VALUES (:name, :holder, 1, now(), now() + make_interval(secs => :ttl))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    -- a takeover (another holder, or our own lease after it lapsed) gets the next token;
    -- re-acquiring a live lease of our own is a renewal and keeps it
    fencing_token = l.fencing_token + CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= now()
                                          THEN 0 ELSE 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= now()
                       THEN l.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
RETURNING fencing_token, acquired_at, expires_at
""")

_FENCE = text("""
UPDATE distributed_locks SET expires_at = GREATEST(expires_at, now() + make_interval(secs => :ttl))
WHERE name = :name AND holder = :holder AND fencing_token = :token
RETURNING expires_at
""")

_STILL_VALID = text("""
SELECT 1 FROM distributed_locks
WHERE name = :name AND holder = :holder AND fencing_token = :token AND expires_at > now()
FOR SHARE
""")

_RELEASE = text("""
UPDATE distributed_locks SET expires_at = now()
WHERE name = :name AND holder = :holder AND fencing_token = :token
""")


def new_holder(prefix: str = "") -> str:
    """A holder id unique to one attempt at leadership, readable by an operator (host:pid:nonce)."""
    base = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{prefix}{base}"[:200]


@dataclass
class Lease:
    """A held lease. ``fencing_token`` identifies this tenure; a takeover always has a bigger one."""

    name: str
    holder: str
    fencing_token: int
    acquired_at: datetime
    expires_at: datetime
    ttl_s: float

    def _params(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder, "token": self.fencing_token}

    def still_valid(self, session: Session) -> bool:
        """True while this tenure is current and unexpired. Share-locks the lease row until the caller's
        transaction ends, so a takeover cannot happen between this check and the caller's writes."""
        return session.execute(_STILL_VALID, self._params()).first() is not None

    def fence(self, session: Session) -> None:
        """Refuse the caller's transaction unless this tenure is still the current one; on success the lease
        is extended by ``ttl_s`` (a long job stays leader while it keeps writing) and stays row-locked until
        the transaction ends. Raises ``LEASE_HELD`` when another process took over."""
        row = session.execute(_FENCE, {**self._params(), "ttl": self.ttl_s}).first()
        if row is None:
            raise AosError("LEASE_HELD", f"lease {self.name!r} was taken over: fencing token {self.fencing_token} "
                           "is stale, so this process's write is refused")
        self.expires_at = row[0]


def acquire(name: str, holder: str, ttl_s: float) -> Lease | None:
    """Take the lease ``name`` for ``ttl_s`` seconds if it is free, expired, or already ours; else None."""
    with session_scope() as s:
        row = s.execute(_ACQUIRE, {"name": name, "holder": holder, "ttl": float(ttl_s)}).first()
    if row is None:
        return None
    return Lease(name, holder, int(row[0]), row[1], row[2], float(ttl_s))


def renew(lease: Lease, ttl_s: float | None = None) -> bool:
    """Extend a held lease by ``ttl_s`` (default: its own ttl) from now; False if it was taken over."""
    ttl = float(ttl_s if ttl_s is not None else lease.ttl_s)
    with session_scope() as s:
        row = s.execute(text("""
            UPDATE distributed_locks SET expires_at = now() + make_interval(secs => :ttl)
            WHERE name = :name AND holder = :holder AND fencing_token = :token RETURNING expires_at
        """), {**lease._params(), "ttl": ttl}).first()
    if row is None:
        return False
    lease.expires_at = row[0]
    return True


def release(lease: Lease) -> bool:
    """Give the lease up now (the row stays, expired, so the next holder's token is still bigger)."""
    with session_scope() as s:
        res = s.execute(_RELEASE, lease._params())
    return bool(res.rowcount)  # type: ignore[attr-defined]


@contextmanager
def singleton(job: str, *, ttl_s: float | None = None) -> Iterator[Lease | None]:
    """Run a job only in the leader: yields the lease to the one process that holds it, ``None`` to the rest.

        with singleton("aos.retention.run") as lease:
            if lease is None:
                return            # another process leads this job right now
            ... every write transaction calls lease.fence(session) first ...

    The lease lasts ``ttl_s`` (default ``AOS_LOCK_TTL_S``) and each ``fence`` extends it, so a job that
    dies is taken over after at most that long. It is released when the block exits. A ``LEASE_HELD``
    raised inside the block (a fence refused: another process took over) ends the block quietly.
    """
    ttl = float(ttl_s if ttl_s is not None else get_settings().lock_ttl_s)
    lease = acquire(job, new_holder(), ttl)
    if lease is None:
        log.debug("singleton %s: another process holds the lease; skipping", job)
        yield None
        return
    # DEBUG: every tick of every singleton job takes its lease; a change of leader shows in the fencing token
    log.debug("singleton %s: leader with fencing token %d", job, lease.fencing_token)
    metrics.lock_leadership(job, True, acquired=True)
    try:
        yield lease
    except AosError as exc:
        if exc.code != "LEASE_HELD":
            raise
        # Leadership was lost mid-job (a fenced write was refused): expected, not a crash; the new leader
        # carries on from what was committed.
        log.warning("singleton %s: lost the lease (token %d) mid-job; stopping", job, lease.fencing_token)
    finally:
        metrics.lock_leadership(job, False)
        try:
            release(lease)
        except Exception:  # noqa: BLE001 — the lease then simply expires after its ttl
            log.warning("singleton %s: could not release the lease; it expires by itself", job, exc_info=True)


def singleton_job(job: str, *, ttl_s: float | None = None) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorator form of ``singleton``: the function runs (with ``lease=`` passed in) only in the leader;
    elsewhere the call returns None."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T | None]:
        @wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T | None:
            with singleton(job, ttl_s=ttl_s) as lease:
                if lease is None:
                    return None
                return fn(*args, lease=lease, **kwargs)

        return run

    return wrap
