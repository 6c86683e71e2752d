"""The private Postgres the chaos tests stop and start (tests/support/postgres.py), with the binaries pgserver
bundles (what a fresh machine has) and with the distribution's server where one is installed."""

from __future__ import annotations

import psycopg
import pytest

from aos.db.migrate import check, upgrade
from tests.support.postgres import PrivatePostgres, pgserver_bin_dir, system_bin_dirs

pytestmark = pytest.mark.chaos

BIN_DIRS = [pytest.param(pgserver_bin_dir(), id="pgserver")] + [
    pytest.param(d, id=f"system-{d.parent.name}") for d in system_bin_dirs()[:1]]


@pytest.mark.parametrize("bin_dir", BIN_DIRS)
def test_private_postgres_keeps_its_data_across_stop_and_crash(bin_dir, tmp_path):
    pg = PrivatePostgres(tmp_path / "pg", bin_dir=bin_dir).start()
    try:
        url = pg.create_database("aos")
        upgrade(url)
        assert check(url) == []
        with psycopg.connect(pg.libpq_url("aos"), autocommit=True) as conn:
            conn.execute("INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'kept')")
            version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert version.startswith(bin_dir.parent.name if bin_dir.parent.name.isdigit() else "16")

        port = pg.port
        pg.stop()
        assert not pg.ping()
        pg.start()
        assert pg.port == port
        pg.kill()  # a crash: the next start runs crash recovery
        assert not pg.ping()
        pg.start()
        with psycopg.connect(pg.libpq_url("aos"), autocommit=True) as conn:
            assert conn.execute("SELECT name FROM tenants").fetchall() == [("kept",)]
    finally:
        pg.remove()
