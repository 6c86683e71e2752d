"""Prometheus across processes: one multiprocess directory per process group, and its exposition.

gunicorn workers and Celery prefork children are separate processes, each with
its own counters. prometheus_client's multiprocess mode has every process write
its values to mmap'ed files in ``PROMETHEUS_MULTIPROC_DIR``; one endpoint per
process group merges them at scrape time. The rules that make that correct:

- The variable must be set **before prometheus_client is first imported**: the
  library picks its value class (in-memory or file-backed) once, at import
  (``prometheus_client.values.ValueClass``), and ``aos.metrics`` imports it. So
  the parent of the group sets it and then execs the server: ``aos api`` before
  gunicorn starts, ``aos worker`` before celery starts (and so before the pool
  forks). See ``prepare_multiprocess``.
- Stale files are removed at start: a file left by a previous run of the group
  would be re-opened by a new process that happens to get the same pid, and its
  counters would carry on from the old values. Each group (``api-<bind>``,
  ``worker-<port>``) has its own subdirectory, claimed with a lock for as long as
  any process of the group lives, so one group's start never wipes another's.
- A dead child's *live* gauges (``aos_lock_leader``, ``aos_steps_in_progress``)
  are removed (``mark_process_dead``): gunicorn's ``child_exit`` hook, Celery's
  ``worker_process_shutdown`` in a child that exits, and for a child that was
  killed (no hook runs) the parent notices the dead pid at scrape time
  (``sweep_dead_processes``). Counters and histograms of dead children are kept
  on purpose: their totals must not go backwards.

The API's ``/metrics`` also carries gauges read from Postgres at scrape time
(``DatabaseCollector``): outbox depth and age, open dead letters, active runs,
lock holders. They describe the whole deployment, so only the API exports them.
"""

from __future__ import annotations

import fcntl
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from aos.config import ConfigError, Settings, get_settings

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNER_FILE = ".owner"
_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


# --- the multiprocess directory ----------------------------------------------------------
def metrics_base_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.metrics_dir or os.path.join(settings.data_dir, "metrics"))


def group_name(kind: str, where: str) -> str:
    """``api-127.0.0.1_8000``, ``worker-9808``: one directory per process group on a host."""
    return f"{kind}-{re.sub(r'[^A-Za-z0-9.-]+', '_', where)}"


def prepare_multiprocess(group: str, settings: Settings | None = None) -> Path:
    """Claim the group's directory, remove stale files and export ``PROMETHEUS_MULTIPROC_DIR``.

    Call it in the parent of the group before the server is exec'd (the variable and the
    claim are inherited across exec and fork). Raises ConfigError when another live group
    holds the directory."""
    path = metrics_base_dir(settings) / group
    try:
        path.mkdir(parents=True, exist_ok=True)
        _claim(path)
        for f in path.glob("*.db"):
            f.unlink(missing_ok=True)
    except OSError as exc:  # unwritable, read-only, not a directory
        raise ConfigError(f"AOS_METRICS_DIR: cannot use {path}: {exc.strerror or exc}") from None
    os.environ[ENV] = str(path)
    return path


def _claim(path: Path) -> None:
    fd = os.open(path / _OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"AOS_METRICS_DIR: {path} is in use by another process group (pid {owner}); give each `aos api` "
            "bind / `aos worker` metrics port on this host its own value, or its own AOS_METRICS_DIR") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    # Kept open across exec (and by every forked child): the claim lasts as long as the group lives.
    os.set_inheritable(fd, True)


def multiprocess_enabled() -> bool:
    """True when prometheus_client was imported in multiprocess mode (file-backed values)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) if multiprocess_enabled() else None


def forget_process(pid: int) -> None:
    """Remove the live-gauge files of ``pid`` (it exited, or a new process got its pid)."""
    path = os.environ.get(ENV)
    if path and os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child the parent has not reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep_dead_processes(path: str | None = None) -> list[int]:
    """Remove the live-gauge files of processes that no longer exist; return their pids.

    The scrape-time half of "a dead child's files are removed": a child killed by a
    signal (hard time limit, OOM killer, SIGKILL) runs no exit hook."""
    path = path or os.environ.get(ENV)
    if not path or not os.path.isdir(path):
        return []
    dead = set()
    for name in os.listdir(path):
        m = _LIVE_FILE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in dead:
        forget_process(pid)
    return sorted(dead)


# --- exposition --------------------------------------------------------------------------
class _Forward:
    """Re-exports a registry (single-process mode: the default one) inside another registry."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


_registries: dict[tuple[bool, bool], Any] = {}
_registries_lock = threading.Lock()


def exposition_registry(*, database: bool) -> Any:
    """The registry one endpoint exposes: every process of the group (multiprocess mode) or this
    process (single-process: tests, `flask run`, a solo pool), plus the database gauges if asked."""
    from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics
    from prometheus_client.multiprocess import MultiProcessCollector

    # `_created` series exist only in single-process mode; leave them out so both modes expose the same
    disable_created_metrics()
    key = (multiprocess_enabled(), database)
    with _registries_lock:
        if key not in _registries:
            registry = CollectorRegistry()
            if key[0]:
                MultiProcessCollector(registry)
            else:
                registry.register(_Forward(REGISTRY))
            if database:
                registry.register(DatabaseCollector())
            _registries[key] = registry
        return _registries[key]


def render(accept: str | None, *, database: bool) -> tuple[bytes, str]:
    """(body, content type) of a scrape, in the format the scraper asked for."""
    from prometheus_client.exposition import choose_encoder

    sweep_dead_processes(multiprocess_dir())
    encoder, content_type = choose_encoder(accept or "")
    return encoder(exposition_registry(database=database)), content_type


