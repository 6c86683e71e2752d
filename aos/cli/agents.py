"""`aos agents …`: named actors with a capability policy, through the API."""

from __future__ import annotations

import json

import click
from rich.text import Text

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


@click.group()
def agents() -> None:
    """Agents: named actors whose runs are limited by a capability policy."""


@agents.command("create")
@click.argument("name")
@click.option("--capabilities", "caps_file", type=click.Path(dir_okay=False),
              help="A JSON file: {allowed_skills, http_hosts, db_connections, max_cost_usd}.")
@api_options
@json_option
def agents_create(name: str, caps_file: str | None, url: str, api_key: str, as_json: bool) -> None:
    """Create agent NAME (with the capabilities of --capabilities; none means no limits)."""
    caps = load_json_object(caps_file, "capabilities") if caps_file else None
    a = api_client(url, api_key).agents.create(name, capabilities=caps)
    if as_json:
        emit_json(a.raw)
    else:
        console.print(f"agent {a.name} created (id {a.id}); run as it with `aos runs submit PLAN --agent {a.id}`",
                      markup=False, soft_wrap=True)


@agents.command("list")
@click.option("--limit", default=None, type=click.IntRange(1), help="Show at most this many.")
@api_options
@json_option
def agents_list(limit: int | None, url: str, api_key: str, as_json: bool) -> None:
    """List agents, newest first."""
    items = take(api_client(url, api_key).agents.list, limit)
    if as_json:
        emit_json({"items": [a.raw for a in items]})
        return
    print_table(["id", "name", "created", "capabilities"],
                [[a.id, Text(a.name), when(a.created_at), ", ".join(sorted(a.capabilities)) or "(no limits)"]
                 for a in items], keep=("id", "name"), wrap=("capabilities",), drop=("capabilities", "created"))


@agents.command("show")
@click.argument("agent_id")
@api_options
@json_option
def agents_show(agent_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Show an agent: its capabilities, its state and its latest runs."""
    client = api_client(url, api_key)
    a = client.agents.get(agent_id)
    if as_json:
        emit_json(a.raw)
        return
    console.print(f"agent {a.name}  (id {a.id}, created {when(a.created_at)})", markup=False)
    console.print("capabilities: " + (json.dumps(a.capabilities, sort_keys=True) if a.capabilities else
                                      "(no limits)"), markup=False, soft_wrap=True)
    if a.state:
        console.print("state: " + json.dumps(a.state, sort_keys=True)[:500], markup=False, soft_wrap=True)
    page = client.agents.runs(a.id, page_size=5).first_page()
    if page.items:
        print_table(["latest runs", "status", "created", "name"],
                    [[r.id, r.status, when(r.created_at), Text(r.name or "")] for r in page.items],
                    keep=("latest runs", "status"), drop=("name", "created"))
