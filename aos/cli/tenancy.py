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


@click.group()
def keys() -> None:
    """API keys: how callers prove their tenant."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant's name.")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@click.option("--scope", "scopes", multiple=True, help="runs:read, runs:write, admin (default: runs:read, runs:write).")
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
