"""`aos db`: migrations."""

from __future__ import annotations

import sys

import click

from aos.cli.base import console, err_console
from aos.config import get_settings


@click.group()
def db() -> None:
    """Database schema: apply and check migrations."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run on an up-to-date database)."""
    from aos.db.migrate import current_revision
    from aos.db.migrate import upgrade as do_upgrade

    url = get_settings().effective_database_url()
    before = current_revision(url)
    do_upgrade(url)
    after = current_revision(url)
    console.print(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db.command()
def check() -> None:
    """Fail (exit 1) when the database is behind or the models and migrations differ."""
    from aos.db.migrate import check as do_check

    problems = do_check(get_settings().effective_database_url())
    if problems:
        for p in problems:
            err_console.print(f"error: {p}", markup=False, soft_wrap=True)
        sys.exit(1)
    console.print("schema is current: models and migrations agree")
