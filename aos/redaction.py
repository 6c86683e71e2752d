"""Secrets out of everything AOS keeps, shows, records or logs; the call itself gets the real value.

What counts as a secret in a step's args:

- a value under a key that names a credential, wherever it sits (``headers.Authorization``,
  ``headers.Cookie``, ``headers.X-Api-Key``, ``query.api_key``, ``json.password``,
  ``github_token``, …): see ``is_secret_key``;
- the user-info of a URL (``https://user:pass@host/`` → ``https://***@host/``) and the value of a
  query parameter whose name names a credential (``?api_key=…`` → ``?api_key=***``), in any string;
- what a skill declares secret (``Skill.secret_args``: dotted paths such as ``auth.password``).

Redaction is pure, leaves its input alone, and is idempotent (``redact(redact(x)) == redact(x)``),
so a golden replay, which re-runs a recording whose secrets were already redacted, hashes the same
args as the recording. Text is redacted by patterns (``redact_text``), for logs and messages.

The engine stores a checkpoint's args through ``redact_args(skill, args)``; the web views, golden
files and the log filter (``install_log_redaction``) use the same functions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Names of credentials, after lower-casing and turning "-" into "_".
_SECRET_NAMES = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key", "apikey",
    "x_auth_token", "auth_token", "access_token", "refresh_token", "id_token", "token", "bearer",
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "client_secret", "secret_key", "private_key",
    "access_key", "credential", "credentials", "session", "session_id", "sessionid", "session_token",
    "signature", "sig", "x_amz_security_token", "x_goog_api_key", "ocp_apim_subscription_key",
})
# A name ending with one of these names a credential too: github_token, db_password, stripe_api_key, …
_SECRET_SUFFIXES = ("_password", "_passwd", "_secret", "_token", "_api_key", "_apikey", "_private_key",
                    "_access_key", "_secret_key", "_credentials")


def is_secret_key(name: object) -> bool:
    """Whether a dict key, header name or query parameter names a credential (``token_count`` does not)."""
    if not isinstance(name, str):
        return False
    norm = name.strip().lower().replace("-", "_")
    return norm in _SECRET_NAMES or norm.endswith(_SECRET_SUFFIXES)


# scheme://user-info@ : everything between "//" and the "@" that ends the authority
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#@\s]+)@")
# ?name=value / &name=value (also ;), value up to the next separator
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s?]+)=(?P<value>[^&;#\s]*)")


def redact_url(text: str) -> str:
    """``text`` with URL user-info and credential-named query values masked; everything else as it was."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: m["scheme"] + (MASK if m["info"] != MASK else m["info"]) + "@", text)

    def pair(m: re.Match[str]) -> str:
        return f"{m['lead']}{m['name']}={MASK}" if is_secret_key(m["name"]) else m.group(0)

    return _QUERY_PAIR.sub(pair, text) if "?" in text else text


def redact_value(value: Any) -> Any:
    """A JSON value with every secret masked: credential-named keys' values, URL user-info, secret query
    values. A new value; ``value`` is not changed. Iterative, so any depth is safe."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (source, target container, key in target)
    while stack:
        src, parent, key = stack.pop()
        if isinstance(src, Mapping):
            out: dict[Any, Any] = {}
            parent[key] = out
            for k, v in src.items():
                if is_secret_key(k) and v is not None:
                    out[k] = MASK
                else:
                    out[k] = None
                    stack.append((v, out, k))
        elif isinstance(src, list | tuple):
            items: list[Any] = [None] * len(src)
            parent[key] = items
            stack.extend((v, items, i) for i, v in enumerate(src))
        elif isinstance(src, str):
            parent[key] = redact_url(src)
        else:
            parent[key] = src
    return root[0]


def _mask_path(value: Any, path: list[str]) -> None:
    """Mask, in place, the value at a dotted path (``*`` matches every key or item) of a redacted copy."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [k for k in value if k == head]
        for k in keys:
            if rest:
                _mask_path(value[k], rest)
            elif value[k] is not None:
                value[k] = MASK
    elif isinstance(value, list) and head == "*":
        for i, item in enumerate(value):
            if rest:
                _mask_path(item, rest)
            elif item is not None:
                value[i] = MASK


