"""`aos`: the operator and developer command."""

from __future__ import annotations

import click

from aos import __version__
from aos.cli.base import AosGroup
from aos.cli.config_file import load_config_option
from aos.db import scope
from aos.redaction import install_log_redaction


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
    install_log_redaction()
    # the CLI is the operator's tool: it works across tenants (row-level security: aos/db/scope.py);
    # `aos api` and `aos worker` exec servers whose processes start with no tenant's rows in sight
    scope.set_process_default(scope.OPERATOR)


# Each command's module is imported when that command runs, not before: `aos skills list` must not load
# SQLAlchemy, nor `aos locks list` the web app. `aos --help` imports them all (it shows every summary).
COMMANDS = {
    "db": "aos.cli.db:db",
    "tenants": "aos.cli.tenancy:tenants",
    "keys": "aos.cli.tenancy:keys",
    "dev": "aos.cli.stack:dev",
    "quickstart": "aos.cli.stack:quickstart",
    "worker": "aos.cli.processes:worker",
    "beat": "aos.cli.processes:beat",
    "api": "aos.cli.processes:api",
    "runs": "aos.cli.runs:runs",
    "skills": "aos.cli.catalog:skills",
    "errors": "aos.cli.catalog:errors",
    "init": "aos.cli.init:init",
    "simulate": "aos.cli.simulate:simulate",
    "workflows": "aos.cli.workflows:workflows",
    "agents": "aos.cli.agents:agents",
    "docs": "aos.cli.docs:docs",
    "flower": "aos.cli.ops:flower",
    "doctor": "aos.cli.doctor:doctor",           # singletons, retention, `aos doctor`
    "locks": "aos.cli.locks:locks",
    "retention": "aos.cli.retention:retention",
    "schedules": "aos.cli.schedules:schedules",
    "dlq": "aos.cli.dlq:dlq",                     # dead letters, the outbox, tenants' webhooks
    "outbox": "aos.cli.dlq:outbox",
    "golden": "aos.cli.golden:golden",            # golden files: record, verify, replay
}
# subcommands that live in another command's module: `aos tenants webhook …` is written beside the outbox
SUBCOMMANDS = {"tenants": ["aos.cli.dlq:webhook"]}

cli.lazy_commands.update(COMMANDS)
cli.lazy_subcommands.update(SUBCOMMANDS)
