"""Schema pieces every resource shares: request bodies Postgres can store, timestamps, the JSON-value walker."""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma

from aos.errors import AosError
from aos.limits import MAX_BODY_DEPTH, too_deep, walk


def storable_problem(value: Any) -> tuple[str, str, str] | None:
    """(path, code, message) of the first thing in ``value`` (parsed JSON) Postgres cannot store, or None.

    Postgres refuses NUL characters in text and jsonb, lone UTF-16 surrogates cannot be
    encoded, and NaN/Infinity are not JSON: each would fail deep in the database as a 500.
    A body nested deeper than MAX_BODY_DEPTH is refused before anything walks it recursively.
    Iterative, so a deeply nested body cannot exhaust the stack.
    """
    deep = too_deep(value, MAX_BODY_DEPTH)
    if deep is not None:
        return deep, "JSON_TOO_DEEP", f"nested deeper than {MAX_BODY_DEPTH} levels"
    if _storable(value):
        return None  # the common case, judged without building a path for every node
    for path, v, _ in walk(value):
        if isinstance(v, str):
            if "\x00" in v:
                return path, "VALIDATION_ERROR", "text must not contain NUL (\\u0000) characters"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return path, "VALIDATION_ERROR", "text must be valid Unicode (no lone surrogates)"
        elif isinstance(v, float) and not math.isfinite(v):
            return path, "VALIDATION_ERROR", "numbers must be finite (NaN and Infinity are not JSON)"
    return None


def _storable(value: Any) -> bool:
    """``storable_problem`` is None (depth aside): the same checks, no paths; iterative."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v or (not v.isascii() and not _encodes(v)):
                return False
        elif isinstance(v, dict):
            stack.extend(v)  # keys are text too
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float) and not math.isfinite(v):
            return False
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BodySchema(ma.Schema):
    """A JSON request body: unknown fields are refused, and every value must be storable."""

    @ma.pre_load
    def _storable(self, data: Any, **_: Any) -> Any:
        problem = storable_problem(data)
        if problem:
            path, code, message = problem
            raise AosError(code, f"{path}: {message}", problems=[{"path": path, "code": code, "message": message}])
        return data


class FullMatch(ma.validate.Regexp):
    """A Regexp validator that matches the whole string, as the OpenAPI ``pattern`` it documents does
    (Python's ``$`` also matches before a final newline, which ECMA-262's does not)."""

    def __call__(self, value: str) -> str:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


PLAN_REF = "#/components/schemas/Plan"


def plan_field(description: str = "The plan (docs/plans.md).", **kwargs: Any) -> ma.fields.Dict:
    """A plan in a request body: validated by aos.plan (every problem with its path and code), documented
    by the plan's JSON Schema (the ``Plan`` component, aos.plan.schema)."""
    return ma.fields.Dict(metadata={"description": description, "allOf": [{"$ref": PLAN_REF}]}, **kwargs)


def timestamp(**kwargs: Any) -> ma.fields.String:
    """An ISO 8601 timestamp with its offset, as the services render them."""
    metadata = {"format": "date-time", **kwargs.pop("metadata", {})}
    return ma.fields.String(metadata=metadata, **kwargs)
