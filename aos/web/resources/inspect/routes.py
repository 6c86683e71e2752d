"""/inspect: what the system is doing now — the tenant's own figures, or (operator scope) the deployment's."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services.inspect import inspect_system
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.inspect.schemas import InspectSchema

blp = ProtectedBlueprint("inspect", __name__, url_prefix="/api/v1/inspect", description="Operations snapshot")


def _broker():  # noqa: ANN202
    broker = current_app.extensions.get("aos.broker_inspector")
    if broker is None:  # like the publisher: the task layer implements it, tests may pass another
        from aos.tasks.inspect import CeleryBrokerInspector

        broker = current_app.extensions["aos.broker_inspector"] = CeleryBrokerInspector()
    return broker


@blp.route("")
class Inspect(MethodView):
    @blp.response(200, InspectSchema)
    def get(self):  # noqa: ANN201
        """A snapshot: the caller's tenant's figures (`runs:read`), or the deployment's (`operator`).

        Tenants see their outbox, dead letters and active runs. The `operator` scope also sees
        the broker's queue depths and the workers that answer a ping (both bounded by
        AOS_INSPECT_TIMEOUT_S), which describe the infrastructure every tenant shares, and the
        counts of all tenants together."""
        ctx = current_tenant()
        if not ctx.has("operator"):
            ctx.require("runs:read")
        return inspect_system(ctx, _broker())
