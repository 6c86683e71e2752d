"""The skill interface: what a skill declares about itself, and how it is called.

A skill is a versioned unit of work (``http.request@1``). It declares input and
output JSON Schemas, a side-effect class, whether it is deterministic, a cost
model, a default timeout and retry policy, and a ``recommended`` rank. The
engine validates args against ``input_schema``, calls ``run`` and wraps the
result (or the failure, classified by the catalog) in a StructuredOutcome.
Skills import neither Flask nor Celery.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aos.config import Settings
from aos.values import Estimate, RetryPolicy, Usage

__all__ = ["CostModel", "Estimate", "RetryPolicy", "SideEffect", "Skill", "SkillContext", "SkillError",
           "SkillResult", "Usage"]


class SideEffect(StrEnum):
    PURE = "pure"              # no effect outside the step: safe to run any number of times
    IDEMPOTENT = "idempotent"  # an effect, but repeating it changes nothing more
    EXTERNAL = "external"      # an effect the world sees; gets an idempotency key


@dataclass(frozen=True)
class CostModel:
    """A skill's own estimate of one call, before any history refines it."""

    fixed_usd: float = 0.0
    latency_ms: float = 1.0
    tokens: int = 0

    def estimate(self, args: Mapping[str, Any]) -> Estimate:
        return Estimate(cost_usd=self.fixed_usd, tokens=self.tokens, latency_ms=self.latency_ms)


@dataclass
class SkillContext:
    """What a skill may know about the call it serves."""

    run_id: str
    step_id: str
    attempt: int
    tenant_id: str
    settings: Settings
    # stable across redeliveries of the same attempt: "run:step:attempt"
    idempotency_key: str = ""
    timeout_s: float | None = None
    # capability policy of the agent, when the run has one (allowed hosts, connections)
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    # a waiting skill's signal once it came: {"name", "payload"} or {"name", "expired": True, "deadline"}
    signal: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SkillResult:
    output: Any
    usage: Usage = field(default_factory=Usage)
    # The raw response of a non-deterministic skill (HTTP response, LLM reply):
    # what a golden file records and what replay answers from.
    raw: Any = None


class SkillError(Exception):
    """A failure the skill understood: it names its catalog code."""

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None,
                 retry_after_s: float | None = None, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.retry_after_s = retry_after_s
        self.usage = usage
        if retry_after_s is not None:
            self.details.setdefault("retry_after_s", retry_after_s)


def declared_pure(skill: Skill) -> bool:
    """A skill that declares itself pure and deterministic (its class says so, not the default): running it
    again, or after its run was cancelled, changes nothing outside its output."""
    declared = any("side_effect" in vars(k) for k in type(skill).__mro__ if k is not Skill)
    return declared and skill.side_effect == SideEffect.PURE and skill.deterministic


class Skill(ABC):
    name: str = ""
    version: int = 1
    description: str = ""
    input_schema: dict[str, Any] = {"type": "object"}
    output_schema: dict[str, Any] = {}
    side_effect: SideEffect = SideEffect.PURE
    deterministic: bool = True
    cost_model: CostModel = CostModel()
    default_timeout_s: float = 30.0
    default_retry: RetryPolicy = RetryPolicy()
    recommended: int | None = None  # rank for new users; None = not recommended
    summary_text: str | None = None  # a few words for listings (`aos skills list`); default: the first sentence
    # Dotted paths of args that hold secrets beyond what aos.redaction recognises by name (credential-
    # named keys, URL user-info, secret query values): masked wherever args are stored, shown, recorded or
    # logged; the call itself gets the real value. ``*`` matches every key or item: ("auth.password",
    # "accounts.*.pin").
    secret_args: tuple[str, ...] = ()
    # A waiting skill (aos.skills.signals) parks its run until a signal arrives instead of working at once.
    waits_for_signal: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def summary(self) -> str:
        """What the skill does in a few words: one line of a listing on an 80-column terminal."""
        return self.summary_text or self.description.split(". ")[0].split("; ")[0].rstrip(".")

    def warm_up(self) -> None:
        """Load what the first call would otherwise load (an SDK, say). A worker calls it once, before its
        pool forks, so no step spends its time limit on an import; nothing else has to pay for it."""
        return None  # most skills load nothing heavy

    def wait_spec(self, args: dict[str, Any]) -> dict[str, Any]:
        """A waiting skill's wait: ``{"signal", "reason", "schema", "timeout_s"}`` (aos.skills.signals)."""
        raise NotImplementedError(f"{self.ref} does not wait for signals")

    def upstream(self, args: dict[str, Any], ctx: SkillContext) -> str | None:
        """The remote this call depends on (a host, a provider), for the circuit breaker; None: none."""
        return None

    def check_args(self, args: dict[str, Any]) -> list[dict[str, str]]:
        """Skill-specific checks of literal args at submission (beyond the JSON Schema).
        Problems as {"path": "args.<field>", "code": …, "message": …}."""
        return []

    @abstractmethod
    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        """Do the work. Raise SkillError for failures the skill understands."""

    def replay(self, args: dict[str, Any], recorded: SkillResult, ctx: SkillContext) -> SkillResult:
        """Answer a golden replay without calling out (only non-deterministic skills are asked).

        ``recorded`` holds the recorded output, usage and raw response of a successful call. This
        default hands them back; a skill that derives its output from ``raw`` overrides it to derive
        it again, so a replay also checks how the skill reads a response (see aos/golden/replay.py)."""
        return recorded

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "description": self.description,
            "summary": self.summary,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "side_effect": str(self.side_effect),
            "deterministic": self.deterministic,
            "default_timeout_s": self.default_timeout_s,
            "default_retry": {
                "max_attempts": self.default_retry.max_attempts,
                "backoff_s": self.default_retry.backoff_s,
                "backoff_max_s": self.default_retry.backoff_max_s,
            },
            "recommended": self.recommended,
            "secret_args": list(self.secret_args),
        }
