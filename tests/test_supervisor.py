"""aos.supervisor with real child processes: a child that dies is restarted after a growing backoff, with a
line that says so; one that keeps dying raises, naming itself, how it ended and its log."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from aos.supervisor import ChildKeepsDying, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def _wait_exit(sup: Supervisor, name: str) -> None:
    deadline = time.monotonic() + 20
    while sup.children[name].proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_killed_child_is_restarted_after_a_backoff_and_a_line_says_so(tmp_path):
    lines: list[str] = []
    sup = Supervisor(dict(os.environ), log=lines.append, max_restarts=5, window_s=60)
    try:
        first = sup.start("worker", SLEEPER, tmp_path / "worker.log").pid
        os.kill(first, signal.SIGKILL)
        _wait_exit(sup, "worker")
        t = time.monotonic()
        sup.check(now=t)
        assert lines[-1] == "worker killed by SIGKILL; restarting it in 1s (exit 1 of at most 6 in 60s)"
        assert [c.name for c in sup.exited()] == ["worker"]
        sup.check(now=t + 0.5)
        assert sup.children["worker"].proc is None  # still waiting out its backoff
        sup.check(now=t + 1.0)
        second = sup.children["worker"].pid
        assert lines[-1] == f"restarted worker (pid {second})" and second != first
        assert sup.children["worker"].proc.poll() is None and not sup.exited()

        # the next exit within the window waits twice as long
        os.kill(second, signal.SIGKILL)
        _wait_exit(sup, "worker")
        sup.check(now=t + 2.0)
        assert "restarting it in 2s (exit 2 of at most 6 in 60s)" in lines[-1]
    finally:
        sup.stop()


def test_exits_older_than_the_window_are_forgiven(tmp_path):
    lines: list[str] = []
    sup = Supervisor(dict(os.environ), log=lines.append, max_restarts=1, window_s=10)
    try:
        sup.start("beat", CRASHER, tmp_path / "beat.log")
        t = time.monotonic()
        for k in range(3):  # one exit every 20 s: never two within 10 s
            _wait_exit(sup, "beat")
            sup.check(now=t + 20 * k)
            sup.check(now=t + 20 * k + 1)
        assert sum(line.startswith("restarted beat (pid ") for line in lines) == 3
        assert sum("restarting it in 1s (exit 1 of" in line for line in lines) == 3
    finally:
        sup.stop()


def test_a_child_that_keeps_dying_stops_being_restarted(tmp_path):
    sup = Supervisor(dict(os.environ), log=lambda _: None, max_restarts=2, window_s=60)
    try:
        sup.start("api", CRASHER, tmp_path / "api.log")
        t = time.monotonic()
        with pytest.raises(ChildKeepsDying) as err:
            for k in range(10):
                _wait_exit(sup, "api")
                sup.check(now=t + k * 5)
                sup.check(now=t + k * 5 + 4.5)  # past the backoff (1 s, then 2 s): restarted
        assert k == 2
        assert str(err.value) == (f"api keeps dying: 3 exits in 60s, the last exited with code 3; "
                                  f"see its log {tmp_path / 'api.log'}")
    finally:
        sup.stop()
