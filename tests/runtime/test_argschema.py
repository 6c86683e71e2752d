"""The compiled args check may only ever agree with jsonschema (the authority), never overrule it."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aos.runtime.argschema import _portable, arg_schema
from aos.runtime.invoke import validate_args
from aos.skills.registry import default_registry

SKILLS = sorted(default_registry().all(), key=lambda s: s.ref)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["GET", "POST", "@", "", "2026-12-06", "http://127.0.0.1/x"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


def _candidates(schema: dict) -> st.SearchStrategy:
    """Objects built from the schema's own property names (so that valid args come up often), and anything."""
    names = sorted(schema.get("properties", {}))
    shaped = st.dictionaries(st.sampled_from(names), JSON, max_size=len(names)) if names else JSON
    return shaped | JSON


@pytest.mark.parametrize("skill", SKILLS, ids=lambda s: s.ref)
def test_every_builtin_schema_is_compiled(skill):
    assert arg_schema(skill.input_schema).compiled, f"{skill.ref} fell back to the slow path"


@pytest.mark.parametrize("skill", SKILLS, ids=lambda s: s.ref)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_check_never_accepts_what_jsonschema_refuses(skill, data):
    compiled = arg_schema(skill.input_schema)
    args = data.draw(_candidates(skill.input_schema))
    authority = jsonschema.Draft202012Validator(skill.input_schema).is_valid(args)
    if compiled.accepts_fast(args):
        assert authority, f"{skill.ref}: the compiled check accepted {args!r}, jsonschema refuses it"
    assert (validate_args(skill, args) == []) == authority


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},       # format: annotation only
    {"type": "array", "items": [{"type": "string"}]},                                     # draft 7 tuple validation
    {"type": "object", "properties": {"a": {"enum": [1, 2]}}},                            # 1 == True in Python
    {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
    {"type": "number", "exclusiveMinimum": True},                                         # draft 4's boolean form
])
def test_schemas_whose_meaning_differs_between_drafts_stay_on_jsonschema(schema):
    assert not _portable(schema)
    assert not arg_schema(schema).compiled


def test_a_refused_value_still_gets_jsonschemas_problems_with_their_paths():
    skill = default_registry().resolve("http.request")
    problems = validate_args(skill, {"url": 5, "method": "FETCH"})
    assert {p["path"] for p in problems} == {"args.url", "args.method"}
    assert all(p["code"] == "SKILL_ARGS_INVALID" for p in problems)
