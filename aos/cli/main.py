"""`aos`: the operator and developer command."""

from __future__ import annotations

import click

from aos import __version__
from aos.cli.base import AosGroup
from aos.cli.config_file import load_config_option


@click.group(cls=AosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aos")
@click.option("--config", type=click.Path(dir_okay=False), default=None, is_eager=True, expose_value=False,
              callback=load_config_option,
              help="An env file of AOS_* settings (`aos init` writes one). Default: AOS_CONFIG_FILE, else "
                   "./aos.env if present. Variables already in the environment win.")
def cli() -> None:
    """AOS — the Agent Operating System: durable, deterministic runs of agent plans.

    Start with `aos quickstart` (everything embedded), or `aos dev` for a local
    stack to submit plans to. Configuration comes from AOS_* variables
    (docs/configuration.md), or the config file `aos init` writes."""


def _register() -> None:
    from aos.cli import (
        agents,
        catalog,
        db,
        docs,
        init,
        ops,
        processes,
        runs,
        simulate,
        stack,
        tenancy,
        workflows,
    )

    cli.add_command(db.db)
    cli.add_command(tenancy.tenants)
    cli.add_command(tenancy.keys)
    cli.add_command(stack.dev)
    cli.add_command(stack.quickstart)
    cli.add_command(processes.worker)
    cli.add_command(processes.beat)
    cli.add_command(processes.api)
    cli.add_command(runs.runs)
    cli.add_command(catalog.skills)
    cli.add_command(catalog.errors)
    cli.add_command(init.init)
    cli.add_command(simulate.simulate)
    cli.add_command(workflows.workflows)
    cli.add_command(agents.agents)
    cli.add_command(docs.docs)
    cli.add_command(ops.flower)

    from aos.cli import doctor, locks, retention, schedules  # singletons, retention, `aos doctor`

    cli.add_command(doctor.doctor)
    cli.add_command(locks.locks)
    cli.add_command(retention.retention)
    cli.add_command(schedules.schedules)

    from aos.cli import dlq  # dead letters, the outbox, tenants' webhooks

    cli.add_command(dlq.dlq)
    cli.add_command(dlq.outbox)
    tenancy.tenants.add_command(dlq.webhook)

    from aos.cli import golden  # golden files: record, verify, replay

    cli.add_command(golden.golden)


_register()
