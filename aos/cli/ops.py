"""`aos flower`: the Celery dashboard on our broker (workers, tasks, queues)."""

from __future__ import annotations

import os
import sys

import click

from aos.cli.base import err_console
from aos.config import get_settings


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-p", "--port", default=5555, show_default=True, envvar="FLOWER_PORT", help="Port to listen on.")
@click.option("-a", "--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(port: int, address: str, flower_args: tuple[str, ...]) -> None:
    """Run Flower against AOS's broker: live workers, every step task, queues and rates.

    Workers send task events (worker_send_task_events) so Flower sees each step from sent to
    done. Protect it with FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH for OAuth); its
    HTTP API (/api/tasks, /api/workers) answers only with authentication, or with
    FLOWER_UNAUTHENTICATED_API=true. Extra arguments go to flower (e.g. --max_tasks=50000)."""
    settings = get_settings()
    settings.effective_broker_url()  # fail early, one line
    env = dict(os.environ)
    # Flower exports its own prometheus metrics; it must not write into a worker's or the API's directory.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    open_to_network = address not in ("127.0.0.1", "localhost", "::1")
    if open_to_network and not (env.get("FLOWER_BASIC_AUTH") or env.get("FLOWER_AUTH")):
        err_console.print(f"warning: Flower listens on {address} without authentication; set FLOWER_BASIC_AUTH")
    argv = [sys.executable, "-m", "celery", "-A", "aos.tasks.app", "flower", f"--port={port}",
            f"--address={address}", *flower_args]
    os.execvpe(argv[0], argv, env)
