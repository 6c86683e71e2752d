"""Value types shared by the skills and the runtime: what a call costs and how it is retried.

A neutral home: skills declare them, the runtime and the engine read them, and this module
imports nothing of AOS, so neither side has to import the other to name them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """What one skill call spent."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Estimate:
    """What one skill call is expected to spend, before it runs."""

    cost_usd: float = 0.0
    tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is attempted and how long the seeded backoff between attempts may grow."""

    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
