"""Schema pieces every resource shares: request bodies Postgres can store, timestamps, the JSON-value walker."""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma


def storable_problem(value: Any) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored in Postgres, or None.

    Postgres refuses NUL characters in text and jsonb, lone UTF-16 surrogates cannot be
    encoded, and NaN/Infinity are not JSON: each would fail deep in the database as a 500.
    Iterative, so a deeply nested body cannot exhaust the stack.
    """
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                return "text must not contain NUL (\\u0000) characters"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "text must be valid Unicode (no lone surrogates)"
        elif isinstance(v, float) and not math.isfinite(v):
            return "numbers must be finite (NaN and Infinity are not JSON)"
    return None


class BodySchema(ma.Schema):
    """A JSON request body: unknown fields are refused, and every value must be storable."""

    @ma.pre_load
    def _storable(self, data: Any, **_: Any) -> Any:
        problem = storable_problem(data)
        if problem:
            raise ma.ValidationError(problem)
        return data


def timestamp(**kwargs: Any) -> ma.fields.String:
    """An ISO 8601 timestamp with its offset, as the services render them."""
    metadata = {"format": "date-time", **kwargs.pop("metadata", {})}
    return ma.fields.String(metadata=metadata, **kwargs)
