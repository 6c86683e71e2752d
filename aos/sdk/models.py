"""Typed results of the API: dataclasses built from its JSON.

Every object keeps the JSON it came from in ``raw`` (fields a newer server adds are not lost,
and ``--json`` output can print exactly what the API said). Timestamps are ``datetime``.
``RunSummary``/``Run`` returned by a client are bound to it: ``run.wait()``, ``run.refresh()``,
``run.cancel()``, ``run.resume()`` and ``run.events()`` call that client (with ``AsyncClient``
they return awaitables / an async iterator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")
M = TypeVar("M", bound="Model")

FINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "cancelled", "dead_lettered"})
WAITING = "waiting"  # not final: the run waits for a signal (Run.waiting says which)


def _dt(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) and v else None


def _conv(fn: Callable[[Any], Any], default: Any = None, factory: Callable[[], Any] | None = None) -> Any:
    """A field whose JSON value is converted by ``fn`` (``None`` stays ``None``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"conv": fn})
    return field(default=default, metadata={"conv": fn})


def _list_of(cls: type[M]) -> Callable[[Any], list[M]]:
    return lambda items: [cls.from_dict(i) for i in items or []]


@dataclass
class Model:
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any]) -> M:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "raw" or not f.init or f.name not in data:
                continue
            value, conv = data[f.name], f.metadata.get("conv")
            kwargs[f.name] = conv(value) if conv is not None and value is not None else value
        return cls(**kwargs, raw=data)


@dataclass
class ErrorInfo(Model):
    """A failure with its catalog code, and what to do about it (from the catalog entry)."""

    code: str = ""
    message: str | None = None
    category: str | None = None
    retryable: bool | None = None
    recovery_mode: str | None = None
    suggestion: str | None = None


@dataclass
class Budget(Model):
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_s: int | None = None
    spent_cost_usd: float = 0.0
    spent_tokens: int = 0
    steps_started: int = 0


@dataclass
class Step(Model):
    """One step of a run as the run view shows it (``attempts`` is a count here)."""

    id: str = ""
    index: int = 0
    skill: str = ""
    status: str = ""
    attempts: int = 0
    output: Any = None
    output_ref: str | None = None
    error: ErrorInfo | None = _conv(ErrorInfo.from_dict)
    cost_usd: float = 0.0
    tokens: int = 0
    started_at: datetime | None = _conv(_dt)
    finished_at: datetime | None = _conv(_dt)
    duration_ms: float | None = None
    next_attempt_at: datetime | None = _conv(_dt)  # a retrying step: when its next attempt is due


@dataclass
class StepAttempt(Model):
    attempt: int = 0
    status: str = ""
    args: Any = None
    output: Any = None
    error: ErrorInfo | None = _conv(ErrorInfo.from_dict)
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    worker: str | None = None
    started_at: datetime | None = _conv(_dt)
    finished_at: datetime | None = _conv(_dt)
    duration_ms: float | None = None


@dataclass
class StepDetail(Model):
    """``GET /runs/{id}/steps/{step_id}``: the step's fields with every attempt in ``attempts``."""

    id: str = ""
    index: int = 0
    skill: str = ""
    status: str = ""
    attempts: list[StepAttempt] = _conv(_list_of(StepAttempt), factory=list)
    output: Any = None
    output_ref: str | None = None
    error: ErrorInfo | None = _conv(ErrorInfo.from_dict)
    cost_usd: float = 0.0
    tokens: int = 0
    started_at: datetime | None = _conv(_dt)
    finished_at: datetime | None = _conv(_dt)
    duration_ms: float | None = None


@dataclass
class RunSummary(Model):
    id: str = ""
    name: str | None = None
    status: str = ""
    steps_total: int = 0
    next_step: int = 0
    agent_id: str | None = None
    workflow_id: str | None = None
    error: ErrorInfo | None = _conv(ErrorInfo.from_dict)
    budget: Budget = _conv(Budget.from_dict, factory=Budget)
    plan_hash: str | None = None
    created_at: datetime | None = _conv(_dt)
    started_at: datetime | None = _conv(_dt)
    finished_at: datetime | None = _conv(_dt)
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_RUN_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def _bound(self) -> Any:
        if self._client is None:
            raise RuntimeError("this run is not bound to a client; use client.runs.get(run_id)")
        return self._client.runs

    def refresh(self) -> Any:
        """The run as it is now (a new ``Run``)."""
        return self._bound().get(self.id)

    def wait(self, timeout: float | None = None, poll_s: float = 0.25) -> Any:
        """Block until the run is final and return it; ``RunWaitTimeout`` after ``timeout`` seconds."""
        return self._bound().wait(self.id, timeout=timeout, poll_s=poll_s)

    def cancel(self) -> Any:
        return self._bound().cancel(self.id)

    def resume(self) -> Any:
        return self._bound().resume(self.id)

    def events(self, after_id: int | None = None, timeout: float | None = None) -> Any:
        """The run's events as they happen (see ``client.runs.events``)."""
        return self._bound().events(self.id, after_id=after_id, timeout=timeout)


@dataclass
class Waiting(Model):
    """What a waiting run waits for: deliver it with ``client.runs.signal(run_id, signal, data)``."""

    signal: str = ""
    kind: str = ""            # signal (a signal.wait or human.approve step) or escalation (on_error ESCALATE)
    step_id: str = ""
    reason: str | None = None
    schema: dict[str, Any] | None = None
    deadline: datetime | None = _conv(_dt)
    since: datetime | None = _conv(_dt)


