"""postgres.query against the session's real Postgres (a scratch database of its own)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

from aos.config import load_settings
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SkillContext
from aos.skills.postgres import SKILLS

QUERY = SKILLS[0]
REF = uuid.UUID("6f1c2a3e-9d4b-4c5e-8f7a-0b1c2d3e4f50")
SECRET = "s3cret-Pa55word-for-tests"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


READER = f"aos_reader_{uuid.uuid4().hex[:8]}"


def as_role(url: str, role: str, password: str = SECRET) -> str:
    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def admin(pg_url) -> str:
    """The scratch database with a table of typed rows, as the server's superuser (never given to the skill
    except to show it is refused)."""
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("""CREATE TABLE items (
            id int PRIMARY KEY, price numeric(12, 4), name text, created timestamptz,
            ref uuid, doc jsonb, blob bytea, note text)""")
        conn.execute("""INSERT INTO items VALUES
            (1, 12345678.1234, 'apple', '2026-03-29 09:30:00+02', %s, '{"tags": ["a", "b"], "n": 1.5}',
             '\\x00ff10', NULL),
            (2, 0.5, 'pear', '2026-01-01 00:00:00+00', NULL, '[1, 2]', NULL, 'ripe'),
            (3, NULL, 'plum', NULL, NULL, NULL, NULL, NULL)""", [REF])
    return pg_url


@pytest.fixture(scope="module")
def db(admin) -> str:
    """The scratch database as a least-privilege role: LOGIN, SELECT on items, nothing else."""
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{SECRET}'")
        conn.execute(f"GRANT SELECT ON items TO {READER}")
    yield as_role(admin, READER)
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {READER}")
        conn.execute(f"DROP ROLE {READER}")


def settings(connections: dict[str, str], tenants: dict[str, list[str]] | None = None, **env: str):
    scoped = {name: {"url": url, "tenants": (tenants or {}).get(name, "*")} for name, url in connections.items()}
    return load_settings({"AOS_PG_CONNECTIONS": json.dumps(scoped), **env})


def query(db: str, args: dict, *, capabilities: dict | None = None, **env: str):
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1",
                       settings=settings({"main": db, "reports": db}, **env), idempotency_key="r1:s1:1",
                       capabilities=capabilities or {})
    outcome, _ = invoke_skill(QUERY, {"connection": "main", **args}, ctx)
    return outcome


def count_items(db: str) -> int:
    with psycopg.connect(libpq(db)) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


def test_select_with_positional_params(db):
    out = query(db, {"sql": "SELECT id, name FROM items WHERE id > %s ORDER BY id", "params": [1]})
    assert out.status == "ok", out.error
    assert out.output == {"columns": ["id", "name"], "rows": [[2, "pear"], [3, "plum"]], "row_count": 2,
                          "truncated": False}


def test_select_with_named_params(db):
    out = query(db, {"sql": "SELECT id FROM items WHERE name = %(name)s OR id = %(id)s ORDER BY id",
                     "params": {"name": "plum", "id": 1}})
    assert out.output["rows"] == [[1], [3]]


def test_literal_percent_without_params_is_sent_as_is(db):
    out = query(db, {"sql": "SELECT name FROM items WHERE name LIKE 'p%' ORDER BY name"})
    assert out.output["rows"] == [["pear"], ["plum"]]


def test_values_are_rendered_json_safe(db):
    out = query(db, {"sql": "SELECT id, price, name, created, ref, doc, blob, note, "
                            "'NaN'::float8 AS nan, interval '1 day 2 hours' AS span "
                            "FROM items WHERE id = 1"})
    assert out.status == "ok", out.error
    row = dict(zip(out.output["columns"], out.output["rows"][0], strict=True))
    assert row["id"] == 1
    assert row["price"] == "12345678.1234"  # numeric keeps every digit as text
    assert row["name"] == "apple"
    assert row["created"] == "2026-03-29T07:30:00+00:00"
    assert row["ref"] == str(REF)
    assert row["doc"] == {"tags": ["a", "b"], "n": 1.5}
    assert base64.b64decode(row["blob"]) == b"\x00\xff\x10"
    assert row["note"] is None
    assert row["nan"] == "nan"
    assert row["span"] == "P1DT7200S"
    json.dumps(out.output, allow_nan=False)


def test_row_cap_sets_truncated(db):
    capped = query(db, {"sql": "SELECT id FROM items ORDER BY id", "max_rows": 2})
    assert capped.output == {"columns": ["id"], "rows": [[1], [2]], "row_count": 2, "truncated": True}
    exact = query(db, {"sql": "SELECT id FROM items ORDER BY id", "max_rows": 3})
    assert exact.output["truncated"] is False and exact.output["row_count"] == 3


def test_settings_cap_wins_over_a_larger_max_rows(db):
    out = query(db, {"sql": "SELECT generate_series(1, 50)", "max_rows": 40}, AOS_PG_QUERY_MAX_ROWS="5")
    assert out.output["row_count"] == 5 and out.output["truncated"] is True


@pytest.mark.parametrize("sql", [
    "INSERT INTO items (id, name) VALUES (99, 'intruder')",
    "UPDATE items SET name = 'x'",
    "DELETE FROM items",
    "CREATE TABLE evil (id int)",
    "SELECT 1 FROM items FOR UPDATE",
])
def test_writes_are_refused_and_change_nothing(db, sql):
    out = query(db, {"sql": sql})
    assert out.status == "error"
    assert out.error.code == "PG_READ_ONLY_VIOLATION"
    assert out.error.details["sqlstate"] == "25006"
    assert count_items(db) == 3


def test_a_second_statement_cannot_escape_the_read_only_transaction(db):
    out = query(db, {"sql": "COMMIT; INSERT INTO items (id, name) VALUES (98, 'smuggled')"})
    assert out.error.code == "PG_SYNTAX_ERROR"  # one statement per call ("cannot insert multiple commands")
    assert count_items(db) == 3


def test_statement_timeout_is_pg_query_timeout(db):
    t0 = time.monotonic()
    out = query(db, {"sql": "SELECT pg_sleep(5)"}, AOS_PG_QUERY_TIMEOUT_MS="200")
    assert out.error.code == "PG_QUERY_TIMEOUT"
    assert out.error.retryable is True
    assert time.monotonic() - t0 < 3


def test_syntax_error_gives_its_position(db):
    out = query(db, {"sql": "SELEC id FROM items"})
    assert out.error.code == "PG_SYNTAX_ERROR"
    assert out.error.details["position"] == 1


def test_other_database_errors_are_pg_query_error_with_sqlstate(db):
    out = query(db, {"sql": "SELECT * FROM no_such_table"})
    assert out.error.code == "PG_QUERY_ERROR"
    assert out.error.details["sqlstate"] == "42P01"
    assert "no_such_table" in out.error.message
    mismatch = query(db, {"sql": "SELECT %s, %s", "params": [1]})
    assert mismatch.error.code == "PG_QUERY_ERROR"


def test_unknown_connection_lists_names_but_no_urls(db):
    out = query(db, {"connection": "warehouse", "sql": "SELECT 1"})
    assert out.error.code == "PG_CONNECTION_UNKNOWN"
    assert out.error.details["known"] == ["main", "reports"]
    assert "main" in out.error.message
    dumped = json.dumps(out.to_dict())
    assert libpq(db) not in dumped and db not in dumped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bad_urls(db: str) -> list[str]:
    wrong_port = f"postgresql://{READER}:{SECRET}@127.0.0.1:{_closed_port()}/appdb"
    wrong_db = make_url(db).set(database="no_such_db_4f2a", password=SECRET).render_as_string(hide_password=False)
    return [wrong_port, wrong_db]


@pytest.mark.parametrize("which", [0, 1], ids=["wrong-port", "wrong-database"])
def test_connection_failure_leaks_no_secret(db, which, caplog):
    url = _bad_urls(db)[which]
    info = make_url(url)
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1",
                       settings=settings({"broken": url}), idempotency_key="r1:s1:1")
    with caplog.at_level(logging.DEBUG):
        out, _ = invoke_skill(QUERY, {"connection": "broken", "sql": "SELECT 1"}, ctx)
    assert out.error.code == "PG_CONNECTION_FAILED"
    assert "broken" in out.error.message
    dumped = json.dumps(out.to_dict())
    for secret in (SECRET, url, libpq(url), f"{info.username}@{info.host}", f"{info.host}:{info.port}"):
        assert secret not in dumped
        assert secret not in caplog.text


def test_capability_policy_limits_connections(db):
    denied = query(db, {"sql": "SELECT 1"}, capabilities={"db_connections": ["reports"]})
    assert denied.error.code == "CAPABILITY_DENIED"
    allowed = query(db, {"sql": "SELECT 1 AS one"}, capabilities={"db_connections": ["main"]})
    assert allowed.output["rows"] == [[1]]
    unknown = query(db, {"connection": "ghost", "sql": "SELECT 1"}, capabilities={"db_connections": ["ghost"]})
    assert unknown.error.code == "PG_CONNECTION_UNKNOWN"
    assert unknown.error.details["known"] == []


def test_bad_args_are_skill_args_invalid(db):
    assert query(db, {"sql": "SELECT 1", "max_rows": 0}).error.code == "SKILL_ARGS_INVALID"
    assert query(db, {"sql": "SELECT 1", "params": "1"}).error.code == "SKILL_ARGS_INVALID"


# --- a role powerful enough to leave the database is refused (the read-only transaction does not stop it) ---

def _role(admin: str, name: str, *grants: str) -> str:
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{SECRET}'")
        for grant in grants:
            conn.execute(grant.format(role=name))
    return as_role(admin, name)


@pytest.fixture
def powerful(admin):
    """Roles each too powerful in its own way; dropped afterwards."""
    tag = uuid.uuid4().hex[:6]
    made = {
        "superuser": admin,  # the session's embedded Postgres connects as its superuser
        "reads files": _role(admin, f"files_{tag}", "GRANT pg_read_server_files TO {role}"),
        "writes files": _role(admin, f"writer_{tag}", "GRANT pg_write_server_files TO {role}"),
        "runs programs": _role(admin, f"program_{tag}", "GRANT pg_execute_server_program TO {role}"),
        # not a superuser itself, but may SET ROLE to one
        "may become a superuser": _role(admin, f"climber_{tag}", f"CREATE ROLE boss_{tag} SUPERUSER NOLOGIN",
                                        f"GRANT boss_{tag} TO {{role}}"),
        # inherits pg_read_server_files through a group
        "inherits file reading": _role(admin, f"member_{tag}", f"CREATE ROLE readers_{tag} NOLOGIN",
                                       f"GRANT pg_read_server_files TO readers_{tag}",
                                       f"GRANT readers_{tag} TO {{role}}"),
    }
    yield made
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        for role in ("files", "writer", "program", "climber", "member", "boss", "readers"):
            conn.execute(f"DROP ROLE IF EXISTS {role}_{tag}")


@pytest.mark.parametrize("kind", ["superuser", "reads files", "writes files", "runs programs",
                                  "may become a superuser", "inherits file reading"])
def test_a_powerful_role_is_refused_before_any_plan_sql(db, powerful, kind):
    url = powerful[kind]
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1",
                       settings=settings({"main": url}), idempotency_key="r1:s1:1")
    out, _ = invoke_skill(QUERY, {"connection": "main", "sql": "SELECT pg_read_file('/etc/hostname')"}, ctx)
    assert out.status == "error" and out.error.code == "PG_ROLE_TOO_POWERFUL", out.error
    assert out.error.retryable is False and "least-privilege" in out.error.message
    assert url not in json.dumps(out.to_dict()) and SECRET not in json.dumps(out.to_dict())


@pytest.mark.parametrize("sql", ["SELECT pg_read_file('/etc/hostname')",
                                 "COPY (SELECT 1) TO PROGRAM 'id'",
                                 "SELECT set_config('role', 'postgres', true), pg_read_file('/etc/hostname')"])
def test_the_least_privilege_role_cannot_leave_the_database(db, sql):
    out = query(db, {"sql": sql})
    assert out.status == "error" and out.error.code in ("PG_QUERY_ERROR", "PG_READ_ONLY_VIOLATION"), out.error
    assert out.error.details.get("sqlstate") in ("42501", "25006")  # insufficient privilege / read-only


def test_a_query_cannot_lift_its_own_statement_timeout(db):
    t0 = time.monotonic()
    out = query(db, {"sql": "SELECT set_config('statement_timeout', '0', false), pg_sleep(5)"},
                AOS_PG_QUERY_TIMEOUT_MS="300")
    assert out.error.code == "PG_QUERY_TIMEOUT" and time.monotonic() - t0 < 3


# --- connections are scoped to tenants (and agents); an unknown name lists only the usable ones ---------

TENANT_A, TENANT_B = str(uuid.uuid4()), str(uuid.uuid4())


def _scoped_query(db: str, tenant: str, name: str, capabilities: dict | None = None):
    conns = {"a_sales": db, "a_hr": db, "b_secrets": db, "shared": db}
    scopes = {"a_sales": [TENANT_A], "a_hr": [TENANT_A], "b_secrets": [TENANT_B]}  # shared: "*"
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id=tenant, settings=settings(conns, scopes),
                       idempotency_key="r1:s1:1", capabilities=capabilities or {})
    return invoke_skill(QUERY, {"connection": name, "sql": "SELECT 1 AS one"}, ctx)[0]


def test_a_tenant_uses_its_own_and_shared_connections_only(db):
    assert _scoped_query(db, TENANT_A, "a_sales").output["rows"] == [[1]]
    assert _scoped_query(db, TENANT_B, "shared").output["rows"] == [[1]]
    other = _scoped_query(db, TENANT_A, "b_secrets")
    assert other.error.code == "PG_CONNECTION_UNKNOWN"  # exactly as if it did not exist
    assert other.error.details["known"] == ["a_hr", "a_sales", "shared"]
    assert "b_secrets" not in other.error.message.split("(known")[1]
    assert _scoped_query(db, TENANT_B, "a_sales").error.details["known"] == ["b_secrets", "shared"]


def test_an_agents_capability_narrows_what_the_tenant_may_use(db):
    caps = {"db_connections": ["a_sales"]}
    assert _scoped_query(db, TENANT_A, "a_sales", caps).output["rows"] == [[1]]
    denied = _scoped_query(db, TENANT_A, "a_hr", caps)
    assert denied.error.code == "CAPABILITY_DENIED" and denied.error.details["allowed"] == ["a_sales"]
    # naming another tenant's connection in the policy grants nothing, and confirms nothing
    sneaky = _scoped_query(db, TENANT_A, "b_secrets", {"db_connections": ["a_sales", "b_secrets"]})
    assert sneaky.error.code == "PG_CONNECTION_UNKNOWN" and sneaky.error.details["known"] == ["a_sales"]


@pytest.mark.parametrize("value", ['{"main": "postgresql://u@h/db"}', '{"main": {"url": "postgresql://u@h/db"}}',
                                   '{"main": {"url": "postgresql://u@h/db", "tenants": ["acme"]}}',
                                   '{"main": {"url": "mysql://u@h/db", "tenants": "*"}}'])
def test_an_unscoped_or_malformed_connection_is_a_config_error(value):
    from aos.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_settings({"AOS_PG_CONNECTIONS": value})
    assert str(err.value).startswith("AOS_PG_CONNECTIONS is invalid") and "u@h" not in str(err.value)
