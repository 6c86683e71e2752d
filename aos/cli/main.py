"""`aos`: the operator and developer command."""

from __future__ import annotations

import click

from aos import __version__
from aos.cli.base import AosGroup


@click.group(cls=AosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aos")
def cli() -> None:
    """AOS — the Agent Operating System: durable, deterministic runs of agent plans.

    Start with `aos quickstart` (everything embedded), or `aos dev` for a local
    stack to submit plans to. Configuration comes from AOS_* variables
    (docs/configuration.md)."""


def _register() -> None:
    from aos.cli import db, docs, processes, runs, stack, tenancy

    cli.add_command(db.db)
    cli.add_command(tenancy.tenants)
    cli.add_command(tenancy.keys)
    cli.add_command(stack.dev)
    cli.add_command(stack.quickstart)
    cli.add_command(processes.worker)
    cli.add_command(processes.beat)
    cli.add_command(processes.api)
    cli.add_command(runs.runs)
    cli.add_command(runs.skills)
    cli.add_command(docs.docs)


_register()
