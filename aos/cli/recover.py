"""`aos runs recover RUN`: the learned recovery suggestion of a failed run, and applying it."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from aos.cli.base import api_client, api_options, console, emit_json, json_option
from aos.sdk import AosApiError


def latest_suggestion(client: Any, run_id: str, wait_s: float = 0.0) -> Any | None:
    """The run's newest suggestion, waiting up to ``wait_s`` for a worker to make it (it follows the failure)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = client.runs.recovery(run_id)
        if found or time.monotonic() >= deadline:
            return found[0] if found else None
        time.sleep(0.25)


def show_suggestion(sug: Any, run_id: str) -> None:
    rate = f", success rate {sug.success_rate:.0%}" if sug.success_rate is not None else ""
    params = ", ".join(f"{k}={v}" for k, v in sug.parameters.items())
    console.print(f"  learned recovery ({sug.layer}{rate}, confidence {sug.confidence:.2f}): {sug.mode}"
                  + (f" ({params})" if params else "") + " — ", end="", markup=False)
    console.print(sug.explanation, markup=False, soft_wrap=True)
    if sug.metadata.get("code") == "QUOTA_EXCEEDED":
        console.print("  (the recovery quota is spent for today: this is the catalog's advice)", markup=False,
                      style="dim")
    if sug.status == "offered":
        console.print(f"  apply it: aos runs recover {run_id} --apply --suggestion {sug.id}", markup=False,
                      style="dim", soft_wrap=True)
    else:
        console.print(f"  status: {sug.status}" + (f" (by {sug.applied_by})" if sug.applied_by else ""),
                      markup=False)


def show_learned(client: Any, run_id: str, wait_s: float = 0.0) -> None:
    """The learned suggestion under a failed run's output (nothing when there is none, or the API is older)."""
    try:
        sug = latest_suggestion(client, run_id, wait_s)
    except AosApiError:
        return
    if sug is not None:
        show_suggestion(sug, run_id)


@click.command("recover")
@click.argument("run_id")
@click.option("--apply", "do_apply", is_flag=True,
              help="Apply the suggestion: the run resumes from its failed step, amended first when the suggestion "
                   "changes it (timeout_s, max_attempts, args, fallback_skill; shown by `aos runs show`).")
@click.option("--suggestion", "suggestion_id", default=None, help="Which suggestion (default: the newest).")
@click.option("--helpful/--not-helpful", default=None, help="Say whether the suggestion helped.")
@click.option("--wait", "wait_s", type=float, default=5.0, show_default=True,
              help="Seconds to wait for a worker to make the suggestion of a run that just failed.")
@api_options
@json_option
def runs_recover(run_id: str, do_apply: bool, suggestion_id: str | None, helpful: bool | None, wait_s: float,
                 url: str, api_key: str, as_json: bool) -> None:
    """Show the learned recovery suggestion of a failed run; --apply applies it, --helpful/--not-helpful judges it.

    Applying a suggestion that changes the failed step (a longer timeout_s, more max_attempts, corrected args, a
    fallback_skill) amends that step of this run only, validated like a submitted plan (AMENDMENT_INVALID when it
    would not be), recorded as an amendment; the run's plan_hash stays the submitted plan's. ABORT, SKIP and
    ESCALATE suggestions are not applied (SUGGESTION_NOT_APPLICABLE says what to do instead).

    A suggestion comes from the cheapest layer that has one: the same failure seen before (cache), a similar one
    (vector), or a newly written one (llm); `catalog` is the code's own advice when the quota is spent."""
    client = api_client(url, api_key)
    sug = latest_suggestion(client, run_id, wait_s) if suggestion_id is None else None
    sid = suggestion_id or (sug.id if sug is not None else None)
    if sid is None:
        console.print(f"run {run_id} has no recovery suggestion (it has not failed, or none was made yet)",
                      markup=False)
        sys.exit(1)
    if helpful is not None:
        sug = client.runs.recovery_feedback(run_id, sid, helpful=helpful)
    if do_apply:
        sug = client.runs.apply_recovery(run_id, sid)
    if sug is None:
        sug = next((s for s in client.runs.recovery(run_id) if s.id == sid), None)
        if sug is None:
            console.print(f"SUGGESTION_NOT_FOUND: run {run_id} has no suggestion {sid}", markup=False)
            sys.exit(1)
    if as_json:
        emit_json(sug.raw)
        return
    console.print(f"run {run_id}: {sug.error_code} at step {sug.step_id}", markup=False)
    show_suggestion(sug, run_id)
    if do_apply:
        console.print(f"applied: the run resumes from step {sug.step_id} (follow it: aos runs follow {run_id})",
                      markup=False)
