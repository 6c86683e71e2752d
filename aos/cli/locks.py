"""`aos locks list`: who leads each singleton job (leases in distributed_locks)."""

from __future__ import annotations

import click
from rich.table import Table

from aos.cli.base import console, emit_json


@click.group()
def locks() -> None:
    """Leader-election leases of beat and the singleton jobs."""


@locks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def locks_list(as_json: bool) -> None:
    """List every lease: holder, fencing token, and whether it is held now (by the database clock).

    A lease that is not held is free: the next tick of its job takes it with a bigger fencing token."""
    from aos.services.locks import list_locks

    rows = list_locks()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no leases yet (nothing has run under leader election)")
        return
    table = Table("name", "held", "holder", "token", "acquired", "expires in s")
    for r in rows:
        table.add_row(r["name"], "yes" if r["held"] else "no", r["holder"], str(r["fencing_token"]),
                      r["acquired_at"], f"{r['expires_in_s']:.1f}" if r["held"] else "-")
    console.print(table)
