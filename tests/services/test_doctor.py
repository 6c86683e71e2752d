"""`aos doctor`'s checks against real servers: Redis brokers configured well and badly (servers this test
starts), the session's own broker, an unreachable and an unmigrated database, a bad visibility timeout."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from aos.db.session import get_engine, libpq_url
from aos.services.doctor import Finding, healthy, run_checks
from tests.support.broker import PrivateRedis, _free_port, redis_server_executable


class CarelessRedis:
    """A Redis set up the way a cache is, not a broker: it evicts under memory pressure and keeps nothing."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data_dir),
             "--appendonly", "no", "--save", "", "--maxmemory-policy", "allkeys-lru", "--maxmemory", "64mb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def careless_redis(tmp_path) -> Iterator[CarelessRedis]:
    r = CarelessRedis(tmp_path / "careless")
    yield r
    r.stop()


@pytest.fixture
def broker_redis(tmp_path) -> Iterator[PrivateRedis]:
    """noeviction + appendonly yes: how a broker must be configured."""
    r = PrivateRedis(tmp_path / "broker").start()
    yield r
    r.stop()


def _env(aos_env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**os.environ, **aos_env, **overrides}


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_a_redis_that_evicts_and_keeps_nothing_fails_with_the_fixes(aos_env, careless_redis):
    findings = run_checks(_env(aos_env, AOS_BROKER_URL=careless_redis.url))
    got = _by_check(findings)
    assert got["broker"].ok
    policy, persistence = got["broker.maxmemory-policy"], got["broker.persistence"]
    assert not policy.ok and "allkeys-lru" in policy.detail and "noeviction" in policy.fix
    assert not persistence.ok and "appendonly yes" in persistence.fix
    assert not healthy(findings)
    assert [f.check for f in findings if not f.ok] == ["broker.maxmemory-policy", "broker.persistence"]


def test_a_redis_configured_as_a_broker_and_a_migrated_database_pass(aos_env, broker_redis):
    findings = run_checks(_env(aos_env, AOS_BROKER_URL=broker_redis.url))
    got = _by_check(findings)
    assert healthy(findings), [f for f in findings if not f.ok]
    for check in ("config", "database", "migrations", "row security", "broker", "broker.maxmemory-policy",
                  "broker.persistence", "broker.visibility-timeout"):
        assert got[check].ok, got[check]
    assert "noeviction" in got["broker.maxmemory-policy"].detail and "append-only" in got["broker.persistence"].detail
    # facts that are not failures
    assert got["pgvector"].ok and got["pgvector"].level == "info"
    assert got["beat"].ok and got["beat"].level == "info"


def test_the_session_broker_is_judged_by_its_real_configuration(aos_env):
    """On CI the session broker is the machine's Redis (noeviction, no persistence): doctor must say so."""
    url = aos_env["AOS_BROKER_URL"]
    findings = _by_check(run_checks(_env(aos_env)))
    client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"))
    config = client.config_get("*")
    persistent = config.get("appendonly") == "yes" or bool(config.get("save"))
    assert findings["broker.maxmemory-policy"].ok is (config.get("maxmemory-policy") == "noeviction")
    assert findings["broker.persistence"].ok is persistent
    if not persistent:
        assert "appendonly yes" in findings["broker.persistence"].fix


def test_pgvector_is_reported_as_it_is_on_the_server(aos_env):
    with get_engine().connect() as conn:
        installed = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    finding = _by_check(run_checks(_env(aos_env)))["pgvector"]
    assert finding.ok and finding.level == "info"
    assert (f"pgvector {installed} installed" in finding.detail) if installed else ("fallback" in finding.detail)
    # the finding says which similarity search recovery uses: Postgres (HNSW) or the Python fallback
    assert "similarity" in finding.detail and "embedding" in finding.detail
    assert ("searches it in Postgres" in finding.detail) if installed else ("in Python" in finding.detail)


