"""Dead letters (admin scope): list, inspect, replay once, discard."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services import dead_letters as service
from aos.services import listings
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.dead_letters.schemas import (
    DeadLetterListArgsSchema,
    DeadLetterPageSchema,
    DeadLetterSchema,
    ReplayResultSchema,
)

blp = ProtectedBlueprint("dead-letters", __name__, url_prefix="/api/v1/dead-letters",
                         description="Dead letters: steps, webhook deliveries and tasks that ran out of retries "
                                     "(admin scope)")
require_scopes(blp, read="admin", write="admin")


@blp.route("")
class DeadLetters(MethodView):
    @blp.arguments(DeadLetterListArgsSchema, location="query")
    @blp.response(200, DeadLetterPageSchema)
    @blp.alt_response(400, response="BAD_REQUEST", description="The cursor is not one this API returned")
    def get(self, args):  # noqa: ANN001, ANN201
        """List this tenant's dead letters, newest first (filter by status and kind)."""
        return listings.dead_letters(current_tenant().tenant_id, status=args.get("status"), kind=args.get("kind"),
                                         limit=args["limit"], cursor=args["cursor"])


@blp.route("/<int:dead_letter_id>")
class DeadLetterItem(MethodView):
    @blp.response(200, DeadLetterSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such dead letter (or archived)")
    def get(self, dead_letter_id):  # noqa: ANN001, ANN201
        """One dead letter, with its error, payload and replay (if any)."""
        return service.get_dead_letter(current_tenant().tenant_id, dead_letter_id)


@blp.route("/<int:dead_letter_id>/replay")
class DeadLetterReplay(MethodView):
    @blp.response(200, ReplayResultSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such dead letter (or archived)")
    @blp.alt_response(409, response="CONFLICT",
                      description="DEAD_LETTER_NOT_REPLAYABLE: discarded, resolved, or work that cannot be re-run")
    def post(self, dead_letter_id):  # noqa: ANN001, ANN201
        """Re-drive the dead letter's work, once.

        A step's run resumes from that step; a webhook is delivered again with the same
        `AOS-Webhook-Id`; a crashed run task re-publishes its run. Asking again (even at the
        same moment) replays nothing more: the answer carries the first replay's result and
        `replayed_now: false`."""
        return service.replay(dead_letter_id, tenant_id=current_tenant().tenant_id,
                              publisher=current_app.extensions["aos.publisher"])


@blp.route("/<int:dead_letter_id>/discard")
class DeadLetterDiscard(MethodView):
    @blp.response(200, DeadLetterSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such dead letter (or archived)")
    @blp.alt_response(409, response="CONFLICT", description="Already replayed: nothing to discard")
    def post(self, dead_letter_id):  # noqa: ANN001, ANN201
        """Close the dead letter without re-running its work (idempotent)."""
        return service.discard(dead_letter_id, tenant_id=current_tenant().tenant_id)
