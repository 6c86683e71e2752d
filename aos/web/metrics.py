"""``GET /metrics``: the Prometheus exposition of this API's processes and the deployment gauges.

A plain Flask route outside ``/api/v1`` (no API key: Prometheus is not a tenant). Open
by default; with ``AOS_METRICS_TOKEN`` set it requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from aos.errors import AosError
from aos.observability import render, token_accepted

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: every gunicorn worker's metrics merged, plus gauges read from Postgres."""
    if not token_accepted(request.headers.get("Authorization")):
        raise AosError("AUTH_INVALID", "/metrics needs `Authorization: Bearer <AOS_METRICS_TOKEN>`")
    body, content_type = render(request.headers.get("Accept"), database=True)
    return Response(body, content_type=content_type)
