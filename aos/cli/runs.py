"""`aos runs …`: submit plans and inspect runs through the API (the SDK's client)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.text import Text

from aos.cli.base import (
    api_client,
    api_options,
    console,
    emit_json,
    json_option,
    load_json_file,
    load_json_object,
    money,
    ms,
    parse_json_text,
    print_table,
    when,
)
from aos.cli.follow import follow_run, print_waiting
from aos.cli.recover import runs_recover, show_learned
from aos.sdk import Run

STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled", "dead_lettered")
_STATUS_STYLE = {"succeeded": "green", "failed": "red", "dead_lettered": "red", "cancelled": "yellow",
                 "running": "cyan", "retrying": "yellow", "queued": "dim", "waiting": "magenta"}

follow_option = click.option("--follow", is_flag=True,
                             help="Show each step live; exit non-zero unless the run succeeds.")
timeout_option = click.option("--timeout", type=float, default=None,
                              help="With --follow: stop following after this many seconds (the run goes on).")


def styled_status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def finish(client: Any, run: Run, follow: bool, timeout: float | None, as_json: bool,
           after_id: int | None = None) -> None:
    """What submit-like commands do with a new run: print it, or follow it and exit with its outcome."""
    if not follow:
        emit_json(run.raw) if as_json else console.print(f"run {run.id} {run.status}", markup=False)
        return
    final = follow_run(client, run.id, timeout=timeout, show=not as_json, after_id=after_id)
    if as_json:
        emit_json((final or client.runs.get(run.id)).raw)
    elif final is not None and final.status in ("failed", "dead_lettered"):
        show_learned(client, run.id, wait_s=3.0)  # a worker looks it up right after the failure
    sys.exit(0 if final is not None and final.status == "succeeded" else 1)


@click.group()
def runs() -> None:
    """Submit plans and inspect runs through the API."""


@runs.command("submit")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="A JSON file of inputs.")
@click.option("--agent", "agent_id", default=None, help="Run as this agent (its capabilities apply).")
@follow_option
@timeout_option
@api_options
@json_option
def runs_submit(plan_file: str, inputs_file: str | None, agent_id: str | None, follow: bool, timeout: float | None,
                url: str, api_key: str, as_json: bool) -> None:
    """Submit PLAN_FILE (a plan in JSON) as a new run.

    With --follow, each step is shown as it runs (duration, cost), budget warnings as they
    happen, and a failed run ends with its catalog code, the suggested recovery and exit 1."""
    plan = load_json_object(plan_file, "a plan")
    inputs = load_json_object(inputs_file, "inputs") if inputs_file else None
    client = api_client(url, api_key)
    finish(client, client.runs.create(plan, inputs=inputs, agent_id=agent_id), follow, timeout, as_json)


@runs.command("follow")
@click.argument("run_id")
@timeout_option
@api_options
@json_option
def runs_follow(run_id: str, timeout: float | None, url: str, api_key: str, as_json: bool) -> None:
    """Follow a run live from its first event until it is final; exit 1 unless it succeeds."""
    client = api_client(url, api_key)
    finish(client, client.runs.get(run_id), True, timeout, as_json)


@runs.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs in this status.")
@click.option("--agent", "agent_id", default=None, help="Only runs of this agent id.")
@click.option("--workflow", default=None, help="Only runs of this stored workflow (by name).")
@click.option("--since", "created_after", default=None, help="Created at or after this ISO 8601 time.")
@click.option("--before", "created_before", default=None, help="Created before this ISO 8601 time.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200), help="Runs per page.")
@click.option("--cursor", default=None, help="Continue from the cursor a previous page printed.")
@click.option("--all", "all_pages", is_flag=True, help="Every matching run (all pages), not one page.")
@api_options
@json_option
def runs_list(status: str | None, agent_id: str | None, workflow: str | None, created_after: str | None,
              created_before: str | None, limit: int, cursor: str | None, all_pages: bool, url: str, api_key: str,
              as_json: bool) -> None:
    """List runs, newest first, one page at a time (or --all)."""
    client = api_client(url, api_key)
    filters = {"status": status, "agent_id": agent_id, "workflow": workflow, "created_after": created_after,
               "created_before": created_before}
    if all_pages:
        pager = client.runs.list(page_size=limit, **filters)
        items, next_cursor = [r for page in pager.pages(cursor) for r in page.items], None
    else:
        page = client.runs.page(cursor=cursor, limit=limit, **filters)
        items, next_cursor = page.items, page.next_cursor
    if as_json:
        emit_json({"items": [r.raw for r in items], "next_cursor": next_cursor})
        return
    print_table(["id", "status", "error", "steps", "created", "cost", "name"],
                [[r.id, styled_status(r.status), r.error.code if r.error else "", f"{r.next_step}/{r.steps_total}",
                  when(r.created_at)[5:16], money(r.budget.spent_cost_usd), Text(r.name or "")] for r in items],
                keep=("id", "status", "error"), drop=("name", "cost", "steps", "created"))
    if next_cursor:
        console.print(f"more: aos runs list --cursor {next_cursor}" + (f" --limit {limit}" if limit != 20 else ""),
                      markup=False, style="dim", soft_wrap=True)


def print_run(run: Run) -> None:
    console.print(Text.assemble(f"run {run.id}  ", styled_status(run.status), f"  {run.name or ''}"))
    b = run.budget
    limits = ", ".join(f"{k} {v}" for k, v in (("max_cost_usd", b.max_cost_usd), ("max_tokens", b.max_tokens),
                                               ("max_steps", b.max_steps), ("max_wall_s", b.max_wall_s)) if v)
    console.print(f"  spent {money(b.spent_cost_usd)}, {b.spent_tokens} tokens, {b.steps_started} step(s) started"
                  + (f" (budget: {limits})" if limits else ""), markup=False)
    took = f" ({(run.finished_at - run.started_at).total_seconds():.2f}s)" if run.finished_at and run.started_at else ""
    console.print(f"  created {when(run.created_at)}  finished {when(run.finished_at) or '—'}{took}", markup=False)
    if run.error:
        e = run.error
        console.print(f"  [red]error[/red] {e.code}: ", end="")
        console.print(e.message or "", markup=False, soft_wrap=True)
        if e.recovery_mode:
            console.print(f"  suggested recovery: {e.recovery_mode} — {e.suggestion or ''}", markup=False,
                          soft_wrap=True)
    if run.waiting is not None:
        print_waiting(run.id, run.waiting.signal, run.waiting.step_id, run.waiting.reason,
                      run.waiting.deadline.isoformat() if run.waiting.deadline else None, run.waiting.schema)
    for a in run.amendments:  # the plan_hash is the submitted plan's: say what changed since, and who did it
        console.print(f"  amended: {a.summary} (after attempt {a.after_attempt}, by {a.applied_by})", markup=False,
                      soft_wrap=True)
    print_table(["step", "status", "error", "tries", "duration", "cost", "skill"],
                [[st.id, styled_status(st.status), _step_error(st), str(st.attempts),
                  ms(st.duration_ms), money(st.cost_usd), st.skill] for st in run.steps],
                keep=("step", "status", "error"), drop=("skill", "cost", "duration", "tries"))


def _step_error(st: Any) -> str:
    code = st.error.code if st.error else ""
    if st.status == "retrying" and st.next_attempt_at is not None:
        return f"{code}, next try {when(st.next_attempt_at)}"
    return code


@runs.command("show")
@click.argument("run_id")
@api_options
@json_option
def runs_show(run_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Show a run: status, budget, error with its suggested recovery, its amended steps, and a table of its
    steps."""
    client = api_client(url, api_key)
    run = client.runs.get(run_id)
    if as_json:
        emit_json(run.raw)
        return
    print_run(run)
    if run.status in ("failed", "dead_lettered"):
        show_learned(client, run.id)


