"""`aos retention run [--dry-run]`: delete data older than the retention policy."""

from __future__ import annotations

import click

from aos.cli.base import console, emit_json


@click.group()
def retention() -> None:
    """Retention of old runs, checkpoints, events, outbox rows, replay log and dead-letter archive."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Rows per transaction (default AOS_RETENTION_BATCH).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def retention_run(dry_run: bool, batch: int | None, as_json: bool) -> None:
    """Apply the AOS_RETENTION_* policy now, table by table in small transactions.

    Safe next to live traffic and next to beat's own retention job (the deletes are idempotent and skip
    rows others hold). --dry-run prints the per-table counts a run would delete right now."""
    from aos.services import retention as service

    rules = service.describe_policy()
    planned = service.plan()
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "would_delete": planned, "policy": rules})
            return
        for r in rules:
            console.print(f"{r['table']:<20} {planned[r['table']]:>10}  (older than {r['cutoff']})", markup=False)
        console.print(f"would delete {sum(planned.values())} rows (dry run: nothing deleted)")
        return

    def progress(table: str, done: int) -> None:
        if not as_json:
            console.print(f"  {table}: {done}/{max(done, planned.get(table, 0))} deleted", markup=False)

    deleted = service.run(batch=batch, on_batch=progress)
    if as_json:
        emit_json({"dry_run": False, "deleted": deleted, "policy": rules})
        return
    for r in rules:
        console.print(f"{r['table']:<20} {deleted.get(r['table'], 0):>10}  deleted", markup=False)
    console.print(f"deleted {sum(deleted.values())} rows")
