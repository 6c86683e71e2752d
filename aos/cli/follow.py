"""Submitting a plan over HTTP and following its run step by step (quickstart and `runs submit --follow`)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from aos.cli.base import console
from aos.errors import AosError


def _check(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 400:
        try:
            body = resp.json()
            raise AosError(body.get("code", "INTERNAL_ERROR"), body.get("detail", resp.text),
                           problems=body.get("problems"))
        except ValueError:
            raise AosError("INTERNAL_ERROR", f"HTTP {resp.status_code}: {resp.text[:200]}") from None
    return resp.json()


def submit(url: str, key: str, plan: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"plan": plan}
    if inputs:
        body["inputs"] = inputs
    return _check(httpx.post(f"{url}/api/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30))


def follow_run(url: str, key: str, run_id: str, *, timeout: float = 300.0, poll_s: float = 0.3,
               show: bool = True) -> dict[str, Any]:
    """Print each step as it finishes (duration, cost), budget warnings, and the outcome; return the run.
    ``show=False`` prints nothing (for `--json`, whose stdout must be one JSON document)."""
    headers = {"Authorization": f"Bearer {key}"}
    shown_events = 0
    deadline = time.monotonic() + timeout
    if show:
        console.print(f"run {run_id}", markup=False)
    while True:
        # the run first, then its events: a run seen final has all its events written already
        run = _check(httpx.get(f"{url}/api/v1/runs/{run_id}", headers=headers, timeout=30))
        events = _check(httpx.get(f"{url}/api/v1/runs/{run_id}/timeline", headers=headers, timeout=30))["items"]
        for ev in events[shown_events:] if show else ():
            _print_event(ev)
        shown_events = len(events)
        if run["status"] in ("succeeded", "failed", "cancelled", "dead_lettered"):
            if show:
                _print_outcome(run)
            return run
        if time.monotonic() > deadline:
            console.print(f"still {run['status']} after {timeout:.0f}s; follow it with `aos runs show {run_id}`")
            return run
        time.sleep(poll_s)


def _print_event(ev: dict[str, Any]) -> None:
    d, t, sid = ev["data"], ev["type"], ev.get("step_id")
    if t == "step.succeeded":
        console.print(f"  [green]✓[/green] {sid:<16} {d.get('duration_ms') or 0:>9.1f} ms  ${d.get('cost_usd', 0):.6f}")
    elif t == "step.retrying":
        console.print(f"  [yellow]↻[/yellow] {sid:<16} {d['code']} — retry in {d['countdown_s']:.2f}s")
    elif t == "step.skipped":
        console.print(f"  [yellow]-[/yellow] {sid:<16} skipped after {d['code']}")
    elif t == "step.failed":
        console.print(f"  [red]✗[/red] {sid:<16} {d.get('code')}: {d.get('message', '')}", soft_wrap=True)
    elif t == "budget.warning":
        console.print(f"  [yellow]![/yellow] budget warning: {d.get('ratios')}")
    elif t == "budget.exceeded":
        console.print(f"  [red]![/red] budget exceeded: {d.get('message')}")


def _print_outcome(run: dict[str, Any]) -> None:
    b = run["budget"]
    if run["status"] == "succeeded":
        console.print(f"[green]run succeeded[/green]: {run['steps_total']} steps, ${b['spent_cost_usd']:.6f}, "
                      f"{b['spent_tokens']} tokens")
        last = run["steps"][-1] if run.get("steps") else None
        if last and last.get("output") is not None:
            out = last["output"]
            text = out.get("text") if isinstance(out, dict) and "text" in out else json.dumps(out)[:300]
            console.print(f"  {last['id']}: {text}", markup=False, soft_wrap=True)
        return
    err = run.get("error") or {}
    from aos.runtime.catalog import CATALOG

    code = err.get("code") or "INTERNAL_ERROR"
    recovery = CATALOG.get(code).recovery if code in CATALOG else "ESCALATE"
    console.print(f"[red]run {run['status']}[/red]: {code}: {err.get('message', '')}", soft_wrap=True)
    console.print(f"  suggested recovery: {recovery} — {CATALOG.get(code).description if code in CATALOG else ''}",
                  soft_wrap=True)
