"""Determinism stress: record golden files of mixed plans, replay them many times on several workers, count diffs.

    .venv/bin/python -m bench.determinism --iterations 200 --workers 2     # or: make determinism
    .venv/bin/python -m bench.determinism --iterations 5 --json            # machine-readable, on stdout

1. Runs five plans for real against a local stub (HTTP and an OpenAI-compatible LLM) and records each as a
   signed golden file, written atomically and verified from its bytes: ``weather`` (HTTP, transform, schema
   check, LLM stub, offline LLM), ``calendar`` (create_event, business_days, transform), ``retry`` (an HTTP
   step that fails twice with 503, then succeeds), ``fallback`` (an HTTP step that fails, then its fallback
   answers) and ``failure`` (a run that fails at a 404).
2. Stops the stub: from here on any external call would fail, and the stub counts what it receives.
3. Replays every golden file ``--iterations`` times through ``--workers`` real Celery worker processes
   (prefork, ``--concurrency`` children each), ``--inflight`` replays at a time, and compares every replay
   with its recording, step hash by step hash. Prints iterations, replays, step comparisons, diffs,
   replays/s; exits 1 if any replay diverged or anything reached the stub.

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``), else an
embedded Postgres and Redis. The bench makes its own database and queue and removes them, and stops every
process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from aos.db import scope
from bench.steps import (
    TAG,
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

FINAL = ("succeeded", "failed", "cancelled", "dead_lettered")


# --- the stub: HTTP endpoints and an OpenAI-compatible LLM ------------------------------------------------


class Stub:
    """Local HTTP server the recordings call; counts every request it receives."""

    def __init__(self) -> None:
        self.requests = 0
        self._flaky: dict[str, int] = {}
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> Stub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(target)
        with self._lock:
            self.requests += 1
            if parts.path == "/flaky":
                key = parse_qs(parts.query).get("key", [""])[0]
                self._flaky[key] = n = self._flaky.get(key, 0) + 1
        if parts.path == "/weather":
            return 200, {"current": {"temp_c": 21.5, "wind_kmh": 12}, "city": parse_qs(parts.query).get("city"),
                         "note": "caf\u00e9 \u2615", "big": 1e21, "small": 1.5e-7}
        if parts.path == "/flaky":
            return (503, {"error": "busy", "n": n}) if n <= 2 else (200, {"price": 42.5, "n": n})
        if parts.path == "/down":
            return 500, {"error": "down"}
        if parts.path == "/v1/chat/completions" and method == "POST":
            prompt = json.loads(body)["messages"][-1]["content"]
            return 200, {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
                         "model": "bench-model",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": f"{len(prompt)} characters read."}}],
                         "usage": {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": 5}}
        return 404, {"error": "no route", "path": parts.path}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, payload = stub.answer(self.command, self.path, self.rfile.read(length) if length else b"")
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the stdlib's name
                pass

        return Handler


# --- the recorded plans ----------------------------------------------------------------------------------


def plans(url: str) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (plan, the status its recorded run ends in)."""
    fast_retry = {"max_attempts": 3, "backoff_s": 0.05, "backoff_max_s": 0.1}
    return {
        "weather": ({"name": "det-weather", "inputs": {"city": "Paris"}, "steps": [
            {"id": "fetch", "skill": "http.request", "args": {"url": f"{url}/weather?city=${{inputs.city}}"}},
            {"id": "temp", "skill": "json.transform",
             "args": {"input": {"$ref": "steps.fetch.output.json"}, "expr": "current.temp_c"}},
            {"id": "check", "skill": "json.validate",
             "args": {"input": {"t": {"$ref": "steps.temp.output"}},
                      "schema": {"type": "object", "required": ["t"], "properties": {"t": {"type": "number"}}}}},
            {"id": "say", "skill": "llm.complete",
             "args": {"provider": "openai_compatible", "base_url": f"{url}/v1", "model": "bench-model",
                      "prompt": "One line about ${steps.temp.output} degrees in ${inputs.city}."}},
            {"id": "echo", "skill": "llm.complete",
             "args": {"provider": "offline", "prompt": "Summarise: ${steps.say.output.text}", "max_tokens": 64}},
        ]}, "succeeded"),
        "calendar": ({"name": "det-calendar", "inputs": {"day": "2026-03-02"}, "steps": [
            {"id": "meet", "skill": "calendar.create_event",
             "args": {"summary": "Review", "start": "${inputs.day}T10:00:00", "duration_minutes": 45,
                      "timezone": "Europe/Paris", "attendees": ["ada@example.com"]}},
            {"id": "due", "skill": "calendar.business_days", "args": {"date": {"$ref": "inputs.day"}, "add": 7}},
            {"id": "summary", "skill": "json.transform",
             "args": {"input": {"uid": {"$ref": "steps.meet.output.uid"}, "due": {"$ref": "steps.due.output"}},
                      "expr": "{uid: uid, due: due}"}},
        ]}, "succeeded"),
        "retry": ({"name": "det-retry", "steps": [
            {"id": "price", "skill": "http.request", "args": {"url": f"{url}/flaky?key={uuid.uuid4().hex}"},
             "retry": fast_retry},
            {"id": "amount", "skill": "json.transform",
             "args": {"input": {"$ref": "steps.price.output.json"}, "expr": "price"}},
        ]}, "succeeded"),
        "fallback": ({"name": "det-fallback", "steps": [
            {"id": "quote", "skill": "http.request", "args": {"url": f"{url}/down"},
             "retry": {**fast_retry, "max_attempts": 2},
             "on_error": {"mode": "FALLBACK", "fallback": {"skill": "json.transform",
                                                           "args": {"input": {"p": 40}, "expr": "p"}}}},
            {"id": "check", "skill": "json.validate",
             "args": {"input": {"$ref": "steps.quote.output"}, "schema": {"type": "integer", "minimum": 0}}},
        ]}, "succeeded"),
        "failure": ({"name": "det-failure", "steps": [
            {"id": "fetch", "skill": "http.request", "args": {"url": f"{url}/weather?city=Oslo"}},
            {"id": "gone", "skill": "http.request", "args": {"url": f"{url}/missing"}},
            {"id": "never", "skill": "json.transform", "args": {"input": 1, "expr": "@"}},
        ]}, "failed"),
    }


