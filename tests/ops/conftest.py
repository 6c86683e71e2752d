"""Real processes for the operations tests: `aos api` (gunicorn), `aos worker` with its metrics
endpoint, `aos flower`; promtool; and helpers to scrape and read the Prometheus text format."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aos.tasks.publisher import CeleryPublisher

ROOT = Path(__file__).resolve().parents[2]
AOS = [str(Path(sys.executable).with_name("aos"))]  # the console script installed next to this Python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from the Debian package `prometheus`; `make test` installs it (Makefile target promtool)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make promtool` (as root: apt-get install prometheus); "
                    "tests/ops check the metrics exposition and the alert rules with it")
    return path


def promtool_check_metrics(promtool: str, text: str) -> None:
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"promtool check metrics:\n{res.stdout}{res.stderr}"
    assert not res.stdout.strip() and not res.stderr.strip(), f"promtool lint: {res.stdout}{res.stderr}"


class AosProcess:
    """One `aos ...` command as a subprocess in its own session (so its children stop with it)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, {**os.environ, **env}, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 60) -> AosProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen([*AOS, *self.args], stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aos {' '.join(self.args)} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if ready():
                    return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"aos {' '.join(self.args)} not ready in {timeout}s:\n{self.tail()}")

    def children(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()
        return self.proc.returncode if self.proc else None

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


class QueuePublisher(CeleryPublisher):
    """The real publisher, routing every step of a run to one queue (the queue of this module's worker,
    so the session's other workers never take its steps)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue

    def enqueue_run(self, run_id: str, from_step: int, step_timeouts: list[float], generation: int = 0) -> None:
        from celery import chain

        from aos.config import get_settings
        from aos.tasks.publisher import PUBLISH_RETRY, step_task_id
        from aos.tasks.steps import execute

        grace = get_settings().hard_timeout_grace_s
        sigs = [execute.si(run_id, i).set(task_id=step_task_id(run_id, i, generation), queue=self.queue,
                                          soft_time_limit=step_timeouts[i], time_limit=step_timeouts[i] + grace)
                for i in range(from_step, len(step_timeouts))]
        chain(*sigs).apply_async(retry=True, retry_policy=PUBLISH_RETRY)


class MetricsWorker:
    """`aos worker` with AOS_WORKER_METRICS_PORT set, on a queue of its own."""

    def __init__(self, process: AosProcess, port: int, queue: str, metrics_dir: Path) -> None:
        self.process, self.port, self.queue, self.metrics_dir = process, port, queue, metrics_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def group_dir(self) -> Path:
        return self.metrics_dir / f"worker-{self.port}"

    def scrape(self) -> str:
        res = httpx.get(self.url, timeout=10)
        res.raise_for_status()
        return res.text


@pytest.fixture(scope="package")
def metrics_worker(aos_env, tmp_path_factory) -> Iterator[MetricsWorker]:
    """A real `aos worker -c 2` (prefork) serving its metrics, consuming a queue of its own."""
    tmp = tmp_path_factory.mktemp("metrics-worker")
    port, queue = free_port(), f"aos.steps.ops.{uuid.uuid4().hex[:8]}"
    env = {**aos_env, "AOS_WORKER_METRICS_PORT": str(port), "AOS_WORKER_METRICS_BIND": "127.0.0.1",
           "AOS_METRICS_DIR": str(tmp / "metrics"), "AOS_STEP_QUEUE": queue, "AOS_DATA_DIR": str(tmp)}
    stale = tmp / "metrics" / f"worker-{port}"
    stale.mkdir(parents=True)
    write_counter(stale, 999_999_999, "aos_runs_submitted_total", 1000)  # a previous run's: wiped at start
    proc = AosProcess(["worker", "-c", "2", "-Q", queue, "--loglevel", "INFO"], env, tmp / "worker.log")
    proc.start(lambda: b"ready." in proc.log_path.read_bytes()
               and httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200, timeout=90)
    yield MetricsWorker(proc, port, queue, tmp / "metrics")
    proc.stop()


def write_counter(path: Path, pid: int, sample: str, value: float) -> None:
    """A counter file as prometheus_client writes it for process ``pid`` (an unlabelled aos.metrics counter)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from aos import metrics

    family = sample.removesuffix("_total")
    metric = next(m for m in vars(metrics).values() if getattr(m, "_name", None) == family)
    d = MmapedDict(str(path / f"counter_{pid}.db"))
    d.write_value(mmap_key(family, sample, [], [], metric._documentation), value, 0.0)
    d.close()


# --- reading the text format ----------------------------------------------------------------
def families(text: str) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels`` (None if there is none)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


def assert_closed_labels(text: str) -> None:
    """Every label value of every aos_* metric comes from its closed set in aos.metrics; never `unknown`."""
    from aos import metrics as m
    from aos.web.app import create_app

    code, skill = m._codes() | {m.NONE, m.OTHER}, m._skills() | {m.OTHER}
    routes = {rule.rule for rule in create_app().url_map.iter_rules()} | {m.UNMATCHED_ROUTE}
    other = {m.OTHER}
    closed_sets: dict[str, dict[str, frozenset[str] | set[str]]] = {
        "aos_runs_submitted": {},
        "aos_runs_finished": {"status": m.RUN_STATUS | other},
        "aos_steps": {"skill": skill, "status": m.STEP_STATUS | other, "code": code},
        "aos_step_duration_seconds": {"skill": skill},
        "aos_step_output_bytes": {"skill": skill},
        "aos_step_retries": {"skill": skill, "code": code},
        "aos_budget_spend_usd": {"skill": skill},
        "aos_tokens": {"skill": skill},
        "aos_outbox_deliveries": {"topic": m.OUTBOX_TOPICS | other, "result": m.OUTBOX_RESULTS | other},
        "aos_dead_letters_created": {"kind": m.DEAD_LETTER_KINDS | other},
        "aos_circuit_transitions": {"skill": skill, "state": m.CIRCUIT_STATES | other},
        "aos_lock_leader": {"lock": m.SINGLETON_JOBS | other},
        "aos_lock_acquired": {"lock": m.SINGLETON_JOBS | other},
        "aos_retention_deleted": {"table": m.RETENTION_TABLES | other},
        "aos_steps_in_progress": {"skill": skill},
        "aos_http_requests": {"method": m.HTTP_METHODS | other, "route": routes | other,
                              "status": m.HTTP_STATUS_CLASSES | other},
        "aos_http_request_duration_seconds": {"method": m.HTTP_METHODS | other, "route": routes | other,
                                              "status": m.HTTP_STATUS_CLASSES | other},
        "aos_recovery_lookups": {"layer": m.RECOVERY_LAYERS | other},
        "aos_recovery_lookup_seconds": {"layer": m.RECOVERY_LAYERS | other},
        "aos_recovery_provider_calls": {"kind": m.RECOVERY_PROVIDER_KINDS | other},
        "aos_recovery_tokens": {"kind": m.RECOVERY_PROVIDER_KINDS | other},
        "aos_recovery_cost_usd": {"kind": m.RECOVERY_PROVIDER_KINDS | other},
        "aos_recovery_quota_refused": {"kind": m.RECOVERY_PROVIDER_KINDS | other},
        "aos_recovery_applied": {"result": m.RECOVERY_RESULTS | other},
    }
    for name, (_, label, allowed) in m.SCRAPE_GAUGES.items():
        closed_sets[name] = {label: allowed | other} if label else {}
    for fam in families(text).values():
        if not fam.name.startswith("aos_"):
            continue
        assert fam.name in closed_sets, f"{fam.name}: a metric this test does not know; add its closed sets"
        for s in fam.samples:
            for label, value in s.labels.items():
                assert value.lower() != "unknown", f"{s.name}{s.labels}: label value 'unknown'"
                if label == "le" and fam.type == "histogram":
                    continue
                allowed = closed_sets[fam.name].get(label)
                assert allowed is not None, f"{s.name}: label {label!r} is not declared"
                assert value in allowed, f"{s.name}: {label}={value!r} is outside its closed set"
