"""Budgets: what a step reserves, when a run is near or over its limits, and how to say so.

Budgets are rows, never a dict in a process (the seeds' P1-2, "budget dict per instance", must be
impossible here): a step's estimate is reserved with a conditional ``UPDATE … WHERE spent +
reserved + estimate <= limit`` in the claim and replaced by what it really spent in the settle
(``aos.db.step_store``), so any number of workers share one budget. This module holds the
arithmetic those statements and the messages around them share; it touches no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from aos.values import Estimate, Usage

WARN_RATIO = 0.8


_ZERO = Decimal(0)


def money(usd: float | Decimal) -> Decimal:
    """A cost as the database stores it (six decimals)."""
    if not usd:
        return _ZERO  # most steps cost nothing
    return Decimal(str(round(float(usd), 6)))


@dataclass(slots=True)
class Reservation:
    cost_usd: Decimal
    tokens: int
    day: date


def today() -> date:
    return datetime.now(UTC).date()


def reservation_for(estimate: Estimate) -> Reservation:
    return Reservation(money(estimate.cost_usd), int(estimate.tokens), today())


NOTHING = Reservation(Decimal(0), 0, date.min)


@dataclass(frozen=True)
class Limits:
    """A run's limits (None: unlimited)."""

    max_cost_usd: Decimal | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_s: int | None = None

    @property
    def counted(self) -> bool:
        """Whether spend is measured against a limit (wall time is checked by the clock, not by spend)."""
        return self.max_cost_usd is not None or self.max_tokens is not None or self.max_steps is not None


@dataclass(slots=True)
class Spend:
    """What a run has spent and reserved so far, and how many steps it started."""

    cost_usd: Decimal = Decimal(0)
    tokens: int = 0
    steps_started: int = 0
    reserved_cost_usd: Decimal = Decimal(0)
    reserved_tokens: int = 0

    def after(self, usage: Usage) -> Spend:
        return Spend(self.cost_usd + money(usage.cost_usd), self.tokens + usage.tokens, self.steps_started,
                     self.reserved_cost_usd, self.reserved_tokens)


def ratios(limits: Limits, spend: Spend) -> dict[str, float]:
    out: dict[str, float] = {}
    if limits.max_cost_usd:
        out["cost"] = float(spend.cost_usd) / float(limits.max_cost_usd)
    if limits.max_tokens:
        out["tokens"] = spend.tokens / limits.max_tokens
    if limits.max_steps:
        out["steps"] = spend.steps_started / limits.max_steps
    return out


def near_limits(limits: Limits, spend: Spend) -> dict[str, float]:
    """The limits at or past ``WARN_RATIO``, rounded for people: a non-empty answer means "warn once"."""
    return {k: round(v, 3) for k, v in ratios(limits, spend).items() if v >= WARN_RATIO}


def explain(limits: Limits, spend: Spend, estimate: Estimate) -> str:
    """Why a step's reservation was refused, for the run's error message."""
    parts = []
    if limits.max_steps is not None and spend.steps_started + 1 > limits.max_steps:
        parts.append(f"max_steps {limits.max_steps} reached")
    if limits.max_cost_usd is not None and \
            float(spend.cost_usd + spend.reserved_cost_usd) + estimate.cost_usd > float(limits.max_cost_usd):
        parts.append(f"cost: spent {float(spend.cost_usd):.6f} + estimate {estimate.cost_usd:.6f} "
                     f"> max_cost_usd {float(limits.max_cost_usd)}")
    if limits.max_tokens is not None and spend.tokens + spend.reserved_tokens + estimate.tokens > limits.max_tokens:
        parts.append(f"tokens: spent {spend.tokens} + estimate {estimate.tokens} > max_tokens {limits.max_tokens}")
    return "the step would exceed the run's budget (" + "; ".join(parts or ["limit reached"]) + ")"


def refuses(limits: Limits, spend: Spend, estimate: Estimate) -> bool:
    """The claim's budget condition, in Python: would one more step with ``estimate`` exceed a limit?"""
    r = reservation_for(estimate)
    return bool(
        (limits.max_steps is not None and spend.steps_started + 1 > limits.max_steps)
        or (limits.max_cost_usd is not None
            and spend.cost_usd + spend.reserved_cost_usd + r.cost_usd > limits.max_cost_usd)
        or (limits.max_tokens is not None and spend.tokens + spend.reserved_tokens + r.tokens > limits.max_tokens))