def redact_args(skill: Any, args: Any) -> Any:
    """A step's args as they may be stored, shown, recorded and logged: ``redact_value`` plus the paths the
    skill declares secret (``skill.secret_args``; ``skill`` may be None for an unknown skill)."""
    out = redact_value(args)
    for dotted in getattr(skill, "secret_args", ()) or ():
        _mask_path(out, dotted.split("."))
    return out


# --- text: logs and messages ------------------------------------------------------------------------------

# a word that ends with a credential's name: db_password, x-api-key, github_token (not max_tokens)
_SECRET_WORDS = r"[\w-]*(?:password|passwd|secret|token|api[_-]?key|apikey|credentials?|session[_-]?id)\b"
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer xyz / Cookie: a=b / X-Api-Key: k, in a header dump or a message
    (re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|x-auth-token)(\s*[:=]\s*)"
                r"(?:(?:bearer|basic|token|digest)\s+)?[^\s,;\"'}]+"), r"\1\2" + MASK),
    # "password": "value" / 'token': 'value' (JSON and Python reprs)
    (re.compile(r"(?i)([\"'])(" + _SECRET_WORDS + r"|(?:proxy-)?authorization|(?:set-)?cookie|x-api-key|x-auth-token)"
                r"\1(\s*:\s*)([\"'])(?:(?!\4).)*\4"), r"\1\2\1\3\4" + MASK + r"\4"),
    # password=value, token: value (key-value text, not inside a URL query: redact_url does those)
    (re.compile(r"(?i)(?<![?&;\w-])(" + _SECRET_WORDS + r")(\s*[=:]\s*)(?![\"'{\[])([^\s,;&\"'}]+)"), r"\1\2" + MASK),
    # key shapes that are secrets by themselves: OpenAI/Anthropic keys, AOS API keys, webhook secrets
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\baos_[0-9a-f]{12}_[A-Za-z0-9_\-]{16,}"), MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9_\-]{16,}"), MASK),
)


# Text none of the patterns above can match contains none of these (lower-cased): no URL, no key=value or
# query pair, none of their words. Plain substring tests, so that the log lines of every task (a worker
# logs two per step) cost a microsecond or two, not forty.
_TRIGGERS = ("://", "=", "authorization", "cookie", "x-auth-token", "password", "passwd", "secret", "token",
             "apikey", "api_key", "api-key", "credential", "sessionid", "session_id", "session-id", "sk-", "aos_",
             "whsec_")


def redact_text(text: str) -> str:
    """Free text (a log line, an error message) with URL credentials, credential headers, key=value pairs
    and key-shaped secrets masked."""
    low = text.lower()
    if not any(t in low for t in _TRIGGERS):
        return text
    text = redact_url(text)
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactedLogRecord(logging.LogRecord):
    """A log record whose message and traceback text come out redacted, whatever handler formats them
    (Python's last-resort handler included)."""

    def getMessage(self) -> str:  # noqa: N802 — logging's name
        return redact_text(super().getMessage())

    @property  # type: ignore[override]
    def exc_text(self) -> str | None:
        return self.__dict__.get("_exc_text")

    @exc_text.setter
    def exc_text(self, value: str | None) -> None:  # the formatter caches the formatted traceback here
        self.__dict__["_exc_text"] = redact_text(value) if value else value


class RedactingFilter(logging.Filter):
    """The same for a handler configured by hand (a logging dictConfig): masks a record's message and
    traceback before it is formatted."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        clean = redact_text(record.getMessage())
        record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Make every log record of this process a RedactedLogRecord (once; the factory in place is kept and
    wrapped). Called by the API, the worker and the CLI at start; forked children inherit it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "aos_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if type(record) is logging.LogRecord:
            exc_text = record.__dict__.pop("exc_text", None)
            record.__class__ = RedactedLogRecord
            record.exc_text = exc_text
        return record

    factory.aos_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
