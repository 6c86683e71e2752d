"""Stored failure patterns: lookup by signature, nearest by cosine similarity, success counts.

Similarity runs in Postgres where ``failure_patterns.embedding`` is a pgvector column (HNSW, cosine
distance ``<=>``, filtered by tenant and code with pgvector's iterative scan so a filter never starves the
index), and in Python over the tenant's most recent patterns of the same code where it is a ``float8[]``
column (no pgvector: bounded by AOS_RECOVERY_FALLBACK_SCAN, slower). ``vector_backend`` says which.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from aos.services.recovery.embedding import cosine

_COLUMNS = ("id, error_code, skill, signature, message, recovery, source, success_count, failure_count, "
            "created_at, updated_at")
# a pattern is served while it has too few uses to judge, or succeeds at least as often as the floor
# how many nearest patterns (of all tenants) one HNSW probe reads before filtering by tenant and code
PROBE = 100
_USABLE = "(success_count + failure_count < :min_uses OR success_count >= :floor * (success_count + failure_count))"
_backend: dict[str, str] = {}
_iterative: dict[str, bool] = {}


@dataclass(frozen=True, slots=True)
class Pattern:
    id: int
    error_code: str
    skill: str
    signature: str
    message: str
    recovery: dict[str, Any]
    source: str
    success_count: int
    failure_count: int

    @property
    def uses(self) -> int:
        return self.success_count + self.failure_count

    @property
    def success_rate(self) -> float | None:
        return self.success_count / self.uses if self.uses else None

    def usable(self, floor: float, min_uses: int) -> bool:
        return self.uses < min_uses or self.success_count >= floor * self.uses


def _pattern(row: Any) -> Pattern:
    m = row._mapping
    return Pattern(id=m["id"], error_code=m["error_code"], skill=m["skill"], signature=m["signature"],
                   message=m["message"], recovery=dict(m["recovery"]), source=m["source"],
                   success_count=m["success_count"], failure_count=m["failure_count"])


def vector_backend(s: Session) -> str:
    """``pgvector`` when the embedding column is a pgvector column, else ``python`` (cached per database)."""
    url = str(s.get_bind().engine.url)
    if url not in _backend:
        kind = s.execute(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = 'failure_patterns'::regclass AND attname = 'embedding'")).scalar()
        _backend[url] = "pgvector" if str(kind).startswith("vector") else "python"
        version = s.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar() or "0"
        # hnsw.iterative_scan exists from pgvector 0.8; an older one refuses the unknown setting
        _iterative[url] = tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) >= (0, 8)
    return _backend[url]


def by_signature(s: Session, tenant_id: uuid.UUID, signature: str) -> Pattern | None:
    row = s.execute(text(f"SELECT {_COLUMNS} FROM failure_patterns WHERE tenant_id = :t AND signature = :sig"),
                    {"t": tenant_id, "sig": signature}).first()
    return _pattern(row) if row else None


def get(s: Session, tenant_id: uuid.UUID, pattern_id: int) -> Pattern | None:
    row = s.execute(text(f"SELECT {_COLUMNS} FROM failure_patterns WHERE tenant_id = :t AND id = :id"),
                    {"t": tenant_id, "id": pattern_id}).first()
    return _pattern(row) if row else None


def nearest(s: Session, tenant_id: uuid.UUID, code: str, vector: list[float], *, floor: float, min_uses: int,
            k: int = 10, scan: int = 2000, min_similarity: float = 0.0) -> list[tuple[Pattern, float]]:
    """Up to ``k`` usable patterns of the tenant and code, nearest first, with their cosine similarity.

    On pgvector, an HNSW probe first (the ``PROBE`` nearest patterns of any tenant, then filtered): what the index
    answers in a few milliseconds. Only when the probe finds none at ``min_similarity`` does an exact search of
    the tenant's patterns of the code follow (the planner's choice of index): a miss is about to cost an LLM call,
    and must not be a miss only because other tenants' patterns filled the probe."""
    params = {"t": tenant_id, "c": code, "floor": floor, "min_uses": min_uses, "k": k}
    if vector_backend(s) == "pgvector":
        q = "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
        s.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(PROBE, 40))})
        probed = _ranked(s.execute(text(
            f"SELECT * FROM (SELECT {_COLUMNS}, embedding <=> CAST(:q AS vector) AS distance, tenant_id AS owner, "
            "embedding IS NOT NULL AS has_embedding FROM failure_patterns "
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :probe) near "
            f"WHERE owner = :t AND error_code = :c AND has_embedding AND {_USABLE} ORDER BY distance LIMIT :k"),
            {**params, "q": q, "probe": PROBE}).all())
        if probed and probed[0][1] >= min_similarity:
            return probed
        if _iterative[str(s.get_bind().engine.url)]:  # pgvector >= 0.8: keep probing until the filters let k through
            s.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
        return _ranked(s.execute(text(
            f"SELECT {_COLUMNS}, embedding <=> CAST(:q AS vector) AS distance FROM failure_patterns "
            f"WHERE tenant_id = :t AND error_code = :c AND embedding IS NOT NULL AND {_USABLE} "
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"), {**params, "q": q}).all())
    rows = s.execute(text(
        f"SELECT {_COLUMNS}, embedding FROM failure_patterns "
        f"WHERE tenant_id = :t AND error_code = :c AND embedding IS NOT NULL AND {_USABLE} "
        "ORDER BY updated_at DESC LIMIT :scan"), {**params, "scan": scan}).all()
    scored = [(_pattern(r), cosine(vector, list(r._mapping["embedding"]))) for r in rows]
    scored.sort(key=lambda ps: ps[1], reverse=True)
    return scored[:k]


def _ranked(rows: Sequence[Any]) -> list[tuple[Pattern, float]]:
    return [(_pattern(r), 1.0 - float(r._mapping["distance"])) for r in rows]


def store(s: Session, tenant_id: uuid.UUID, *, code: str, skill: str, signature: str, message: str,
          recovery: dict[str, Any], source: str, embedding: list[float] | None) -> int:
    """Insert the pattern of a signature, or give an existing one (escalated) its new recovery and fresh counts."""
    emb = None if embedding is None else "[" + ",".join(f"{x:.7g}" for x in embedding) + "]"
    cast = "CAST(:emb AS vector)" if vector_backend(s) == "pgvector" else "CAST(CAST(:emb AS text) AS float8[])"
    if emb is not None and cast.endswith("float8[])"):
        emb = "{" + emb[1:-1] + "}"
    return int(s.execute(text(
        "INSERT INTO failure_patterns (tenant_id, error_code, skill, signature, message, recovery, source, embedding) "
        f"VALUES (:t, :c, :skill, :sig, :msg, CAST(:rec AS jsonb), :src, {cast}) "
        "ON CONFLICT (tenant_id, signature) DO UPDATE SET recovery = EXCLUDED.recovery, source = EXCLUDED.source, "
        "embedding = COALESCE(EXCLUDED.embedding, failure_patterns.embedding), success_count = 0, "
        "failure_count = 0, updated_at = now() RETURNING id"),
        {"t": tenant_id, "c": code, "skill": skill, "sig": signature, "msg": message, "rec": _json(recovery),
         "src": source, "emb": emb}).scalar_one())


def count_use(s: Session, tenant_id: uuid.UUID, pattern_id: int, *, succeeded: bool) -> Pattern | None:
    """One more applied use of the pattern, succeeded or not; the pattern as it now is."""
    column = "success_count" if succeeded else "failure_count"
    row = s.execute(text(f"UPDATE failure_patterns SET {column} = {column} + 1, updated_at = now() "
                         f"WHERE tenant_id = :t AND id = :id RETURNING {_COLUMNS}"),
                    {"t": tenant_id, "id": pattern_id}).first()
    return _pattern(row) if row else None


def listing(s: Session, tenant_id: uuid.UUID, *, limit: int, code: str | None = None) -> list[Pattern]:
    where = "tenant_id = :t" + (" AND error_code = :c" if code else "")
    rows = s.execute(text(f"SELECT {_COLUMNS} FROM failure_patterns WHERE {where} "
                          "ORDER BY updated_at DESC, id DESC LIMIT :n"), {"t": tenant_id, "c": code, "n": limit}).all()
    return [_pattern(r) for r in rows]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
