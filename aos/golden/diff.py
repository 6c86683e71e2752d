"""Comparing a replay with its recording: per-step hashes, and the first divergence as a JSON path.

Steps are compared in order, by hash; the first step whose hash differs is
searched for the first differing field, looking at the causes before the
effects: the step's id and skill, then its resolved args, then its attempts
(each call's args before its outcome), then its status and outcome. The path
is relative to the step (``args.expr``, ``attempts[0].call.outcome.error.code``);
both values are given as they are (``None`` when one side has no such field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# causes before effects; keys not listed come after, in sorted order
PRIORITY = ("id", "skill", "deterministic", "args", "attempts", "attempt", "call", "fallback", "status",
            "outcome", "output", "error", "code", "usage", "raw")
_RANK = {k: i for i, k in enumerate(PRIORITY)}
IGNORED_STEP_KEYS = frozenset({"hash"})
ABSENT = object()


@dataclass(frozen=True)
class Divergence:
    step_index: int
    step_id: str | None
    path: str
    recorded: Any
    replayed: Any

    def to_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "step_id": self.step_id, "path": self.path,
                "recorded": self.recorded, "replayed": self.replayed}


def _key_path(prefix: str, key: str) -> str:
    simple = key.replace("_", "a").isalnum() and not key[:1].isdigit()
    part = key if simple else '["' + key.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    if not prefix:
        return part
    return f"{prefix}.{part}" if simple else prefix + part


def _ordered(keys: set[str]) -> list[str]:
    return sorted(keys, key=lambda k: (_RANK.get(k, len(PRIORITY)), k))


def _same_scalar(a: Any, b: Any) -> bool:
    # JSON tells true from 1 and "1" from 1; Python's == does not, so compare kinds first
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def first_difference(recorded: Any, replayed: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first (path, recorded value, replayed value) where two JSON values differ, or None."""
    if isinstance(recorded, Mapping) and isinstance(replayed, Mapping):
        for key in _ordered(set(recorded) | set(replayed)):
            a, b = recorded.get(key, ABSENT), replayed.get(key, ABSENT)
            if a is ABSENT or b is ABSENT:
                return _key_path(path, key), (None if a is ABSENT else a), (None if b is ABSENT else b)
            found = first_difference(a, b, _key_path(path, key))
            if found:
                return found
        return None
    if isinstance(recorded, Sequence) and isinstance(replayed, Sequence) \
            and not isinstance(recorded, str) and not isinstance(replayed, str):
        for i in range(max(len(recorded), len(replayed))):
            if i >= len(recorded) or i >= len(replayed):
                return (f"{path}[{i}]", recorded[i] if i < len(recorded) else None,
                        replayed[i] if i < len(replayed) else None)
            found = first_difference(recorded[i], replayed[i], f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(recorded, Mapping | list) or isinstance(replayed, Mapping | list):
        return path or "$", recorded, replayed
    return None if _same_scalar(recorded, replayed) else (path or "$", recorded, replayed)


def _step_view(step: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in IGNORED_STEP_KEYS}


def compare_steps(recorded: Sequence[Mapping[str, Any]],
                  replayed: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], Divergence | None]:
    """Per-step verdicts (by hash) and the first divergence, if any."""
    verdicts: list[dict[str, Any]] = []
    first: Divergence | None = None
    for i in range(max(len(recorded), len(replayed))):
        rec = recorded[i] if i < len(recorded) else None
        rep = replayed[i] if i < len(replayed) else None
        same = rec is not None and rep is not None and rec.get("hash") == rep.get("hash")
        verdicts.append({"index": i, "id": (rec or rep or {}).get("id"), "identical": same,
                         "recorded_hash": rec.get("hash") if rec else None,
                         "replayed_hash": rep.get("hash") if rep else None})
        if same or first is not None:
            continue
        if rec is None or rep is None:
            # one side has no such step (the plan changed length): "$" is the step itself, values its ids
            first = Divergence(i, (rec or rep or {}).get("id"), "$", rec and rec.get("id"), rep and rep.get("id"))
            continue
        found = first_difference(_step_view(rec), _step_view(rep))
        if found is None:  # equal content, different recorded hash: the hash itself is what differs
            found = ("hash", rec.get("hash"), rep.get("hash"))
        path, a, b = found
        first = Divergence(i, rec.get("id"), path, a, b)
    return verdicts, first
