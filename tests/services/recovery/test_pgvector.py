"""Similarity on both backends: pgvector's HNSW on an embedded Postgres (pgserver ships pgvector), the plain-Python
fallback on a server without it; both rank the same patterns the same way."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from aos.db.migrate import upgrade
from aos.db.session import sqlalchemy_url
from aos.embedded import EmbeddedPostgres
from aos.services.recovery import patterns
from aos.services.recovery.embedding import HashingEmbedder
from aos.services.recovery.signature import signature_of

MESSAGES = [
    "connection timed out while reading from upstream after 30s",
    "TLS certificate verify failed for host",
    "upstream answered 503 service unavailable",
    "rate limit exceeded for key, retry later",
    "connection refused by peer",
    "DNS lookup failed for host name",
    "response body exceeds the limit",
    "socket closed while writing the request",
]
QUERY = "read from upstream timed out after 45s"


def _vector(message: str) -> list[float]:
    sig = signature_of("HTTP_TIMEOUT", "http.request", message)
    return HashingEmbedder().vector(sig.normalised, f"{sig.code} {sig.skill}")


def _fill(engine) -> uuid.UUID:
    with Session(engine) as s, s.begin():
        tid = s.execute(text("INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), :n) RETURNING id"),
                        {"n": f"t-{uuid.uuid4().hex[:8]}"}).scalar_one()
        for i, m in enumerate(MESSAGES):
            sig = signature_of("HTTP_TIMEOUT", "http.request", m)
            patterns.store(s, tid, code="HTTP_TIMEOUT", skill="http.request", signature=sig.digest,
                           message=sig.normalised, recovery={"mode": "RETRY", "n": i}, source="offline",
                           embedding=_vector(m))
    return tid


def _ranking(engine, tid) -> tuple[str, list[tuple[int, float]]]:
    with Session(engine) as s, s.begin():
        backend = patterns.vector_backend(s)
        near = patterns.nearest(s, tid, "HTTP_TIMEOUT", _vector(QUERY), floor=0.9, min_uses=5, k=3)
    return backend, [(p.recovery["n"], round(sim, 4)) for p, sim in near]


@pytest.fixture(scope="module")
def pgvector_engine():
    where = Path(tempfile.mkdtemp(prefix="aos-test-pgvector-"))
    pg = EmbeddedPostgres(where / "pg")
    url = pg.start()
    engine = None
    try:
        upgrade(url)
        engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
        yield engine
    finally:
        if engine is not None:
            engine.dispose()
        pg.stop()
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def session_engine(aos_env):
    engine = create_engine(sqlalchemy_url(aos_env["AOS_DATABASE_URL"]), poolclass=NullPool)
    yield engine
    engine.dispose()


def test_pgvector_hnsw_and_the_python_fallback_rank_alike(pgvector_engine, session_engine):
    vec_backend, vec_rank = _ranking(pgvector_engine, _fill(pgvector_engine))
    assert vec_backend == "pgvector"
    with Session(pgvector_engine) as s:
        s.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in s.execute(text(
            "EXPLAIN SELECT id FROM failure_patterns ORDER BY embedding <=> CAST(:q AS vector) LIMIT 3"),
            {"q": "[" + ",".join(map(str, _vector(QUERY))) + "]"}))
    assert "ix_failure_patterns_embedding_hnsw" in plan
    py_backend, py_rank = _ranking(session_engine, _fill(session_engine))
    with Session(session_engine) as s:
        has_vector = s.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).scalar()
    assert py_backend == ("pgvector" if has_vector else "python")
    assert [n for n, _ in vec_rank] == [n for n, _ in py_rank]
    assert vec_rank[0][0] == 0 and vec_rank[0][1] >= 0.90  # the reworded timeout is the nearest, similar enough
    assert vec_rank[0][1] == pytest.approx(py_rank[0][1], abs=1e-3)
