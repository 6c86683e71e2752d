"""`aos schedules create|list|delete|enable|disable`: stored workflows run on a cron expression."""

from __future__ import annotations

import click
from rich.text import Text

from aos.cli.base import console, emit_json, load_json_file, print_table

_tenant = click.option("--tenant", required=True, help="The tenant's name.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _ctx(tenant: str):  # noqa: ANN202
    from aos.db.session import session_scope
    from aos.services.tenancy import TenantContext, get_tenant_by_name

    with session_scope() as s:
        t = get_tenant_by_name(s, tenant)
        return TenantContext(tenant_id=t.id, tenant_name=t.name, key_id=None, scopes=frozenset({"admin"}))


@click.group()
def schedules() -> None:
    """User schedules: a stored workflow started by beat on a cron expression, once per tick."""


@schedules.command("create")
@click.argument("workflow")
@click.option("--cron", required=True,
              help="5 fields (`*/15 * * * *`), 6 with trailing seconds, or @hourly/@daily/….")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone the cron is read in.")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help="A JSON file of inputs.")
@click.option("--disabled", is_flag=True, help="Create it paused.")
@_tenant
@_json
def schedules_create(workflow: str, cron: str, timezone: str, inputs_file: str | None, disabled: bool,
                     tenant: str, as_json: bool) -> None:
    """Run the latest version of stored WORKFLOW on a cron schedule."""
    from aos.services.schedules import create_schedule

    inputs = load_json_file(inputs_file) if inputs_file else None
    sc = create_schedule(_ctx(tenant), workflow, cron, timezone=timezone, inputs=inputs, enabled=not disabled)
    if as_json:
        emit_json(sc)
    else:
        console.print(f"schedule {sc['id']} created: {workflow} at `{sc['cron']}` ({sc['timezone']}); "
                      f"next run {sc['next_fire_at']}", markup=False)


@schedules.command("list")
@_tenant
@_json
def schedules_list(tenant: str, as_json: bool) -> None:
    """List the tenant's schedules, soonest first, with what their last tick did."""
    from aos.services.listings import schedules as list_schedules
    from aos.services.listings import tenant_id_by_name

    rows = list_schedules(tenant_id_by_name(tenant))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print(f"no schedules for tenant {tenant} (`aos schedules create WORKFLOW --cron …` makes one)",
                      markup=False)
        return
    # the schedule id whole (delete/enable/disable take it); the last run's id (for `aos runs show`) when wide
    print_table(["id", "workflow", "cron", "next", "enabled", "tz", "last run", "last error"],
                [[r["id"], Text(r["workflow"] or "?"), Text(r["cron"]), (r["next_fire_at"] or "")[:16].replace("T", " "),
                  "yes" if r["enabled"] else "no", r["timezone"], r["last_run_id"] or "", Text(r["last_error"] or "")]
                 for r in rows],
                keep=("id", "last run"), drop=("last error", "last run", "tz", "enabled"))


@schedules.command("delete")
@click.argument("schedule_id")
@_tenant
def schedules_delete(schedule_id: str, tenant: str) -> None:
    """Delete a schedule (runs it started are kept)."""
    from aos.services.schedules import delete_schedule

    delete_schedule(_ctx(tenant), schedule_id)
    console.print(f"schedule {schedule_id} deleted", markup=False)


@schedules.command("enable")
@click.argument("schedule_id")
@_tenant
def schedules_enable(schedule_id: str, tenant: str) -> None:
    """Resume a paused schedule from its next tick (missed ticks do not fire)."""
    from aos.services.schedules import set_enabled

    sc = set_enabled(_ctx(tenant), schedule_id, True)
    console.print(f"schedule {schedule_id} enabled; next run {sc['next_fire_at']}", markup=False)


@schedules.command("disable")
@click.argument("schedule_id")
@_tenant
def schedules_disable(schedule_id: str, tenant: str) -> None:
    """Pause a schedule."""
    from aos.services.schedules import set_enabled

    set_enabled(_ctx(tenant), schedule_id, False)
    console.print(f"schedule {schedule_id} disabled", markup=False)