def test_a_visibility_timeout_below_the_longest_countdown_and_step_fails(aos_env, broker_redis):
    findings = _by_check(run_checks(_env(aos_env, AOS_BROKER_URL=broker_redis.url, AOS_VISIBILITY_TIMEOUT_S="60",
                                         AOS_MAX_COUNTDOWN_S="900")))
    vt = findings["broker.visibility-timeout"]
    assert not vt.ok
    assert "AOS_MAX_COUNTDOWN_S (900 s)" in vt.detail and "longest step" in vt.detail
    assert vt.fix.startswith("set AOS_VISIBILITY_TIMEOUT_S above")


def test_an_unmigrated_database_and_an_unreachable_one_fail(aos_env, pg_url):
    unmigrated = _by_check(run_checks(_env(aos_env, AOS_DATABASE_URL=pg_url)))
    assert unmigrated["database"].ok
    assert not unmigrated["migrations"].ok and "aos db upgrade" in unmigrated["migrations"].fix

    down = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/nothing"
    gone = _by_check(run_checks(_env(aos_env, AOS_DATABASE_URL=down, AOS_BROKER_URL=f"redis://127.0.0.1:{_free_port()}/0")))
    assert not gone["database"].ok and "AOS_DATABASE_URL" in gone["database"].fix
    assert "migrations" not in gone
    assert not gone["broker"].ok and "AOS_BROKER_URL" in gone["broker"].fix


def test_a_setting_that_does_not_parse_is_the_finding(aos_env):
    findings = run_checks(_env(aos_env, AOS_DB_POOL_SIZE="many"))
    assert [(f.check, f.ok) for f in findings] == [("config", False)]
    assert "AOS_DB_POOL_SIZE" in findings[0].detail


def test_each_postgres_connection_is_judged_by_its_role(aos_env, pg_url):
    """A superuser connection fails (plan SQL would be refused on it), a least-privilege one passes, an
    unreachable one fails without showing its URL, a connection shared by every tenant is reported."""
    role = f"doctor_reader_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-for-doctor'")
    reader = make_url(pg_url).set(username=role, password="pw-for-doctor").render_as_string(hide_password=False)
    down = "postgresql://someone:hunter2@127.0.0.1:1/nothing"
    tenant = str(uuid.uuid4())
    conns = {"admin": {"url": pg_url, "tenants": [tenant]}, "reader": {"url": reader, "tenants": "*"},
             "down": {"url": down, "tenants": [tenant]}}
    try:
        findings = _by_check(run_checks(_env(aos_env, AOS_PG_CONNECTIONS=json.dumps(conns))))
    finally:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
    admin = findings["pg connection admin"]
    assert not admin.ok and "superuser" in admin.detail and "PG_ROLE_TOO_POWERFUL" in admin.detail
    assert "pg_read_server_files" in admin.fix
    assert findings["pg connection reader"].ok
    assert findings["pg connection reader scope"].level == "info" and "every tenant" in findings[
        "pg connection reader scope"].detail
    gone = findings["pg connection down"]
    assert not gone.ok and "hunter2" not in gone.detail + (gone.fix or "") and "127.0.0.1" not in gone.detail


def test_a_tenant_table_without_its_forced_policy_is_a_row_security_failure(aos_env, pg_url):
    """A database whose tenant table lost FORCE (its owner would read every tenant's rows) fails the check."""
    import psycopg

    from aos.db.migrate import upgrade
    from aos.db.session import libpq_url

    upgrade(pg_url)
    try:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            conn.execute("ALTER TABLE agents NO FORCE ROW LEVEL SECURITY")
        got = _by_check(run_checks(_env(aos_env, AOS_DATABASE_URL=pg_url)))
        assert not got["row security"].ok and "agents" in got["row security"].detail, got["row security"]
        assert got["row security"].fix
    finally:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            # back to a fresh database's public schema (PG 15: owned by the database owner, usable by everyone),
            # which other modules share (the scratch database of the session)
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
                         "GRANT USAGE ON SCHEMA public TO PUBLIC")
