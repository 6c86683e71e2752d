"""What the API tells operators about each request: a request id, an access log line and HTTP metrics.

- **Request id.** A caller's ``X-Request-ID`` (up to 128 characters of letters, digits, ``.-_:``) is kept,
  otherwise one is made; it is echoed in the response's ``X-Request-ID`` and logged, so one request can be
  followed from a client's report to the server's log.
- **Access log.** One line per request on the ``aos.access`` logger (stderr): method, route template, path,
  status, duration, tenant, request id; ``AOS_ACCESS_LOG_FORMAT=json`` writes one JSON object per line.
  Health checks and /metrics scrapes go at DEBUG, so an idle API is quiet at INFO.
- **Metrics.** ``aos_http_requests_total`` and ``aos_http_request_duration_seconds`` by method, route
  template (never the raw path: ids would explode the series) and status class (aos.metrics).

The duration runs until the response starts: for a live event stream, until the stream opens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from aos import metrics
from aos.config import get_settings

log = logging.getLogger("aos.access")
REQUEST_ID_HEADER = "X-Request-ID"
_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # polled all the time: DEBUG, not INFO


def _start() -> None:
    g.started = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if _GOOD_ID.fullmatch(given) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    started = g.get("started")
    if started is None:  # a request that failed before _start ran (nothing else to measure)
        return response
    seconds = time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule is not None else None
    response.headers[REQUEST_ID_HEADER] = g.request_id
    metrics.http_request(request.method, route, response.status_code, seconds)
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    if log.isEnabledFor(level):
        tenant = g.get("tenant")
        fields = {"method": request.method, "route": route or metrics.UNMATCHED_ROUTE, "path": request.path,
                  "status": response.status_code, "duration_ms": round(seconds * 1000, 1),
                  "tenant": tenant.tenant_name if tenant is not None else None, "request_id": g.request_id}
        log.log(level, "request", extra={"access": fields})
    return response


class AccessFormatter(logging.Formatter):
    """``text``: ``<time> GET /api/v1/runs 201 12.3ms tenant=acme request_id=…``; ``json``: one object a line."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.json = style == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "access", {})
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        if self.json:
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "logger": record.name, **fields},
                              separators=(",", ":"))
        return (f"{ts} {fields.get('method')} {fields.get('path')} {fields.get('status')} "
                f"{fields.get('duration_ms')}ms route={fields.get('route')} tenant={fields.get('tenant') or '-'} "
                f"request_id={fields.get('request_id')}")


def register(app: Flask) -> None:
    """The request id and timing hooks, the access log's handler, and the route set of the HTTP metrics."""
    app.before_request(_start)
    app.after_request(_finish)
    metrics.declare_http_routes(frozenset(rule.rule for rule in app.url_map.iter_rules()))
    settings = get_settings()
    log.propagate = False  # its own handler and format; never twice through the root logger
    log.disabled = not settings.access_log
    if not any(isinstance(h.formatter, AccessFormatter) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        log.addHandler(handler)
    for handler in log.handlers:
        handler.setFormatter(AccessFormatter(settings.access_log_format))
    log.setLevel(logging.DEBUG if settings.log_level.upper() == "DEBUG" else logging.INFO)
