"""``GET /metrics``: the Prometheus exposition of this API's processes and the deployment gauges.

A plain Flask route outside ``/api/v1`` (no API key: Prometheus is not a tenant). Open
by default; with ``AOS_METRICS_TOKEN`` set it requires ``Authorization: Bearer <token>``. With
``AOS_API_METRICS_PORT`` set, the metrics are served on that port instead (aos.web.gunicorn_conf) and this
route answers 404 on the public port.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from aos.config import get_settings
from aos.errors import AosError
from aos.observability import render, token_accepted

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: every gunicorn worker's metrics merged, plus gauges read from Postgres."""
    if get_settings().api_metrics_port:
        raise AosError("NOT_FOUND", "metrics are served on AOS_API_METRICS_PORT, not on the API's port")
    if not token_accepted(request.headers.get("Authorization")):
        raise AosError("AUTH_INVALID", "/metrics needs `Authorization: Bearer <AOS_METRICS_TOKEN>`")
    body, content_type = render(request.headers.get("Accept"), database=True)
    return Response(body, content_type=content_type)
