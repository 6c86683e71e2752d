"""Start (or adopt) the real Postgres and broker a test session uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from aos.embedded import EmbeddedPostgres, EmbeddedRedis


@dataclass
class TestServers:
    __test__ = False  # not a test class, despite its name

    admin_url: str                     # a URL to the server's maintenance database
    broker_url: str
    _stoppers: list = field(default_factory=list)

    def database_url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _admin(self):
        url = make_url(self.admin_url).set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)

    def create_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            stop()


def start_test_servers(tmp: Path) -> TestServers:
    db = os.environ.get("AOS_TEST_DATABASE_URL")
    broker = os.environ.get("AOS_TEST_BROKER_URL")
    stoppers = []
    if not db:
        pg = EmbeddedPostgres(tmp / "pg")
        db = pg.start()
        stoppers.append(pg.stop)
    if not broker:
        rd = EmbeddedRedis(tmp / "redis")
        broker = rd.start()
        stoppers.append(rd.stop)
    return TestServers(admin_url=db, broker_url=broker, _stoppers=stoppers)
