"""Runs: submit a plan, list and read runs, their steps and timeline, follow them live, cancel, resume, signal."""

from __future__ import annotations

from flask import Response, current_app, stream_with_context
from flask.views import MethodView

from aos.services import runs as run_service
from aos.services import signals as signal_service
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.runs.schemas import (
    LastEventIdSchema,
    RunCreateSchema,
    RunListArgsSchema,
    RunPageSchema,
    RunSchema,
    SignalListSchema,
    SignalResultSchema,
    SignalSchema,
    StepDetailSchema,
    StepOutputSchema,
    TimelineArgsSchema,
    TimelineSchema,
)
from aos.web.slots import LONG_REQUESTS
from aos.web.sse import run_event_stream

# one server-sent event as a client parses it (comments are not events)
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "id": {"type": "string", "description": "The timeline event id (absent on `end`)."},
    "event": {"type": "string", "description": "The timeline event type, or `end`."},
    "data": {"type": "string", "description": "The Event JSON; on `end`, the RunSummary JSON."},
    "retry": {"type": "integer", "description": "Reconnection delay (ms)."}}}

blp = ProtectedBlueprint("runs", __name__, url_prefix="/api/v1/runs", description="Workflow runs")
require_scopes(blp)


def _publisher():  # noqa: ANN202
    return current_app.extensions["aos.publisher"]


