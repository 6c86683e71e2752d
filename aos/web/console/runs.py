"""Console pages of runs: the list (status and name filters, keyset pages), a run (steps, budget, error, recovery
suggested and applied, its amended steps, timeline, outputs) that follows itself live, a step's attempts, and the run's
actions: cancel, resume, signal (applying a suggestion: console/recovery.py)."""

from __future__ import annotations

import uuid

from flask import (
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue

from aos.db.models import FINAL_RUN_STATUSES, RUN_EVENT_TYPES, RUN_STATUSES
from aos.errors import AosError
from aos.services import recovery
from aos.services import runs as run_service
from aos.services.failures import entry_for
from aos.web.console import signals
from aos.web.console.blueprint import bp
from aos.web.console.session import current
from aos.web.slots import LONG_REQUESTS
from aos.web.sse import run_event_stream

PAGE_SIZE = 25
CANCELLABLE = frozenset({"queued", "running", "waiting"})
RESUMABLE = frozenset({"failed", "cancelled", "dead_lettered", "waiting"})  # waiting: leave the wait, step again


def _publisher():  # noqa: ANN202
    return current_app.extensions["aos.publisher"]


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("console.runs"))


@bp.get("/runs")
def runs() -> str:
    """This tenant's runs, newest first, filtered by status and by a part of their name."""
    ctx = current()
    ctx.require("runs:read")
    status = request.args.get("status", "").strip() or None
    name = request.args.get("name", "").strip() or None
    page = run_service.list_runs(ctx, status=status, name=name, limit=PAGE_SIZE,
                                 cursor=request.args.get("cursor") or None)
    return render_template("console/runs.html", page=page, status=status or "", name=name or "",
                           statuses=RUN_STATUSES, first_page=not request.args.get("cursor"))


def _run_view(run_id: str) -> dict:
    ctx = current()
    ctx.require("runs:read")
    run = run_service.get_run(ctx, run_id)
    events = run_service.get_timeline(ctx, run_id)
    # every suggestion is announced by a run.recovery event: a run without one costs no query for them
    suggestions = recovery.list_for_run(ctx, run_id) if any(e["type"] == "run.recovery" for e in events) else []
    # what applying an offered one would do, shown before a person applies it
    previews = recovery.previews(ctx, run_id) if any(sg["status"] == "offered" for sg in suggestions) else {}
    return {"run": run, "events": events, "final": run["status"] in FINAL_RUN_STATUSES,
            "cancellable": run["status"] in CANCELLABLE, "resumable": run["status"] in RESUMABLE,
            "suggestions": {sg["id"]: sg for sg in suggestions}, "previews": previews,
            "signals_available": signals.available(), "signal_key": uuid.uuid4().hex}


@bp.get("/runs/<run_id>")
def run(run_id: str) -> str:
    """A run: its steps, budget, error and timeline; it follows itself live until it is final."""
    return render_template("console/run.html", event_types=RUN_EVENT_TYPES, **_run_view(run_id))


@bp.get("/runs/<run_id>/live")
def run_live(run_id: str) -> str:
    """The part of the run page that changes, for the page's script to swap in when an event arrives."""
    return render_template("console/_run_live.html", **_run_view(run_id))


@bp.get("/runs/<run_id>/events")
def run_events(run_id: str) -> Response:
    """The run's timeline as server-sent events (the API's stream, authenticated by the console session)."""
    ctx = current()
    ctx.require("runs:read")
    header = request.headers.get("Last-Event-ID", "0")
    after_id = int(header) if header.isdigit() and len(header) < 19 else 0
    run_service.poll_events(ctx, run_id, after_id, limit=0)  # 404 now, not inside the stream
    ticket = LONG_REQUESTS.ticket(str(ctx.key_id or ctx.tenant_id), "live event streams and replay waits")
    try:
        response = Response(stream_with_context(run_event_stream(ctx, run_id, after_id)),
                            mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})
    except BaseException:
        ticket.release()
        raise
    return ticket.bind(response)


@bp.get("/runs/<run_id>/steps/<step_id>")
def step(run_id: str, step_id: str) -> str:
    """One step with every attempt: args, output, error, cost, tokens, worker and timings."""
    ctx = current()
    ctx.require("runs:read")
    detail = run_service.get_step(ctx, run_id, step_id)
    full_output = None
    if any(a["output_ref"] for a in detail["attempts"]):
        full_output = run_service.get_step_output(ctx, run_id, step_id)["output"]
    return render_template("console/step.html", run_id=run_id, step=detail, full_output=full_output)


@bp.post("/runs/<run_id>/cancel")
def cancel(run_id: str) -> ResponseReturnValue:
    ctx = current()
    ctx.require("runs:write")
    run_service.cancel_run(ctx, run_id, _publisher())
    flash("Run cancelled: no further step starts.", "ok")
    return redirect(url_for("console.run", run_id=run_id))


@bp.post("/runs/<run_id>/resume")
def resume(run_id: str) -> ResponseReturnValue:
    ctx = current()
    ctx.require("runs:write")
    run_service.resume_run(ctx, run_id, _publisher())
    flash("Run resumed from its first unfinished step.", "ok")
    return redirect(url_for("console.run", run_id=run_id))


@bp.post("/runs/<run_id>/signal")
def signal(run_id: str) -> ResponseReturnValue:
    """Deliver the signal a waiting run asks for; the page comes back with the error and the typed payload kept
    when it is refused."""
    ctx = current()
    ctx.require("runs:write")
    name = request.form.get("name", "").strip()
    text = request.form.get("payload", "")
    key = request.form.get("key", "").strip() or uuid.uuid4().hex
    try:
        if not name:
            raise AosError("VALIDATION_ERROR", "name the signal to send",
                           problems=[{"path": "name", "code": "VALIDATION_ERROR", "message": "required"}])
        answer = signals.deliver(ctx, run_id, name, signals.parse_payload(text), key=key, publisher=_publisher())
    except AosError as exc:
        if exc.code in ("NOT_FOUND", "RUN_NOT_FOUND", "CSRF_INVALID", "FORBIDDEN_SCOPE"):
            raise
        view = _run_view(run_id)
        view["signal_key"] = key  # the same key again: a retried submission is still one signal
        html = render_template("console/run.html", event_types=RUN_EVENT_TYPES, signal_error=exc,
                               signal_name=name, signal_payload=text, **view)
        return html, entry_for(exc.code).http_status
    if isinstance(answer, dict) and answer.get("duplicate"):
        flash(f"Signal {name!r} was already delivered with this form; nothing more was done.", "info")
    else:
        flash(f"Signal {name!r} delivered; the run goes on.", "ok")
    return redirect(url_for("console.run", run_id=run_id))
