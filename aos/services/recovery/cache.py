"""The exact layer: a suggestion by (tenant, signature) in Redis, with a deployment-wide fallback.

Keys: ``aos:recovery:<db>:exact:<tenant>:<signature>`` (the tenant's own), ``…:exact:*:<signature>``
(deployment-wide: written only for suggestions that depend on nothing of a tenant — the offline provider's,
made from the catalog, the skill and the normalised message), with AOS_RECOVERY_CACHE_TTL_S. Each pattern
keeps the set of keys that point at it (``aos:recovery:alias:<pattern>``), so a pattern that falls under
the success floor is dropped from the cache at once. ``<db>`` names the database (a hash of its URL without
credentials), so deployments sharing a Redis never answer from each other's patterns. Redis is optional: without it (RabbitMQ, an outage)
every lookup is a miss and Postgres' signature index answers instead.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from typing import Any

from aos.config import Settings, redis_py_url
from aos.services.recovery.sanitize import recovery_logger

log = recovery_logger(__name__)
GLOBAL = "*"
_clients: dict[str, Any] = {}
_lock = threading.Lock()


def redis_url(settings: Settings) -> str | None:
    """The cache's Redis URL: AOS_RECOVERY_CACHE_URL, else the broker's when it is Redis, else none."""
    return redis_py_url(settings.recovery_cache_url or settings.broker_url)


def redis_client(settings: Settings) -> Any | None:
    url = redis_url(settings)
    if url is None:
        return None
    with _lock:
        client = _clients.get(url)
        if client is None:
            import redis

            client = _clients[url] = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return client


def namespace(settings: Settings) -> str:
    """The database's name in cache keys: a hash of host, port and database of AOS_DATABASE_URL."""
    url = settings.database_url or ""
    where = url.rsplit("@", 1)[-1]  # no credentials in the hash's input
    return hashlib.sha256(where.encode()).hexdigest()[:12]


class ExactCache:
    def __init__(self, client: Any | None, ttl_s: int, ns: str = "") -> None:
        self.client, self.ttl_s, self.ns = client, ttl_s, ns

    def key(self, tenant: uuid.UUID | str, signature: str) -> str:
        return f"aos:recovery:{self.ns}:exact:{tenant}:{signature}"

    def _alias(self, pattern_id: int) -> str:
        return f"aos:recovery:{self.ns}:alias:{pattern_id}"

    def get(self, tenant_id: uuid.UUID, signature: str) -> dict[str, Any] | None:
        if self.client is None:
            return None
        try:
            own, shared = self.client.mget(self.key(tenant_id, signature), self.key(GLOBAL, signature))
        except Exception as exc:  # noqa: BLE001 — a cache that is down is a miss
            log.warning("recovery cache unreachable: %s", exc)
            return None
        raw = own or shared
        return json.loads(raw) if raw else None

    def put(self, tenant_id: uuid.UUID, signature: str, entry: dict[str, Any], *, deployment_wide: bool = False) -> None:
        if self.client is None:
            return
        keys = [self.key(tenant_id, signature)] + ([self.key(GLOBAL, signature)] if deployment_wide else [])
        alias = self._alias(entry["pattern_id"])
        try:
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.set(k, json.dumps(entry, separators=(",", ":")), ex=self.ttl_s)
            pipe.sadd(alias, *keys)
            pipe.expire(alias, self.ttl_s)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001
            log.warning("recovery cache unreachable: %s", exc)

    def drop_pattern(self, pattern_id: int) -> None:
        """Forget every key that serves the pattern (it fell under the success floor)."""
        if self.client is None:
            return
        alias = self._alias(pattern_id)
        try:
            keys = self.client.smembers(alias)
            self.client.delete(alias, *keys)
        except Exception as exc:  # noqa: BLE001
            log.warning("recovery cache unreachable: %s", exc)
