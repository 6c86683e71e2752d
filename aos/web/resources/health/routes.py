"""Liveness and readiness probes (no API key needed)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from sqlalchemy import text

from aos.db.session import get_engine
from aos.web.blueprint import ApiBlueprint
from aos.web.errors import problem
from aos.web.resources.health.schemas import HealthSchema, ReadySchema

blp = ApiBlueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):  # noqa: ANN201
        """Liveness: the process answers."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, description="A dependency is unreachable (problem+json, SERVICE_UNAVAILABLE)")
    def get(self):  # noqa: ANN201
        """Readiness: the database and the broker answer."""
        checks = {"database": _check_database(), "broker": _check_broker()}
        if all(v == "ok" for v in checks.values()):
            return {"status": "ok", "checks": checks}
        failed = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
        resp: Response = problem("SERVICE_UNAVAILABLE", f"not ready: {failed}", checks=checks)
        return resp


def _check_database() -> str:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"


def _check_broker() -> str:
    from aos.tasks.app import app as celery_app

    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"
