"""The three layers, cheapest first: exact signature (Redis) → similar pattern (pgvector / Python) → LLM.

Each answer records the layer that produced it. A spent quota skips the layer that needs it (similarity
needs an embedding, the LLM layer a suggestion call) and the answer says ``QUOTA_EXCEEDED`` in its
metadata; with nothing left the catalog's text answers (layer ``catalog``). Recovery never raises into a
run: the caller logs and moves on.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from aos import metrics
from aos.config import Settings
from aos.db.session import session_scope
from aos.services.recovery import patterns, quota
from aos.services.recovery.cache import ExactCache, namespace, redis_client
from aos.services.recovery.embedding import Embedded, EmbeddingCache, HashingEmbedder, OpenAIEmbedder
from aos.services.recovery.sanitize import recovery_logger
from aos.services.recovery.signature import FailureSignature
from aos.services.recovery.writer import FailureContext, catalog_suggestion, write
from aos.skills.egress import EgressPolicy, guarded_client2
from aos.skills.llm.providers import OPENAI_DEFAULT_BASE_URL

log = recovery_logger(__name__)
_embedding_cache: dict[str, EmbeddingCache] = {}


@dataclass
class Answer:
    layer: str                      # cache | vector | llm | catalog
    suggestion: dict[str, Any]      # mode, parameters, explanation, confidence
    pattern_id: int | None = None
    similarity: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def exact_cache(settings: Settings) -> ExactCache:
    return ExactCache(redis_client(settings), settings.recovery_cache_ttl_s, namespace(settings))


def embed(s: Session, settings: Settings, tenant_id: uuid.UUID, sig: FailureSignature,
          meta: dict[str, Any]) -> list[float] | None:
    """The signature's vector: from the cache by hash, else from the embedder (one quota call); None when the
    tenant's embedding quota is spent."""
    name = settings.recovery_embedder
    shared = _embedding_cache.setdefault(name, EmbeddingCache(redis_client(settings)))
    key = EmbeddingCache.key(name, sig.text)
    hit = shared.get(key)
    if hit is not None:
        return hit
    if not _take(settings, tenant_id, "embedding"):
        metrics.recovery_quota_refused("embedding")
        meta.setdefault("quota_exceeded", []).append("embedding")
        meta["code"] = "QUOTA_EXCEEDED"
        return None
    if name == "openai":
        url = settings.openai_base_url or OPENAI_DEFAULT_BASE_URL
        policy = _trusting(settings, url)
        done = OpenAIEmbedder(api_key=settings.openai_api_key or "", base_url=url,
                              http_client=lambda: guarded_client2(policy),
                              timeout_s=settings.recovery_timeout_s).embed(sig.text)
        vector = done.vector
    else:  # the code and skill weigh as a block of their own: see aos/services/recovery/embedding.py
        vector = HashingEmbedder().vector(sig.normalised, f"{sig.code} {sig.skill}")
        done = Embedded(vector, tokens=0, cost_usd=0.0)
    _spend(tenant_id, "embedding", done.tokens, done.cost_usd)
    metrics.recovery_provider_call("embedding", done.tokens, done.cost_usd)
    shared.put(key, vector)
    return vector


def _take(settings: Settings, tenant_id: uuid.UUID, kind: str) -> bool:
    # a transaction of its own: the usage row stays locked for a moment, not across the provider call that follows
    with session_scope() as q:
        return quota.take(q, settings, tenant_id, kind)


def _spend(tenant_id: uuid.UUID, kind: str, tokens: int, cost_usd: float) -> None:
    if tokens or cost_usd:
        with session_scope() as q:
            quota.spend(q, tenant_id, kind, tokens=tokens, cost_usd=cost_usd)


def _trusting(settings: Settings, url: str) -> EgressPolicy:
    return EgressPolicy.of(settings).trusting(urlsplit(url).hostname or "")


def lookup(s: Session, settings: Settings, tenant_id: uuid.UUID, sig: FailureSignature,
           ctx: FailureContext) -> Answer:
    """The suggestion for a failure, from the cheapest layer that has one (see the module doc)."""
    started = time.perf_counter()
    answer = _lookup(s, settings, tenant_id, sig, ctx)
    metrics.recovery_lookup(answer.layer, time.perf_counter() - started)
    return answer


