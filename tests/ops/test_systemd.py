"""The systemd units in ops/systemd: `systemd-analyze verify` accepts them, and they run the processes the
runbook describes, as an unprivileged user, on the ports the rest of the deployment expects."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

import pytest
import yaml

from aos.config import API_PORT
from tests.ops.conftest import ROOT

UNITS = ROOT / "ops" / "systemd"
INSTALL_PREFIX = "/opt/aos/venv"  # where the units expect the virtualenv (ops/systemd/README.md)


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # keys are case-sensitive in systemd
    cp.read_string((UNITS / name).read_text())
    return cp


def test_systemd_analyze_verifies_every_unit(tmp_path):
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed and `make systemd-analyze` could not install it "
                    "(Debian package `systemd`): the units are not verified on this machine")
    # the units run `aos` from /opt/aos/venv; verify checks that the binary exists, so point them at this venv
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_PREFIX, sys.prefix))
    files = sorted(str(p) for p in tmp_path.glob("*.service"))
    assert len(files) == 5
    res = subprocess.run([verify, "verify", *files], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr


def test_the_units_run_the_documented_processes_as_an_unprivileged_user():
    commands = {}
    for name in ("aos-migrate", "aos-api", "aos-worker", "aos-beat", "aos-flower"):
        service = _unit(f"{name}.service")["Service"]
        assert service["User"] == "aos" and service["Group"] == "aos"
        assert service["EnvironmentFile"] == "/etc/aos/aos.env"
        assert service["ExecStart"].startswith(f"{INSTALL_PREFIX}/bin/aos ")
        commands[name] = service["ExecStart"].split()[1:]
    assert commands["aos-migrate"] == ["db", "upgrade"]
    assert commands["aos-api"][:3] == ["api", "--bind", f"0.0.0.0:{API_PORT}"]
    assert commands["aos-worker"][0] == "worker" and commands["aos-beat"] == ["beat"]
    assert commands["aos-flower"][0] == "flower"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # Environment= appears several times (configparser keeps only the last): read the lines themselves
    worker_env = dict(line.removeprefix("Environment=").split("=", 1)
                      for line in (UNITS / "aos-worker.service").read_text().splitlines()
                      if line.startswith("Environment="))
    assert worker_env["AOS_DATA_DIR"] == "/var/lib/aos"
    assert worker_env.get("AOS_WORKER_METRICS_PORT") == compose["worker"]["environment"]["AOS_WORKER_METRICS_PORT"]
    for name in ("aos-api", "aos-worker", "aos-beat"):
        assert "aos-migrate.service" in _unit(f"{name}.service")["Unit"]["Requires"]
