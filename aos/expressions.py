"""JMESPath expressions: compiled once, and vetted at submission.

The expression language of plans (references in args) and of ``json.transform``. It lives below both
the plan and the skills, which share it, so that neither has to import the other.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

from aos.errors import AosError
from aos.limits import MAX_EXPR_CHARS, MAX_EXPR_DEPTH, syntax_tree_depth

# `${…}` up to the first `}` inside a string arg: text interpolation of a reference. JMESPath multiselect
# hashes cannot be interpolated inline (use a `$ref` for those) — documented in docs/plans.md.
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


@lru_cache(maxsize=4096)
def compile_expr(expr: str) -> ParsedResult:
    """Compile a JMESPath expression; EXPR_INVALID when it does not parse, EXPR_TOO_COMPLEX when it is
    longer than MAX_EXPR_CHARS or nests deeper than MAX_EXPR_DEPTH (jmespath parses and evaluates by
    recursion: a deeper one would exhaust the stack of whatever process runs it)."""
    if not expr.strip():
        raise AosError("EXPR_INVALID", "empty reference expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise AosError("EXPR_TOO_COMPLEX", f"JMESPath expression {_shown(expr)} has {len(expr)} characters; "
                       f"at most {MAX_EXPR_CHARS} are accepted")
    try:
        parsed = jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise AosError("EXPR_INVALID", f"JMESPath expression {_shown(expr)} does not parse: {_one_line(exc)}") \
            from None
    except RecursionError:
        raise AosError("EXPR_TOO_COMPLEX", f"JMESPath expression {_shown(expr)} nests deeper than "
                       f"{MAX_EXPR_DEPTH} levels") from None
    depth = syntax_tree_depth(parsed.parsed)
    if depth > MAX_EXPR_DEPTH:
        raise AosError("EXPR_TOO_COMPLEX", f"JMESPath expression {_shown(expr)} nests {depth} levels deep; "
                       f"at most {MAX_EXPR_DEPTH} are accepted")
    unknown = unknown_functions(parsed.parsed)
    if unknown:
        # jmespath only notices an unknown function when it evaluates it: catch it at submission instead
        raise AosError("EXPR_INVALID", f"JMESPath expression {_shown(expr)} calls unknown function(s) "
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




def _shown(expr: str) -> str:
    """The expression for a message: whole when short, its start otherwise."""
    return repr(expr) if len(expr) <= 80 else f"{expr[:60]!r}…"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