# --- recording and replaying -----------------------------------------------------------------------------


def wait_final(conn: psycopg.Connection, run_ids: list[uuid.UUID], timeout: float,
               workers: list[Worker]) -> dict[uuid.UUID, str]:
    deadline = time.monotonic() + timeout
    while True:
        rows = conn.execute("SELECT id, status FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                            (run_ids, list(FINAL))).fetchall()
        if len(rows) == len(run_ids):
            return dict(rows)
        check_workers(workers)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(run_ids) - len(rows)} runs not final after {timeout:.0f}s")
        time.sleep(0.05)


def check_workers(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc is not None and w.proc.poll() is not None:
            raise RuntimeError(f"a worker died:\n{w.tail()}")


def record_all(ctx: Any, url: str, out_dir: Path, conn: psycopg.Connection,
               workers: list[Worker]) -> dict[str, dict[str, Any]]:
    """Run each plan for real, record it, write it atomically, verify it from its bytes."""
    from aos.golden.files import read_bytes, write_atomic
    from aos.golden.verify import encode, parse
    from aos.services import golden
    from aos.services.runs import submit_run
    from aos.tasks.publisher import CeleryPublisher

    docs = {}
    for name, (plan, expected) in plans(url).items():
        run_id = submit_run(ctx, plan, CeleryPublisher())
        status = wait_final(conn, [run_id], 120, workers)[run_id]
        if status != expected:
            raise RuntimeError(f"recording {name}: the run ended {status}, expected {expected}")
        path = out_dir / f"{name}.golden.json"
        write_atomic(path, encode(golden.record_run(ctx, run_id)))
        data = read_bytes(path)
        doc = parse(data)
        golden.verify(ctx, doc, data)
        attempts = sum(len(s["attempts"]) for s in doc["body"]["steps"])
        say(f"  recorded {name:<9} {len(doc['body']['steps'])} steps, {attempts} attempts, {status}, "
            f"{len(data)} bytes -> {path.name}")
        docs[name] = doc
    return docs


class Stress:
    """Replays golden files, ``inflight`` at a time, and compares each replay with its recording."""

    def __init__(self, ctx: Any, conn: psycopg.Connection, workers: list[Worker], inflight: int) -> None:
        from aos.tasks.publisher import CeleryPublisher

        self.ctx, self.conn, self.workers, self.inflight = ctx, conn, workers, inflight
        self.publisher = CeleryPublisher()
        self.replays = self.steps = self.diffs = 0
        self.divergences: list[dict[str, Any]] = []

    def run(self, work: list[tuple[str, dict[str, Any]]], on_progress: Callable[[int], None]) -> None:
        from aos.services import golden

        pending = list(reversed(work))
        running: dict[uuid.UUID, tuple[str, dict[str, Any]]] = {}
        while pending or running:
            while pending and len(running) < self.inflight:
                name, doc = pending.pop()
                running[golden.start_replay(self.ctx, doc, self.publisher)] = (name, doc)
            finished = self.conn.execute("SELECT id FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                                         (list(running), list(FINAL))).fetchall()
            for (run_id,) in finished:
                name, doc = running.pop(run_id)
                report = golden.replay_report(self.ctx, doc, run_id)
                self.replays += 1
                self.steps += len(report["steps"])
                if not report["identical"]:
                    self.diffs += 1
                    if len(self.divergences) < 10:
                        self.divergences.append({"golden": name, "run_id": str(run_id), **report["divergence"]})
                on_progress(self.replays)
            if not finished:
                check_workers(self.workers)
                time.sleep(0.02)


# --- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.determinism", description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=100,
                   help="rounds; each replays every golden file once (default 100)")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    p.add_argument("--concurrency", type=int, default=1, help="prefork children of each worker (default 1)")
    p.add_argument("--inflight", type=int, default=0,
                   help="replay runs in flight at once (default 4 x workers x concurrency)")
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"),
                   help="Postgres admin URL (default $AOS_BENCH_DATABASE_URL, else an embedded Postgres)")
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"),
                   help="broker URL (default $AOS_BENCH_BROKER_URL, else an embedded Redis)")
    p.add_argument("--keep", metavar="DIR", help="also copy the golden files into DIR")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    args = p.parse_args(argv)
    for name in ("iterations", "workers", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    args.inflight = args.inflight or 4 * args.workers * args.concurrency
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
    tmp = Path(tempfile.mkdtemp(prefix="aos-determinism-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_determinism_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        machine = machine_info(servers, db_url)
        queue = f"aos.bench.determinism.{TAG}"
        cleanups.append(("broker queue", lambda: purge_queues(servers.broker_url, [queue])))
        extra = {"AOS_HTTP_ALLOW_HOSTS": "127.0.0.1", "AOS_MAX_COUNTDOWN_S": "5", "AOS_LOG_LEVEL": "WARNING",
                 "AOS_GOLDEN_SECRET": secrets.token_hex(16), "AOS_GOLDEN_KEY_ID": f"bench-{TAG}"}
        os.environ.update(extra)
        say("migrating the bench database…")
        ctx = setup_aos(db_url, servers.broker_url, queue)
        from aos.db.session import reset_engine

        cleanups.append(("AOS engine", reset_engine))
        conn = psycopg.connect(libpq(db_url), autocommit=True)
        cleanups.append(("poll connection", conn.close))
        stub = Stub().start()
        cleanups.append(("stub", lambda: stub.stop() if stub.thread.is_alive() else None))
        workers = []
        env = {**aos_env(db_url, servers.broker_url, queue), **extra}
        for i in range(args.workers):
            w = Worker("aos.tasks.app", queue, args.concurrency, env, tmp / f"worker-{i}.log")
            w.cmd[w.cmd.index("-n") + 1] = f"determinism-{i}-{TAG}@%h"
            cleanups.append((f"worker {i}", w.stop))
            workers.append(w)
        say(f"starting {args.workers} workers (prefork, -c {args.concurrency}, queue {queue})…")
        threads = [threading.Thread(target=w.start) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check_workers(workers)
        say("recording golden files (stub running)…")
        files = tmp / "golden"
        files.mkdir()
        docs = record_all(ctx, stub.url, files, conn, workers)
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for f in files.iterdir():
                shutil.copy2(f, Path(args.keep) / f.name)
        stub.stop()
        stub_requests = stub.requests
        say(f"stub stopped after {stub_requests} requests; replaying {len(docs)} golden files × "
            f"{args.iterations} iterations, {args.inflight} in flight…")
        stress = Stress(ctx, conn, workers, args.inflight)
        work = [(name, doc) for _ in range(args.iterations) for name, doc in docs.items()]
        total = len(work)
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= 10 or done == total:
                last[0] = now
                say(f"  {done}/{total} replays, {stress.diffs} diffs, {done / (now - t0):.1f} replays/s")

        stress.run(work, progress)
        elapsed = time.perf_counter() - t0
        result = {
            "iterations": args.iterations, "golden_files": len(docs), "replays": stress.replays,
            "step_comparisons": stress.steps, "diffs": stress.diffs, "seconds": round(elapsed, 2),
            "replays_per_s": round(stress.replays / elapsed, 2), "steps_per_s": round(stress.steps / elapsed, 1),
            "workers": args.workers, "concurrency": args.concurrency, "inflight": args.inflight,
            "external_requests_during_replay": stub.requests - stub_requests,
            "divergences": stress.divergences, "machine": machine,
        }
        text = (f"iterations {args.iterations} × {len(docs)} golden files = {stress.replays} replays, "
                f"{stress.steps} step comparisons, {stress.diffs} diffs, {elapsed:.1f}s, "
                f"{result['replays_per_s']} replays/s ({result['steps_per_s']} steps/s), "
                f"{args.workers} workers × {args.concurrency}, external requests during replay: "
                f"{result['external_requests_during_replay']}")
        if args.json:
            print(json.dumps(result, indent=2))
            say(text)
        else:
            print(text)
            for d in stress.divergences:
                print(f"  DIVERGED {d['golden']} step {d['step_index']} ({d['step_id']}) {d['path']}: "
                      f"recorded {d['recorded']!r}, replayed {d['replayed']!r} (run {d['run_id']})")
        return 0 if stress.diffs == 0 and result["external_requests_during_replay"] == 0 else 1
    except KeyboardInterrupt:
        say("\ninterrupted: stopping workers and cleaning up…")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        clean_up(cleanups, tmp)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