@blp.route("")
class Runs(MethodView):
    @blp.arguments(RunCreateSchema)
    @blp.response(201, RunSchema)
    @blp.alt_response(402, description="BUDGET_EXCEEDED: the plan has more steps than its budget.max_steps")
    @blp.alt_response(403, description="CAPABILITY_DENIED: the agent may not do what the plan asks (or FORBIDDEN_SCOPE)")
    @blp.alt_response(404, description="AGENT_NOT_FOUND or NOT_FOUND: no such agent_id for this tenant")
    def post(self, body):  # noqa: ANN001, ANN201
        """Submit a plan as a new run.

        The run and its enqueue are committed in one transaction, so a run that got
        `201` is never lost, even if the broker is down at that moment. An invalid plan
        is a 422 listing every problem with its JSON path and code."""
        return run_service.accept_run(current_tenant(), body["plan"], _publisher(), inputs=body["inputs"],
                                      agent_id=body["agent_id"])

    @blp.arguments(RunListArgsSchema, location="query")
    @blp.response(200, RunPageSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """List this tenant's runs, newest first, a page at a time.

        Filter by `status`, `agent_id`, `workflow` (a stored workflow's name) and creation time;
        pass `next_cursor` back as `cursor` for the next page."""
        return run_service.list_runs(current_tenant(), status=args.get("status"), agent_id=args.get("agent_id"),
                                     workflow=args.get("workflow"), created_after=args.get("created_after"),
                                     created_before=args.get("created_before"), limit=args["limit"],
                                     cursor=args["cursor"])


@blp.route("/<run_id>")
class RunItem(MethodView):
    @blp.response(200, RunSchema)
    def get(self, run_id):  # noqa: ANN001, ANN201
        """A run with each step's status, attempts, output, error and timings.

        A failed run's `error` (and each failed step's) carries the catalog facts of its code:
        category, retryable, recovery mode and a one-line suggestion."""
        return run_service.get_run(current_tenant(), run_id)


@blp.route("/<run_id>/timeline")
class RunTimeline(MethodView):
    @blp.arguments(TimelineArgsSchema, location="query")
    @blp.response(200, TimelineSchema)
    def get(self, args, run_id):  # noqa: ANN001, ANN201
        """Every state change of the run and its steps, oldest first (after `after_id` when given)."""
        return {"items": run_service.get_timeline(current_tenant(), run_id, after_id=args["after_id"])}


@blp.route("/<run_id>/events")
class RunEvents(MethodView):
    @blp.arguments(TimelineArgsSchema, location="query")
    @blp.arguments(LastEventIdSchema, location="headers")
    @blp.alt_response(429, description="RATE_LIMITED: this key (AOS_LONG_REQUESTS_PER_KEY) or this server process "
                                       "(AOS_LONG_REQUESTS_PER_PROCESS) holds as many streams as allowed; "
                                       "Retry-After says when to try again")
    @blp.doc(responses={"200": {"description": "Server-sent events: one per timeline event (`id`, `event` = "
                                               "its type, `data` = the Event JSON), `: keepalive` comments, and "
                                               "`event: end` with the RunSummary once the run is final.",
                                "content": {"text/event-stream": {"schema": SSE_EVENT}}}})
    def get(self, args, headers, run_id):  # noqa: ANN001, ANN201
        """Follow a run live over server-sent events until it is final.

        Each timeline event is sent as `id: <event id>`, `event: <type>`, `data: <Event JSON>`;
        a `: keepalive` comment is sent after ~10 s of silence; when the run is final and all
        its events were sent, `event: end` carries the RunSummary and the stream closes. Resume
        with `after_id` or the `Last-Event-ID` header."""
        tenant = current_tenant()
        after_id = max(args["after_id"], headers["last_event_id"])
        run_service.poll_events(tenant, run_id, after_id, limit=0)  # 404 now, not inside the stream
        # a slot first: 429 at once rather than a thread kept; given back when the stream closes
        ticket = LONG_REQUESTS.ticket(str(tenant.key_id), "live event streams and replay waits")
        try:
            stream = stream_with_context(run_event_stream(tenant, run_id, after_id))
            response = Response(stream, mimetype="text/event-stream",
                                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        except BaseException:
            ticket.release()
            raise
        return ticket.bind(response)


@blp.route("/<run_id>/steps/<step_id>")
class RunStep(MethodView):
    @blp.response(200, StepDetailSchema)
    def get(self, run_id, step_id):  # noqa: ANN001, ANN201
        """One step of a run with every attempt: resolved args, output, error, cost, tokens, worker, timings.

        An unknown step id of this run is a 404 with code STEP_NOT_FOUND."""
        return run_service.get_step(current_tenant(), run_id, step_id)


@blp.route("/<run_id>/steps/<step_id>/output")
class RunStepOutput(MethodView):
    @blp.response(200, StepOutputSchema)
    def get(self, run_id, step_id):  # noqa: ANN001, ANN201
        """The full output of the step's successful attempt, however large (404 while there is none)."""
        return run_service.get_step_output(current_tenant(), run_id, step_id)


@blp.route("/<run_id>/cancel")
class RunCancel(MethodView):
    @blp.response(200, RunSchema)
    @blp.alt_response(409, description="RUN_ALREADY_FINISHED or CONFLICT: the run is already final")
    def post(self, run_id):  # noqa: ANN001, ANN201
        """Cancel a queued or running run: no step starts after this returns (409 when already final)."""
        return run_service.cancel_run(current_tenant(), run_id, _publisher())


@blp.route("/<run_id>/resume")
class RunResume(MethodView):
    @blp.response(200, RunSchema)
    @blp.alt_response(409, description="RUN_NOT_RESUMABLE or CONFLICT: only a failed, cancelled, dead-lettered "
                                       "or waiting run resumes")
    def post(self, run_id):  # noqa: ANN001, ANN201
        """Resume a failed, cancelled, dead-lettered or waiting run from its first unfinished step (409 otherwise).

        A waiting run leaves its wait: its step runs again (a waiting step waits anew, with a new deadline)."""
        return run_service.resume_run(current_tenant(), run_id, _publisher())


@blp.route("/<run_id>/signals")
class RunSignals(MethodView):
    @blp.response(200, SignalListSchema)
    def get(self, run_id):  # noqa: ANN001, ANN201
        """Every wait of the run, oldest first, with the signal that ended it (its payload and key)."""
        return {"items": signal_service.list_signals(current_tenant(), run_id)}


@blp.route("/<run_id>/signals/<name>")
class RunSignal(MethodView):
    @blp.arguments(SignalSchema)
    @blp.response(200, SignalResultSchema)
    @blp.alt_response(409, description="RUN_NOT_WAITING, SIGNAL_NOT_AWAITED or IDEMPOTENCY_KEY_REUSED: nothing "
                                       "was changed")
    def post(self, body, run_id, name):  # noqa: ANN001, ANN201
        """Deliver signal `name` to a waiting run: the payload (`data`), checked against the wait's JSON Schema
        (422 SIGNAL_PAYLOAD_INVALID), becomes the waiting step's output and the run goes on. With an
        `idempotency_key`, sending it again answers as the first time and changes nothing."""
        return signal_service.deliver_signal(current_tenant(), run_id, name, body["data"], body["idempotency_key"],
                                             _publisher())
