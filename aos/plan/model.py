"""The plan schema and its validation.

``parse_plan`` reports every problem at once, each with its JSON path and a
catalog code (PLAN_INVALID, SKILL_NOT_FOUND, REF_UNRESOLVED, EXPR_INVALID,
SKILL_ARGS_INVALID); the error's own code is that of the first problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aos.errors import AosError
from aos.limits import MAX_STEPS, MAX_VALUE_DEPTH, child_path, too_deep
from aos.plan.refs import compile_expr, has_references, iter_references, leading_fields
from aos.runtime.invoke import validate_args
from aos.skills.base import RetryPolicy
from aos.skills.registry import SkillRegistry
from aos.skills.signals import MAX_WAIT_S, SIGNAL_NAME, schema_problems

STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ON_ERROR_MODES = ("ABORT", "SKIP", "FALLBACK", "ESCALATE", "RETRY")
# what an ESCALATE may say about the wait it opens: the signal's name, how long a person has, the payload's schema
ESCALATE_KEYS = ("signal", "timeout_s", "schema")
PLAN_KEYS = {"name", "description", "inputs", "budget", "concurrency", "steps"}
CONCURRENCY_KEYS = {"limit", "key"}
# at most this many runs of one plan (or per key) at once: the largest `concurrency.limit`
CONCURRENCY_MAX = 100_000
CONCURRENCY_KEY_LENGTH = 500
CONCURRENCY_KEY_PATTERN = r"^inputs(?![^.\[])"  # what the JSON Schema can say of a key; parse_concurrency says the rest
STEP_KEYS = {"id", "skill", "args", "retry", "timeout_s", "on_error", "description"}
BUDGET_KEYS = {"max_cost_usd", "max_tokens", "max_steps", "max_wall_s"}
RETRY_KEYS = {"max_attempts", "backoff_s", "backoff_max_s"}
# (minimum, maximum) of the plan's bounded numbers: the JSON Schema of a plan (aos.plan.schema) says the same
RETRY_RANGES = {"max_attempts": (1, 100), "backoff_s": (0, 3600), "backoff_max_s": (0, 86400)}
TIMEOUT_RANGE = (0.001, 86400)
NAME_LENGTH = (1, 200)


@dataclass(frozen=True)
class Budget:
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_s: int | None = None


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` runs at once (of a workflow or plan, or of an agent); with ``key`` (an expression
    over ``inputs``, e.g. ``inputs.customer``) at most ``limit`` per value of the key."""

    limit: int
    key: str | None = None


@dataclass(frozen=True)
class OnError:
    mode: str = "ABORT"
    fallback: dict[str, Any] | None = None  # {"skill": …, "args": …} for FALLBACK
    # ESCALATE: the signal a person answers with (default "escalation"), their deadline, the payload's schema
    signal: str | None = None
    timeout_s: float | None = None
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Step:
    index: int
    id: str
    skill: str
    args: dict[str, Any]
    retry: RetryPolicy | None = None       # None: the skill's default
    timeout_s: float | None = None         # None: the skill's default
    on_error: OnError = field(default_factory=OnError)


@dataclass(frozen=True)
class Plan:
    name: str | None
    inputs: dict[str, Any]
    budget: Budget
    steps: tuple[Step, ...]
    raw: dict[str, Any]
    concurrency: Concurrency | None = None

    @property
    def hash(self) -> str:
        return plan_hash(self.raw)

    def step(self, index: int) -> Step:
        return self.steps[index]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_hash(raw: Any) -> str:
    """SHA-256 of the canonical JSON of a plan (or of any JSON value, e.g. a step's resolved args)."""
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.items.append({"path": path, "code": code, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            more = f" (and {len(self.items) - 1} more problem(s))" if len(self.items) > 1 else ""
            raise AosError(first["code"], f"{first['path']}: {first['message']}{more}", problems=self.items)


def _number(p: _Problems, path: str, v: Any, *, integer: bool = False, minimum: float = 0,
            maximum: float | None = None) -> Any:
    ok_type = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok_type:
        p.add(path, "PLAN_INVALID", f"must be {'an integer' if integer else 'a number'}")
        return None
    if v < minimum or (maximum is not None and v > maximum):
        p.add(path, "PLAN_INVALID", f"must be between {minimum} and {maximum}" if maximum is not None
              else f"must be >= {minimum}")
        return None
    return v


def _unknown_keys(p: _Problems, path: str, obj: dict[str, Any], allowed: set[str]) -> None:
    for k in obj:
        if k not in allowed:
            p.add(f"{path}.{k}", "PLAN_INVALID", f"unknown field {k!r}; allowed: {', '.join(sorted(allowed))}")


def parse_plan(data: Any, registry: SkillRegistry, *, inputs: dict[str, Any] | None = None) -> Plan:
    """Validate ``data`` against the plan schema and the registry; return the Plan or raise AosError."""
    p = _Problems()
    if not isinstance(data, dict):
        p.add("$", "PLAN_INVALID", "a plan must be a JSON object")
        p.raise_if_any()
    _unknown_keys(p, "$", data, PLAN_KEYS)
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1]):
        p.add("$.name", "PLAN_INVALID", f"must be a string of {NAME_LENGTH[0]} to {NAME_LENGTH[1]} characters")
    plan_inputs = data.get("inputs", {})
    if not isinstance(plan_inputs, dict):
        p.add("$.inputs", "PLAN_INVALID", "must be an object of named inputs")
        plan_inputs = {}
    merged_inputs = {**plan_inputs, **(inputs or {})}
    for key, value in merged_inputs.items():
        _fits(p, child_path("$.inputs", key), value)
    budget = _parse_budget(p, data.get("budget", {}))
    concurrency = parse_concurrency(p, "$.concurrency", data.get("concurrency"))
    steps = _parse_steps(p, data.get("steps"), registry, merged_inputs)
    p.raise_if_any()
    return Plan(name=name, inputs=merged_inputs, budget=budget, steps=tuple(steps), raw=data,
                concurrency=concurrency)


