"""JSON text that a jsonb column accepts, serialised once by the caller.

Postgres refuses NaN and infinities, the escape of U+0000, and (through the encoder) nesting
deeper than Python's recursion limit. Serialising before any statement runs turns each of these
into ``NotStorable``, which callers report with a catalog code, instead of a failed statement.
"""

from __future__ import annotations

import json
import re
from typing import Any


class NotStorable(ValueError):
    """A value jsonb cannot hold."""


# json.dumps escapes U+0000 as \u0000, which jsonb refuses; an escaped backslash before "u0000" is text
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# built once: json.dumps with options builds an encoder per call, and a step serialises twice
_ENCODERS = {canonical: json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                                         sort_keys=canonical) for canonical in (False, True)}


def to_json(value: Any, *, canonical: bool = False) -> str:
    """``value`` as the JSON text a jsonb column accepts (``canonical``: sorted keys, for hashing)."""
    try:
        text = _ENCODERS[canonical].encode(value)
    except RecursionError:
        raise NotStorable("nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise NotStorable(str(exc)) from None
    if "\\u0000" in text and _NUL.search(text):
        raise NotStorable("a NUL character (U+0000) cannot be stored")
    return text


def json_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (what the database stores)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


