"""References inside step args: ``{"$ref": "<JMESPath>"}`` keeps the JSON type,
``"…${<JMESPath>}…"`` interpolates text. Nothing else is evaluated — never ``eval``.

The scope a reference sees is ``{"inputs": …, "steps": {"<id>": {"output": …}}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aos.expressions import INTERPOLATION, compile_expr

__all__ = ["INTERPOLATION", "Reference", "as_text", "compile_expr", "has_references", "iter_references",
           "leading_fields", "resolve"]



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
def leading_fields(expr: str) -> tuple[str, ...]:
    """The field names an expression starts with: ``steps.fetch.output.json`` → [steps, fetch, output, json]."""
    node = compile_expr(expr).parsed
    fields: list[str] = []
    _walk_leading(node, fields)
    return tuple(fields)


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
