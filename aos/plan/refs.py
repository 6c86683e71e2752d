"""References inside step args: ``{"$ref": "<JMESPath>"}`` keeps the JSON type,
``"…${<JMESPath>}…"`` interpolates text. Nothing else is evaluated — never ``eval``.

The scope a reference sees is ``{"inputs": …, "steps": {"<id>": {"output": …}}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

from aos.errors import AosError

# `${…}` up to the first `}`: JMESPath multiselect hashes cannot be interpolated
# inline (use a `$ref` for those) — documented in docs/plans.md.
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Reference:
    path: str         # JSON path of the arg holding it, e.g. "steps[1].args.input"
    expr: str


def iter_references(value: Any, path: str) -> Iterator[Reference]:
    """Every reference inside an args value, with the JSON path where it sits."""
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            yield Reference(path, value["$ref"] if isinstance(value["$ref"], str) else "")
            return
        for k, v in value.items():
            yield from iter_references(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_references(v, f"{path}[{i}]")
    elif isinstance(value, str):
        for m in INTERPOLATION.finditer(value):
            yield Reference(path, m.group(1))


def has_references(value: Any) -> bool:
    return next(iter_references(value, ""), None) is not None


@lru_cache(maxsize=4096)
def compile_expr(expr: str) -> ParsedResult:
    """Compile a JMESPath expression; EXPR_INVALID when it does not parse."""
    if not expr.strip():
        raise AosError("EXPR_INVALID", "empty reference expression")
    try:
        parsed = jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise AosError("EXPR_INVALID", f"JMESPath expression {expr!r} does not parse: {_one_line(exc)}") from None
    unknown = unknown_functions(parsed.parsed)
    if unknown:
        # jmespath only notices an unknown function when it evaluates it: catch it at submission instead
        raise AosError("EXPR_INVALID", f"JMESPath expression {expr!r} calls unknown function(s) "
                       f"{', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FUNCTIONS))}")
    return parsed


KNOWN_FUNCTIONS = frozenset(jmespath.functions.Functions.FUNCTION_TABLE)


def unknown_functions(node: Any) -> list[str]:
    """Names of functions the expression calls that JMESPath does not have, in order of appearance."""
    found: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if n.get("type") == "function_expression" and n.get("value") not in KNOWN_FUNCTIONS \
                    and n.get("value") not in found:
                found.append(n["value"])
            stack.extend(reversed(n.get("children", [])))
    return found


def leading_fields(expr: str) -> list[str]:
    """The field names an expression starts with: ``steps.fetch.output.json`` → [steps, fetch, output, json]."""
    node = compile_expr(expr).parsed
    fields: list[str] = []
    _walk_leading(node, fields)
    return fields


def _walk_leading(node: dict[str, Any], out: list[str]) -> bool:
    kind = node.get("type")
    if kind == "field":
        out.append(node["value"])
        return True
    if kind in ("subexpression", "index_expression", "projection", "value_projection",
                "filter_projection", "flatten"):
        children = node.get("children") or []
        for child in children:
            if not _walk_leading(child, out):
                return False
        return True
    return False


def resolve(value: Any, scope: dict[str, Any]) -> Any:
    """Replace every reference in ``value`` by what it selects from ``scope``."""
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            return compile_expr(value["$ref"]).search(scope)
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, scope) for v in value]
    if isinstance(value, str) and "${" in value:
        return INTERPOLATION.sub(lambda m: as_text(compile_expr(m.group(1)).search(scope)), value)
    return value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
