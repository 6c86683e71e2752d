"""What row-level security costs one statement of the step path (docs/performance.md).

One prepared point UPDATE of a run row (the shape of a step's claim) on the engine's direct connection,
in interleaved rounds: (a) as the login superuser, no RLS at all; (b) as AOS does it — the application
role, the tenant's ``set_config`` pipelined with the statement. Creates and drops its own database.

    .venv/bin/python -m bench.rls [--rounds 7] [--statements 2000] [--database postgresql://…/postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg

from aos.db import scope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--database", default=os.environ.get("AOS_BENCH_DATABASE_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    scope.set_process_default(scope.OPERATOR)
    name = f"aos_bench_rls_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(args.database, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    db = args.database.rsplit("/", 1)[0] + "/" + name
    os.environ.update(AOS_DATABASE_URL=db)
    from aos.db import direct
    from aos.db.session import reset_engine
    try:
        _measure(db, args.rounds, args.statements)
    finally:
        reset_engine()
        direct.reset()
        with psycopg.connect(args.database, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    return 0


def _measure(db: str, rounds: int, n: int) -> None:
    from aos.db import direct
    from aos.db.direct import _connect
    from aos.db.migrate import upgrade
    from aos.db.session import session_scope
    from aos.db.statements import Statement
    from aos.services.runs import submit_run
    from aos.services.tenancy import authenticate, create_api_key, create_tenant

    upgrade(db)
    with session_scope() as s:
        tenant = create_tenant(s, "bench-rls")
        key, _ = create_api_key(s, tenant)
        ctx = authenticate(s, key)
    run = submit_run(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]},
                     None)
    stmt = Statement("UPDATE runs SET heartbeat_at = now(), version = version + 1 WHERE id = %(run)s "
                     "RETURNING version")
    plain = _connect(False)  # the engine's connection options, then back to the superuser login: no RLS
    plain.execute("SET ROLE NONE")
    plain._aos_scope = None  # type: ignore[attr-defined]

    def one_round(rls: bool) -> float:
        with direct.relaxed(scope.tenant(ctx.tenant_id)) as conn:
            c = conn if rls else plain
            for _ in range(200):
                assert stmt.one(c, run=run)
            t0 = time.perf_counter()
            for _ in range(n):
                assert stmt.one(c, run=run)
            return (time.perf_counter() - t0) / n * 1e6

    got: dict[str, list[float]] = {"no RLS (superuser)": [], "RLS (aos_app, tenant pipelined)": []}
    for _ in range(rounds):
        got["no RLS (superuser)"].append(one_round(False))
        got["RLS (aos_app, tenant pipelined)"].append(one_round(True))
    plain.close()
    for label, values in got.items():
        print(f"{label:34s} median {statistics.median(values):7.1f} µs/statement   best {min(values):7.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
