"""Request bodies are parsed here, for every JSON endpoint, with the limits of aos.limits.

Python's own ``json.loads`` turns an integer of more than 4,300 digits into a ``ValueError``
that webargs does not expect (a 500), and a body nested thousands of levels deep into a
``RecursionError``. Here an over-long integer becomes a marker while parsing, and the body is
then refused with the JSON path of the first one: ``422 JSON_NUMBER_TOO_LARGE``.
"""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask.json.provider import DefaultJSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from aos.errors import AosError
from aos.limits import MAX_INTEGER_DIGITS, first_path, integer_digits


class _OverlongInteger:
    """Where an integer too long to convert stood; it never leaves this module."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _OverlongInteger:
    digits = integer_digits(text)
    if digits > MAX_INTEGER_DIGITS:
        return _OverlongInteger(digits)
    return int(text)


def loads_body(data: str | bytes) -> Any:
    """Parse a request body: ``json.JSONDecodeError`` when it is not JSON (webargs answers
    ``400 BODY_MALFORMED``), ``AosError`` with the path when a number cannot be represented."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    overlong: list[_OverlongInteger] = []

    def parse_int(literal: str) -> Any:
        value = _parse_int(literal)
        if isinstance(value, _OverlongInteger):
            overlong.append(value)
        return value

    try:
        value = json.loads(text, parse_int=parse_int)
    except RecursionError:
        raise AosError("BODY_MALFORMED", "the request body is nested too deeply to parse") from None
    if overlong:
        path = first_path(value, lambda v: isinstance(v, _OverlongInteger)) or "$"
        message = (f"an integer of {overlong[0].digits} digits; at most {MAX_INTEGER_DIGITS} digits are "
                   "accepted (send a larger number as a string)")
        raise AosError("JSON_NUMBER_TOO_LARGE", f"{path}: {message}",
                       problems=[{"path": path, "code": "JSON_NUMBER_TOO_LARGE", "message": message}])
    return value


class BodyParser(FlaskParser):
    """webargs' parser with AOS's JSON loader: every ``@blp.arguments`` body goes through it.

    An unknown query parameter is refused (422) like an unknown body field: a misspelt filter
    (``?stauts=failed``) silently ignored would answer another question than the one asked."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": ma.RAISE,
                                   "querystring": ma.RAISE}

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            return core.missing
        try:
            return loads_body(req.get_data(cache=True))
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"Bytes decoding error : {exc.reason}", doc=str(exc.object),
                                       pos=exc.start) from exc


class BodyJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with the same loader, for any code that calls ``request.get_json``."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_body(s)
