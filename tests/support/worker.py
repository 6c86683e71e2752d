"""A real Celery worker as a subprocess, and helpers to wait on runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, *, name: str, concurrency: int = 2) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.name = name
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "aos.tasks.app", "worker", "-P", "prefork",
               "-c", str(self.concurrency), "-Q", self.env["AOS_STEP_QUEUE"], "-n", f"{self.name}@%h",
               "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def child_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def wait_for_run(run_id, timeout: float = 60, statuses=("succeeded", "failed", "cancelled", "dead_lettered")):
    """Poll Postgres until the run reaches one of ``statuses``; return the Run row."""
    from aos.db.models import Run
    from aos.db.session import session_scope

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as s:
            run = s.scalar(select(Run).where(Run.id == run_id))
            if run is not None and run.status in statuses:
                return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.status if run else 'missing'} after {timeout}s")
        time.sleep(0.1)


def pid_of(delivery: str) -> int:
    """The worker process of a checkpoint's ``worker`` (a delivery id: ``host:pid/<delivery>``)."""
    return int(delivery.split("/", 1)[0].rsplit(":", 1)[1])
