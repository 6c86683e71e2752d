"""JMESPath expressions: compiled once, and vetted at submission.

The expression language of plans (references in args) and of ``json.transform``. It lives below both
the plan and the skills, which share it, so that neither has to import the other.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

from aos.errors import AosError


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




def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
