"""`aos workflows …`: stored, versioned plans, through the API."""

from __future__ import annotations

import json

import click

from aos.cli.base import (
    api_client,
    api_options,
    console,
    emit_json,
    json_option,
    load_json_object,
    print_table,
    take,
    when,
)
from aos.cli.runs import finish, follow_option, timeout_option
from aos.sdk import Workflow


@click.group()
def workflows() -> None:
    """Stored workflows: plans saved by name, each save a new version."""


def _line(w: Workflow) -> str:
    return f"workflow {w.name} version {w.version} ({len(w.plan.get('steps', []))} steps, plan {w.plan_hash})"


@workflows.command("save")
@click.argument("name")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@api_options
@json_option
def workflows_save(name: str, plan_file: str, url: str, api_key: str, as_json: bool) -> None:
    """Validate PLAN_FILE and store it as the next version of workflow NAME."""
    w = api_client(url, api_key).workflows.save(name, load_json_object(plan_file, "a plan"))
    emit_json(w.raw) if as_json else console.print(f"saved {_line(w)}", markup=False)


@workflows.command("list")
@click.option("--limit", default=None, type=click.IntRange(1), help="Show at most this many.")
@api_options
@json_option
def workflows_list(limit: int | None, url: str, api_key: str, as_json: bool) -> None:
    """List workflows (the latest version of each), newest first."""
    items = take(api_client(url, api_key).workflows.list, limit)
    if as_json:
        emit_json({"items": [w.raw for w in items]})
        return
    print_table(["name", "version", "steps", "saved", "plan hash"],
                [[w.name, str(w.version), str(len(w.plan.get("steps", []))), when(w.created_at),
                  (w.plan_hash or "")[:16]] for w in items], keep=("name", "version"), drop=("plan hash",))


@workflows.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="This version (default: the latest).")
@click.option("--versions", "all_versions", is_flag=True, help="List every version instead.")
@api_options
@json_option
def workflows_show(name: str, version: int | None, all_versions: bool, url: str, api_key: str,
                   as_json: bool) -> None:
    """Show a workflow's plan (the latest version, or --version N), or --versions to list them."""
    client = api_client(url, api_key)
    if all_versions:
        versions = client.workflows.versions(name)
        if as_json:
            emit_json({"items": [w.raw for w in versions]})
            return
        print_table(["version", "steps", "saved", "plan hash"],
                    [[str(w.version), str(len(w.plan.get("steps", []))), when(w.created_at),
                      (w.plan_hash or "")[:16]] for w in versions], keep=("version",))
        return
    w = client.workflows.get(name, version=version)
    if as_json:
        emit_json(w.raw)
        return
    console.print(_line(w) + f", saved {when(w.created_at)}", markup=False)
    console.print(json.dumps(w.plan, indent=2), markup=False, soft_wrap=True)


@workflows.command("run")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Run this version (default: the latest).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="A JSON file of inputs.")
@click.option("--agent", "agent_id", default=None, help="Run as this agent (its capabilities apply).")
@follow_option
@timeout_option
@api_options
@json_option
def workflows_run(name: str, version: int | None, inputs_file: str | None, agent_id: str | None, follow: bool,
                  timeout: float | None, url: str, api_key: str, as_json: bool) -> None:
    """Start a run of workflow NAME; with --follow, show it step by step and exit 1 unless it succeeds."""
    client = api_client(url, api_key)
    inputs = load_json_object(inputs_file, "inputs") if inputs_file else None
    finish(client, client.workflows.run(name, version=version, inputs=inputs, agent_id=agent_id), follow, timeout,
           as_json)
