"""The development stack behind `aos dev` and `aos quickstart`.

Embedded Postgres and Redis unless AOS_DATABASE_URL / AOS_BROKER_URL are set;
migrations applied; a development tenant and key; a worker, beat and the API as
child processes; everything stopped on exit.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from aos.config import Settings, get_settings, reset_settings
from aos.db.session import libpq_url
from aos.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from aos.envfile import DEV_STATE_NAME, render_env_file, write_private_file
from aos.supervisor import Supervisor

DEV_TENANT = "dev"


def kept_secret(path: Path) -> str:
    """A random secret kept in ``path`` (mode 0600), made the first time: a restart reuses it.

    Created with O_EXCL, so two stacks starting at once agree on one secret instead of
    overwriting each other's."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
    for _ in range(50):  # another process may have created it and not written it yet
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"{path} is empty; delete it and start again")


def dev_secrets(data_dir: Path, settings: Settings) -> dict[str, str]:
    """The secrets of the development stack: the configured ones, else generated once and kept under the
    data dir. Golden recording needs a signing key, so `aos dev` records out of the box."""
    return {"AOS_SECRET_KEY": settings.secret_key or kept_secret(data_dir / "secret-key"),
            "AOS_GOLDEN_SECRET": settings.golden_secret or kept_secret(data_dir / "golden-secret")}


EXAMPLE_CONNECTION = "example"
EXAMPLE_DATABASE = "aos_example"
EXAMPLE_ROLE = "aos_example_reader"
_EXAMPLE_ORDERS = [(1, "ada", "notebook", "12.50"), (2, "grace", "compiler", "99.00"), (3, "ada", "pencil", "1.20")]


