"""Recovery: a failed run's suggestions (feedback, apply), and the tenant's patterns, quota and settings."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services import recovery as service
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.recovery.schemas import (
    FeedbackSchema,
    PatternListArgsSchema,
    PatternListSchema,
    QuotaSchema,
    RecoverySettingsSchema,
    RecoverySettingsUpdateSchema,
    SuggestionListSchema,
    SuggestionSchema,
)

blp = ProtectedBlueprint("run-recovery", __name__, url_prefix="/api/v1/runs",
                         description="Recovery suggestions of failed runs: learned from earlier failures")
require_scopes(blp)
tenant_blp = ProtectedBlueprint("recovery", __name__, url_prefix="/api/v1/recovery",
                                description="The tenant's failure patterns, recovery quota and settings")
require_scopes(tenant_blp, write="admin")


@blp.route("/<run_id>/recovery")
class RunRecovery(MethodView):
    @blp.response(200, SuggestionListSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="NOT_FOUND: no such run for this tenant")
    def get(self, run_id):  # noqa: ANN001, ANN201
        """The run's recovery suggestions, newest first: mode, parameters, explanation, the layer that answered
        (cache, vector, llm, catalog), pattern, confidence and success rate.

        A suggestion is looked up by a worker after the run failed (a second or so later); an empty list means
        none yet, or the run never failed."""
        return {"items": service.list_for_run(current_tenant(), run_id)}


@blp.route("/<run_id>/recovery/<suggestion_id>/feedback")
class SuggestionFeedback(MethodView):
    @blp.arguments(FeedbackSchema)
    @blp.response(200, SuggestionSchema)
    @blp.alt_response(404, response="NOT_FOUND",
                      description="NOT_FOUND (no such run) or SUGGESTION_NOT_FOUND (another tenant's is not found either)")
    def post(self, body, run_id, suggestion_id):  # noqa: ANN001, ANN201
        """Say whether a suggestion helped (`helpful`, an optional `note`)."""
        return service.feedback(current_tenant(), run_id, suggestion_id, helpful=body["helpful"], note=body["note"])


@blp.route("/<run_id>/recovery/<suggestion_id>/apply")
class SuggestionApply(MethodView):
    @blp.response(200, SuggestionSchema)
    @blp.alt_response(404, response="NOT_FOUND",
                      description="NOT_FOUND (no such run) or SUGGESTION_NOT_FOUND (another tenant's is not found either)")
    @blp.alt_response(409, response="CONFLICT", description="SUGGESTION_NOT_APPLICABLE: a mode AOS does not carry "
                                                            "out (ABORT, SKIP, ESCALATE; the message says what to do "
                                                            "instead), or the run is no longer failed at that step")
    @blp.alt_response(422, description="AMENDMENT_INVALID: the change would make a plan that submission refuses "
                                       "(`problems`); nothing was changed")
    def post(self, run_id, suggestion_id):  # noqa: ANN001, ANN201
        """Apply a suggestion: the run resumes from the failed step. A suggestion that changes the step
        (`timeout_s`, `max_attempts`, `args`, `fallback_skill`) first amends that step of this run, validated like
        a submitted plan and recorded in the run's `amendments` (its `plan_hash` stays the submitted plan's).
        Whether the step then succeeds counts toward the pattern's success rate; a run cancelled first leaves the
        suggestion `abandoned`. Applying an applied suggestion changes nothing."""
        return service.apply_suggestion(current_tenant(), run_id, suggestion_id,
                                        current_app.extensions["aos.publisher"])


@tenant_blp.route("/patterns")
class Patterns(MethodView):
    @tenant_blp.arguments(PatternListArgsSchema, location="query")
    @tenant_blp.response(200, PatternListSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """The tenant's learned failure patterns, most recently used first, with their success counts."""
        return {"items": service.list_patterns(current_tenant(), limit=args["limit"], code=args["code"])}


@tenant_blp.route("/quota")
class Quota(MethodView):
    @tenant_blp.response(200, QuotaSchema)
    def get(self):  # noqa: ANN201
        """Today's (UTC) embedding and LLM-suggestion calls against the tenant's quotas; `QUOTA_EXCEEDED` when
        spent (lookups then use the cheaper layers and the catalog's text)."""
        return service.quota_status(current_tenant())


@tenant_blp.route("/settings")
class Settings(MethodView):
    @tenant_blp.response(200, RecoverySettingsSchema)
    def get(self):  # noqa: ANN201
        """The tenant's recovery settings: auto-apply, and its own daily quotas (null: the deployment's)."""
        return service.get_settings_of(current_tenant())

    @tenant_blp.arguments(RecoverySettingsUpdateSchema)
    @tenant_blp.response(200, RecoverySettingsSchema)
    def put(self, body):  # noqa: ANN001, ANN201
        """Change the tenant's recovery settings (admin scope); fields left out keep their value, a null quota
        goes back to the deployment's default."""
        clear = tuple(k for k in ("embedding_quota", "llm_quota") if k in body and body[k] is None)
        return service.update_settings(current_tenant(), auto_apply=body.get("auto_apply"),
                                       embedding_quota=body.get("embedding_quota"), llm_quota=body.get("llm_quota"),
                                       clear=clear)
