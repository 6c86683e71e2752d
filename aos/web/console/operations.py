"""Console pages an operator works from: dead letters (replay, discard) and schedules (pause, resume)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from aos.db.vocabulary import DEAD_LETTER_KINDS, DEAD_LETTER_STATUSES
from aos.services import dead_letters as dead_letter_service
from aos.services import listings
from aos.services import schedules as schedule_service
from aos.web.console.blueprint import bp
from aos.web.console.session import current

PAGE_SIZE = 25


def _back_to_dead_letters() -> ResponseReturnValue:
    """Back to the list the form was posted from (its filters and page kept)."""
    query = request.form.get("back", "")
    return redirect(url_for("console.dead_letters") + (query if query.startswith("?") else ""))


@bp.get("/dead-letters")
def dead_letters() -> str:
    """This tenant's dead letters, newest first (admin scope), filtered by status and kind."""
    ctx = current()
    ctx.require("admin")
    status = request.args.get("status", "open").strip() or None
    kind = request.args.get("kind", "").strip() or None
    page = listings.dead_letters(ctx.tenant_id, status=status, kind=kind, limit=PAGE_SIZE,
                                                 cursor=request.args.get("cursor") or None)
    return render_template("console/dead_letters.html", page=page, status=status or "", kind=kind or "",
                           statuses=DEAD_LETTER_STATUSES, kinds=DEAD_LETTER_KINDS,
                           first_page=not request.args.get("cursor"))


@bp.post("/dead-letters/<dead_letter_id>/replay")
def replay(dead_letter_id: str) -> ResponseReturnValue:
    ctx = current()
    ctx.require("admin")
    out = dead_letter_service.replay(dead_letter_id, tenant_id=ctx.tenant_id,
                                     publisher=current_app.extensions["aos.publisher"])
    if out["replayed_now"]:
        flash(f"Dead letter {out['dead_letter']['id']} replayed: {out['result']}.", "ok")
    else:
        flash(f"Dead letter {out['dead_letter']['id']} was already replayed ({out['result']}); nothing more "
              "was done.", "info")
    return _back_to_dead_letters()


@bp.post("/dead-letters/<dead_letter_id>/discard")
def discard(dead_letter_id: str) -> ResponseReturnValue:
    ctx = current()
    ctx.require("admin")
    dl = dead_letter_service.discard(dead_letter_id, tenant_id=ctx.tenant_id)
    flash(f"Dead letter {dl['id']} discarded.", "ok")
    return _back_to_dead_letters()


@bp.get("/schedules")
def schedules() -> str:
    """This tenant's schedules, soonest first."""
    ctx = current()
    ctx.require("runs:read")
    return render_template("console/schedules.html", schedules=listings.schedules(ctx.tenant_id))


@bp.post("/schedules/<schedule_id>/<any(pause, resume):action>")
def toggle_schedule(schedule_id: str, action: str) -> ResponseReturnValue:
    """Pause a schedule, or resume it from its next tick after now (ticks missed while paused do not fire)."""
    ctx = current()
    ctx.require("runs:write")
    schedule_service.set_enabled(ctx, schedule_id, action == "resume")
    flash(f"Schedule {'resumed' if action == 'resume' else 'paused'}.", "ok")
    return redirect(url_for("console.schedules"))
