"""A run's stored plan, read back without validating it again.

``parse_plan`` checked the plan when the run was submitted, and a run's plan never changes
afterwards, so the worker only rebuilds the step objects from the stored JSON: re-validating
every step's args against its skill's schema per process would cost O(plan size) for nothing.
"""

from __future__ import annotations

from typing import Any

from aos.plan.model import Budget, OnError, Plan, Step
from aos.values import RetryPolicy


def stored_plan(raw: dict[str, Any], inputs: dict[str, Any], skill_versions: dict[str, str]) -> Plan:
    """The Plan of a validated, stored plan document (``runs.plan``) with the run's merged inputs and
    the skill versions it was pinned to (step id → ``name@version``)."""
    steps = tuple(_step(i, s, skill_versions) for i, s in enumerate(raw["steps"]))
    b = raw.get("budget") or {}
    budget = Budget(**{k: b[k] for k in ("max_cost_usd", "max_tokens", "max_steps", "max_wall_s") if k in b})
    return Plan(name=raw.get("name"), inputs=inputs, budget=budget, steps=steps, raw=raw)


def _step(index: int, s: dict[str, Any], skill_versions: dict[str, str]) -> Step:
    retry = s.get("retry")
    on_error = s.get("on_error") or {}
    return Step(
        index=index, id=s["id"], skill=skill_versions.get(s["id"], s["skill"]), args=s.get("args", {}),
        retry=_retry(retry) if retry is not None else None,
        timeout_s=s.get("timeout_s"),
        on_error=OnError(mode=on_error.get("mode", "ABORT"),
                         fallback=on_error.get("fallback") if on_error.get("mode") == "FALLBACK" else None,
                         signal=on_error.get("signal"), timeout_s=on_error.get("timeout_s"),
                         schema=on_error.get("schema")))


def _retry(r: dict[str, Any]) -> RetryPolicy:
    d = RetryPolicy()
    return RetryPolicy(max_attempts=int(r.get("max_attempts", d.max_attempts)),
                       backoff_s=float(r.get("backoff_s", d.backoff_s)),
                       backoff_max_s=float(r.get("backoff_max_s", d.backoff_max_s)))
