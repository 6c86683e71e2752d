"""`aos dev` as an operator meets it: its settings are found by every other `aos` command, and its embedded
Redis keeps one socket path, so a broker URL stays good across restarts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from aos.embedded import EmbeddedRedis, redis_socket_path
from aos.envfile import parse_env_file

AOS = str(Path(sys.executable).with_name("aos"))


@pytest.fixture
def home():
    """A home directory of its own (so the default data directory is fresh), reachable by the unprivileged
    user that pgserver runs Postgres as when the suite runs as root (see tests/conftest.py)."""
    where = Path(tempfile.mkdtemp(prefix="aos-dev-home-"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a new shell: no AOS_* variable at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AOS_", "PROMETHEUS_"))}
    return {**env, "HOME": str(home), "COLUMNS": "80", "AOS_LLM_PROVIDER": "offline"}


def test_the_embedded_redis_socket_is_stable_and_a_running_server_is_adopted(home):
    data = home / "redis"
    first = EmbeddedRedis(data)
    url = first.start()
    try:
        assert url == f"redis+socket://{redis_socket_path(data)}" == f"redis+socket://{data.absolute()}/redis.sock"
        redis.Redis(unix_socket_path=str(redis_socket_path(data))).set("k", "v")
        # a second start while one runs (an `aos dev` killed without stopping its Redis) adopts it
        second = EmbeddedRedis(data)
        assert second.start() == url
        assert redis.Redis(unix_socket_path=str(redis_socket_path(data))).get("k") == b"v"
        second.stop()
        first.stop()
        with pytest.raises(redis.ConnectionError):
            redis.Redis(unix_socket_path=str(redis_socket_path(data)), socket_timeout=1).ping()
        third = EmbeddedRedis(data)
        assert third.start() == url  # the same URL after a restart, and the data is still there (AOF)
        assert redis.Redis(unix_socket_path=str(redis_socket_path(data))).get("k") == b"v"
        third.stop()
    finally:
        first.stop()


def test_a_deep_data_directory_gets_a_short_socket_that_is_still_stable(home):
    deep = home / ("d" * 60) / ("e" * 60)
    sock = redis_socket_path(deep)
    assert len(os.fsencode(sock)) <= 107 and sock == redis_socket_path(deep)
    assert sock != redis_socket_path(home / ("d" * 60) / ("f" * 60))


def _wait_log(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120, after: int = 0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := path.read_text(errors="replace"))[after:]:
        assert proc.poll() is None or text in path.read_text(errors="replace")[after:], log
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{log}"
        time.sleep(0.2)
    return log


def test_aos_dev_for_an_operator(home):
    """Its settings reach every other command; a killed worker is restarted and runs go on; a worker that
    keeps dying stops the whole stack with a message that says so."""
    env = {**_clean_env(home), "AOS_DEV_RESTART_MAX": "2", "AOS_DEV_RESTART_WINDOW_S": "600"}
    data = home / ".local" / "share" / "aos"
    state = data / "dev.env"
    # A file left by an `aos dev` that was killed must not send the new one to servers that are gone.
    data.mkdir(parents=True)
    state.write_text("AOS_DATABASE_URL='postgresql://nobody@127.0.0.1:1/gone'\nAOS_BROKER_URL='redis://127.0.0.1:1/0'\n")
    log_path = home / "dev.log"
    log = open(log_path, "wb")  # noqa: SIM115 — closed below
    dev = subprocess.Popen([AOS, "dev"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home,
                           start_new_session=True)

    def aos(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([AOS, *args], capture_output=True, text=True, env=env, cwd=home, timeout=timeout)

    try:
        banner = _wait_log(log_path, "AOS is running", dev)
        settings = parse_env_file(state.read_text())
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        assert settings["AOS_BROKER_URL"] == f"redis+socket://{data}/redis/redis.sock"
        assert "127.0.0.1:1" not in settings["AOS_DATABASE_URL"]
        for key in ("AOS_DATABASE_URL", "AOS_BROKER_URL", "AOS_URL", "AOS_API_KEY"):
            assert settings[key] in banner, f"{key} is not printed"
        assert f"settings  {state} (every `aos` command finds them)" in banner

        for args in (["dlq", "list"], ["locks", "list"], ["runs", "list"], ["outbox", "status"]):
            res = aos(*args)
            assert res.returncode == 0, f"aos {' '.join(args)}: {res.stdout}{res.stderr}"
        doctor = aos("doctor")
        assert "AOS_DATABASE_URL is not set" not in doctor.stdout + doctor.stderr
        assert "ok   database" in doctor.stdout and "ok   broker" in doctor.stdout, doctor.stdout + doctor.stderr

        # SIGKILL the worker: aos dev restarts it, and a run submitted afterwards finishes
        worker = int(re.search(r"started worker \(pid (\d+)\)", banner).group(1))
        mark = len(log_path.read_text(errors="replace"))
        os.kill(worker, signal.SIGKILL)
        after = _wait_log(log_path, "restarted worker (pid ", dev, timeout=30, after=mark)
        assert "worker killed by SIGKILL; restarting it in 1s" in after[mark:]
        quick = Path(__file__).resolve().parents[2] / "examples" / "quickstart.json"
        run = aos("runs", "submit", str(quick), "--follow", "--timeout", "90", timeout=120)
        assert run.returncode == 0 and "run succeeded" in run.stdout, run.stdout + run.stderr

        # a worker that keeps dying: the third exit in the window stops everything, saying why
        for exit_number in (2, 3):
            restarted = re.findall(r"restarted worker \(pid (\d+)\)", log_path.read_text(errors="replace"))
            mark = len(log_path.read_text(errors="replace"))
            os.kill(int(restarted[-1]), signal.SIGKILL)
            if exit_number == 2:
                _wait_log(log_path, "restarting it in 2s (exit 2 of at most 3", dev, timeout=30, after=mark)
                _wait_log(log_path, "restarted worker (pid ", dev, timeout=30, after=mark)
        assert dev.wait(timeout=60) == 1
        out = log_path.read_text(errors="replace")
        assert ("error: SERVICE_UNAVAILABLE: worker keeps dying: 3 exits in 600s, the last killed by SIGKILL; "
                f"see its log {data / 'logs' / 'worker.log'}. Stopping the whole stack") in out
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        log.close()
    leftovers = subprocess.run(["pgrep", "-g", str(dev.pid)], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"processes of the stack outlived it: {leftovers}"
    assert not state.exists(), "dev.env outlives the stack it describes"
    res = aos("locks", "list")
    assert res.returncode != 0 and "AOS_DATABASE_URL is not set" in res.stderr


def test_a_config_file_of_ones_own_wins_over_the_dev_stack(tmp_path, monkeypatch):
    from aos.cli.config_file import config_path

    data = tmp_path / "data"
    data.mkdir()
    (data / "dev.env").write_text("AOS_URL='http://127.0.0.1:1'\n")
    monkeypatch.chdir(tmp_path)
    environ = {"AOS_DATA_DIR": str(data)}
    assert config_path(None, environ) == data / "dev.env"
    (tmp_path / "aos.env").write_text("AOS_URL='http://127.0.0.1:2'\n")
    assert config_path(None, environ) == Path("aos.env")
    assert config_path(None, {**environ, "AOS_CONFIG_FILE": "/x.env"}) == Path("/x.env")
    assert config_path("/y.env", environ) == Path("/y.env")
