"""`aos runs …` (an HTTP client of the API) and `aos skills list` (local registry)."""

from __future__ import annotations

import sys

import click
import httpx
from rich.table import Column, Table

from aos.cli.base import console, emit_json, load_json_file
from aos.cli.follow import _check, follow_run, submit

_url = click.option("--url", envvar="AOS_URL", default="http://127.0.0.1:8000", show_default=True,
                    help="API base URL (env AOS_URL; `aos dev` prints it).")
_key = click.option("--api-key", envvar="AOS_API_KEY", required=True,
                    help="API key (env AOS_API_KEY; `aos keys create` makes one).")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def runs() -> None:
    """Submit plans and inspect runs through the API."""


@runs.command("submit")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="A JSON file of inputs.")
@click.option("--follow", is_flag=True, help="Show each step live; exit non-zero unless the run succeeds.")
@_url
@_key
@_json
def runs_submit(plan_file: str, inputs_file: str | None, follow: bool, url: str, api_key: str, as_json: bool) -> None:
    """Submit PLAN_FILE (a plan in JSON) as a new run."""
    plan = load_json_file(plan_file)
    inputs = load_json_file(inputs_file) if inputs_file else None
    run = _guard(lambda: submit(url, api_key, plan, inputs))
    if not follow:
        emit_json(run) if as_json else console.print(f"run {run['id']} {run['status']}")
        return
    final = _guard(lambda: follow_run(url, api_key, run["id"], show=not as_json))
    if as_json:
        emit_json(final)
    sys.exit(0 if final["status"] == "succeeded" else 1)


@runs.command("show")
@click.argument("run_id")
@_url
@_key
@_json
def runs_show(run_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Show a run and its steps."""
    run = _guard(lambda: _check(httpx.get(f"{url}/api/v1/runs/{run_id}", headers=_h(api_key), timeout=30)))
    if as_json:
        emit_json(run)
        return
    console.print(f"run {run['id']}  {run['status']}  {run.get('name') or ''}", markup=False)
    if run.get("error"):
        console.print(f"  error: {run['error']['code']}: {run['error']['message']}", markup=False)
    table = Table("step", "skill", "status", "attempts", "ms", "cost $", "error")
    for st in run["steps"]:
        table.add_row(st["id"], st["skill"], st["status"], str(st["attempts"]),
                      f"{st['duration_ms'] or 0:.1f}", f"{st['cost_usd']:.6f}",
                      (st["error"] or {}).get("code") or "")
    console.print(table)


@runs.command("list")
@click.option("--status", default=None, help="Only runs in this status.")
@click.option("--limit", default=20, show_default=True)
@_url
@_key
@_json
def runs_list(status: str | None, limit: int, url: str, api_key: str, as_json: bool) -> None:
    """List recent runs."""
    params: dict = {"limit": limit}
    if status:
        params["status"] = status
    data = _guard(lambda: _check(httpx.get(f"{url}/api/v1/runs", params=params, headers=_h(api_key), timeout=30)))
    if as_json:
        emit_json(data)
        return
    table = Table("id", "status", "name", "steps", "created")
    for r in data["items"]:
        table.add_row(r["id"], r["status"], r.get("name") or "", f"{r['next_step']}/{r['steps_total']}",
                      r["created_at"] or "")
    console.print(table)


@runs.command("cancel")
@click.argument("run_id")
@_url
@_key
def runs_cancel(run_id: str, url: str, api_key: str) -> None:
    """Cancel a queued or running run."""
    run = _guard(lambda: _check(httpx.post(f"{url}/api/v1/runs/{run_id}/cancel", headers=_h(api_key), timeout=30)))
    console.print(f"run {run['id']} {run['status']}")


@runs.command("resume")
@click.argument("run_id")
@_url
@_key
def runs_resume(run_id: str, url: str, api_key: str) -> None:
    """Resume a failed or cancelled run from its first unfinished step."""
    run = _guard(lambda: _check(httpx.post(f"{url}/api/v1/runs/{run_id}/resume", headers=_h(api_key), timeout=30)))
    console.print(f"run {run['id']} {run['status']}")


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _guard(call):  # noqa: ANN001, ANN202
    from aos.errors import AosError

    try:
        return call()
    except httpx.HTTPError as exc:
        raise AosError("SERVICE_UNAVAILABLE", f"cannot reach the API ({type(exc).__name__}: {exc}); "
                       "is `aos dev` running and AOS_URL right?") from None


@click.group()
def skills() -> None:
    """The skill registry."""


@skills.command("list")
@click.option("--recommended", is_flag=True, help="Only the skills recommended for new users, best first.")
@_json
def skills_list(recommended: bool, as_json: bool) -> None:
    """List skills with their versions, side effects and determinism."""
    from aos.skills.registry import default_registry

    reg = default_registry()
    items = reg.recommended() if recommended else sorted(reg.all(), key=lambda s: s.ref)
    if as_json:
        emit_json([s.describe() for s in items])
        return
    table = Table(Column("skill", no_wrap=True), Column("side effect", no_wrap=True), "deterministic", "rank",
                  "description")
    for s in items:
        table.add_row(s.ref, str(s.side_effect), "yes" if s.deterministic else "no",
                      str(s.recommended or ""), s.description.split(". ")[0])
    console.print(table)
