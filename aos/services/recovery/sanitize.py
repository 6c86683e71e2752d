"""``sanitize_for_embedding``: what may leave for an embedding or LLM provider, or be kept in a pattern.

One function for every piece of failure text that leaves AOS (an embedding request, an LLM prompt), is
stored in ``failure_patterns`` or a suggestion, or is logged by recovery (``SanitizingFilter``). On top of
``aos.redaction.redact_text`` (URL credentials, credential headers, ``password=…`` pairs, our keys and
``whsec_`` secrets) it replaces by shape:

- API keys of the common shapes: OpenAI/Anthropic ``sk-…``, AOS ``aos_…``, webhook ``whsec_…``, Stripe
  ``sk_live_…``/``rk_…``/``pk_…``, AWS ``AKIA…``, GitHub ``ghp_…``/``github_pat_…``, Slack ``xox?-…``,
  Google ``AIza…``;
- bearer tokens and JWTs;
- passwords in URLs (the whole user-info goes);
- e-mail addresses;
- card numbers (13–19 digits, spaces or dashes allowed, Luhn-checked: an order id is not a card);
- phone numbers (an optional ``+``, 8 to 15 digits with the usual separators).

Each becomes a placeholder naming what was there (``<email>``, ``<card>``…), so the text stays useful to a
model and two failures that differ only by such a value read the same. Idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from aos.redaction import MASK, is_secret_key, redact_text

_KEY_SHAPES = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}"
    r"|aos_[0-9a-f]{6,}_[A-Za-z0-9_\-]{8,}"
    r"|whsec_[A-Za-z0-9+/=_\-]{8,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|AIza[0-9A-Za-z_\-]{30,})")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s]+@")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d.])\d(?:[ \-]?\d){12,18}(?![\d.])")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[ .\-]?\(?\d{1,4}\)?){2,6}(?![\w])")
_MASKED = re.escape(MASK)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "<card>" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "<phone>" if 8 <= len(digits) <= 15 else m.group(0)


def sanitize_for_embedding(text: str) -> str:
    """``text`` without secrets or personal data (see the module doc); safe to send to a provider."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: m["scheme"] + "<credentials>@", text)
    text = redact_text(text)
    text = _JWT.sub("<jwt>", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} <token>", text)
    text = _KEY_SHAPES.sub("<api-key>", text)
    text = _EMAIL.sub("<email>", text)
    text = _CARD.sub(_card, text)
    text = _PHONE.sub(_phone, text)
    return text.replace(MASK, "<secret>")


def sanitize_value(value: Any) -> Any:
    """A JSON value (a step's args) with credential-named keys' values dropped and every string sanitised."""
    if isinstance(value, Mapping):
        return {str(k): "<secret>" if is_secret_key(k) and v is not None else sanitize_value(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize_value(v) for v in value]
    if isinstance(value, str):
        return sanitize_for_embedding(value)
    return value


class SanitizingFilter(logging.Filter):
    """A logging filter: a record's message (and traceback) sanitised before any handler formats it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = sanitize_for_embedding(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = sanitize_for_embedding(record.exc_text)
        return True


def recovery_logger(name: str) -> logging.Logger:
    """A logger of the recovery package, its records sanitised (the filter is added once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, SanitizingFilter) for f in logger.filters):
        logger.addFilter(SanitizingFilter())
    return logger
