"""A private Postgres server a test controls: stop it (cleanly or with SIGKILL) and start it again.

It listens on ``127.0.0.1:<port>`` (a port chosen once and kept across restarts,
so every client configured with its URL reconnects to the same address; no unix
socket) and keeps its cluster in one directory, initialised on first start with
trust authentication for the ``postgres`` role.

The binaries are the ones the pgserver package bundles (Postgres 16 with
pgvector, so a fresh machine needs nothing else), or any other ``bin`` directory
with ``initdb`` and ``postgres`` — e.g. the Debian server's
``/usr/lib/postgresql/<version>/bin``. Postgres refuses to run as root: as root
the cluster is owned by, and the server runs as, an unprivileged system user
(``postgres`` when it exists, else ``nobody``) in a directory of its own under
the system temp dir (a pytest ``tmp_path`` is private to root), removed by
``remove()``.

    pg = PrivatePostgres(tmp_path / "pg").start()
    url = pg.database_url("aos")          # after pg.create_database("aos")
    pg.stop()      # fast shutdown: connections are refused from now on
    pg.start()     # same port, same data
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SYSTEM_POSTGRES_ROOT = Path("/usr/lib/postgresql")


def pgserver_bin_dir() -> Path:
    """The bin directory of the Postgres that the pgserver package bundles (found without importing it:
    importing pgserver creates lock files and warns about XDG_RUNTIME_DIR)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed (it is a dependency of aos)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def system_bin_dirs() -> list[Path]:
    """Debian/Ubuntu server installs (``/usr/lib/postgresql/<major>/bin``), newest first."""
    if not SYSTEM_POSTGRES_ROOT.is_dir():
        return []
    dirs = [d / "bin" for d in SYSTEM_POSTGRES_ROOT.iterdir() if (d / "bin" / "postgres").exists()]
    return sorted(dirs, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, reverse=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run Postgres as")


def _let_others_run(install: Path) -> None:
    """Let an unprivileged user run the Postgres installed under ``install``: read and traverse it and
    every directory above it. A checkout made with ``mktemp -d`` is private to root, and so are the
    pgserver binaries in its virtualenv; pgserver itself does the same when it runs as root."""
    rx = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for d in install.parents:
        if d.stat().st_mode & rx != rx:
            d.chmod(d.stat().st_mode | rx)
    for root, dirs, files in os.walk(install):
        for name in dirs:
            path = Path(root) / name
            if path.stat().st_mode & rx != rx:
                path.chmod(path.stat().st_mode | rx)
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            wanted = mode | stat.S_IRGRP | stat.S_IROTH | (rx if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                path.chmod(wanted)
    if install.stat().st_mode & rx != rx:
        install.chmod(install.stat().st_mode | rx)


class PrivatePostgres:
    """One postmaster at a time, on a fixed port and cluster directory."""

    def __init__(self, data_dir: Path | str, port: int | None = None, bin_dir: Path | str | None = None) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else pgserver_bin_dir()
        for exe in ("initdb", "postgres"):
            if not (self.bin_dir / exe).exists():
                raise RuntimeError(f"no {exe} in {self.bin_dir}")
        self.port = port or _free_port()
        self.proc: subprocess.Popen | None = None
        self._runas: pwd.struct_passwd | None = _unprivileged_user() if os.geteuid() == 0 else None
        if self._runas is not None:
            _let_others_run(self.bin_dir.parent)
        if self._runas is None:
            self.data_dir = Path(data_dir)
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="aos-private-pg-"))
            os.chown(self.data_dir, self._runas.pw_uid, self._runas.pw_gid)
        self.log_path = self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def libpq_url(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _run_kwargs(self) -> dict:
        if self._runas is None:
            return {}
        return {"user": self._runas.pw_uid, "group": self._runas.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        cluster = self.data_dir / "cluster"
        if (cluster / "PG_VERSION").exists():
            return
        cmd = [str(self.bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=trust",
               "--encoding=UTF8", "--locale=C", "--no-sync"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **self._run_kwargs())
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed ({self.bin_dir}): {out.stderr[-2000:]}")

    def start(self, timeout: float = 30) -> PrivatePostgres:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._initdb()
        # fsync off: the tests crash processes, not the machine; commits stay fast on a loaded host.
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir / "cluster"),
               "-p", str(self.port), "-h", "127.0.0.1", "-k", "",
               "-c", "fsync=off", "-c", "max_connections=200", "-c", "logging_collector=off"]
        log = open(self.log_path, "ab")  # noqa: SIM115 — the child keeps writing to it
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         **self._run_kwargs())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self._log_tail()}")
            if self.ping():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"postgres not answering on port {self.port} after {timeout}s: {self._log_tail()}")

    def ping(self) -> bool:
        """True when the server accepts a session and answers a query."""
        try:
            with psycopg.connect(self.libpq_url(), connect_timeout=1, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def stop(self, timeout: float = 20) -> None:
        """A fast shutdown (SIGINT): open transactions roll back, clients are disconnected, data is kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_all()
        self.proc = None
        self._wait_port_closed(timeout)

    def kill(self) -> None:
        """A crash: SIGKILL to the postmaster and every backend; the next start runs crash recovery."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._kill_all()
        self.proc = None
        self._wait_port_closed(10)

    def remove(self) -> None:
        """Kill the server and delete its cluster (nothing in it is wanted any more)."""
        self.kill()
        if self._runas is not None:  # our own temp directory; a caller's data_dir is theirs to clean
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _kill_all(self) -> None:
        # Backends and auxiliary processes each run in a session of their own: kill them by parentage,
        # or a survivor keeps the old shared memory attached and the next start refuses to run.
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        for pid in [self.proc.pid, *(int(p) for p in out.split())]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def _wait_port_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"
