"""Step messages straight into Redis: the message Celery's ``send_task`` publishes, without its machinery.

On a Redis broker, Celery's publish path (``send_task`` → kombu's producer → the virtual transport)
costs about a millisecond of CPU per run on the submission path, most of it generic machinery (option
merging, signals, exchange lookups, a ``task-sent`` event) for a message whose shape never changes. This
module writes the same protocol-2 message, as kombu's Redis transport stores it, with one ``LPUSH``.
Workers cannot tell the difference; the only thing missing is the ``task-sent`` event (Flower shows a
step from the moment a worker received it).

Anything else (AMQP, an unusual URL) keeps Celery's own path (``aos.tasks.publisher``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import uuid
from typing import Any

import redis

from aos.config import redis_py_url

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def supported(broker_url: str) -> bool:
    return redis_py_url(broker_url) is not None


def _client(broker_url: str) -> redis.Redis:
    client = _clients.get(broker_url)
    if client is None:
        with _lock:
            client = _clients.get(broker_url)
            if client is None:
                client = _clients[broker_url] = _connect(broker_url)
    return client


def _connect(broker_url: str) -> redis.Redis:
    # timeouts like Celery's broker_connection_timeout: a broker that is down fails the publish fast and the
    # outbox row stays pending for beat's drain
    return redis.Redis.from_url(redis_py_url(broker_url), socket_connect_timeout=3, socket_timeout=5)


def message(task: str, args: list[Any], task_id: str, *, queue: str, soft_time_limit: float,
            time_limit: float, chain: list[dict[str, Any]] | None) -> str:
    """The Redis list entry of a task message (Celery protocol 2, kombu's Redis transport envelope)."""
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": chain, "chord": None}],
                      separators=(", ", ": "))
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
        "group_index": None, "retries": 0, "timelimit": [time_limit, soft_time_limit], "root_id": task_id,
        "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}", "origin": _ORIGIN, "ignore_result": None,
        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    envelope = {
        "body": base64.b64encode(body.encode()).decode(), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": headers,
        "properties": {"correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }
    return json.dumps(envelope)


def push(broker_url: str, queue: str, entry: str) -> None:
    """Append the message to the queue's list, as kombu does (consumers pop from the other end)."""
    client = _client(broker_url)
    try:
        client.lpush(queue, entry)
    except redis.ConnectionError:
        client.connection_pool.reset()  # a broker that came back: one fresh try before the outbox takes over
        client.lpush(queue, entry)
