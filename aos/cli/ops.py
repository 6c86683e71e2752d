"""`aos flower`: the Celery dashboard on our broker (workers, tasks, queues)."""

from __future__ import annotations

import os
import sys

import click

from aos.config import get_settings, weak_secret

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_flower_exposure(address: str, env: dict[str, str], *, production: bool) -> None:
    """Flower shows every task's arguments and can revoke tasks and shut workers down: it listens beyond this
    machine only behind authentication, and in production not behind a placeholder password."""
    basic, oauth = env.get("FLOWER_BASIC_AUTH", ""), env.get("FLOWER_AUTH", "")
    if address not in LOOPBACK and not (basic or oauth):
        raise click.UsageError(f"Flower would listen on {address} without authentication: set FLOWER_BASIC_AUTH="
                               "user:password (or FLOWER_AUTH), or keep --address 127.0.0.1")
    if production and basic:
        for pair in basic.split(","):
            user, _, password = pair.partition(":")
            reason = weak_secret(password, min_chars=16)
            if reason:
                raise click.UsageError(f"FLOWER_BASIC_AUTH is not fit for production: the password of {user!r} "
                                       f"is {reason}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-p", "--port", default=5555, show_default=True, envvar="FLOWER_PORT", help="Port to listen on.")
@click.option("-a", "--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(port: int, address: str, flower_args: tuple[str, ...]) -> None:
    """Run Flower against AOS's broker: live workers, every step task, queues and rates.

    Workers send task events (worker_send_task_events) so Flower sees each step from sent to
    done. It listens on 127.0.0.1 unless told otherwise, and refuses any other address without
    FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH for OAuth); in production the password must
    be no placeholder and 16 characters at least. Its HTTP API (/api/tasks, /api/workers)
    answers only with authentication. Extra arguments go to flower (e.g. --max_tasks=50000)."""
    settings = get_settings()
    settings.effective_broker_url()  # fail early, one line
    env = dict(os.environ)
    # Flower exports its own prometheus metrics; it must not write into a worker's or the API's directory.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    check_flower_exposure(address, env, production=settings.env == "production")
    argv = [sys.executable, "-m", "celery", "-A", "aos.tasks.app", "flower", f"--port={port}",
            f"--address={address}", *flower_args]
    os.execvpe(argv[0], argv, env)
