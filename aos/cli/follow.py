"""Following a run live over the API's event stream (`runs submit --follow`, `runs follow`, quickstart).

Each step is shown as it starts and ends (duration, cost), retries and budget warnings as they happen,
and at the end the outcome: on failure the catalog code, the suggested recovery mode and what to do.
"""

from __future__ import annotations

import json
from typing import Any

from aos.cli.base import console, money
from aos.sdk import AosApiError, Client, Event, Run, RunWaitTimeout


def follow_run(client: Client, run_id: str, *, timeout: float | None = None, show: bool = True,
               after_id: int | None = None) -> Run | None:
    """Print the run's events until it is final and return the final run (None when ``timeout`` passed first).
    ``show=False`` prints nothing (for `--json`, whose stdout must be one JSON document)."""
    if show:
        console.print(f"run {run_id}", markup=False)
    try:
        for ev in client.runs.events(run_id, after_id=after_id, timeout=timeout):
            if ev.type == "end":
                break
            if show:
                print_event(ev, run_id)
    except RunWaitTimeout:
        if show:
            console.print(f"still running after {timeout:g}s; the run goes on: `aos runs follow {run_id}` "
                          f"or `aos runs show {run_id}`", markup=False)
        return None
    run = client.runs.get(run_id)
    if show:
        print_outcome(client, run)
    return run


def _ratios(data: dict[str, Any]) -> str:
    parts = [f"{k} {v * 100:.0f}%" for k, v in sorted((data.get("ratios") or {}).items())]
    return ", ".join(parts) or "a limit is near"


def print_event(ev: Event, run_id: str | None = None) -> None:
    d, t, sid = ev.data, ev.type, ev.step_id or ""
    if t == "step.started":
        attempt = d.get("attempt") or 1
        console.print(f"  [dim]▸ {sid:<16} started{f' (attempt {attempt})' if attempt > 1 else ''}[/dim]")
    elif t == "step.redelivered":
        console.print(f"  [yellow]↺[/yellow] {sid:<16} redelivered (its worker was lost); attempt "
                      f"{d.get('attempt', '?')} continues")
    elif t == "step.succeeded":
        console.print(f"  [green]✓[/green] {sid:<16} {d.get('duration_ms') or 0:>9.1f} ms  "
                      f"{money(d.get('cost_usd') or 0.0)}")
    elif t == "step.retrying":
        console.print(f"  [yellow]↻[/yellow] {sid:<16} {d.get('code')}: retry {(d.get('attempt') or 1) + 1} in "
                      f"{d.get('countdown_s', 0):.2f}s", soft_wrap=True)
    elif t == "step.fallback":
        console.print(f"  [yellow]↪[/yellow] {sid:<16} ran its fallback after {d.get('code')}")
    elif t == "step.skipped":
        console.print(f"  [yellow]-[/yellow] {sid:<16} skipped after {d.get('code')}: ", end="")
        console.print(str(d.get("message", "")), markup=False, soft_wrap=True)
    elif t == "step.failed":
        console.print(f"  [red]✗[/red] {sid:<16} {d.get('code')}: ", end="")
        console.print(str(d.get("message", "")), markup=False, soft_wrap=True)
    elif t == "budget.warning":
        console.print(f"  [yellow]![/yellow] budget warning: {_ratios(d)} of the run's budget used "
                      f"(spent {money(d.get('spent_cost_usd'))}, {d.get('spent_tokens', 0)} tokens)")
    elif t == "budget.exceeded":
        console.print("  [red]![/red] budget exceeded: ", end="")
        console.print(str(d.get("message", "")), markup=False, soft_wrap=True)
    elif t == "run.cancelled":
        console.print("  [yellow]run cancelled[/yellow]")
    elif t == "run.resumed":
        later = f"; the step runs again at {d['resumes_at']}" if d.get("resumes_at") else ""
        console.print(f"  resumed from step {d.get('from_step')} ({d.get('reason', 'resume')}){later}", markup=False)
    elif t == "run.waiting":
        print_waiting(run_id, d.get("signal", ""), sid, d.get("reason"), d.get("deadline"), None)
    elif t == "signal.received":
        console.print(f"  [green]▶[/green] {sid:<16} signal {d.get('signal')} received; the run goes on")
    elif t == "signal.expired":
        console.print(f"  [red]⏱[/red] {sid:<16} no signal {d.get('signal')} before {d.get('deadline')}",
                      markup=False)
    elif t == "step.deferred":
        console.print(f"  [yellow]⏸[/yellow] {sid:<16} {d.get('code')}: {d.get('upstream')} is paused; "
                      f"tries again in {d.get('countdown_s', 0):.1f}s (no attempt spent)", soft_wrap=True)
    elif t in ("circuit.opened", "circuit.half_open", "circuit.closed"):
        state = t.split(".", 1)[1].replace("_", "-")
        console.print(f"  [yellow]⚡[/yellow] circuit breaker of {d.get('upstream')} {state}", markup=False)


