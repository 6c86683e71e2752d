"""`aos simulate PLAN_FILE`: what a plan would cost and whether it would be allowed, without running it.

It asks the API (POST /api/v1/simulate), so the estimate uses the history of the same tenant's
past runs and the agent's real capability policy.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Column

from aos.cli.base import (
    api_client,
    api_options,
    console,
    emit_json,
    json_option,
    load_json_object,
    money,
    table,
)

_VERDICT_STYLE = {"within": "green", "allowed": "green", "unlimited": "yellow", "not_checked": "yellow",
                  "exceeds": "red", "denied": "red"}


def _problem(p: Any) -> str:
    if isinstance(p, dict):
        where = f"{p['path']}: " if p.get("path") else ""
        return f"{where}{p.get('code', '')}: {p.get('message', '')}".strip(": ")
    return str(p)


def _verdict(v: str) -> str:
    style = _VERDICT_STYLE.get(v, "")
    return f"[{style}]{v}[/{style}]" if style else v


@click.command()
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="A JSON file of inputs.")
@click.option("--agent", "agent_id", default=None, help="Check the plan against this agent's capabilities.")
@api_options
@json_option
def simulate(plan_file: str, inputs_file: str | None, agent_id: str | None, url: str, api_key: str,
             as_json: bool) -> None:
    """Estimate a plan's cost, tokens and latency per step and in total, and check its budget and
    capabilities; nothing runs. Exits 1 when the plan would exceed its budget or be denied."""
    plan = load_json_object(plan_file, "a plan")
    inputs = load_json_object(inputs_file, "inputs") if inputs_file else None
    sim = api_client(url, api_key).simulate(plan, inputs=inputs, agent_id=agent_id)
    refused = sim.budget.verdict == "exceeds" or sim.capabilities.verdict == "denied"
    if as_json:
        emit_json(sim.raw)
        sys.exit(1 if refused else 0)
    console.print(f"simulation of {escape(str(plan.get('name') or plan_file))} (nothing ran), plan {sim.plan_hash}")
    grid = table(Column("step", no_wrap=True), Column("skill", no_wrap=True), Column("cost", justify="right"),
                 Column("tokens", justify="right"), Column("latency", justify="right"), "basis")
    for st in sim.steps:
        basis = f"history ({st.samples})" if st.basis == "history" else st.basis
        if st.failure_rate:
            basis += f", fails {st.failure_rate * 100:.0f}%"
        grid.add_row(st.id + (" *" if st.warnings else ""), st.skill, money(st.estimated_cost_usd),
                     str(st.estimated_tokens), f"{st.estimated_latency_ms:.0f} ms", basis)
    t = sim.total
    grid.add_section()
    grid.add_row("total", "", money(t.get("estimated_cost_usd")), str(t.get("estimated_tokens", "")),
                 f"{t.get('estimated_latency_ms') or 0:.0f} ms", "")
    console.print(grid)
    for st in sim.steps:
        for w in st.warnings:
            console.print(f"* {st.id}: {_problem(w)}", markup=False)
    b = sim.budget
    limits = ", ".join(x for x in (f"max {money(b.max_cost_usd)}" if b.max_cost_usd is not None else "",
                                   f"max {b.max_tokens} tokens" if b.max_tokens is not None else "",
                                   f"{money(b.daily_remaining_usd)} left today"
                                   if b.daily_remaining_usd is not None else "") if x)
    console.print(f"budget: {_verdict(b.verdict)}" + (f" ({limits})" if limits else ""))
    for p in b.problems:
        console.print(f"  {_problem(p)}", markup=False, soft_wrap=True)
    console.print(f"capabilities: {_verdict(sim.capabilities.verdict)}")
    for p in sim.capabilities.problems:
        console.print(f"  {_problem(p)}", markup=False, soft_wrap=True)
    for w in sim.warnings:
        console.print("[yellow]warning:[/yellow] ", end="")
        console.print(_problem(w), markup=False, soft_wrap=True)
    sys.exit(1 if refused else 0)
