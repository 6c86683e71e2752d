"""Configuration: a bad value fails in one line naming its variable, and the docs match the code."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from aos.cli.docs import configuration_markdown
from aos.cli.main import cli
from aos.config import ConfigError, Settings, _bool, load_settings, reset_settings, settings_doc

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("AOS_DATABASE_URL", "mysql://x"),
        ("AOS_DATABASE_URL", "sqlite:///aos.db"),
        ("AOS_BROKER_URL", "http://localhost:6379"),
        ("AOS_DB_POOL_SIZE", "abc"),
        ("AOS_DB_POOL_SIZE", "5.5"),
        ("AOS_MAX_COUNTDOWN_S", "soon"),
        ("AOS_PG_CONNECTIONS", "[1, 2]"),
        ("AOS_PG_CONNECTIONS", '"postgresql://u:p@h/db"'),
        ("AOS_PG_CONNECTIONS", "{not json"),
        ("AOS_LLM_PRICING", "42"),
    ],
)
def test_a_bad_value_raises_config_error_naming_the_variable_in_one_line(env, value):
    with pytest.raises(ConfigError) as exc:
        load_settings({env: value})
    msg = str(exc.value)
    assert msg.startswith(f"{env} is invalid: ")
    assert "\n" not in msg


def test_the_first_bad_variable_is_named_even_when_others_are_fine():
    with pytest.raises(ConfigError, match=r"^AOS_PG_QUERY_MAX_ROWS is invalid"):
        load_settings({"AOS_DATABASE_URL": "postgresql://h/db", "AOS_DB_POOL_SIZE": "7",
                       "AOS_PG_QUERY_MAX_ROWS": "lots"})


@pytest.mark.parametrize("value", ['{"main": "postgresql://app:hunter2@db/main"',  # not JSON
                                   '{"main": "postgresql://app:hunter2@db/main"}',  # not scoped to tenants
                                   '{"main": {"url": "mysql://app:hunter2@db/main", "tenants": "*"}}'])
def test_an_invalid_connections_object_does_not_echo_its_secrets(value):
    # AOS_PG_CONNECTIONS holds passwords and is "never logged": its error must not quote the value
    with pytest.raises(ConfigError) as exc:
        load_settings({"AOS_PG_CONNECTIONS": value})
    assert str(exc.value).startswith("AOS_PG_CONNECTIONS is invalid: ")
    assert "hunter2" not in str(exc.value)


def test_good_values_are_parsed_to_their_types():
    s = load_settings({
        "AOS_DATABASE_URL": "postgres://u@h/db",
        "AOS_BROKER_URL": "redis://127.0.0.1:6379/0",
        "AOS_DB_POOL_SIZE": "12",
        "AOS_MAX_COUNTDOWN_S": "2.5",
        "AOS_PG_CONNECTIONS": '{"main": {"url": "postgresql://u@h/db", "tenants": "*"}}',
        "AOS_HTTP_ALLOW_HOSTS": " 127.0.0.1, localhost,,10.0.0.0/8 ,",
    })
    assert s.database_url == "postgres://u@h/db" and s.effective_database_url() == "postgres://u@h/db"
    assert s.effective_broker_url() == "redis://127.0.0.1:6379/0"
    assert s.db_pool_size == 12 and s.max_countdown_s == 2.5
    assert s.pg_connections == {"main": {"url": "postgresql://u@h/db", "tenants": "*"}}
    assert s.http_allow_hosts == ("127.0.0.1", "localhost", "10.0.0.0/8")


def test_unset_and_empty_variables_take_the_defaults():
    s = load_settings({"AOS_DB_POOL_SIZE": "", "AOS_HTTP_ALLOW_HOSTS": ""})
    assert s == load_settings({}) == Settings()
    assert s.db_pool_size == 5 and s.http_allow_hosts == () and s.pg_connections == {}


def test_each_settings_object_gets_its_own_dict_defaults():
    a, b = load_settings({}), load_settings({})
    a.pg_connections["x"] = "postgresql://h/x"
    assert b.pg_connections == {}


@pytest.mark.parametrize(("raw", "parsed"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                             ("0", False), ("false", False), ("No", False), ("off", False)])
def test_boolean_values_are_parsed(raw, parsed):
    # No Settings field is a boolean today; the parser every future one would use is checked here.
    assert _bool(raw) is parsed


@pytest.mark.parametrize("raw", ["2", "maybe", "", "truthy"])
def test_a_bad_boolean_is_refused(raw):
    with pytest.raises(ValueError, match="true/false"):
        _bool(raw)


def test_missing_database_url_fails_naming_the_variable():
    s = load_settings({})
    with pytest.raises(ConfigError, match="AOS_DATABASE_URL is not set"):
        s.effective_database_url()
    with pytest.raises(ConfigError, match="AOS_BROKER_URL is not set"):
        s.effective_broker_url()


def test_every_setting_has_a_doc_and_a_unique_aos_variable():
    envs = []
    for f in fields(Settings):
        env, doc = f.metadata.get("env"), f.metadata.get("doc")
        assert env and env.startswith("AOS_") and env == env.upper(), f.name
        assert doc and doc.strip(), f"{f.name} ({env}) has no doc string"
        assert "\n" not in doc
        envs.append(env)
    assert len(envs) == len(set(envs))
    assert [row[0] for row in settings_doc()] == envs


def test_docs_configuration_md_is_generated_from_the_code():
    on_disk = (ROOT / "docs" / "configuration.md").read_bytes()
    assert on_disk == configuration_markdown().encode("utf-8"), (
        "docs/configuration.md is out of date with aos/config.py: run `aos docs generate`")


def test_docs_list_every_variable():
    text = configuration_markdown()
    for env, _, _ in settings_doc():
        assert f"| `{env}` |" in text


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    env.update(extra)
    return env


def test_the_cli_reports_a_bad_variable_in_one_line_without_traceback():
    aos = Path(sys.executable).parent / "aos"
    proc = subprocess.run([str(aos), "db", "check"], env=_clean_env(AOS_DB_POOL_SIZE="abc"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: CONFIG_INVALID: AOS_DB_POOL_SIZE is invalid: ")
    assert "Traceback" not in proc.stderr


def test_the_cli_reports_a_missing_database_url_in_one_line(monkeypatch):
    for k in list(os.environ):
        if k.startswith("AOS_"):
            monkeypatch.delenv(k)
    reset_settings()
    try:
        res = CliRunner().invoke(cli, ["db", "upgrade"])
    finally:
        monkeypatch.undo()
        reset_settings()
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CONFIG_INVALID: AOS_DATABASE_URL is not set")
