"""Calling a skill: validate its args, run it, and wrap whatever happens in a StructuredOutcome.

This is the one place where a skill's failure is classified by the failure
catalog; the engine decides what to do with the outcome (retry, fallback, …).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from aos.runtime.argschema import arg_schema
from aos.runtime.catalog import CATALOG, CatalogEntry
from aos.runtime.outcome import OutcomeError, StructuredOutcome, Timing, Usage
from aos.skills.base import Skill, SkillContext, SkillError

log = logging.getLogger(__name__)


def validate_args(skill: Skill, args: Any) -> list[dict[str, str]]:
    """Every problem of ``args`` against the skill's input schema, each with its JSON path."""
    return arg_schema(skill.input_schema).problems(args)


def outcome_error(entry: CatalogEntry, message: str, details: dict[str, Any] | None = None) -> OutcomeError:
    return OutcomeError(code=entry.code, category=str(entry.category), message=message,
                        retryable=entry.retryable, details=dict(details or {}))


def invoke_skill(skill: Skill, args: dict[str, Any], ctx: SkillContext) -> tuple[StructuredOutcome, Any]:
    """Run ``skill`` once. Returns the outcome and the raw response (for golden recording)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()

    def timing() -> Timing:
        return Timing(started_at=started.isoformat(), duration_ms=round((time.perf_counter() - t0) * 1000, 3))

    problems = validate_args(skill, args)
    if problems:
        entry = CATALOG.get("SKILL_ARGS_INVALID")
        msg = f"{skill.ref}: {problems[0]['path']}: {problems[0]['message']}"
        return StructuredOutcome.failure(outcome_error(entry, msg, {"problems": problems}), timing=timing()), None
    try:
        result = skill.run(args, ctx)
    except SkillError as exc:
        entry = CATALOG.get(exc.code) if exc.code in CATALOG else CATALOG.match(exc)
        return StructuredOutcome.failure(outcome_error(entry, exc.message, exc.details),
                                         usage=exc.usage or Usage(), timing=timing()), None
    except Exception as exc:  # noqa: BLE001 — any failure becomes a classified outcome, never a crash
        entry = CATALOG.match(exc)
        if entry.code == "SKILL_CRASHED":
            log.exception("skill %s raised an unexpected exception", skill.ref)
        msg = f"{type(exc).__name__}: {exc}"
        return StructuredOutcome.failure(outcome_error(entry, msg, {"exception": type(exc).__name__}),
                                         timing=timing()), None
    return StructuredOutcome.success(result.output, usage=result.usage, timing=timing()), result.raw
