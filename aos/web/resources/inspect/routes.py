"""/inspect: what the system is doing now — queues, workers, outbox, dead letters, active runs (admin)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services.inspect import inspect_system
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.inspect.schemas import InspectSchema

blp = ProtectedBlueprint("inspect", __name__, url_prefix="/api/v1/inspect", description="Operations snapshot")
require_scopes(blp, read="admin", write="admin")


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
        """A snapshot for operators (admin scope).

        Broker queue depths and the workers that answer a ping (both bounded by
        AOS_INSPECT_TIMEOUT_S) describe the shared infrastructure; outbox, dead-letter and
        run counts are this tenant's."""
        return inspect_system(current_tenant(), _broker())
