"""The console's recovery actions on a failed run's suggestion: apply it, or say whether it helped. Both are the
API's calls (``POST /api/v1/runs/{id}/recovery/{suggestion}/apply`` and ``…/feedback``) behind a form: the same
service, the same ``runs:write`` scope, the session's CSRF token checked by the blueprint before any work.

A refusal of the suggestion (not applicable, an invalid amendment, a suggestion gone) comes back to the run's
page as a flash naming its code, with nothing changed: the person is looking at that run and decides again
there. A run that is not this tenant's has no page to come back to, so it is the 404 page, as for cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from aos.errors import AosError
from aos.services import recovery
from aos.services.amendments import plan_changes
from aos.web.console.blueprint import bp, when
from aos.web.console.session import current

# refused before the suggestion is looked at: the console's error page, like every other form's
_NOT_FLASHED = frozenset({"NOT_FOUND", "CSRF_INVALID", "FORBIDDEN_SCOPE", "AUTH_MISSING"})
VERDICTS = {"yes": True, "no": False}


def _back(run_id: str) -> ResponseReturnValue:
    return redirect(url_for("console.run", run_id=run_id))


def _refused(what: str, exc: AosError) -> None:
    if exc.code in _NOT_FLASHED:
        raise exc
    paths = ", ".join(str(p.get("path")) for p in exc.problems or [] if p.get("path"))
    flash(f"{what} {exc.code}: {exc.message}" + (f" (at {paths})" if paths else ""), "bad")


@bp.post("/runs/<run_id>/recovery/<suggestion_id>/apply")
def apply_suggestion(run_id: str, suggestion_id: str) -> ResponseReturnValue:
    """Apply a suggestion: amend the failed step when it changes it, and resume the run from that step."""
    ctx = current()
    ctx.require("runs:write")
    asked = datetime.now(UTC)
    try:
        done = recovery.apply_suggestion(ctx, run_id, suggestion_id, current_app.extensions["aos.publisher"])
    except AosError as exc:
        _refused("Not applied, nothing was changed:", exc)
        return _back(run_id)
    # applying is idempotent: a form sent twice (or a suggestion auto-applied meanwhile) is reported as it was
    if done["applied_at"] and datetime.fromisoformat(done["applied_at"]) < asked:
        flash(f"This suggestion was already applied by {done['applied_by']} on {when(done['applied_at'])}; "
              "nothing more was done.", "info")
        return _back(run_id)
    wait = f" after {done['parameters']['delay_s']} s" if done["parameters"].get("delay_s") else ""
    amended = ", amending the step" if plan_changes(done["parameters"]) else ""
    flash(f"Suggestion applied ({done['mode']}{amended}): the run resumes from step {done['step_id']}{wait}.", "ok")
    return _back(run_id)


@bp.post("/runs/<run_id>/recovery/<suggestion_id>/feedback")
def suggestion_feedback(run_id: str, suggestion_id: str) -> ResponseReturnValue:
    """Say whether a suggestion helped (``helpful``: yes or no)."""
    ctx = current()
    ctx.require("runs:write")
    try:
        helpful = VERDICTS.get(request.form.get("helpful", ""))
        if helpful is None:
            raise AosError("VALIDATION_ERROR", "choose Helpful or Not helpful",
                           problems=[{"path": "helpful", "code": "VALIDATION_ERROR", "message": "yes or no"}])
        recovery.feedback(ctx, run_id, suggestion_id, helpful=helpful)
    except AosError as exc:
        _refused("Feedback not recorded:", exc)
        return _back(run_id)
    flash(f"Thank you: recorded as {'helpful' if helpful else 'not helpful'}.", "ok")
    return _back(run_id)
