"""aos.redaction: what is a secret, and that masking it is pure and idempotent."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from aos.redaction import (
    MASK,
    RedactingFilter,
    install_log_redaction,
    is_secret_key,
    redact_args,
    redact_text,
    redact_url,
    redact_value,
)
from aos.skills.http import HttpRequest


@pytest.mark.parametrize("name", ["Authorization", "authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
                                  "X-Api-Key", "x_api_key", "api_key", "apiKey", "API-KEY", "token", "access_token",
                                  "refresh-token", "github_token", "DB_PASSWORD", "password", "client_secret",
                                  "stripe_api_key", "private_key", "aws_secret_key", "session_id", "credentials"])
def test_credential_names_are_secret(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["max_tokens", "token_count", "input_tokens", "keyword", "monkey", "Accept",
                                  "Content-Type", "passport_country", "secretary", "url", "primary_key", 3, None])
def test_other_names_are_not(name):
    assert not is_secret_key(name)


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:pass@api.example.com/x", "https://***@api.example.com/x"),
    ("https://ghp_tokenasuser@github.com/o/r.git", "https://***@github.com/o/r.git"),
    ("postgresql://app:hunter2@db:5432/main", "postgresql://***@db:5432/main"),
    ("https://api.example.com/w?city=Paris&api_key=abc123", "https://api.example.com/w?city=Paris&api_key=***"),
    ("https://h/p?token=t&access_token=u&max_tokens=5#frag", "https://h/p?token=***&access_token=***&max_tokens=5#frag"),
    ("https://h/p?q=a%20b&Signature=zz%2F", "https://h/p?q=a%20b&Signature=***"),
    ("see https://u:p@h/a and http://h/b?password=x", "see https://***@h/a and http://h/b?password=***"),
    ("https://h/p?email=a@b.com", "https://h/p?email=a@b.com"),  # an @ in the query is not user-info
    ("no url here, just text", "no url here, just text"),
])
def test_urls_lose_their_credentials_and_nothing_else(url, clean):
    assert redact_url(url) == clean
    assert redact_url(clean) == clean  # idempotent


def test_redact_value_masks_by_key_anywhere_and_leaves_the_input_alone():
    args = {"method": "POST", "url": "https://u:p@h/x?api_key=k&q=1",
            "headers": {"Authorization": "Bearer sk-live", "X-Api-Key": "k2", "Accept": "application/json"},
            "query": {"token": "t", "page": 2},
            "json": {"user": "ada", "password": "pw", "nested": [{"client_secret": "cs", "n": 1}],
                     "max_tokens": 100, "empty_token": None},
            "timeout_s": 5}
    before = copy.deepcopy(args)
    out = redact_value(args)
    assert args == before  # pure
    assert out == {"method": "POST", "url": "https://***@h/x?api_key=***&q=1",
                   "headers": {"Authorization": MASK, "X-Api-Key": MASK, "Accept": "application/json"},
                   "query": {"token": MASK, "page": 2},
                   "json": {"user": "ada", "password": MASK, "nested": [{"client_secret": MASK, "n": 1}],
                            "max_tokens": 100, "empty_token": None},
                   "timeout_s": 5}
    assert redact_value(out) == out


def test_a_skill_declares_its_own_secret_args():
    class Vault(HttpRequest):
        secret_args = ("auth.pin", "accounts.*.iban", "otp")

    args = {"auth": {"pin": "1234", "user": "ada"}, "accounts": [{"iban": "FR76…", "label": "main"}], "otp": "99",
            "note": "x"}
    out = redact_args(Vault(), args)
    assert out == {"auth": {"pin": MASK, "user": "ada"}, "accounts": [{"iban": MASK, "label": "main"}],
                   "otp": MASK, "note": "x"}
    assert redact_args(Vault(), out) == out
    assert redact_args(None, {"pin": "1234"}) == {"pin": "1234"}  # an unknown skill: names only


def test_references_and_non_dict_args_pass_through():
    assert redact_args(HttpRequest(), {"headers": {"Authorization": {"$ref": "inputs.token"}}}) == \
        {"headers": {"Authorization": MASK}}
    assert redact_args(HttpRequest(), None) is None and redact_args(HttpRequest(), [1, "a"]) == [1, "a"]


def test_deep_values_do_not_exhaust_the_stack():
    deep: object = {"password": "x"}
    for _ in range(5000):
        deep = [deep]
    out = redact_value(deep)
    for _ in range(5000):
        out = out[0]
    assert out == {"password": MASK}


@pytest.mark.parametrize(("text", "gone", "kept"), [
    ("GET https://u:hunter2@h/x?api_key=abc&q=1", ["hunter2", "abc"], ["q=1", "@h/x"]),
    ("headers: {'Authorization': 'Bearer tok-123', 'Accept': 'json'}", ["tok-123"], ["Accept"]),
    ("Authorization: Bearer tok-123, next", ["tok-123"], ["next"]),
    ('body {"password": "p@ss w0rd", "max_tokens": 12}', ["p@ss w0rd"], ['"max_tokens": 12']),
    ("password=hunter2 user=ada", ["hunter2"], ["user=ada"]),
    ("key sk-proj-abcdefghijklmnop used", ["sk-proj-abcdefghijklmnop"], ["used"]),
    ("api key aos_0123456789ab_ABCDEFGHIJKLMNOPQRSTUV ok", ["ABCDEFGHIJKLMNOPQRSTUV"], ["ok"]),
    ("budget max_tokens=20000 used", [], ["max_tokens=20000"]),
])
def test_text_is_redacted_by_pattern(text, gone, kept):
    clean = redact_text(text)
    assert not [g for g in gone if g in clean], clean
    assert all(k in clean for k in kept), clean
    assert redact_text(clean) == clean


def test_installed_redaction_masks_messages_and_tracebacks_of_every_logger(capsys):
    install_log_redaction()
    install_log_redaction()  # once is enough; twice changes nothing
    logger = logging.getLogger("aos.test.redaction")
    handler = logging.StreamHandler()  # a handler of the test's own: redaction does not depend on handlers
    logger.addHandler(handler)
    try:
        logger.warning("calling %s", "https://svc:topsecret@h/api?token=t0k3n")
        try:
            raise RuntimeError("connect failed: postgresql://app:hunter2@db/main")
        except RuntimeError:
            logger.exception("boom with %s", {"password": "pw-in-dict"})
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    for secret in ("topsecret", "t0k3n", "hunter2", "pw-in-dict"):
        assert secret not in err, err
    assert "https://***@h/api?token=***" in err and "Traceback" in err


def test_the_filter_does_the_same_for_a_handler_configured_by_hand():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("https://a:b@h/",), None)
    assert RedactingFilter().filter(record) and record.getMessage() == "url https://***@h/"
    assert json.dumps(redact_value({"k": "v"})) == '{"k": "v"}'