@dataclass
class SignalResult(Model):
    run_id: str = ""
    signal: str = ""
    step_id: str = ""
    status: str = ""          # the run's status after the delivery
    duplicate: bool = False   # this idempotency key had been delivered already: nothing changed


@dataclass
class SignalRecord(Waiting):
    """One wait of a run and the signal that ended it."""

    status: str = ""          # waiting, signalled, expired or cancelled
    payload: Any = None
    idempotency_key: str | None = None
    resolved_at: datetime | None = _conv(_dt)


@dataclass
class Amendment(Model):
    """A step of the run changed after submission by applying a recovery suggestion (the plan_hash is not)."""

    id: str = ""
    plan_revision: int = 0
    step_index: int = 0
    step_id: str = ""
    after_attempt: int = 0    # the step's attempts that ran before it
    changes: dict[str, Any] = field(default_factory=dict)  # field -> {"from", "to"}
    step_hash_before: str = ""
    step_hash_after: str = ""
    suggestion_id: str | None = None
    applied_by: str = ""
    created_at: datetime | None = _conv(_dt)
    summary: str = ""         # "step 0 (fetch) amended by suggestion …: timeout_s 30→60"


@dataclass
class Run(RunSummary):
    inputs: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = _conv(_list_of(Step), factory=list)
    waiting: Waiting | None = _conv(Waiting.from_dict)
    amendments: list[Amendment] = _conv(_list_of(Amendment), factory=list)

    @property
    def is_waiting(self) -> bool:
        return self.status == WAITING

    def signal(self, name: str, data: Any = None, *, idempotency_key: str | None = None) -> Any:
        """Deliver signal ``name`` with payload ``data`` to this (waiting) run."""
        return self._bound().signal(self.id, name, data, idempotency_key=idempotency_key)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


@dataclass
class Event(Model):
    """A timeline event. The stream's last event has ``type == "end"``, no id, and ``run`` set."""

    id: int | None = None
    type: str = ""
    step_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = _conv(_dt)
    run: RunSummary | None = None


@dataclass
class Workflow(Model):
    id: str = ""
    name: str = ""
    version: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    plan_hash: str | None = None
    created_at: datetime | None = _conv(_dt)


@dataclass
class Agent(Model):
    id: str = ""
    name: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    created_at: datetime | None = _conv(_dt)


@dataclass
class AgentState(Model):
    state: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = _conv(_dt)


@dataclass
class Provenance(Model):
    run_id: str = ""
    status: str = ""
    plan_hash: str | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None
    workflow_version: int | None = None
    skills: dict[str, str] = field(default_factory=dict)
    cost_usd: float = 0.0
    tokens: int = 0
    created_at: datetime | None = _conv(_dt)
    finished_at: datetime | None = _conv(_dt)


@dataclass
class Skill(Model):
    name: str = ""
    version: int | str | None = None
    description: str = ""
    deterministic: bool = False
    recommended: bool = False
    rank: int | None = None             # the recommendation order for new users (1 = first)
    ref: str | None = None              # "name@version"
    side_effect: str | None = None      # pure, idempotent or external
    args_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    default_timeout_s: float | None = None


@dataclass
class CatalogEntry(Model):
    code: str = ""
    category: str = ""
    retryable: bool = False
    recovery_mode: str = ""
    http_status: int = 0
    description: str = ""
    suggestion: str | None = None


@dataclass
class SimulatedStep(Model):
    id: str = ""
    skill: str = ""
    estimated_cost_usd: float = 0.0
    estimated_tokens: int = 0
    estimated_latency_ms: float = 0.0
    basis: str = ""                 # "cost_model" or "history"
    samples: int = 0
    failure_rate: float | None = None   # from past attempts of the same skill (and model), when any
    model: str | None = None            # llm.complete only
    warnings: list[Any] = field(default_factory=list)


@dataclass
class Verdict(Model):
    verdict: str = ""               # budget: within/exceeds/unlimited; capabilities: allowed/denied/not_checked
    problems: list[Any] = field(default_factory=list)
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    daily_remaining_usd: float | None = None


@dataclass
class Simulation(Model):
    """What a plan would cost and whether it would be allowed; nothing ran."""

    plan_hash: str | None = None
    steps: list[SimulatedStep] = _conv(_list_of(SimulatedStep), factory=list)
    total: dict[str, Any] = field(default_factory=dict)
    budget: Verdict = _conv(Verdict.from_dict, factory=Verdict)
    capabilities: Verdict = _conv(Verdict.from_dict, factory=Verdict)
    warnings: list[Any] = field(default_factory=list)


@dataclass
class Inspection(Model):
    scope: str = "tenant"  # "deployment" for the operator scope: queues, workers and every tenant's figures
    queues: list[dict[str, Any]] | None = None
    workers: list[dict[str, Any]] | None = None
    outbox: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime | None = _conv(_dt)
    errors: list[Any] = field(default_factory=list)   # why a depth or the worker list is missing (null)


@dataclass
class Page(Generic[T]):
    """One page of a list: its items and the cursor of the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass
class RecoverySuggestion(Model):
    """A learned recovery suggestion for one failure of a run's step (``GET /runs/{id}/recovery``)."""

    id: str = ""
    run_id: str = ""
    step_id: str = ""
    error_code: str = ""
    layer: str = ""                  # cache, vector, llm or catalog
    mode: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    confidence: float = 0.0
    similarity: float | None = None
    pattern_id: int | None = None
    success_rate: float | None = None
    status: str = ""                 # offered, applied, succeeded, failed
    helpful: bool | None = None
    applied_by: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    apply_command: str = ""