def concurrency_problems(path: str, c: Any) -> list[dict[str, str]]:
    """Every problem of a ``concurrency`` object (a plan's, an agent's), each with its JSON path."""
    p = _Problems()
    parse_concurrency(p, path, c)
    return p.items


def parse_concurrency(p: _Problems, path: str, c: Any) -> Concurrency | None:
    if c is None:
        return None
    if not isinstance(c, dict):
        p.add(path, "PLAN_INVALID", "must be an object: {\"limit\": N, \"key\": \"inputs.<field>\"}")
        return None
    _unknown_keys(p, path, c, CONCURRENCY_KEYS)
    limit = c.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= CONCURRENCY_MAX:
        p.add(f"{path}.limit", "PLAN_INVALID", f"must be an integer from 1 to {CONCURRENCY_MAX}")
        return None
    key = c.get("key")
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= CONCURRENCY_KEY_LENGTH:
            p.add(f"{path}.key", "PLAN_INVALID", f"must be an expression of 1 to {CONCURRENCY_KEY_LENGTH} characters")
            return None
        try:
            fields = leading_fields(key)
        except AosError as exc:  # EXPR_INVALID, EXPR_TOO_COMPLEX
            p.add(f"{path}.key", exc.code, exc.message)
            return None
        if not fields or fields[0] != "inputs":
            p.add(f"{path}.key", "PLAN_INVALID", "must select from the run's inputs, e.g. \"inputs.customer\"")
            return None
    return Concurrency(limit=limit, key=key)


# the largest values the runs table can hold: a bigger one is a plan error, not a 500 when it is stored
BUDGET_MAX = {"max_cost_usd": 99_999_999.0, "max_tokens": 2**63 - 1, "max_steps": 2**31 - 1, "max_wall_s": 2**31 - 1}


def _parse_budget(p: _Problems, b: Any) -> Budget:
    if not isinstance(b, dict):
        p.add("$.budget", "PLAN_INVALID", "must be an object")
        return Budget()
    _unknown_keys(p, "$.budget", b, BUDGET_KEYS)
    vals: dict[str, Any] = {}
    for key in BUDGET_KEYS & set(b):
        vals[key] = _number(p, f"$.budget.{key}", b[key], integer=key != "max_cost_usd", maximum=BUDGET_MAX[key])
    return Budget(**vals)


