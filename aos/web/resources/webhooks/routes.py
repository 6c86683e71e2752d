"""The tenant's webhook endpoint and its signing secret (admin scope)."""

from __future__ import annotations

from flask.views import MethodView

from aos.db.session import session_scope
from aos.services import webhooks as service
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.webhooks.schemas import WebhookSchema, WebhookUpdateSchema

blp = ProtectedBlueprint("webhook", __name__, url_prefix="/api/v1/webhook",
                         description="Signed webhooks: run.succeeded, run.failed, budget.warning (admin scope)")
require_scopes(blp, read="admin", write="admin")


@blp.route("")
class Webhook(MethodView):
    @blp.response(200, WebhookSchema)
    def get(self):  # noqa: ANN201
        """The endpoint events are delivered to (the secret is never shown again)."""
        with session_scope() as s:
            return service.get_webhook(s, current_tenant().tenant_id)

    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="HTTP_SSRF_BLOCKED: the host is private or loopback")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description="Not an absolute http(s) URL")
    def put(self, body):  # noqa: ANN001, ANN201
        """Set (or, with `url: null`, clear) the endpoint.

        The first time, a signing secret is generated and returned in `secret`: store it,
        it is not shown again. Each delivery carries `AOS-Signature: t=<unix>,v1=<hex
        HMAC-SHA256(secret, "<t>.<body>")>` and a stable `AOS-Webhook-Id`."""
        with session_scope() as s:
            return service.set_webhook(s, current_tenant().tenant_id, body["url"])


@blp.route("/rotate-secret")
class WebhookSecret(MethodView):
    @blp.response(200, WebhookSchema)
    def post(self):  # noqa: ANN201
        """Replace the signing secret now; the new one is returned once, in `secret`."""
        with session_scope() as s:
            return service.rotate_secret(s, current_tenant().tenant_id)
