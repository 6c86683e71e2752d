"""The API's access log and HTTP metrics, on a real `aos api` (gunicorn, two workers): one log line per request
with its route template, status, duration, tenant and request id; counts and latencies by route template and
status class on /metrics; health checks and scrapes quiet at INFO."""

from __future__ import annotations

import json
import logging
import re

import httpx

from aos.web.traffic import AccessFormatter
from tests.ops.conftest import (
    AosProcess,
    assert_closed_labels,
    free_port,
    promtool_check_metrics,
    sample_value,
)

PLAN = {"name": "access-log", "steps": [
    {"id": "a", "skill": "json.transform", "args": {"input": {"x": 1}, "expr": "x"}}]}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _access_lines(proc: AosProcess) -> list[dict]:
    lines = []
    for line in proc.tail(1_000_000).splitlines():
        if line.startswith("{") and '"logger":"aos.access"' in line:
            lines.append(json.loads(line))
    return lines


def test_every_request_is_logged_and_counted_by_route_template(aos_env, tenant, worker, promtool, tmp_path):
    ctx, key = tenant
    bind = f"127.0.0.1:{free_port()}"
    env = {**aos_env, "AOS_METRICS_DIR": str(tmp_path / "metrics"), "AOS_DATA_DIR": str(tmp_path),
           "AOS_ACCESS_LOG_FORMAT": "json"}
    api = AosProcess(["api", "--bind", bind, "--workers", "2"], env, tmp_path / "api.log")
    base = f"http://{bind}"
    api.start(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, timeout=60)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        created = httpx.post(f"{base}/api/v1/runs", json={"plan": PLAN}, timeout=10,
                             headers={**auth, "X-Request-ID": "client-chose-this-1"})
        assert created.status_code == 201 and created.headers["X-Request-ID"] == "client-chose-this-1"
        run_id = created.json()["id"]
        got = httpx.get(f"{base}/api/v1/runs/{run_id}", headers=auth, timeout=10)
        assert got.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", got.headers["X-Request-ID"])
        missing = httpx.get(f"{base}/api/v1/runs/00000000-0000-0000-0000-000000000000", headers=auth, timeout=10)
        assert missing.status_code == 404
        assert httpx.get(f"{base}/api/v1/runs", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/v1/no-such-thing/{run_id}", headers=auth, timeout=10).status_code == 404
        bad_id = httpx.get(f"{base}/api/v1/runs", headers={**auth, "X-Request-ID": "a b;c=\"" + "x" * 200}, timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", bad_id.headers["X-Request-ID"])  # not echoed into the log
        for _ in range(3):
            httpx.get(f"{base}/healthz", timeout=10)
        text = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        api.stop()

    lines = _access_lines(api)
    by_id = {line["request_id"]: line for line in lines}
    post = by_id["client-chose-this-1"]
    assert post["method"] == "POST" and post["route"] == "/api/v1/runs" and post["status"] == 201
    assert post["tenant"] == ctx.tenant_name and post["duration_ms"] > 0 and post["level"] == "info"
    one = by_id[got.headers["X-Request-ID"]]
    assert (one["route"], one["path"], one["status"]) == ("/api/v1/runs/<run_id>", f"/api/v1/runs/{run_id}", 200)
    assert by_id[missing.headers["X-Request-ID"]]["status"] == 404
    unauthenticated = [line for line in lines if line["status"] == 401]
    assert unauthenticated and unauthenticated[0]["tenant"] is None
    assert any(line["route"] == "unmatched" and line["status"] == 404 for line in lines)
    assert not [line for line in lines if line["route"] in ("/healthz", "/metrics")], "health checks at INFO"

    promtool_check_metrics(promtool, text)
    assert_closed_labels(text)
    assert sample_value(text, "aos_http_requests_total", method="POST", route="/api/v1/runs", status="2xx") == 1
    assert sample_value(text, "aos_http_requests_total", method="GET", route="/api/v1/runs/<run_id>",
                        status="2xx") == 1
    assert sample_value(text, "aos_http_requests_total", method="GET", route="/api/v1/runs/<run_id>",
                        status="4xx") == 1
    assert sample_value(text, "aos_http_requests_total", method="GET", route="unmatched", status="4xx") == 1
    assert sample_value(text, "aos_http_requests_total", method="GET", route="/healthz", status="2xx") >= 3
    assert sample_value(text, "aos_http_request_duration_seconds_count", method="POST", route="/api/v1/runs",
                        status="2xx") == 1
    labelled = [line for line in text.splitlines() if line.startswith("aos_http_")]
    assert labelled and not any(UUID.search(line) for line in labelled), "a raw path became a label"


def test_the_text_format_is_one_readable_line():
    record = logging.LogRecord("aos.access", logging.INFO, __file__, 1, "request", None, None)
    record.access = {"method": "GET", "route": "/api/v1/runs", "path": "/api/v1/runs", "status": 200,
                     "duration_ms": 3.2, "tenant": "acme", "request_id": "r1"}
    line = AccessFormatter("text").format(record)
    assert re.fullmatch(r"\S+Z? GET /api/v1/runs 200 3\.2ms route=/api/v1/runs tenant=acme request_id=r1", line) \
        or line.endswith("GET /api/v1/runs 200 3.2ms route=/api/v1/runs tenant=acme request_id=r1"), line
    as_json = json.loads(AccessFormatter("json").format(record))
    assert as_json["status"] == 200 and as_json["logger"] == "aos.access" and as_json["ts"].endswith("+00:00")