@runs.command("step")
@click.argument("run_id")
@click.argument("step_id")
@api_options
@json_option
def runs_step(run_id: str, step_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Show one step of a run with every attempt (status, error, cost, tokens, worker, duration)."""
    st = api_client(url, api_key).runs.step(run_id, step_id)
    if as_json:
        emit_json(st.raw)
        return
    console.print(Text.assemble(f"step {st.id} ({st.skill}) of run {run_id}: ", styled_status(st.status)))
    print_table(["attempt", "status", "error", "duration", "cost", "tokens in/out", "worker"],
                [[str(a.attempt), styled_status(a.status), a.error.code if a.error else "", ms(a.duration_ms),
                  money(a.cost_usd), f"{a.input_tokens}/{a.output_tokens}", Text(a.worker or "")]
                 for a in st.attempts], keep=("attempt", "status", "error"),
                drop=("worker", "tokens in/out", "cost", "duration"))
    for a in st.attempts:
        if a.error and a.error.message:
            console.print(f"  attempt {a.attempt}: {a.error.code}: ", end="", markup=False)
            console.print(a.error.message, markup=False)


@runs.command("cancel")
@click.argument("run_id")
@api_options
@json_option
def runs_cancel(run_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Cancel a queued or running run: no step starts after this returns."""
    run = api_client(url, api_key).runs.cancel(run_id)
    emit_json(run.raw) if as_json else console.print(f"run {run.id} {run.status}", markup=False)


@runs.command("resume")
@click.argument("run_id")
@follow_option
@timeout_option
@api_options
@json_option
def runs_resume(run_id: str, follow: bool, timeout: float | None, url: str, api_key: str, as_json: bool) -> None:
    """Resume a failed, cancelled, dead-lettered or waiting run from its first unfinished step (a waiting run
    leaves its wait: its step runs again)."""
    client = api_client(url, api_key)
    # follow from the resume on, not the run's earlier history (the failure being resumed)
    before = client.runs.timeline(run_id) if follow else []
    finish(client, client.runs.resume(run_id), follow, timeout, as_json, after_id=before[-1].id if before else None)


@runs.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--data", "data", default=None, help="The payload as JSON text (default: null).")
@click.option("--data-file", "data_file", default=None, type=click.Path(dir_okay=False),
              help="The payload from a JSON file (instead of --data).")
@click.option("--key", "idempotency_key", default=None,
              help="Idempotency key: sending the same key again answers as the first time and changes nothing.")
@follow_option
@timeout_option
@api_options
@json_option
def runs_signal(run_id: str, name: str, data: str | None, data_file: str | None, idempotency_key: str | None,
                follow: bool, timeout: float | None, url: str, api_key: str, as_json: bool) -> None:
    """Deliver signal NAME to a waiting run: the payload becomes the waiting step's output and the run goes on
    (`aos runs show RUN` says what it waits for)."""
    if data is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    payload = load_json_file(data_file) if data_file is not None else parse_json_text(data, "--data")
    client = api_client(url, api_key)
    before = client.runs.timeline(run_id) if follow else []
    result = client.runs.signal(run_id, name, payload, idempotency_key=idempotency_key)
    if not follow:
        if as_json:
            emit_json(result.raw)
        else:
            again = " (already delivered with this key: nothing changed)" if result.duplicate else ""
            console.print(f"run {result.run_id} {result.status}: signal {result.signal} delivered to step "
                          f"{result.step_id}{again}", markup=False)
        return
    finish(client, client.runs.get(run_id), follow, timeout, as_json, after_id=before[-1].id if before else None)
runs.add_command(runs_recover)
