"""Guards around kombu's Redis transport so that a broker restart is a connection error, not a crash.

When the Redis broker goes away while a worker holds unacknowledged messages
(an ``acks_late`` step in flight, a retry waiting for its ETA), Celery's consumer
closes the broken connection twice: once in ``Connection.collect`` and again in
``Connection.close``. The first close fails part-way (reading the pending BRPOP
reply raises ``ConnectionError``), so the channel is not marked closed, and
``collect`` then detaches the transport from its connection (``transport.client
= None``). The second close drops the channel's pool and calls
``restore_unacked``, which builds a new pool from ``transport.client`` and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``. Celery treats
that as unrecoverable and the worker exits (kombu 5.7 / celery 5.7; the same
symptom as celery/kombu#582 and #970). A late ``ack`` of a step that finishes after
the reconnect hits the same path.

The guard makes a channel whose transport was detached raise the Redis
``ConnectionError`` that kombu and Celery already treat as a lost connection: the
close is finished quietly, a late ack is logged ("Couldn't ack"), and the consumer
reconnects. What the worker could not put back stays in Redis's ``unacked`` hash
(restored after the visibility timeout, then found already checkpointed); the runs
behind it are re-published earlier by the reaper, which sees their lease expire.
"""

from __future__ import annotations

from typing import Any

_INSTALLED_ATTR = "_aos_detached_transport_guard"


def install() -> None:
    """Patch kombu's Redis channel once per process (idempotent)."""
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    channel_cls = kombu_redis.Channel
    if getattr(channel_cls, _INSTALLED_ATTR, False):
        return
    original = channel_cls._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if getattr(self.connection, "client", None) is None:
            # The transport was detached from its connection (closed after a broker loss):
            # no new connection may be made through this channel any more.
            raise RedisConnectionError("broker connection closed; this channel can no longer reach Redis")
        return original(self, asynchronous=asynchronous)

    channel_cls._connparams = _connparams
    setattr(channel_cls, _INSTALLED_ATTR, True)
