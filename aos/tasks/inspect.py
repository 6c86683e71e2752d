"""The broker side of /inspect: queue depths and live workers, each bounded in time.

``CeleryBrokerInspector`` implements ``aos.services.inspect.BrokerInspector``. A
queue's depth comes from a passive declare, which both transports answer (Redis:
the length of the queue's lists, every priority included; AMQP: the message count
of the queue). Workers are those that answer a broadcast ping within the timeout.
A broker that hangs never hangs the request: each call runs in a daemon thread
that is abandoned at its deadline.

``CeleryStepQueue`` implements the reaper's ``aos.services.reaper.StepQueue``: on
Redis it reads the step queue's lists (every priority) and the run id at the head
of each waiting message's task id; AMQP cannot be looked into without consuming,
so there only an empty queue is an answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery import Celery
from kombu.exceptions import ChannelError

from aos.config import get_settings
from aos.tasks.app import app

T = TypeVar("T")


def bounded(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """``fn()``, or TimeoutError when it has not returned within ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"aos-inspect-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what}: no answer within {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def aos_queues(celery_app: Celery = app) -> list[str]:
    """The queues AOS publishes to: the default queue and every routed one."""
    names = [celery_app.conf.task_default_queue]
    for route in (celery_app.conf.task_routes or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.append(route["queue"])
    return list(dict.fromkeys(names))


def queue_depth(conn: Any, name: str) -> int:
    """Messages waiting in queue ``name`` (0 when the broker has never seen the queue)."""
    channel = conn.channel()
    try:
        _, depth, _ = channel.queue_declare(queue=name, passive=True)
        return int(depth)
    except (ChannelError, *conn.channel_errors):
        return 0  # passive declare of a queue nobody declared (or Redis: an empty, hence absent, list)
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001, S110 — a channel the broker already closed
            pass


class CeleryBrokerInspector:
    def __init__(self, timeout_s: float | None = None, queues: list[str] | None = None,
                 celery_app: Celery | None = None) -> None:
        self._timeout_s = timeout_s
        self.queues = queues
        self.app = celery_app or app

    @property
    def timeout_s(self) -> float:
        # read per call unless given: one inspector lives as long as the web app
        return self._timeout_s if self._timeout_s is not None else get_settings().inspect_timeout_s

    def queue_depths(self) -> list[dict[str, Any]]:
        names = self.queues or aos_queues(self.app)

        def measure() -> list[dict[str, Any]]:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout_s)
                return [{"name": n, "depth": queue_depth(conn, n)} for n in names]

        return bounded(measure, self.timeout_s + 2, "broker")

    def workers(self) -> list[dict[str, Any]]:
        replies = bounded(lambda: self.app.control.inspect(timeout=self.timeout_s).ping() or {},
                          self.timeout_s + 2, "ping")
        seen = datetime.now(UTC).isoformat()
        return [{"name": name, "last_seen": seen} for name in sorted(replies)]


class CeleryStepQueue:
    """Which runs have a message waiting in the step queue (the reaper's question to the broker)."""

    # Messages read per round trip, and at most: past that the rest of the queue is a backlog we did
    # not see, and the answer is "cannot tell".
    CHUNK = 1000
    LIMIT = 50_000

    def __init__(self, queue: str | None = None, celery_app: Celery | None = None,
                 timeout_s: float | None = None) -> None:
        self.queue = queue or get_settings().step_queue
        self.app = celery_app or app
        self.timeout_s = timeout_s if timeout_s is not None else get_settings().inspect_timeout_s

    def runs_waiting(self, run_ids: Collection[str]) -> set[str] | None:
        wanted = set(run_ids)

        def look() -> set[str] | None:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout_s)
                if conn.transport.driver_type != "redis":
                    return set() if queue_depth(conn, self.queue) == 0 else None
                return self._scan_redis(conn.default_channel, wanted)

        # A broker that does not answer is a broker that cannot tell: the caller then waits longer.
        try:
            return bounded(look, self.timeout_s + 2, "step queue")
        except Exception:  # noqa: BLE001 — the reaper must go on; an unreachable broker is logged there
            return None

    def _scan_redis(self, channel: Any, wanted: set[str]) -> set[str] | None:
        found: set[str] = set()
        seen = 0
        with channel.conn_or_acquire() as client:
            for key in dict.fromkeys(channel._q_for_pri(self.queue, p) for p in channel.priority_steps):
                start = 0
                while True:
                    chunk = client.lrange(key, start, start + self.CHUNK - 1)
                    for raw in chunk:
                        run_id = _run_of(raw)
                        if run_id in wanted:
                            found.add(run_id)
                    seen += len(chunk)
                    if len(chunk) < self.CHUNK:
                        break
                    if seen >= self.LIMIT:
                        return None if found != wanted else found
                    start += self.CHUNK
        return found


def _run_of(raw: bytes | str) -> str | None:
    """The run a kombu Redis message is for: step and continue task ids start with ``<run id>:``."""
    try:
        task_id = json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return task_id.split(":", 1)[0] if isinstance(task_id, str) else None
