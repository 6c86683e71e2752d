"""Migrations: `upgrade` builds the schema the models describe, and `check` notices any drift.

Every test here gets a throwaway database of its own on the session's Postgres server.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError

from aos.cli.main import cli
from aos.config import reset_settings
from aos.db import revisions
from aos.db.migrate import alembic_config, check, current_revision, head_revision, upgrade
from aos.db.session import libpq_url
from aos.db.types import EMBEDDING_DIM

HNSW_INDEX = "ix_failure_patterns_embedding_hnsw"


@pytest.fixture
def fresh_db(servers):
    """A new, empty database (no AOS schema); dropped afterwards."""
    name = f"aos_mig_{uuid.uuid4().hex[:10]}"
    servers.create_database(name)
    yield servers.database_url(name)
    servers.drop_database(name)


@pytest.fixture
def cli_db(fresh_db, monkeypatch):
    """A throwaway database that the `aos` command is configured to use (AOS_DATABASE_URL)."""
    monkeypatch.setenv("AOS_DATABASE_URL", fresh_db)
    reset_settings()
    yield fresh_db
    monkeypatch.undo()
    reset_settings()


def _sql(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def _schema_snapshot(url: str) -> dict[str, list[tuple]]:
    return {
        "columns": _sql(url, "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default "
                             "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"),
        "indexes": _sql(url, "SELECT tablename, indexname, indexdef FROM pg_indexes "
                             "WHERE schemaname = 'public' ORDER BY 1, 2"),
        "constraints": _sql(url, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                                 "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"),
        "version": _sql(url, "SELECT version_num FROM alembic_version"),
    }


def _has_pgvector(url: str) -> bool:
    return bool(_sql(url, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))


# --- the API -------------------------------------------------------------------------------------------


def test_upgrade_on_an_empty_database_reaches_head_and_check_finds_nothing(fresh_db):
    assert current_revision(fresh_db) is None
    upgrade(fresh_db)
    assert current_revision(fresh_db) == head_revision() is not None
    tables = {r[0] for r in _sql(fresh_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"tenants", "api_keys", "runs", "checkpoints", "outbox", "run_events", "failure_patterns"} <= tables
    assert check(fresh_db) == []


def test_the_revisions_read_without_alembic_are_alembics(fresh_db):
    """`aos doctor` reads the shipped head from the scripts and the current revision with one SELECT, without
    alembic: both must be what alembic itself says, before and after an upgrade."""
    from alembic.script import ScriptDirectory
    from alembic.util import to_tuple

    scripts = ScriptDirectory.from_config(alembic_config(""))
    assert revisions.shipped_revisions() == {s.revision: to_tuple(s.down_revision, default=())
                                            for s in scripts.walk_revisions()}
    assert revisions.head_revision() == head_revision() is not None
    with psycopg.connect(libpq_url(fresh_db), autocommit=True) as conn:
        assert revisions.current_revision(conn) is None is current_revision(fresh_db)
        upgrade(fresh_db, "0005_tenancy")
        assert revisions.current_revision(conn) == current_revision(fresh_db) == "0005_tenancy"
        upgrade(fresh_db)
        assert revisions.current_revision(conn) == current_revision(fresh_db) == head_revision()


def test_a_second_upgrade_on_an_up_to_date_database_changes_nothing(fresh_db):
    upgrade(fresh_db)
    before = _schema_snapshot(fresh_db)
    upgrade(fresh_db)
    assert _schema_snapshot(fresh_db) == before
    assert check(fresh_db) == []


def test_check_on_an_unmigrated_database_reports_it_is_behind(fresh_db):
    problems = check(fresh_db)
    assert len(problems) == 1
    assert "(none)" in problems[0] and str(head_revision()) in problems[0]
    assert "aos db upgrade" in problems[0]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ("ALTER TABLE runs ADD COLUMN extra int", "extra"),
        ("DROP INDEX ix_runs_active", "ix_runs_active"),
        ("DROP INDEX uq_checkpoints_one_success", "uq_checkpoints_one_success"),
        ("ALTER TABLE tenants ALTER COLUMN name TYPE text", "name"),
        ("ALTER TABLE runs ALTER COLUMN error_message SET NOT NULL", "error_message"),
    ],
    ids=["added-column", "dropped-index", "dropped-partial-unique-index", "changed-type", "changed-nullability"],
)
def test_check_reports_schema_drift_between_models_and_database(fresh_db, drift, expected):
    upgrade(fresh_db)
    _sql(fresh_db, drift)
    problems = check(fresh_db)
    assert problems, f"check found no difference after {drift!r}"
    assert all(p.startswith("models and migrations differ:") for p in problems)
    assert any(expected in p for p in problems), problems


def test_embedding_column_follows_whether_the_server_has_pgvector(fresh_db):
    upgrade(fresh_db)
    (col_type,) = _sql(fresh_db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                 "WHERE attrelid = 'failure_patterns'::regclass AND attname = 'embedding'")[0]
    indexes = dict(_sql(fresh_db, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'failure_patterns'"))
    if _has_pgvector(fresh_db):
        assert col_type == f"vector({EMBEDDING_DIM})"
        assert HNSW_INDEX in indexes and "USING hnsw" in indexes[HNSW_INDEX]
        assert "vector_cosine_ops" in indexes[HNSW_INDEX]
        assert _sql(fresh_db, "SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    else:
        assert col_type == "double precision[]"
        assert HNSW_INDEX not in indexes
    # both shapes are right: neither is reported as drift
    assert check(fresh_db) == []


def test_embedding_column_round_trips_a_list_of_floats_in_either_shape(fresh_db):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    from aos.db.models import FailurePattern, Tenant
    from aos.db.session import sqlalchemy_url

    upgrade(fresh_db)
    vec = [round(i / EMBEDDING_DIM, 4) for i in range(EMBEDDING_DIM)]
    engine = create_engine(sqlalchemy_url(fresh_db), poolclass=NullPool)
    try:
        with Session(engine) as s, s.begin():
            t = Tenant(name="emb")
            s.add(t)
            s.flush()
            s.add(FailurePattern(tenant_id=t.id, error_code="X", signature="sig", message="m", recovery={},
                                 source="cache", embedding=vec))
        with Session(engine) as s:
            got = s.scalar(select(FailurePattern.embedding))
    finally:
        engine.dispose()
    assert got == pytest.approx(vec, abs=1e-6)


# --- through the CLI -----------------------------------------------------------------------------------


def test_aos_db_upgrade_and_check_via_the_cli(cli_db):
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"database at revision {head_revision()} (was empty)"

    again = runner.invoke(cli, ["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"database at revision {head_revision()}"

    ok = runner.invoke(cli, ["db", "check"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == "schema is current: models and migrations agree"
    assert ok.stderr == ""


def test_aos_db_check_fails_on_an_unmigrated_database(cli_db):
    res = CliRunner().invoke(cli, ["db", "check"])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: database is at revision (none)") and "aos db upgrade" in lines[0]


def test_aos_db_check_fails_when_models_and_migrations_differ(cli_db):
    upgrade(cli_db)
    _sql(cli_db, "ALTER TABLE runs ADD COLUMN extra int")
    res = CliRunner().invoke(cli, ["db", "check"])
    assert res.exit_code == 1
    assert res.stderr.startswith("error: models and migrations differ:")
    assert "extra" in res.stderr
    assert "Traceback" not in res.output


# --- the partial unique index on checkpoints ----------------------------------------------------------


def test_only_one_succeeded_checkpoint_per_run_and_step(aos_env, tenant):
    from aos.db.models import Checkpoint
    from aos.db.session import session_scope
    from aos.services.runs import submit_run

    ctx, _ = tenant
    plan = {"name": "one-success", "steps": [
        {"id": "a", "skill": "json.transform", "args": {"input": {"x": 1}, "expr": "x"}}]}
    run_id = submit_run(ctx, plan, publisher=None)

    def cp(attempt: int, status: str) -> Checkpoint:
        return Checkpoint(tenant_id=ctx.tenant_id, run_id=run_id, step_index=0, step_id="a", attempt=attempt,
                          status=status, skill="json.transform")

    # failed attempts and a later success may coexist …
    with session_scope() as s:
        s.add_all([cp(1, "failed"), cp(2, "succeeded")])
    # … but a second success for the same (run, step) may not, whatever its attempt number
    with pytest.raises(IntegrityError, match="uq_checkpoints_one_success"), session_scope() as s:
        s.add(cp(3, "succeeded"))
        s.flush()
    with pytest.raises(IntegrityError, match="uq_checkpoints_one_success"), session_scope() as s:
        s.add(cp(4, "skipped"))
        s.flush()