def _parse_steps(p: _Problems, raw_steps: Any, registry: SkillRegistry, inputs: dict[str, Any]) -> list[Step]:
    if raw_steps is None:
        p.add("$.steps", "PLAN_INVALID", "a plan needs a `steps` list with at least one step")
        return []
    if not isinstance(raw_steps, list) or not raw_steps:
        p.add("$.steps", "PLAN_INVALID", "must be a non-empty list of steps")
        return []
    if len(raw_steps) > MAX_STEPS:
        p.add("$.steps", "PLAN_INVALID", f"at most {MAX_STEPS} steps")
        return []
    steps: list[Step] = []
    seen: set[str] = set()
    for i, s in enumerate(raw_steps):
        path = f"$.steps[{i}]"
        if not isinstance(s, dict):
            p.add(path, "PLAN_INVALID", "a step must be an object")
            continue
        _unknown_keys(p, path, s, STEP_KEYS)
        sid = s.get("id")
        if not isinstance(sid, str) or not STEP_ID.fullmatch(sid):
            p.add(f"{path}.id", "PLAN_INVALID", "required: letters, digits and _ (up to 64), not starting with a digit")
            sid = f"#{i}"
        elif sid in seen:
            p.add(f"{path}.id", "PLAN_INVALID", f"duplicate step id {sid!r}")
        skill_ref = s.get("skill")
        skill = None
        if not isinstance(skill_ref, str) or not skill_ref:
            p.add(f"{path}.skill", "PLAN_INVALID", "required: a skill name such as `json.transform`")
        else:
            try:
                skill = registry.resolve(skill_ref)
            except AosError as exc:
                p.add(f"{path}.skill", exc.code, exc.message)
        args = s.get("args", {})
        if not isinstance(args, dict):
            p.add(f"{path}.args", "PLAN_INVALID", "must be an object")
            args = {}
        _check_args(p, f"{path}.args", skill, args, seen, inputs)
        retry = _parse_retry(p, f"{path}.retry", s.get("retry"))
        timeout = None
        if "timeout_s" in s:
            timeout = _number(p, f"{path}.timeout_s", s["timeout_s"], minimum=TIMEOUT_RANGE[0],
                              maximum=TIMEOUT_RANGE[1])
        on_error = _parse_on_error(p, f"{path}.on_error", s.get("on_error"), registry, seen, inputs)
        steps.append(Step(index=i, id=sid, skill=skill.ref if skill else str(skill_ref), args=args,
                          retry=retry, timeout_s=timeout, on_error=on_error))
        seen.add(sid)
    return steps


def _fits(p: _Problems, path: str, value: Any) -> bool:
    """A literal value nests no deeper than MAX_VALUE_DEPTH; the problem names the first place that does."""
    deep = too_deep(value, MAX_VALUE_DEPTH, path)
    if deep is not None:
        p.add(deep, "JSON_TOO_DEEP", f"nested deeper than {MAX_VALUE_DEPTH} levels (a step's args count as one)")
        return False
    return True


def _check_args(p: _Problems, path: str, skill: Any, args: dict[str, Any], earlier: set[str],
                inputs: dict[str, Any]) -> None:
    """Depth first (everything after walks the args), then references, then what is literal."""
    if not _fits(p, path, args):
        return
    _check_refs(p, path, args, earlier, inputs)
    if skill is not None:
        _check_static_args(p, path, skill, args)


def _check_refs(p: _Problems, path: str, args: dict[str, Any], earlier: set[str], inputs: dict[str, Any]) -> None:
    for ref in iter_references(args, path):
        try:
            compile_expr(ref.expr)
            fields = leading_fields(ref.expr)
        except AosError as exc:
            p.add(ref.path, exc.code, exc.message)
            continue
        if not fields or fields[0] not in ("inputs", "steps"):
            p.add(ref.path, "REF_UNRESOLVED", f"reference {ref.expr!r} must start with `inputs.` or `steps.<id>.`")
        elif fields[0] == "inputs" and len(fields) > 1 and fields[1] not in inputs:
            p.add(ref.path, "REF_UNRESOLVED", f"reference {ref.expr!r}: no input named {fields[1]!r}")
        elif fields[0] == "steps":
            if len(fields) < 2 or fields[1] not in earlier:
                target = fields[1] if len(fields) > 1 else "?"
                p.add(ref.path, "REF_UNRESOLVED",
                      f"reference {ref.expr!r}: no earlier step named {target!r} (a step sees only earlier steps)")
            elif len(fields) > 2 and fields[2] != "output":
                p.add(ref.path, "REF_UNRESOLVED", f"reference {ref.expr!r}: a step exposes only `output`")


def _check_static_args(p: _Problems, path: str, skill: Any, args: dict[str, Any]) -> None:
    """The args as far as they are written in the plan. What a reference will fill in is judged when the step
    runs; everything literal is judged now, beside the reference problems, so one submission shows them all
    (a bad `expr` next to an unresolved `$ref` used to wait for the next try)."""
    filled = [ref.path for ref in iter_references(args, "args")]

    def literal(prob_path: str) -> bool:
        return not any(prob_path == f or prob_path.startswith((f + ".", f + "[")) for f in filled)

    problems = [prob for prob in validate_args(skill, args) if literal(prob["path"])]
    if not filled:
        problems += skill.check_args(args)
    else:
        written = {k: v for k, v in args.items() if not has_references(v)}
        try:
            problems += [prob for prob in skill.check_args(written) if literal(prob["path"])]
        except (KeyError, TypeError, ValueError):
            pass  # a skill's own check that needs an arg a reference fills: it runs with the step
    for prob in problems:
        p.add(path + prob["path"][len("args"):], prob["code"], prob["message"])