def print_waiting(run_id: str | None, signal: str, step_id: str, reason: str | None, deadline: str | None,
                  schema: dict[str, Any] | None) -> None:
    """What a waiting run waits for, and the command that answers it."""
    console.print(f"  [magenta]⏸[/magenta] {step_id:<16} waits for signal [bold]{signal}[/bold]"
                  + (f" until {deadline}" if deadline else " (no deadline)"))
    if reason:
        console.print(f"    {reason}", markup=False, soft_wrap=True)
    if schema:
        console.print(f"    payload schema: {json.dumps(schema)}", markup=False, soft_wrap=True)
    console.print(f"    answer: aos runs signal {run_id or 'RUN'} {signal} --data '<JSON>'", markup=False,
                  soft_wrap=True)


def print_outcome(client: Client, run: Run) -> None:
    b = run.budget
    took = f" in {(run.finished_at - run.started_at).total_seconds():.2f}s" if run.finished_at and run.started_at \
        else ""
    if run.status == "succeeded":
        console.print(f"[green]run succeeded[/green]: {run.steps_total} steps{took}, {money(b.spent_cost_usd)}, "
                      f"{b.spent_tokens} tokens")
        last = run.steps[-1] if run.steps else None
        if last is not None and last.output is not None:
            out = last.output
            text = out["text"] if isinstance(out, dict) and isinstance(out.get("text"), str) else json.dumps(out)
            console.print(f"  {last.id}: {text[:300]}", markup=False, soft_wrap=True)
        return
    err = run.error
    code = err.code if err else "INTERNAL_ERROR"
    console.print(f"[red]run {run.status}[/red]: {code}: ", end="")
    console.print((err.message if err else None) or "", markup=False, soft_wrap=True)
    failed = next((s for s in run.steps if s.status in ("failed", "running") and s.error), None)
    if failed is not None:
        console.print(f"  at step {failed.id} ({failed.skill}), after {failed.attempts} attempt(s)", markup=False)
    mode, suggestion = (err.recovery_mode, err.suggestion) if err else (None, None)
    if mode is None or suggestion is None:
        try:  # an older server sends only code and message: ask the catalog
            entry = client.errors.get(code)
            mode, suggestion = mode or entry.recovery_mode, suggestion or entry.suggestion or entry.description
        except AosApiError:
            pass
    console.print(f"  suggested recovery: {mode or 'ESCALATE'} — ", end="")
    console.print(suggestion or "see `aos errors show " + code + "`", markup=False, soft_wrap=True)
    if run.status == "cancelled":
        console.print(f"  next: `aos runs resume {run.id}` continues from its first unfinished step", markup=False)
    elif err is not None and err.retryable:
        console.print(f"  next: once the cause is gone, `aos runs resume {run.id}` retries from the failed step",
                      markup=False)
    else:  # the same step with the same inputs would fail the same way
        console.print(f"  next: fix the plan or its inputs and submit a new run (`aos runs resume {run.id}` "
                      "retries the same step with the same inputs)", markup=False)
