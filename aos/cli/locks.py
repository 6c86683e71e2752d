"""`aos locks list`: who leads each singleton job (leases in distributed_locks)."""

from __future__ import annotations

import click
from rich.text import Text

from aos.cli.base import console, emit_json, print_table


@click.group()
def locks() -> None:
    """Leader-election leases of beat and the singleton jobs."""


@locks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def locks_list(as_json: bool) -> None:
    """List every lease: holder, fencing token, and whether it is held now (by the database clock).

    A lease that is not held is free: the next tick of its job takes it with a bigger fencing token."""
    from aos.services.listings import locks as list_locks

    rows = list_locks()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no leases yet (nothing has run under leader election)")
        return
    print_table(["name", "held", "token", "expires in s", "holder", "acquired"],
                [[r["name"], "yes" if r["held"] else "no", str(r["fencing_token"]),
                  f"{r['expires_in_s']:.1f}" if r["held"] else "-", Text(r["holder"] or ""),
                  str(r["acquired_at"] or "")[:19].replace("T", " ")] for r in rows],
                keep=("name", "held", "token", "holder"), drop=("acquired", "expires in s"))