def _parse_retry(p: _Problems, path: str, r: Any) -> RetryPolicy | None:
    if r is None:
        return None
    if not isinstance(r, dict):
        p.add(path, "PLAN_INVALID", "must be an object")
        return None
    _unknown_keys(p, path, r, RETRY_KEYS)
    default = RetryPolicy()
    (ma_min, ma_max), (b_min, b_max), (bm_min, bm_max) = (RETRY_RANGES[k] for k in
                                                          ("max_attempts", "backoff_s", "backoff_max_s"))
    ma = _number(p, f"{path}.max_attempts", r.get("max_attempts", default.max_attempts), integer=True,
                 minimum=ma_min, maximum=ma_max)
    b = _number(p, f"{path}.backoff_s", r.get("backoff_s", default.backoff_s), minimum=b_min, maximum=b_max)
    bm = _number(p, f"{path}.backoff_max_s", r.get("backoff_max_s", default.backoff_max_s), minimum=bm_min,
                 maximum=bm_max)
    if None in (ma, b, bm):
        return None
    return RetryPolicy(max_attempts=ma, backoff_s=float(b), backoff_max_s=float(bm))


def _parse_on_error(p: _Problems, path: str, o: Any, registry: SkillRegistry, earlier: set[str],
                    inputs: dict[str, Any]) -> OnError:
    if o is None:
        return OnError()
    if not isinstance(o, dict):
        p.add(path, "PLAN_INVALID", "must be an object such as {\"mode\": \"SKIP\"}")
        return OnError()
    _unknown_keys(p, path, o, {"mode", "fallback", *ESCALATE_KEYS})
    mode = o.get("mode")
    if mode not in ON_ERROR_MODES:
        p.add(f"{path}.mode", "PLAN_INVALID", f"must be one of {', '.join(ON_ERROR_MODES)}")
        return OnError()
    fallback = o.get("fallback")
    if mode == "FALLBACK":
        if not isinstance(fallback, dict) or not isinstance(fallback.get("skill"), str):
            p.add(f"{path}.fallback", "PLAN_INVALID", "FALLBACK needs {\"skill\": …, \"args\": {…}}")
        elif not registry.has(fallback["skill"]):
            p.add(f"{path}.fallback.skill", "SKILL_NOT_FOUND", f"no skill named {fallback['skill']!r}")
        else:
            fb_args = fallback.get("args", {})
            if isinstance(fb_args, dict):
                _check_args(p, f"{path}.fallback.args", registry.resolve(fallback["skill"]), fb_args, earlier,
                            inputs)
            else:
                p.add(f"{path}.fallback.args", "PLAN_INVALID", "must be an object")
    elif fallback is not None:
        p.add(f"{path}.fallback", "PLAN_INVALID", "only mode FALLBACK takes a fallback")
    if mode != "ESCALATE":
        for key in ESCALATE_KEYS:
            if key in o:
                p.add(f"{path}.{key}", "PLAN_INVALID", f"only mode ESCALATE takes a {key}")
        return OnError(mode=mode, fallback=fallback if mode == "FALLBACK" else None)
    return _parse_escalate(p, path, o)


def _parse_escalate(p: _Problems, path: str, o: dict[str, Any]) -> OnError:
    signal, timeout, schema = o.get("signal"), o.get("timeout_s"), o.get("schema")
    if signal is not None and (not isinstance(signal, str) or not SIGNAL_NAME.fullmatch(signal)):
        p.add(f"{path}.signal", "PLAN_INVALID", "a signal name: a letter, then letters, digits, `_`, `.`, `-` (≤ 100)")
    if timeout is not None:
        timeout = _number(p, f"{path}.timeout_s", timeout, minimum=TIMEOUT_RANGE[0], maximum=MAX_WAIT_S)
    if schema is not None:
        if not isinstance(schema, dict):
            p.add(f"{path}.schema", "PLAN_INVALID", "must be a JSON Schema object")
            schema = None
        else:
            for prob in schema_problems(schema, f"{path}.schema"):
                p.add(prob["path"], "PLAN_INVALID", prob["message"])
    return OnError(mode="ESCALATE", signal=signal if isinstance(signal, str) else None,
                   timeout_s=float(timeout) if timeout is not None else None, schema=schema)
