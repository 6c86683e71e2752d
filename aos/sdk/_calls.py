"""Every API operation the SDK knows, as data: method, path, query, body and how to read the answer.

The sync and async clients both execute these ``Call``s, so a path or a parameter is written once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from aos import __version__
from aos.sdk.models import (
    Agent,
    AgentState,
    CatalogEntry,
    Event,
    Inspection,
    Model,
    Page,
    Provenance,
    RecoverySuggestion,
    Run,
    RunSummary,
    SignalRecord,
    SignalResult,
    Simulation,
    Skill,
    StepDetail,
    Workflow,
)

Parse = Callable[[Any, Any], Any]   # (json, client) -> result


@dataclass(frozen=True)
class Call:
    method: str
    path: str                        # below /api/v1
    params: dict[str, Any] | None = None
    json: Any = None
    parse: Parse = lambda data, client: data


def seg(value: Any) -> str:
    """One path segment: workflow names may hold spaces or slashes."""
    return quote(str(value), safe="")


def _bind(run: RunSummary, client: Any) -> RunSummary:
    run._client = client
    return run


def _run(data: Any, client: Any) -> Run:
    return _bind(Run.from_dict(data), client)  # type: ignore[return-value]


def _summary(data: Any, client: Any) -> RunSummary:
    return _bind(RunSummary.from_dict(data), client)


def _one(cls: type[Model]) -> Parse:
    return lambda data, client: cls.from_dict(data)


def _items(cls: type[Model]) -> Parse:
    return lambda data, client: [cls.from_dict(i) for i in data["items"]]


def _page(item: Parse) -> Parse:
    return lambda data, client: Page([item(i, client) for i in data["items"]], data.get("next_cursor"))


def _query(**params: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; datetimes as ISO 8601, booleans as true/false."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out[k] = v
    return out


def _body(**fields: Any) -> dict[str, Any]:
    return {k: (str(v) if k == "agent_id" else v) for k, v in fields.items() if v is not None}


# --- runs -------------------------------------------------------------------------------------------------

def create_run(plan: dict[str, Any], inputs: dict[str, Any] | None, agent_id: Any) -> Call:
    return Call("POST", "/runs", json=_body(plan=plan, inputs=inputs, agent_id=agent_id), parse=_run)


def list_runs(cursor: str | None, limit: int | None, *, status: str | None = None, agent_id: Any = None,
              workflow: str | None = None, created_after: datetime | str | None = None,
              created_before: datetime | str | None = None) -> Call:
    return Call("GET", "/runs", params=_query(status=status, agent_id=agent_id and str(agent_id), workflow=workflow,
                                              created_after=created_after, created_before=created_before,
                                              limit=limit, cursor=cursor), parse=_page(_summary))


def get_run(run_id: Any) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}", parse=_run)


def run_timeline(run_id: Any, after_id: int | None) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}/timeline", params=_query(after_id=after_id), parse=_items(Event))


def get_step(run_id: Any, step_id: str) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}/steps/{seg(step_id)}", parse=_one(StepDetail))


def step_output(run_id: Any, step_id: str) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}/steps/{seg(step_id)}/output", parse=lambda d, c: d["output"])


def cancel_run(run_id: Any) -> Call:
    return Call("POST", f"/runs/{seg(run_id)}/cancel", parse=_run)


def resume_run(run_id: Any) -> Call:
    return Call("POST", f"/runs/{seg(run_id)}/resume", parse=_run)


def signal_run(run_id: Any, name: str, data: Any, idempotency_key: str | None) -> Call:
    body: dict[str, Any] = {"data": data}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return Call("POST", f"/runs/{seg(run_id)}/signals/{seg(name)}", json=body, parse=_one(SignalResult))


def run_signals(run_id: Any) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}/signals", parse=_items(SignalRecord))


def run_recovery(run_id: Any) -> Call:
    return Call("GET", f"/runs/{seg(run_id)}/recovery",
                parse=lambda d, c: [RecoverySuggestion.from_dict(x) for x in d["items"]])


def recovery_feedback(run_id: Any, suggestion_id: Any, helpful: bool, note: str | None) -> Call:
    return Call("POST", f"/runs/{seg(run_id)}/recovery/{seg(suggestion_id)}/feedback",
                json=_body(helpful=helpful, note=note), parse=_one(RecoverySuggestion))


def apply_recovery(run_id: Any, suggestion_id: Any) -> Call:
    return Call("POST", f"/runs/{seg(run_id)}/recovery/{seg(suggestion_id)}/apply", parse=_one(RecoverySuggestion))


def recovery_patterns(limit: int | None, code: str | None) -> Call:
    return Call("GET", "/recovery/patterns", params=_query(limit=limit, code=code), parse=lambda d, c: d["items"])


def recovery_quota() -> Call:
    return Call("GET", "/recovery/quota")


def events_path(run_id: Any) -> str:
    return f"/runs/{seg(run_id)}/events"


# --- workflows --------------------------------------------------------------------------------------------

def save_workflow(name: str, plan: dict[str, Any]) -> Call:
    return Call("POST", "/workflows", json={"name": name, "plan": plan}, parse=_one(Workflow))


def list_workflows(cursor: str | None, limit: int | None) -> Call:
    return Call("GET", "/workflows", params=_query(limit=limit, cursor=cursor), parse=_page(_one(Workflow)))


def get_workflow(name: str, version: int | None) -> Call:
    path = f"/workflows/{seg(name)}" + (f"/versions/{int(version)}" if version is not None else "")
    return Call("GET", path, parse=_one(Workflow))


def workflow_versions(name: str) -> Call:
    return Call("GET", f"/workflows/{seg(name)}/versions", parse=_items(Workflow))


def run_workflow(name: str, version: int | None, inputs: dict[str, Any] | None, agent_id: Any) -> Call:
    return Call("POST", f"/workflows/{seg(name)}/runs",
                json=_body(version=version, inputs=inputs, agent_id=agent_id), parse=_run)


# --- agents -----------------------------------------------------------------------------------------------

def create_agent(name: str, capabilities: dict[str, Any] | None) -> Call:
    return Call("POST", "/agents", json=_body(name=name, capabilities=capabilities), parse=_one(Agent))


def list_agents(cursor: str | None, limit: int | None) -> Call:
    return Call("GET", "/agents", params=_query(limit=limit, cursor=cursor), parse=_page(_one(Agent)))


def get_agent(agent_id: Any) -> Call:
    return Call("GET", f"/agents/{seg(agent_id)}", parse=_one(Agent))


def agent_runs(agent_id: Any, cursor: str | None, limit: int | None, status: str | None) -> Call:
    return Call("GET", f"/agents/{seg(agent_id)}/runs", params=_query(status=status, limit=limit, cursor=cursor),
                parse=_page(_summary))


def agent_run(agent_id: Any, run_id: Any) -> Call:
    return Call("GET", f"/agents/{seg(agent_id)}/runs/{seg(run_id)}", parse=_run)


def agent_provenance(agent_id: Any, cursor: str | None, limit: int | None) -> Call:
    return Call("GET", f"/agents/{seg(agent_id)}/provenance", params=_query(limit=limit, cursor=cursor),
                parse=_page(_one(Provenance)))


def get_agent_state(agent_id: Any) -> Call:
    return Call("GET", f"/agents/{seg(agent_id)}/state", parse=_one(AgentState))


def put_agent_state(agent_id: Any, state: dict[str, Any]) -> Call:
    return Call("PUT", f"/agents/{seg(agent_id)}/state", json={"state": state}, parse=_one(AgentState))


# --- skills, errors, simulate, inspect ----------------------------------------------------------------------

def list_skills(recommended: bool | None) -> Call:
    return Call("GET", "/skills", params=_query(recommended=recommended), parse=_items(Skill))


def list_errors() -> Call:
    return Call("GET", "/errors", parse=_items(CatalogEntry))


def get_error(code: str) -> Call:
    return Call("GET", f"/errors/{seg(code)}", parse=_one(CatalogEntry))


def simulate(plan: dict[str, Any], inputs: dict[str, Any] | None, agent_id: Any) -> Call:
    return Call("POST", "/simulate", json=_body(plan=plan, inputs=inputs, agent_id=agent_id), parse=_one(Simulation))


def inspect() -> Call:
    return Call("GET", "/inspect", parse=_one(Inspection))


def stream_event(event_name: str, data: str, client: Any) -> Event:
    """One server-sent event of ``/runs/{id}/events`` as an ``Event``; ``end`` carries the final RunSummary."""
    body = json.loads(data)
    if event_name == "end":
        return Event(type="end", data=body, run=_summary(body, client), raw=body)
    return Event.from_dict(body)


# --- connection ---------------------------------------------------------------------------------------------

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
# The server sends `: keepalive` about every 10 s: a stream silent for longer than this is dead.
STREAM_READ_TIMEOUT_S = 35.0


def base_url_of(url: str | None) -> str:
    """The server's base URL, without a trailing slash or the /api/v1 prefix (both are accepted)."""
    url = (url or os.environ.get("AOS_URL") or DEFAULT_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the API URL must start with http:// or https://, got {url!r}")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


def default_headers(api_key: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("AOS_API_KEY")
    headers = {"Accept": "application/json", "User-Agent": f"aos-sdk/{__version__} httpx/{httpx.__version__}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {**headers, **(extra or {})}
