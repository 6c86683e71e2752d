"""`aos tenants` and `aos keys`."""

from __future__ import annotations

import click

from aos.cli.base import console, emit_json


@click.group()
def tenants() -> None:
    """Tenants: the organisations whose runs AOS keeps apart."""


@tenants.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def tenants_create(name: str, as_json: bool) -> None:
    """Create a tenant named NAME."""
    from aos.db.session import session_scope
    from aos.services.tenancy import create_tenant

    with session_scope() as s:
        t = create_tenant(s, name)
        out = {"id": str(t.id), "name": t.name}
    if as_json:
        emit_json(out)
    else:
        console.print(f"tenant {out['name']} created (id {out['id']}); next: aos keys create --tenant {name}")


@tenants.command("list")
def tenants_list() -> None:
    """List tenants."""
    from sqlalchemy import select

    from aos.db.models import Tenant
    from aos.db.session import session_scope

    with session_scope() as s:
        for t in s.scalars(select(Tenant).order_by(Tenant.name)):
            console.print(f"{t.name}\t{t.id}", markup=False)


_LIMIT_OPTIONS = (("--key-rpm", "key_requests_per_minute", int, "Request units a minute per API key or token subject."),
                  ("--tenant-rpm", "tenant_requests_per_minute", int, "Request units a minute for the whole tenant."),
                  ("--daily-requests", "daily_requests", int, "API requests a UTC day."),
                  ("--daily-runs", "daily_runs", int, "Runs submitted a UTC day."),
                  ("--daily-tokens", "daily_tokens", int, "LLM tokens a UTC day (past it, new runs are refused)."),
                  ("--daily-budget-usd", "daily_budget_usd", float, "Cost a UTC day; steps reserve against it."))


def _limit_value(field: str, kind: type, raw: str) -> int | float | None:
    if raw.strip().lower() in ("none", "default", "off"):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise click.BadParameter(f"{field} takes a number or `none`") from None


def _limits_command(fn):  # noqa: ANN001, ANN202
    for flag, field, _, help_text in reversed(_LIMIT_OPTIONS):
        fn = click.option(flag, field, default=None, metavar="N|none", help=f"{help_text} `none` removes it.")(fn)
    return fn


@tenants.command("limits")
@click.argument("name")
@_limits_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def tenants_limits(name: str, as_json: bool, **changes: str | None) -> None:
    """Show (and with options, change) tenant NAME's rate limits, daily quotas and budget, with today's usage.

    What GET/PUT /api/v1/quotas do, on the local installation (the operator's door: no API key needed)."""
    from aos.config import get_settings
    from aos.db.session import session_scope
    from aos.services import quotas
    from aos.services.tenancy import get_tenant_by_name

    kinds = {field: kind for _, field, kind, _ in _LIMIT_OPTIONS}
    update = {f: _limit_value(f, kinds[f], v) for f, v in changes.items() if v is not None}
    with session_scope() as s:
        tenant_id = get_tenant_by_name(s, name).id
        if update:
            quotas.set_quotas(s, tenant_id, update)
    settings = get_settings()
    view = quotas.quotas_view(tenant_id, requests_today=quotas.requests_today(tenant_id),
                              defaults={"key_requests_per_minute": settings.rate_limit_key_per_minute,
                                        "tenant_requests_per_minute": settings.rate_limit_tenant_per_minute})
    if as_json:
        emit_json(view)
        return
    limits, own, usage = view["limits"], view["own"], view["usage"]

    def shown(v: object) -> str:
        return "none" if v is None else str(v)

    console.print(f"tenant {view['tenant']['name']} ({view['tenant']['id']}), usage on {usage['day']} (UTC); "
                  f"daily quotas reset at {view['resets_at']}", markup=False)
    rows = [("key_requests_per_minute", shown(limits["key_requests_per_minute"])
             + ("" if own["key_requests_per_minute"] else " (default)"), ""),
            ("tenant_requests_per_minute", shown(limits["tenant_requests_per_minute"])
             + ("" if own["tenant_requests_per_minute"] else " (default)"), ""),
            ("daily_requests", shown(limits["daily_requests"]), shown(usage["requests"])),
            ("daily_runs", shown(limits["daily_runs"]), str(usage["runs"])),
            ("daily_tokens", shown(limits["daily_tokens"]), str(usage["tokens"])),
            ("daily_budget_usd", shown(limits["daily_budget_usd"]), f"{usage['cost_usd']:.6f}")]
    for field, limit, used in rows:
        console.print(f"  {field:<28}{limit:<22}{('used ' + used) if used else ''}", markup=False)


@click.group()
def keys() -> None:
    """API keys: how callers prove their tenant."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant's name.")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@click.option("--scope", "scopes", multiple=True,
              help="runs:read, runs:write, admin, operator (default: runs:read, runs:write); admin is every scope "
                   "of its tenant, operator the deployment's (docs/security.md).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def keys_create(tenant: str, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create an API key; it is printed once and never stored in clear."""
    from aos.db.session import session_scope
    from aos.services.tenancy import DEFAULT_SCOPES, create_api_key, get_tenant_by_name

    with session_scope() as s:
        t = get_tenant_by_name(s, tenant)
        key, row = create_api_key(s, t, name, scopes or DEFAULT_SCOPES)
        out = {"key": key, "prefix": row.prefix, "tenant": t.name, "scopes": row.scopes}
    if as_json:
        emit_json(out)
    else:
        click.echo(key)
        console.print(f"(prefix {out['prefix']}, scopes {', '.join(out['scopes'])}; store it now: "
                      "it is not shown again)", style="dim")


@keys.command("revoke")
@click.option("--tenant", required=True, help="The tenant's name.")
@click.argument("prefix")
def keys_revoke(tenant: str, prefix: str) -> None:
    """Revoke the key with PREFIX (the part after `aos_`)."""
    from aos.db.session import session_scope
    from aos.services.tenancy import get_tenant_by_name, revoke_api_key

    with session_scope() as s:
        revoke_api_key(s, get_tenant_by_name(s, tenant).id, prefix)
    console.print(f"key {prefix} revoked")
