"""`aos worker`, `aos beat`, `aos api`: the long-running processes, each a thin exec of its server."""

from __future__ import annotations

import os
import sys

import click

from aos.config import API_PORT, RANDOM_SECRET_HINT, get_settings
from aos.observability import group_name, prepare_multiprocess


def _exec(argv: list[str]) -> None:
    os.execvp(argv[0], argv)


@click.command()
@click.option("-c", "--concurrency", default=2, show_default=True, help="Worker processes.")
@click.option("-Q", "--queues", default=None, help="Queues to consume (default: the step queue and aos.default).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, queues: str | None, loglevel: str) -> None:
    """Run a Celery worker (prefork) that executes steps."""
    settings = get_settings()
    settings.effective_database_url(), settings.effective_broker_url()  # fail early, one line
    q = queues or f"{settings.step_queue},aos.default"
    if settings.worker_metrics_port:  # before celery starts, so before its pool forks (aos.observability)
        prepare_multiprocess(group_name("worker", str(settings.worker_metrics_port)))
    _exec([sys.executable, "-m", "celery", "-A", "aos.tasks.app", "worker", "-P", "prefork",
           "-c", str(concurrency), "-Q", q, "--loglevel", loglevel])


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run celery beat: outbox drain, reaper (and the other singleton jobs)."""
    settings = get_settings()
    settings.effective_database_url(), settings.effective_broker_url()
    _exec([sys.executable, "-m", "celery", "-A", "aos.tasks.app", "beat", "--loglevel", loglevel,
           "-s", os.path.join(settings.data_dir, "celerybeat-schedule")])


@click.command()
@click.option("-b", "--bind", default=f"127.0.0.1:{API_PORT}", show_default=True, help="Address to listen on.")
@click.option("-w", "--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, help="Threads per worker (a live event stream holds one).")
def api(bind: str, workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn."""
    settings = get_settings()
    settings.effective_database_url(), settings.effective_broker_url()
    if not settings.secret_key and settings.env == "production":  # (a weak one fails in load_settings)
        raise click.UsageError(f"AOS_SECRET_KEY is not set (required in production: {RANDOM_SECRET_HINT})")
    prepare_multiprocess(group_name("api", bind))  # before gunicorn starts (aos.observability)
    # gthread, not sync: a followed run holds its request open (server-sent events); a sync worker would be
    # blocked for the stream's whole life and killed by gunicorn's 30 s timeout.
    _exec([sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "-w", str(workers),
           "-b", bind, "-c", "python:aos.web.gunicorn_conf", "aos.web.wsgi:app"])
