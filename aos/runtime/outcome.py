"""StructuredOutcome: what every skill call returns, success or failure.

Timing is carried for people and metrics but is never part of a determinism
hash: ``hashable()`` drops it (the seeds' P0-3 must be impossible here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aos.values import Usage

__all__ = ["OutcomeError", "StructuredOutcome", "Timing", "Usage"]


@dataclass(frozen=True)
class Timing:
    started_at: str | None = None  # ISO-8601 UTC
    duration_ms: float | None = None


@dataclass(frozen=True)
class OutcomeError:
    code: str
    category: str
    message: str
    retryable: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StructuredOutcome:
    status: str  # "ok" | "error"
    output: Any = None
    error: OutcomeError | None = None
    usage: Usage = field(default_factory=Usage)
    timing: Timing = field(default_factory=Timing)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def success(cls, output: Any, usage: Usage | None = None, timing: Timing | None = None) -> StructuredOutcome:
        return cls(status="ok", output=output, usage=usage or Usage(), timing=timing or Timing())

    @classmethod
    def failure(cls, error: OutcomeError, usage: Usage | None = None,
                timing: Timing | None = None) -> StructuredOutcome:
        return cls(status="error", error=error, usage=usage or Usage(), timing=timing or Timing())

    def to_dict(self) -> dict[str, Any]:
        # by hand, not dataclasses.asdict: that deep-copies the output, which may be megabytes
        return {"status": self.status, "output": self.output,
                "error": asdict(self.error) if self.error is not None else None,
                "usage": {"cost_usd": self.usage.cost_usd, "input_tokens": self.usage.input_tokens,
                          "output_tokens": self.usage.output_tokens},
                "timing": {"started_at": self.timing.started_at, "duration_ms": self.timing.duration_ms}}

    def hashable(self) -> dict[str, Any]:
        """The outcome without timing: the only form a determinism hash may see."""
        d = self.to_dict()
        d.pop("timing", None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StructuredOutcome:
        err = d.get("error")
        return cls(
            status=d["status"],
            output=d.get("output"),
            error=OutcomeError(**err) if err else None,
            usage=Usage(**(d.get("usage") or {})),
            timing=Timing(**(d.get("timing") or {})),
        )
