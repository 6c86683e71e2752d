"""The limits on what a plan and a request body may hold: one module, so that submission refuses
exactly what a worker could not process, and a worker can check the same numbers.

Each limit answers a threat written down in docs/security.md. They are constants, not settings: a
plan accepted by one deployment must be runnable by every worker of it, and raising one of them
past what the code below it survives (the stack depth of Python's JSON encoder and of JMESPath's
recursive parser and interpreter, the int/str conversion limit) would turn bad input back into
crashes.

The walkers here are iterative, so that the value they look at cannot exhaust the stack either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any

#: Steps in one plan.
MAX_STEPS = 10_000
#: Nesting of a JSON value written in a plan: each input, each step's args (and a fallback's args).
#: A scalar has depth 0, ``[1]`` depth 1, ``{"a": [1]}`` depth 2; a step's ``args`` object counts.
MAX_VALUE_DEPTH = 64
#: Nesting of the data a step receives or produces once references are resolved: a literal of up to
#: MAX_VALUE_DEPTH whose references select values of up to MAX_VALUE_DEPTH. This is the bound a
#: worker holds resolved args and outputs to; json.dumps, psycopg and jsonb stay far from their own.
MAX_STEP_DATA_DEPTH = 2 * MAX_VALUE_DEPTH
#: Nesting of a whole request body: a golden document wraps step data a few levels down.
MAX_BODY_DEPTH = MAX_STEP_DATA_DEPTH + 16
#: Nesting of a JMESPath expression's syntax tree (``$ref``, ``${…}``, ``json.transform``'s ``expr``).
#: A chain ``a && b && c`` nests one level per operator; real expressions stay below 10.
MAX_EXPR_DEPTH = 48
#: Length of one JMESPath expression, in characters.
MAX_EXPR_CHARS = 4096
#: Digits of a JSON integer. Python refuses to convert a longer one between int and text (its
#: ``int_max_str_digits`` default): such a number could be parsed by nobody and printed by nobody.
MAX_INTEGER_DIGITS = 4300

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def child_path(path: str, key: str | int) -> str:
    """The JSON path of a member: ``$.a`` + ``b`` → ``$.a.b``, + ``0`` → ``$.a[0]``, odd keys quoted."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{escaped}"]'


def walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any, int]]:
    """Every node of a JSON value as (path, node, depth), parents first; iterative.

    A dict's keys are yielded as nodes too (at the dict's member path), so a check of
    strings sees them."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        p, v, d = stack.pop()
        yield p, v, d
        if isinstance(v, dict):
            children = []
            for k, item in v.items():
                cp = child_path(p, k) if isinstance(k, str) else child_path(p, str(k))
                children.append((cp, k, d + 1))
                children.append((cp, item, d + 1))
            stack.extend(reversed(children))
        elif isinstance(v, list):
            stack.extend(reversed([(child_path(p, i), item, d + 1) for i, item in enumerate(v)]))


def first_path(value: Any, predicate: Callable[[Any], bool], path: str = "$") -> str | None:
    """The path of the first node (in document order) for which ``predicate`` holds, or None."""
    for p, v, _ in walk(value, path):
        if predicate(v):
            return p
    return None


def fits(value: Any, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether no container in ``value`` nests deeper than ``limit`` (``too_deep`` is None); iterative,
    containers only, no paths built."""
    if not isinstance(value, dict | list):
        return True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d >= limit:
            return False
        for c in (v.values() if isinstance(v, dict) else v):
            if isinstance(c, dict | list):
                stack.append((c, d + 1))
    return True


def too_deep(value: Any, limit: int = MAX_VALUE_DEPTH, path: str = "$") -> str | None:
    """The path of the first container nested deeper than ``limit``, or None when the value fits.

    Stops at the first one, so a hostile value costs no more than ``limit`` levels of it."""
    if fits(value, limit):
        return None  # the common case, judged without building a path for every node
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        p, v, d = stack.pop()
        if isinstance(v, dict):
            if d + 1 > limit:
                return p
            stack.extend(reversed([(child_path(p, k if isinstance(k, str) else str(k)), item, d + 1)
                                   for k, item in v.items()]))
        elif isinstance(v, list):
            if d + 1 > limit:
                return p
            stack.extend(reversed([(child_path(p, i), item, d + 1) for i, item in enumerate(v)]))
    return None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}


def text_too_deep(text: str, limit: int) -> bool:
    """Whether JSON text (as json.dumps wrote it) nests deeper than ``limit`` (``[1]`` has depth 1), without
    parsing it: fewer brackets than that cannot; otherwise its strings are dropped and its brackets counted,
    at C speed — a worker asks this of every step's args and output."""
    if text.count("[") + text.count("{") <= limit:
        return False
    structure = _JSON_STRING.sub("", text) if '"' in text else text
    return max(accumulate(map(_NESTING.__getitem__, _BRACKET.findall(structure))), default=0) > limit


def integer_digits(text: str) -> int:
    """Digits of an integer literal, its sign not counted."""
    return len(text) - (1 if text[:1] in "+-" else 0)


def syntax_tree_depth(node: Any) -> int:
    """Depth of a parsed JMESPath expression (jmespath's dict nodes with ``children``); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        n, d = stack.pop()
        if not isinstance(n, dict):
            continue
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in n.get("children") or ())
    return deepest