def example_connection(admin_url: str, tenant_id: str, password: str, *, database: str = EXAMPLE_DATABASE,
                       role: str = EXAMPLE_ROLE) -> dict[str, dict[str, Any]]:
    """The dev stack's ``example`` postgres.query connection, for ``tenant_id`` only: a database with an
    ``orders`` table, read through a least-privilege role (LOGIN, no superuser, no role membership, SELECT on
    that table alone). Made once, brought back to this state at every start."""
    admin = make_url(libpq_url(admin_url))
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is not None
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                             "PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    with psycopg.connect(admin.set(database=database).render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer text NOT NULL, "
                     "item text NOT NULL, amount numeric(10, 2) NOT NULL)")
        conn.cursor().executemany("INSERT INTO orders VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                                  _EXAMPLE_ORDERS)
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC, {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON orders TO {}").format(sql.Identifier(role)))
    url = admin.set(username=role, password=password, database=database)
    return {EXAMPLE_CONNECTION: {"url": url.render_as_string(hide_password=False), "tenants": [str(tenant_id)]}}


@dataclass
class DevStack:
    data_dir: Path
    port: int | None = None
    log: Callable[[str], None] = print
    database_url: str = ""
    broker_url: str = ""
    api_url: str = ""
    api_key: str = ""
    tenant_id: str = ""
    _embedded_postgres: bool = False
    _supervisor: Supervisor | None = None
    _stoppers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        settings = get_settings()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._start_servers(settings)
        env_updates = {"AOS_DATABASE_URL": self.database_url, "AOS_BROKER_URL": self.broker_url,
                       **dev_secrets(self.data_dir, settings),
                       "AOS_DATA_DIR": str(self.data_dir)}  # the children keep their files (beat, metrics) here
        os.environ.update(env_updates)
        reset_settings()
        from aos.db.migrate import upgrade

        self.log("applying migrations …")
        upgrade(self.database_url)
        self.api_key = self._dev_key()
        if self._embedded_postgres and not settings.pg_connections:
            self.log(f"the {EXAMPLE_CONNECTION!r} postgres.query connection: database {EXAMPLE_DATABASE}, "
                     f"least-privilege role {EXAMPLE_ROLE}")
            conns = example_connection(self.database_url, self.tenant_id,
                                       kept_secret(self.data_dir / "example-db-password"))
            os.environ["AOS_PG_CONNECTIONS"] = json.dumps(conns)
            reset_settings()
        self._start_children()
        self._wait_ready()
        self._write_state()

    def _start_servers(self, settings: Settings) -> None:
        if settings.database_url:
            self.database_url = settings.database_url
        else:
            self.log(f"starting embedded Postgres in {self.data_dir / 'postgres'} …")
            pg = EmbeddedPostgres(self.data_dir / "postgres")
            self.database_url = pg.start()
            self._stoppers.append(pg.stop)
            self._embedded_postgres = True
        if settings.broker_url:
            self.broker_url = settings.broker_url
        else:
            self.log(f"starting embedded Redis in {self.data_dir / 'redis'} …")
            rd = EmbeddedRedis(self.data_dir / "redis")
            self.broker_url = rd.start()
            self._stoppers.append(rd.stop)

    @property
    def state_file(self) -> Path:
        return self.data_dir / DEV_STATE_NAME

    def _write_state(self) -> None:
        """The settings of this stack for every other `aos` command (aos.cli.config_file finds the file by
        default): while `aos dev` runs, `aos doctor`, `aos dlq list` or `aos flower` need nothing exported."""
        values = {"AOS_DATABASE_URL": self.database_url, "AOS_BROKER_URL": self.broker_url,
                  "AOS_URL": self.api_url, "AOS_API_KEY": self.api_key,
                  "AOS_SECRET_KEY": os.environ["AOS_SECRET_KEY"], "AOS_GOLDEN_SECRET": os.environ["AOS_GOLDEN_SECRET"],
                  "AOS_DATA_DIR": str(self.data_dir)}
        if os.environ.get("AOS_PG_CONNECTIONS"):  # the example connection, so that `aos doctor` checks its role
            values["AOS_PG_CONNECTIONS"] = os.environ["AOS_PG_CONNECTIONS"]
        write_private_file(self.state_file, render_env_file(
            values, f"Settings of the running `aos dev` (pid {os.getpid()}); removed when it stops.\n"
                    "Every `aos` command reads this file when no --config, AOS_CONFIG_FILE or ./aos.env is "
                    "given;\nvariables set in the environment win."))

    def _dev_key(self) -> str:
        """The development key, kept (mode 0600) under the data dir so restarts reuse it."""
        from aos.db.session import reset_engine, session_scope
        from aos.errors import AosError
        from aos.services.tenancy import authenticate, create_api_key, create_tenant, get_tenant_by_name

        reset_engine()
        path = self.data_dir / "dev-api-key.json"
        with session_scope() as s:
            if path.exists():
                saved = json.loads(path.read_text())
                if saved.get("database_url") == self.database_url:
                    try:
                        self.tenant_id = str(authenticate(s, saved["key"]).tenant_id)
                        return saved["key"]
                    except AosError:
                        pass
            try:
                tenant = get_tenant_by_name(s, DEV_TENANT)
            except AosError:
                tenant = create_tenant(s, DEV_TENANT)
            # one developer's stack: its key is also the deployment's operator (queues, workers in /inspect)
            key, _ = create_api_key(s, tenant, "dev", ("runs:read", "runs:write", "admin", "operator"))
            self.tenant_id = str(tenant.id)
        path.write_text(json.dumps({"key": key, "database_url": self.database_url}))
        path.chmod(0o600)
        return key

    def _start_children(self) -> None:
        port = self.port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        py = sys.executable
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        # the children are the same `aos worker|beat|api` an operator runs: one place for their settings
        # (gunicorn gthread workers for live event streams, the metrics directory, the beat leader scheduler)
        commands = {
            "worker": [py, "-m", "aos", "worker", "-c", "2"],
            "beat": [py, "-m", "aos", "beat"],
            "api": [py, "-m", "aos", "api", "-b", f"127.0.0.1:{port}", "-w", "2"],
        }
        settings = get_settings()
        self._supervisor = Supervisor(os.environ.copy(), log=self.log, max_restarts=settings.dev_restart_max,
                                      window_s=settings.dev_restart_window_s)
        for name, cmd in commands.items():
            self._supervisor.start(name, cmd, logs / f"{name}.log")

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        assert self._supervisor is not None
        while time.monotonic() < deadline:
            for child in self._supervisor.exited():
                # at start-up an exit is a configuration problem (a port taken, a bad URL): no restart
                raise RuntimeError(f"{child.name} exited at start-up; see {child.log_path}")
            try:
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API did not become ready in {timeout:.0f}s; see {self.data_dir / 'logs'}")

    def supervise(self) -> None:
        """Restart a child that died (with backoff, saying so); raise ChildKeepsDying (a RuntimeError) when
        one keeps dying. Call it every second or so while the stack runs."""
        if self._supervisor is not None:
            self._supervisor.check()

    def stop(self) -> None:
        self.state_file.unlink(missing_ok=True)  # its URLs are about to stop answering
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        for stop in reversed(self._stoppers):
            stop()
        self._stoppers.clear()
