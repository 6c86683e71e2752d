"""Checking args against a skill's input schema (JSON Schema draft 2020-12), fast.

``jsonschema`` is the authority: it says what is wrong and where. It is also slow for this job
(tens of microseconds for a three-field object, paid at every step and for every step of every
submitted plan), so a schema is also compiled to plain Python with ``fastjsonschema`` when every
keyword it uses means the same in fastjsonschema's draft 7 as in draft 2020-12. A compiled check
that accepts the args settles it; anything it refuses is asked of ``jsonschema`` again, whose
answer stands — so the fast path can only ever agree with the authority, never overrule it.
tests/runtime/test_argschema.py checks that claim against both libraries on generated data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema

# Keywords whose meaning is identical in draft 7 and draft 2020-12 (as the two libraries implement
# them). Left out on purpose: "format" (asserted by fastjsonschema, only annotated by jsonschema),
# "$ref"/"$defs"/"definitions" (resolution differs), array-form "items", "dependencies",
# "if"/"then"/"else", "unevaluated*", "prefixItems", "contains"; and "enum"/"const" with values other
# than strings and null (Python's 1 == True == 1.0 would blur what JSON Schema keeps apart).
_SAME_MEANING = frozenset({
    "type", "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
    "minProperties", "maxProperties", "items", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "anyOf", "oneOf", "allOf", "not", "enum", "const",
    "description", "title", "default", "examples", "deprecated", "readOnly", "writeOnly",
})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf"})
_SUBSCHEMAS = frozenset({"additionalProperties", "items", "not", "propertyNames"})
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "deprecated", "readOnly", "writeOnly"})


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _portable(schema: Any) -> bool:
    """Whether ``schema`` uses only keywords that mean the same in both drafts."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key not in _SAME_MEANING:
            return False
        if key in _ANNOTATIONS:
            continue
        if key in _SCHEMA_MAPS:
            if not isinstance(value, dict) or not all(_portable(v) for v in value.values()):
                return False
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list) or not all(_portable(v) for v in value):
                return False
        elif key in _SUBSCHEMAS and not _portable(value):  # items as a list is tuple validation in draft 7
            return False
        elif key == "enum" and not (isinstance(value, list) and all(_plain(v) for v in value)):
            return False
        elif key == "const" and not _plain(value):
            return False
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            return False  # the boolean form is draft 4's
    return True


# How many full reports each schema remembers, and the largest args (as JSON) worth remembering.
_REPORTS_KEPT = 512
_REPORT_KEY_MAX = 16_384


class ArgSchema:
    """A compiled input schema: ``problems(args)`` lists every problem, ``[]`` when the args are valid."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.authority = jsonschema.Draft202012Validator(schema)
        self._fast: Callable[[Any], Any] | None = None
        self._reports: dict[str, tuple[dict[str, str], ...]] = {}
        if _portable(schema):
            try:
                self._fast = fastjsonschema.compile(schema, use_formats=False)
            except fastjsonschema.JsonSchemaDefinitionException:
                self._fast = None

    @property
    def compiled(self) -> bool:
        return self._fast is not None

    def accepts_fast(self, args: Any) -> bool:
        """The compiled check alone (tests compare it with the authority)."""
        if self._fast is None:
            return False
        try:
            self._fast(args)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def problems(self, args: Any) -> list[dict[str, str]]:
        if self.accepts_fast(args):
            return []
        # The full report walks the schema with jsonschema: ten times the compiled check. A plan's args that
        # hold references fail the compiled check at every reference (the validator sees {"$ref": …} where a
        # value will be) and plans are submitted again and again (workflows, agents): remember the report of
        # the last args seen, by their canonical JSON.
        try:
            key = json.dumps(args, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            key = None
        hit = self._reports.get(key) if key is not None else None
        if hit is not None:
            return [dict(p) for p in hit]
        problems = []
        for err in sorted(self.authority.iter_errors(args), key=lambda e: list(map(str, e.absolute_path))):
            path = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err.absolute_path)
            problems.append({"path": f"args{path}", "code": "SKILL_ARGS_INVALID", "message": err.message})
        if key is not None and len(key) <= _REPORT_KEY_MAX:
            if len(self._reports) >= _REPORTS_KEPT:
                self._reports.clear()  # a bounded memory, not an LRU: plans repeat in bursts
            self._reports[key] = tuple(dict(p) for p in problems)
        return problems


_compiled: dict[int, ArgSchema] = {}


def arg_schema(schema: dict[str, Any]) -> ArgSchema:
    """The compiled form of ``schema``, once per schema object (a skill's ``input_schema``)."""
    hit = _compiled.get(id(schema))
    if hit is None or hit.schema is not schema:  # the entry keeps its schema alive: its id is never reused
        hit = _compiled[id(schema)] = ArgSchema(schema)
    return hit
