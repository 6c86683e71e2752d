"""`aos dev` keeps its secrets under its data directory: golden recording works out of the box."""

from __future__ import annotations

import json
import stat
import threading
import uuid

import psycopg
from sqlalchemy.engine import make_url

from aos.config import load_settings
from aos.db.session import libpq_url
from aos.devstack import dev_secrets, example_connection
from aos.golden.sign import KeyRing
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SkillContext
from aos.skills.postgres import PostgresQuery, open_connection, role_power


def test_the_dev_stack_generates_its_secrets_once_and_keeps_them_private(tmp_path):
    first = dev_secrets(tmp_path, load_settings({}))
    assert set(first) == {"AOS_SECRET_KEY", "AOS_GOLDEN_SECRET"}
    assert first["AOS_SECRET_KEY"] != first["AOS_GOLDEN_SECRET"]
    assert all(len(v) >= 64 for v in first.values())
    for name in ("secret-key", "golden-secret"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert dev_secrets(tmp_path, load_settings({})) == first  # a restart keeps them
    # with the stack's environment, golden files can be signed
    settings = load_settings(first)
    assert KeyRing.from_settings(settings).signing_secret() == first["AOS_GOLDEN_SECRET"]


def test_configured_secrets_win_over_the_kept_ones(tmp_path):
    kept = dev_secrets(tmp_path, load_settings({}))
    mine = dev_secrets(tmp_path, load_settings({"AOS_GOLDEN_SECRET": "x" * 40}))
    assert mine["AOS_GOLDEN_SECRET"] == "x" * 40 and mine["AOS_SECRET_KEY"] == kept["AOS_SECRET_KEY"]


def test_two_stacks_starting_at_once_agree_on_one_secret(tmp_path):
    seen: list[dict[str, str]] = []
    threads = [threading.Thread(target=lambda: seen.append(dev_secrets(tmp_path, load_settings({}))))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({tuple(sorted(s.items())) for s in seen}) == 1


def test_the_example_connection_is_a_least_privilege_role_of_the_dev_tenant(aos_env, servers):
    """`aos dev` gives plans an `example` database to read, through a role that can do nothing else."""
    tag = uuid.uuid4().hex[:6]
    database, role, tenant, other = f"aos_example_{tag}", f"aos_example_reader_{tag}", str(uuid.uuid4()), \
        str(uuid.uuid4())
    try:
        conns = example_connection(servers.admin_url, tenant, "pw-" + tag, database=database, role=role)
        again = example_connection(servers.admin_url, tenant, "pw-" + tag, database=database, role=role)
        assert conns == again and set(conns) == {"example"} and conns["example"]["tenants"] == [tenant]
        settings = load_settings({"AOS_PG_CONNECTIONS": json.dumps(conns)})
        with open_connection(conns["example"]["url"], timeout_ms=1000, connect_timeout=5) as conn:
            assert role_power(conn) is None

        def run(sql: str, tenant_id: str = tenant):
            ctx = SkillContext(run_id="r", step_id="s", attempt=1, tenant_id=tenant_id, settings=settings)
            return invoke_skill(PostgresQuery(), {"connection": "example", "sql": sql}, ctx)[0]

        rows = run("SELECT customer, sum(amount) FROM orders GROUP BY customer ORDER BY customer")
        assert rows.output["rows"] == [["ada", "13.70"], ["grace", "99.00"]]
        assert run("SELECT pg_read_file('/etc/hostname')").error.details["sqlstate"] == "42501"
        assert run("COPY (SELECT 1) TO PROGRAM 'id'").error.details["sqlstate"] in ("42501", "25006")
        assert run("SELECT 1", other).error.code == "PG_CONNECTION_UNKNOWN"  # another tenant
    finally:
        admin = make_url(libpq_url(servers.admin_url)).render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
