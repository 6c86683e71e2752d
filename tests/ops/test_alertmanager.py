"""ops/alertmanager/alertmanager.yml with a real Alertmanager (Debian's `prometheus-alertmanager`, which brings
amtool): it loads, every AOS alert reaches the receiver its severity says, the inhibitions hold back what a
database outage causes, and the silence commands of docs/operations.md silence and expire."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from tests.ops.conftest import ROOT, free_port
from tests.support.http_server import Reply, serve_http

CONFIG = ROOT / "ops" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "ops" / "prometheus" / "rules" / "aos.rules.yml"


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed: run `make promtool` (as root it apt-get installs "
                    "prometheus-alertmanager with prometheus)")
    return path


def _run(*args: str) -> str:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{' '.join(args)}:\n{res.stdout}{res.stderr}"
    return res.stdout


def test_the_config_loads_and_routes_each_alert_by_its_severity(amtool):
    assert "SUCCESS" in _run(amtool, "check-config", str(CONFIG))
    want = {"critical": "aos-oncall", "warning": "aos-team"}
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        severity = rule["labels"]["severity"]
        got = _run(amtool, "config", "routes", "test", f"--config.file={CONFIG}", f"severity={severity}",
                   f"alertname={rule['alert']}").split()
        assert got == [want[severity]], f"{rule['alert']} ({severity}) goes to {got}"


@pytest.fixture
def alertmanager(tmp_path, amtool):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("the Alertmanager server is not installed: `make promtool` installs prometheus-alertmanager")
    with serve_http({"POST /aos": Reply(json={})}) as receiver:
        # the receivers are bridges on other hosts: here, a local server (nothing leaves the machine)
        config = CONFIG.read_text().replace("http://pager-bridge:8080/aos", receiver.url("/aos")) \
            .replace("http://chat-bridge:8080/aos", receiver.url("/aos"))
        (tmp_path / "am.yml").write_text(config)
        port = free_port()
        log = open(tmp_path / "am.log", "wb")  # noqa: SIM115 — closed below
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (tmp_path / "am.log").read_text()
                try:
                    if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "am.log").read_text()
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


def _post(url: str, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [{"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
            for labels in alerts]
    assert httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10).status_code == 200


def _status(url: str) -> dict[str, dict]:
    deadline = time.monotonic() + 10
    while True:
        alerts = httpx.get(f"{url}/api/v2/alerts", timeout=10).json()
        by_name = {a["labels"]["alertname"]: a["status"] for a in alerts}
        if alerts and all(s["state"] != "unprocessed" for s in by_name.values()):
            return by_name
        assert time.monotonic() < deadline, alerts
        time.sleep(0.2)


def test_a_database_outage_holds_back_what_it_causes(alertmanager):
    _post(alertmanager,
          {"alertname": "AosDatabaseUnreachable", "severity": "critical", "instance": "api:8000", "job": "aos-api"},
          {"alertname": "AosNoLockLeader", "severity": "critical", "lock": "aos.runs.reap"},
          {"alertname": "AosOutboxOldestPendingHigh", "severity": "warning"},
          {"alertname": "AosWorkerMetricsDown", "severity": "critical", "instance": "worker:9808"})
    status = _status(alertmanager)
    assert status["AosDatabaseUnreachable"]["state"] == "active"
    assert status["AosWorkerMetricsDown"]["state"] == "active"
    for caused in ("AosNoLockLeader", "AosOutboxOldestPendingHigh"):
        assert status[caused]["state"] == "suppressed" and status[caused]["inhibitedBy"], status[caused]


def test_the_documented_silence_commands_silence_and_expire(alertmanager, amtool):
    am = f"--alertmanager.url={alertmanager}"
    _post(alertmanager, {"alertname": "AosWorkerMetricsDown", "severity": "critical", "instance": "worker-3:9808"},
          {"alertname": "AosWorkerMetricsDown", "severity": "critical", "instance": "worker-1:9808"})
    silence_id = _run(amtool, am, "silence", "add", "alertname=AosWorkerMetricsDown", 'instance="worker-3:9808"',
                      "--duration=2h", "--author=ops", "--comment=worker-3 kernel upgrade").strip()
    assert silence_id
    deadline = time.monotonic() + 10
    while True:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
        states = {a["labels"]["instance"]: a["status"] for a in alerts}
        if states.get("worker-3:9808", {}).get("silencedBy"):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    assert states["worker-3:9808"]["state"] == "suppressed"
    assert states["worker-1:9808"]["state"] == "active"  # the silence hides only what it names
    assert silence_id in _run(amtool, am, "silence", "query", "-q")
    silenced = json.loads(_run(amtool, am, "alert", "query", "--silenced", "-o", "json"))
    assert [a["labels"]["instance"] for a in silenced] == ["worker-3:9808"]
    _run(amtool, am, "silence", "expire", silence_id)
    assert silence_id not in _run(amtool, am, "silence", "query", "-q")
