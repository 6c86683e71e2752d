"""The one backoff function: exponential, capped, full jitter seeded by (run, step, attempt).

Seeding makes the schedule reproducible: a replay, a test and a second worker all
compute the same countdown for the same attempt (the seeds' P0-2 "no backoff/jitter"
must be impossible, and so must a schedule nobody can predict).
"""

from __future__ import annotations

import hashlib
import random

from aos.values import RetryPolicy


def backoff_ceiling(policy: RetryPolicy, attempt: int, cap_s: float) -> float:
    """The upper bound of the countdown after failed attempt ``attempt`` (1-based)."""
    ceiling = min(policy.backoff_max_s, cap_s)
    return min(ceiling, policy.backoff_s * (2 ** max(0, attempt - 1)))


def retry_countdown(run_id: str, step_id: str, attempt: int, policy: RetryPolicy, *, cap_s: float) -> float:
    """Seconds to wait before the attempt after ``attempt``: uniform in [0, ceiling] (full jitter)."""
    seed = hashlib.sha256(f"{run_id}:{step_id}:{attempt}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    return round(rng.uniform(0.0, backoff_ceiling(policy, attempt, cap_s)), 3)
