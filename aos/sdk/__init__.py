"""The Python SDK of the AOS API: sync and async clients on httpx, typed results, pagination
iterators, ``run.wait()``, live event streams, retries on 429/503, errors carrying catalog codes.

It ships inside the ``aos`` distribution (``from aos.sdk import Client``) and imports nothing of the
server: only httpx and the standard library. See docs/sdk.md.
"""

from aos.sdk.client import Client, Paginator
from aos.sdk.errors import (
    AosApiError,
    ApiUnreachable,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RunWaitTimeout,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from aos.sdk.models import (
    Agent,
    AgentState,
    Budget,
    CatalogEntry,
    ErrorInfo,
    Event,
    Inspection,
    Page,
    Provenance,
    Run,
    RunSummary,
    SignalRecord,
    SignalResult,
    SimulatedStep,
    Simulation,
    Skill,
    Step,
    StepAttempt,
    StepDetail,
    Verdict,
    Waiting,
    Workflow,
)
from aos.sdk.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY", "Agent", "AgentState", "AosApiError", "ApiUnreachable", "AsyncClient", "AsyncPaginator", "Budget",
    "CatalogEntry", "Client", "Conflict", "ErrorInfo", "Event", "Forbidden", "Inspection", "NotFound", "Page",
    "Paginator", "Provenance", "RateLimited", "RetryPolicy", "Run", "RunSummary", "RunWaitTimeout", "ServerError",
    "ServiceUnavailable", "SignalRecord", "SignalResult", "SimulatedStep", "Simulation", "Skill", "Step", "StepAttempt", "StepDetail",
    "Unauthorized", "ValidationFailed", "Verdict", "Waiting", "Workflow",
]


def __getattr__(name: str) -> object:
    # the async client on first use: asyncio and its event-loop machinery are a cost every `aos` command
    # that talks to the API (all of them synchronous) would otherwise pay
    if name in ("AsyncClient", "AsyncPaginator"):
        from aos.sdk import aio

        return getattr(aio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
