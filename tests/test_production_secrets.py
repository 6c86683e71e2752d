"""Placeholder and short secrets are refused in production, with one line naming the variable."""

from __future__ import annotations

import json
import secrets

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.cli.ops import check_flower_exposure
from aos.config import ConfigError, load_settings, weak_secret

GOOD = secrets.token_hex(32)
PROD = {"AOS_ENV": "production", "AOS_SECRET_KEY": GOOD}


@pytest.mark.parametrize("value", ["change-me", "CHANGE-ME", "changeme", "secret", "password", "development-only",
                                   "test-secret", "your-secret-key-here-please-change-it-now", "short-but-random-1",
                                   "a" * 64, "abababababababababababababababab"])
def test_a_placeholder_short_or_uniform_secret_key_is_refused_in_production(value):
    with pytest.raises(ConfigError) as err:
        load_settings({**PROD, "AOS_SECRET_KEY": value})
    message = str(err.value)
    assert message.startswith("AOS_SECRET_KEY is not fit for production: ") and "\n" not in message
    assert f"{value!r}" not in message and f"={value}" not in message  # the variable is named, never its value
    assert "token_hex" in message  # and says how to make a good one


@pytest.mark.parametrize(("variable", "value"), [
    ("AOS_GOLDEN_SECRET", "change-me"), ("AOS_METRICS_TOKEN", "metrics"),
    ("AOS_GOLDEN_KEYS", json.dumps({"k0": "old-secret"})),
    ("AOS_DATABASE_URL", "postgresql://aos:aos@db:5432/aos"), ("AOS_BROKER_URL", "amqp://guest:guest@mq:5672//"),
    ("AOS_PG_CONNECTIONS", json.dumps({"sales": {"url": "postgresql://r:password@db/sales", "tenants": "*"}})),
])
def test_every_secret_and_url_password_is_checked(variable, value):
    with pytest.raises(ConfigError) as err:
        load_settings({**PROD, variable: value})
    assert str(err.value).startswith(variable) and "not fit for production" in str(err.value)


def test_good_secrets_pass_and_development_accepts_anything():
    settings = load_settings({**PROD, "AOS_GOLDEN_SECRET": secrets.token_urlsafe(40),
                              "AOS_DATABASE_URL": f"postgresql://aos:{secrets.token_hex(16)}@db/aos"})
    assert settings.secret_key == GOOD
    assert load_settings({"AOS_SECRET_KEY": "change-me"}).secret_key == "change-me"  # AOS_ENV=development


def test_a_production_process_refuses_to_start_with_one_line(monkeypatch):
    monkeypatch.setenv("AOS_ENV", "production")
    monkeypatch.setenv("AOS_SECRET_KEY", "change-me")
    monkeypatch.setenv("AOS_DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    monkeypatch.setenv("AOS_BROKER_URL", "redis://127.0.0.1:1/0")
    from aos.config import reset_settings

    reset_settings()
    try:
        result = CliRunner().invoke(cli, ["api"])
    finally:
        reset_settings()
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "AOS_SECRET_KEY is not fit for production" in lines[0], result.output


def test_flower_is_refused_beyond_loopback_without_auth_and_with_a_placeholder_in_production():
    import click

    check_flower_exposure("127.0.0.1", {}, production=True)  # loopback needs nothing
    with pytest.raises(click.UsageError, match="without authentication"):
        check_flower_exposure("0.0.0.0", {}, production=False)
    check_flower_exposure("0.0.0.0", {"FLOWER_BASIC_AUTH": "admin:change-me"}, production=False)  # not production
    for weak in ("admin:change-me", "ops:short", f"ops:{GOOD},admin:flower"):
        with pytest.raises(click.UsageError, match="FLOWER_BASIC_AUTH is not fit for production"):
            check_flower_exposure("0.0.0.0", {"FLOWER_BASIC_AUTH": weak}, production=True)
    check_flower_exposure("0.0.0.0", {"FLOWER_BASIC_AUTH": f"ops:{GOOD}"}, production=True)
    assert weak_secret(GOOD) is None
