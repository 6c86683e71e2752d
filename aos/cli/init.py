"""`aos init`: a config file, the database schema, a tenant and an API key — ready for `aos api` and workers."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from aos.cli.base import console, emit_json
from aos.cli.config_file import DEFAULT_NAME, render_env_file, write_private_file
from aos.config import DEFAULT_API_URL, ConfigError, _broker_url, _db_url
from aos.errors import AosError

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
INIT_SCOPES = ("runs:read", "runs:write", "admin")


def _checked(parse, env: str, value: str) -> str:  # noqa: ANN001
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{env} is invalid: {exc}") from None


@click.command("init")
@click.option("--path", "path", default=DEFAULT_NAME, show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the config file.")
@click.option("--database-url", envvar="AOS_DATABASE_URL", default=None,
              help="Postgres URL (env AOS_DATABASE_URL). Required: `aos dev` needs no init, it embeds one.")
@click.option("--broker-url", envvar="AOS_BROKER_URL", default=DEFAULT_BROKER, show_default=True,
              help="Celery broker URL (env AOS_BROKER_URL).")
@click.option("--api-url", default=DEFAULT_API_URL, show_default=True,
              help="Where `aos api` will listen; written as AOS_URL for the CLI's API commands.")
@click.option("--tenant", "tenant_name", default="default", show_default=True,
              help="The tenant to create (an existing one is reused).")
@click.option("--save-key", is_flag=True, help="Also write the new API key into the config file (as AOS_API_KEY).")
@click.option("--force", is_flag=True, help="Overwrite an existing config file (its AOS_SECRET_KEY changes).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def init(path: str, database_url: str | None, broker_url: str, api_url: str, tenant_name: str, save_key: bool,
         force: bool, as_json: bool) -> None:
    """Write a config file (database and broker URLs, a new secret key), create the database schema,
    a tenant and an API key with every scope. The key is printed once.

    Run it once per installation; later commands read the file through --config, AOS_CONFIG_FILE or
    ./aos.env (variables already in the environment win)."""
    target = Path(path).expanduser()
    if target.exists() and not force:
        raise AosError("CONFLICT", f"{target} already exists; keep it, or pass --force to overwrite it (a new "
                                   "AOS_SECRET_KEY invalidates what the old one signed)")
    if not database_url:
        raise ConfigError("aos init needs a Postgres: pass --database-url or set AOS_DATABASE_URL "
                          "(`aos dev` and `aos quickstart` need no init: they start an embedded one)")
    database_url = _checked(_db_url, "AOS_DATABASE_URL", database_url)
    broker_url = _checked(_broker_url, "AOS_BROKER_URL", broker_url)

    revision, tenant_id, key, prefix, created = _prepare_database(database_url, tenant_name)
    values = {"AOS_DATABASE_URL": database_url, "AOS_BROKER_URL": broker_url,
              "AOS_SECRET_KEY": secrets.token_hex(32), "AOS_URL": api_url}
    if save_key:
        values["AOS_API_KEY"] = key
    write_private_file(target, render_env_file(values, "AOS configuration written by `aos init` (mode 0600: it "
                                                       "holds secrets).\nEnvironment variables override these."))
    out = {"config_file": str(target.resolve()), "revision": revision, "tenant": tenant_name,
           "tenant_id": tenant_id, "tenant_created": created, "key": key, "key_prefix": prefix,
           "scopes": list(INIT_SCOPES), "key_saved": save_key}
    if as_json:
        emit_json(out)
        return
    console.print(f"wrote {out['config_file']} (database, broker, a new secret key)", markup=False)
    console.print(f"database schema at revision {revision}", markup=False)
    console.print(f"tenant {tenant_name} {'created' if created else 'exists'} (id {tenant_id})", markup=False)
    console.print("API key (shown once" + ("; also saved in the file" if save_key else "; store it now") + "):")
    click.echo(key)
    use = "" if target.resolve() == Path(DEFAULT_NAME).resolve() else f"export AOS_CONFIG_FILE={target.resolve()}\n  "
    console.print(f"next:\n  {use}" + ("" if save_key else f"export AOS_API_KEY={key}\n  ")
                  + "aos api & aos worker & aos beat &\n  aos runs submit examples/quickstart.json --follow",
                  markup=False)


def _prepare_database(url: str, tenant_name: str) -> tuple[str | None, str, str, str, bool]:
    """Migrate, then find or create the tenant and make a key. Nothing is written to the file before this works."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from aos.db.migrate import current_revision, upgrade
    from aos.db.session import build_engine
    from aos.services.tenancy import create_api_key, create_tenant, get_tenant_by_name

    try:
        upgrade(url)
        revision = current_revision(url)
    except OperationalError as exc:
        raise AosError("DB_UNAVAILABLE", f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}") \
            from None
    engine = build_engine(url, null_pool=True)
    try:
        with Session(engine) as s, s.begin():
            created = False
            try:
                tenant = get_tenant_by_name(s, tenant_name)
            except AosError:
                tenant = create_tenant(s, tenant_name)
                created = True
            key, row = create_api_key(s, tenant, "init", INIT_SCOPES)
            return revision, str(tenant.id), key, row.prefix, created
    finally:
        engine.dispose()
