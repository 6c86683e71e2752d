"""Child processes kept alive the way a process manager keeps them: `aos dev`'s worker, beat and API.

A child that exits is started again after a backoff that doubles with each recent restart (the one backoff
formula, ``aos.runtime.backoff.backoff_ceiling``, without jitter: one supervisor, nobody to spread out from),
and a line says so. A child that keeps dying — more than ``max_restarts`` exits within ``window_s`` — is not
restarted forever: ``ChildKeepsDying`` says which one, how it ended and where its log is, and the caller
stops the whole stack. A stack that silently runs without a worker accepts runs that wait forever.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aos.runtime.backoff import backoff_ceiling
from aos.skills.base import RetryPolicy


class ChildKeepsDying(RuntimeError):
    """A supervised child exited too often in too short a time; the message names it and its log."""


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    exits: deque[float] = field(default_factory=deque)  # monotonic times of recent exits
    restart_at: float | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Supervisor:
    env: dict[str, str]
    log: Callable[[str], None] = print
    max_restarts: int = 5
    window_s: float = 60.0
    backoff: RetryPolicy = field(default_factory=lambda: RetryPolicy(backoff_s=1.0, backoff_max_s=30.0))
    children: dict[str, Child] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], log_path: Path) -> Child:
        child = self.children[name] = Child(name, argv, log_path)
        self._spawn(child)
        self.log(f"started {name} (pid {child.pid}), log: {log_path}")
        return child

    def _spawn(self, child: Child) -> None:
        if child._log is None:
            child._log = open(child.log_path, "ab")  # noqa: SIM115 — kept open for the child's whole life
        child.proc = subprocess.Popen(child.argv, stdout=child._log, stderr=subprocess.STDOUT, env=self.env)
        child.restart_at = None

    def exited(self) -> list[Child]:
        """Children that are not running now (dead, or waiting for their restart)."""
        return [c for c in self.children.values() if c.proc is None or c.proc.poll() is not None]

    def check(self, now: float | None = None) -> None:
        """Notice exits, schedule and perform restarts. Raises ChildKeepsDying when one exits too often."""
        now = time.monotonic() if now is None else now
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.proc = None
                child.exits.append(now)
                while child.exits and now - child.exits[0] > self.window_s:
                    child.exits.popleft()
                if len(child.exits) > self.max_restarts:
                    raise ChildKeepsDying(
                        f"{child.name} keeps dying: {len(child.exits)} exits in {self.window_s:.0f}s, the last "
                        f"{_how(code)}; see its log {child.log_path}")
                delay = backoff_ceiling(self.backoff, len(child.exits), self.backoff.backoff_max_s)
                child.restart_at = now + delay
                self.log(f"{child.name} {_how(code)}; restarting it in {delay:.0f}s "
                         f"(exit {len(child.exits)} of at most {self.max_restarts + 1} in {self.window_s:.0f}s)")
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
                self.log(f"restarted {child.name} (pid {child.pid})")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every child, SIGKILL those still alive after ``timeout``."""
        running = [c for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for child in running:
            child.proc.send_signal(signal.SIGTERM)
        for child in running:
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        for child in self.children.values():
            if child._log is not None:
                child._log.close()
        self.children.clear()

