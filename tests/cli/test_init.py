"""`aos init` on a fresh database, and how the CLI reads the config file it writes."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aos.cli.config_file import ConfigFileError, apply_config_file, parse_env_file, render_env_file
from aos.cli.main import cli
from aos.db.migrate import current_revision, head_revision
from aos.db.models import ApiKey
from aos.db.session import build_engine
from aos.services.tenancy import authenticate

BROKER = "redis://127.0.0.1:6379/15"


@pytest.fixture
def fresh_db(servers):
    """An empty database of its own (init migrates it; other tests' scratch databases stay untouched)."""
    name = f"aos_init_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    yield servers.database_url(name)
    servers.drop_database(name)


@pytest.fixture
def environ_restored():
    """The config file's values land in os.environ (that is how commands see them): undo that after the test."""
    from aos.config import reset_settings

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _init(runner, path, db_url, *extra: str):
    return runner.invoke(cli, ["init", "--path", str(path), "--database-url", db_url, "--broker-url", BROKER,
                               *extra])


def _authenticate(db_url: str, key: str):
    engine = build_engine(db_url, null_pool=True)
    try:
        with Session(engine) as s:
            return authenticate(s, key)
    finally:
        engine.dispose()


def _key_count(db_url: str) -> int:
    engine = build_engine(db_url, null_pool=True)
    try:
        with Session(engine) as s:
            return s.scalar(select(func.count()).select_from(ApiKey))
    finally:
        engine.dispose()


def test_init_writes_a_private_config_file_migrates_and_prints_a_working_key(runner, fresh_db, tmp_path):
    path = tmp_path / "conf" / "aos.env"
    res = _init(runner, path, fresh_db, "--tenant", "acme")
    assert res.exit_code == 0, res.output

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = parse_env_file(path.read_text())
    assert values["AOS_DATABASE_URL"] == fresh_db and values["AOS_BROKER_URL"] == BROKER
    assert len(values["AOS_SECRET_KEY"]) == 64 and values["AOS_URL"] == "http://127.0.0.1:8000"
    assert "AOS_API_KEY" not in values  # printed once, not stored

    key = next(line for line in res.stdout.splitlines() if line.startswith("aos_"))
    assert res.stdout.count(key) == 2  # the key line, and the `export AOS_API_KEY=` hint right below
    ctx = _authenticate(fresh_db, key)
    assert ctx.tenant_name == "acme" and ctx.scopes == {"runs:read", "runs:write", "admin"}
    assert current_revision(fresh_db) == head_revision()
    assert f"export AOS_CONFIG_FILE={path.resolve()}" in res.stdout


def test_init_refuses_to_overwrite_unless_forced_and_reuses_the_tenant(runner, fresh_db, tmp_path):
    path = tmp_path / "aos.env"
    first = json.loads(_init(runner, path, fresh_db, "--json").stdout)
    assert first["tenant_created"] is True and first["tenant"] == "default"
    before, keys = path.read_bytes(), _key_count(fresh_db)

    res = _init(runner, path, fresh_db)
    assert res.exit_code == 1
    line = res.stderr.strip()
    assert line.startswith("error: CONFLICT: ") and "--force" in line and str(path) in line
    assert path.read_bytes() == before and _key_count(fresh_db) == keys  # refused before touching anything

    forced = _init(runner, path, fresh_db, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    second = json.loads(forced.stdout)
    assert second["tenant_created"] is False and second["tenant_id"] == first["tenant_id"]
    assert second["key"] != first["key"] and _authenticate(fresh_db, first["key"]).tenant_id
    old, new = parse_env_file(before.decode()), parse_env_file(path.read_text())
    assert new["AOS_SECRET_KEY"] != old["AOS_SECRET_KEY"]


def test_init_save_key_writes_the_key_into_the_file(runner, fresh_db, tmp_path):
    path = tmp_path / "aos.env"
    out = json.loads(_init(runner, path, fresh_db, "--save-key", "--json").stdout)
    assert parse_env_file(path.read_text())["AOS_API_KEY"] == out["key"] and out["key_saved"] is True


def test_init_without_a_database_is_a_config_error_and_writes_nothing(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("AOS_DATABASE_URL", raising=False)
    res = runner.invoke(cli, ["init", "--path", str(tmp_path / "aos.env")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: CONFIG_INVALID: aos init needs a Postgres: pass --database-url")
    assert not (tmp_path / "aos.env").exists()

    res = runner.invoke(cli, ["init", "--path", str(tmp_path / "aos.env"), "--database-url", "mysql://x/y"])
    assert res.exit_code == 2 and "AOS_DATABASE_URL is invalid" in res.stderr


def test_init_against_an_unreachable_database_fails_in_one_line(runner, tmp_path):
    res = _init(runner, tmp_path / "aos.env", "postgresql://postgres@127.0.0.1:1/nothing")
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DB_UNAVAILABLE: cannot reach the database")
    assert not (tmp_path / "aos.env").exists()


# --- reading the config file ---------------------------------------------------------------------------------


def test_commands_read_the_config_file_given_with_config(runner, fresh_db, tmp_path, monkeypatch,
                                                         environ_restored):
    path = tmp_path / "aos.env"
    assert _init(runner, path, fresh_db).exit_code == 0
    monkeypatch.delenv("AOS_DATABASE_URL", raising=False)
    res = runner.invoke(cli, ["--config", str(path), "db", "check"])
    assert res.exit_code == 0, res.output
    assert "schema is current" in res.stdout
    assert os.environ["AOS_DATABASE_URL"] == fresh_db


def test_aos_config_file_and_a_local_aos_env_are_read_and_the_environment_wins(runner, live_api, tenant, tmp_path,
                                                                            monkeypatch, environ_restored):
    key = tenant[1]
    # the file points at an API that is not there; the environment at the live one
    conf = tmp_path / "aos.env"
    conf.write_text(render_env_file({"AOS_URL": "http://127.0.0.1:1", "AOS_API_KEY": key}, "test"))

    monkeypatch.setenv("AOS_URL", live_api)
    res = runner.invoke(cli, ["--config", str(conf), "runs", "list", "--json"])
    assert res.exit_code == 0, res.output  # env AOS_URL won; the key came from the file
    assert json.loads(res.stdout)["items"] == []

    monkeypatch.delenv("AOS_URL")
    monkeypatch.delenv("AOS_API_KEY", raising=False)
    monkeypatch.setenv("AOS_CONFIG_FILE", str(conf))
    res = runner.invoke(cli, ["runs", "list"])
    assert res.exit_code == 1 and "cannot reach the API at http://127.0.0.1:1" in res.stderr

    os.environ.pop("AOS_URL", None)
    monkeypatch.delenv("AOS_CONFIG_FILE")
    monkeypatch.chdir(tmp_path)  # ./aos.env is read without being named
    res = runner.invoke(cli, ["runs", "list"])
    assert res.exit_code == 1 and "cannot reach the API at http://127.0.0.1:1" in res.stderr


def test_a_missing_config_file_is_a_usage_error(runner, tmp_path):
    res = runner.invoke(cli, ["--config", str(tmp_path / "nope.env"), "errors", "list"])
    assert res.exit_code == 2 and "no config file" in res.output and "aos init" in res.output


def test_env_file_format():
    text = ("# comment\n\nexport AOS_A='x y'\nAOS_B=\"q\"\nAOS_C=plain # trailing comment\n"
            "AOS_D=postgresql+psycopg://postgres@/postgres?host=/tmp/x\n")
    assert parse_env_file(text) == {"AOS_A": "x y", "AOS_B": "q", "AOS_C": "plain",
                                    "AOS_D": "postgresql+psycopg://postgres@/postgres?host=/tmp/x"}
    values = {"AOS_X": "a b#c", "AOS_Y": "?host=/tmp"}
    assert parse_env_file(render_env_file(values, "h")) == values
    with pytest.raises(ConfigFileError, match="line 2"):
        parse_env_file("A=1\nnot a setting\n")
    with pytest.raises(ConfigFileError):
        render_env_file({"A": "it's"}, "h")


def test_the_environment_wins_over_the_file(tmp_path):
    path = tmp_path / "aos.env"
    path.write_text("AOS_ONE=file\nAOS_TWO=file\n")
    environ = {"AOS_ONE": "env"}
    assert apply_config_file(path, environ) == ["AOS_TWO"]
    assert environ == {"AOS_ONE": "env", "AOS_TWO": "file"}