def token_accepted(authorization: str | None, settings: Settings | None = None) -> bool:
    """No AOS_METRICS_TOKEN: open. Else ``Authorization: Bearer <token>`` (compared in constant time)."""
    token = (settings or get_settings()).metrics_token
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


# --- the worker's endpoint ---------------------------------------------------------------
class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the stdlib's signature
        pass


def metrics_wsgi_app(*, database: bool = False) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving the group's metrics at any path, behind AOS_METRICS_TOKEN when set."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not token_accepted(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [b"send Authorization: Bearer <AOS_METRICS_TOKEN>\n"]
        body, content_type = render(environ.get("HTTP_ACCEPT"), database=database)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_metrics(bind: str, port: int, *, database: bool = False) -> WSGIServer:
    """Serve the group's metrics on ``bind:port`` from a daemon thread (the worker parent calls this; the API's
    gunicorn master too, with the deployment gauges from Postgres, when AOS_API_METRICS_PORT is set)."""
    server = make_server(bind, port, metrics_wsgi_app(database=database), server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="aos-metrics", daemon=True).start()
    return server


# --- scrape-time gauges from Postgres ----------------------------------------------------
class DatabaseCollector:
    """Deployment-wide gauges read from Postgres at each scrape (definitions: aos.metrics.SCRAPE_GAUGES).

    A scrape never fails because the database is down: ``aos_database_up`` says 0 and the other
    gauges are left out for that scrape."""

    def describe(self) -> Iterator[Any]:
        from aos.metrics import SCRAPE_GAUGES

        for name, (doc, label, _) in SCRAPE_GAUGES.items():
            yield _family(name, doc, label)

    def collect(self) -> Iterator[Any]:
        from aos.metrics import SCRAPE_GAUGES

        try:
            values = read_database_gauges()
        except Exception as exc:  # noqa: BLE001 — report the outage as a metric, never as a failed scrape
            log.warning("metrics: could not read gauges from the database: %s", exc)
            values = None
        for name, (doc, label, _) in SCRAPE_GAUGES.items():
            family = _family(name, doc, label)
            if name == "aos_database_up":
                family.add_metric([], 0 if values is None else 1)
            elif values is not None:
                for label_value, value in sorted(values.get(name, {}).items()):
                    family.add_metric([label_value], value)
            yield family


def _family(name: str, doc: str, label: str | None) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, doc, labels=[label] if label else [])


def read_database_gauges() -> dict[str, dict[str, float]]:
    """{gauge name: {label value: value}} for SCRAPE_GAUGES, label values already in their closed sets."""
    from sqlalchemy import func, select, text

    from aos.db.models import DeadLetter, DistributedLock, OutboxMessage, Run
    from aos.db.scope import as_operator
    from aos.db.session import session_scope
    from aos.metrics import ACTIVE_RUN_STATUSES, DEAD_LETTER_KINDS, OUTBOX_TOPICS, SINGLETON_JOBS, closed

    out: dict[str, dict[str, float]] = {
        "aos_outbox_pending_messages": dict.fromkeys(OUTBOX_TOPICS, 0.0),
        "aos_outbox_oldest_pending_age_seconds": dict.fromkeys(OUTBOX_TOPICS, 0.0),
        "aos_dead_letters_open": dict.fromkeys(DEAD_LETTER_KINDS, 0.0),
        "aos_runs_active": dict.fromkeys(ACTIVE_RUN_STATUSES, 0.0),
        "aos_lock_holders": dict.fromkeys(SINGLETON_JOBS, 0.0),
        "aos_lock_expiry_timestamp_seconds": {},
        "aos_lock_fencing_token": {},
    }

    def add(name: str, label: str, value: float) -> None:
        out[name][label] = out[name].get(label, 0.0) + value

    def keep_max(name: str, label: str, value: float) -> None:
        out[name][label] = max(out[name].get(label, value), value)

    with as_operator(), session_scope() as s:  # deployment-wide figures: every tenant's rows
        s.execute(text("SET LOCAL statement_timeout = 5000"))  # a scrape must not hang on a busy database
        now = s.scalar(select(func.now()))
        for topic, count, oldest in s.execute(
                select(OutboxMessage.topic, func.count(), func.min(OutboxMessage.created_at))
                .where(OutboxMessage.status == "pending").group_by(OutboxMessage.topic)):
            label = closed(topic, OUTBOX_TOPICS, "topic")
            add("aos_outbox_pending_messages", label, count)
            keep_max("aos_outbox_oldest_pending_age_seconds", label, max(0.0, (now - oldest).total_seconds()))
        for kind, count in s.execute(select(DeadLetter.kind, func.count()).where(DeadLetter.status == "open")
                                     .group_by(DeadLetter.kind)):
            add("aos_dead_letters_open", closed(kind, DEAD_LETTER_KINDS, "kind"), count)
        for status, count in s.execute(select(Run.status, func.count())
                                       .where(Run.status.in_(sorted(ACTIVE_RUN_STATUSES))).group_by(Run.status)):
            add("aos_runs_active", status, count)
        for name, expires, token in s.execute(select(DistributedLock.name, DistributedLock.expires_at,
                                                     DistributedLock.fencing_token)):
            lock = closed(name, SINGLETON_JOBS, "lock")
            add("aos_lock_holders", lock, 1.0 if expires > now else 0.0)
            keep_max("aos_lock_expiry_timestamp_seconds", lock, expires.timestamp())
            keep_max("aos_lock_fencing_token", lock, float(token))
    return out