def _lookup(s: Session, settings: Settings, tenant_id: uuid.UUID, sig: FailureSignature,
            ctx: FailureContext) -> Answer:
    floor, min_uses = settings.recovery_success_floor, settings.recovery_min_uses
    cache = exact_cache(settings)
    hit = cache.get(tenant_id, sig.digest)
    if hit is not None:
        if hit.get("tenant") != str(tenant_id):  # the deployment-wide entry: another tenant's pattern is not ours
            return Answer("cache", hit["suggestion"], None, None, {"from": "deployment"})
        return Answer("cache", hit["suggestion"], hit["pattern_id"], hit.get("similarity"), {"from": "redis"})
    known = patterns.by_signature(s, tenant_id, sig.digest)
    if known is not None and known.usable(floor, min_uses):
        cache.put(tenant_id, sig.digest, _entry(tenant_id, known.id, known.recovery))
        return Answer("cache", known.recovery, known.id, None, {"from": "postgres"})
    meta: dict[str, Any] = {}
    if known is not None:
        meta["escalated_pattern"] = known.id  # under the success floor: ask the LLM anew
    vector = embed(s, settings, tenant_id, sig, meta)
    if vector is not None and known is None:
        near = [(p, sim) for p, sim in patterns.nearest(s, tenant_id, sig.code, vector, floor=floor,
                                                         min_uses=min_uses, scan=settings.recovery_fallback_scan,
                                                         min_similarity=settings.recovery_threshold)
                if sim >= settings.recovery_threshold]
        if near:
            # among the similar enough, the best success rate first (untried ones count as 1.0), then nearest
            best, sim = max(near, key=lambda ps: (ps[0].success_rate if ps[0].success_rate is not None else 1.0,
                                                   ps[1]))
            cache.put(tenant_id, sig.digest, _entry(tenant_id, best.id, best.recovery, round(sim, 3)))
            return Answer("vector", best.recovery, best.id, round(sim, 3), meta)
    if not _take(settings, tenant_id, "llm"):
        metrics.recovery_quota_refused("llm")
        meta.setdefault("quota_exceeded", []).append("llm")
        meta["code"] = "QUOTA_EXCEEDED"
        return Answer("catalog", catalog_suggestion(sig.code), None, None, meta)
    try:
        written = write(ctx, settings)
    except Exception as exc:  # noqa: BLE001 — a provider failure degrades to the catalog, never to the run
        log.warning("recovery LLM (%s) failed: %s", settings.recovery_llm_provider, exc)
        meta["llm_error"] = str(getattr(exc, "code", type(exc).__name__))
        return Answer("catalog", catalog_suggestion(sig.code), None, None, meta)
    _spend(tenant_id, "llm", written.tokens, written.cost_usd)
    metrics.recovery_provider_call("llm", written.tokens, written.cost_usd)
    meta.update({"provider": written.provider, "model": written.model})
    if written.suggestion is None:
        log.warning("recovery LLM answer discarded: %s", "; ".join(written.problems)[:500])
        meta["discarded"] = written.problems[:5]
        return Answer("catalog", catalog_suggestion(sig.code), None, None, meta)
    pid = patterns.store(s, tenant_id, code=sig.code, skill=sig.skill, signature=sig.digest, message=sig.normalised,
                         recovery=written.suggestion, source="llm" if written.provider != "offline" else "offline",
                         embedding=vector)
    if known is not None:
        cache.drop_pattern(known.id)
    # the offline provider's answer depends on nothing of the tenant: every tenant may share it
    cache.put(tenant_id, sig.digest, _entry(tenant_id, pid, written.suggestion), deployment_wide=written.provider == "offline")
    return Answer("llm", written.suggestion, pid, None, meta)


def _entry(tenant_id: uuid.UUID, pattern_id: int, suggestion: dict[str, Any],
           similarity: float | None = None) -> dict[str, Any]:
    return {"tenant": str(tenant_id), "pattern_id": pattern_id, "suggestion": suggestion, "similarity": similarity}
