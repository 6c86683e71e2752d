"""Fixtures of the chaos tests: each test builds a whole deployment of its own (see stack.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.stack import ChaosStack
from tests.chaos.workload import IdempotentService
from tests.support.broker import PrivateRedis
from tests.support.postgres import PrivatePostgres


@pytest.fixture
def service() -> Iterator[IdempotentService]:
    """The HTTP service the workload's http.request steps call (idempotent per key)."""
    svc = IdempotentService().start()
    yield svc
    svc.stop()


@pytest.fixture
def make_stack(servers, tmp_path: Path, service: IdempotentService) -> Iterator[Callable[..., ChaosStack]]:
    """Build and start a stack: a private Redis (``appendonly`` as asked) and either a fresh database on
    the session's Postgres server or, with ``private_postgres=True``, a Postgres server of the test's own
    that it may stop; the tenant's webhooks go to ``service``; ``env`` overrides AOS_* settings of every
    process. Everything is stopped and removed at the end of the test."""
    cleanups: list[Callable[[], None]] = []

    def make(*, private_postgres: bool = False, appendonly: bool = True, **env: str) -> ChaosStack:
        broker = PrivateRedis(tmp_path / "redis", appendonly=appendonly).start()
        cleanups.append(broker.stop)
        if private_postgres:
            pg = PrivatePostgres(tmp_path / "pg").start()
            cleanups.append(pg.remove)
            db_url = pg.create_database("aos")
        else:
            name = f"aos_chaos_{uuid.uuid4().hex[:8]}"
            servers.create_database(name)
            cleanups.append(lambda: servers.drop_database(name))
            db_url = servers.database_url(name)
            pg = None
        stack = ChaosStack(tmp_path, db_url, broker, pg, webhook_url=service.url("/hooks"))
        stack.env.update(env)
        cleanups.append(stack.stop)
        return stack.start()

    yield make
    for cleanup in reversed(cleanups):
        cleanup()
