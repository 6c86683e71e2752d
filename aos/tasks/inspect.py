"""The broker side of /inspect: queue depths and live workers, each bounded in time.

``CeleryBrokerInspector`` implements ``aos.services.inspect.BrokerInspector``. A
queue's depth comes from a passive declare, which both transports answer (Redis:
the length of the queue's lists, every priority included; AMQP: the message count
of the queue). Workers are those that answer a broadcast ping within the timeout.
A broker that hangs never hangs the request: each call runs in a daemon thread
that is abandoned at its deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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
