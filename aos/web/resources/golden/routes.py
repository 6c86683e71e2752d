"""Golden files: record a finished run as a signed document, verify one, replay one through the engine."""

from __future__ import annotations

from flask import Response, current_app, jsonify
from flask.views import MethodView

from aos.config import get_settings
from aos.services import golden as golden_service
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.golden.schemas import (
    MAX_WAIT_S,
    GoldenDocumentSchema,
    GoldenReplaySchema,
    GoldenVerifySchema,
    ReplayPendingSchema,
    ReplayReportSchema,
    VerifiedSchema,
)
from aos.web.slots import LONG_REQUESTS

blp = ProtectedBlueprint("golden", __name__, url_prefix="/api/v1", description="Golden files: record, verify, replay")

_BAD_DOCUMENT = ("The document does not verify: problem+json with GOLDEN_FORMAT_INVALID, GOLDEN_KEY_UNKNOWN, "
                 "GOLDEN_SIGNATURE_INVALID or GOLDEN_HASH_MISMATCH and a message naming where")
_TOO_MANY = ("RATE_LIMITED: this key or this server process already holds as many waiting replays and event "
             "streams as allowed (AOS_LONG_REQUESTS_PER_KEY / _PER_PROCESS); Retry-After says when to try again")
_NO_KEY = "The server has no golden key (GOLDEN_SECRET_MISSING): its operator sets AOS_GOLDEN_SECRET"


@blp.route("/runs/<run_id>/golden")
class RunGolden(MethodView):
    @blp.response(200, GoldenDocumentSchema)
    @blp.alt_response(404, description="No such run for this tenant (NOT_FOUND)")
    @blp.alt_response(409, description="The run is not finished, or was cancelled (CONFLICT)")
    @blp.alt_response(503, description=_NO_KEY)
    def post(self, run_id):  # noqa: ANN001, ANN201
        """Record a finished run as a golden document.

        Canonical JSON of the pinned plan, the inputs, every attempt's resolved args and
        outcome (no timings), the raw responses of non-deterministic skills, per-step
        SHA-256 hashes, the body hash and an HMAC-SHA256 signature (AOS_GOLDEN_SECRET,
        key id AOS_GOLDEN_KEY_ID). Write it to a file with its canonical bytes
        (`aos golden record` does, atomically)."""
        tenant = current_tenant()
        tenant.require("runs:read")
        return golden_service.record_run(tenant, run_id)


@blp.route("/golden/verify")
class GoldenVerify(MethodView):
    @blp.arguments(GoldenVerifySchema)
    @blp.response(200, VerifiedSchema)
    @blp.alt_response(422, description=_BAD_DOCUMENT)
    @blp.alt_response(503, description=_NO_KEY)
    def post(self, body):  # noqa: ANN001, ANN201
        """Verify a golden document: signature first, then each step hash and the body hash."""
        current_tenant().require("runs:read")
        v = golden_service.verify(current_tenant(), body["document"])
        return {"valid": True, "key_id": v.key_id, "hash": v.hash, "source_run_id": v.source_run_id,
                "steps": v.steps}


@blp.route("/golden/replay")
class GoldenReplay(MethodView):
    @blp.arguments(GoldenReplaySchema)
    @blp.response(200, ReplayReportSchema)
    @blp.alt_response(202, schema=ReplayPendingSchema,
                      description="The replay run is not final within `timeout_s`: it goes on; poll `report`")
    @blp.alt_response(422, description=_BAD_DOCUMENT)
    @blp.alt_response(429, description=_TOO_MANY)
    @blp.alt_response(503, description=_NO_KEY)
    def post(self, body):  # noqa: ANN001, ANN201
        """Replay a golden document through the real engine and compare it, hash by hash.

        The recorded plan runs again on the workers: deterministic skills for real,
        non-deterministic ones (HTTP, LLM, SQL) answered from the recording, so nothing
        external is called. `identical` says whether every step hash matched; otherwise
        `divergence` names the first step, the JSON path inside it and both values.
        A divergence is a result, not an error: the status is 200.

        The request waits at most `timeout_s` (60 s; default AOS_GOLDEN_REPLAY_TIMEOUT_S) for the
        replay run. When it is not final by then the answer is 202 with the run's id: the run goes
        on, and `POST /golden/replay/{run_id}/report` with the same document gives the comparison."""
        tenant = current_tenant()
        tenant.require("runs:write")
        wait_s = body["timeout_s"] if body["timeout_s"] is not None else get_settings().golden_replay_timeout_s
        with LONG_REQUESTS.held(str(tenant.key_id), "live event streams and replay waits"):
            done, answer = golden_service.replay_or_pending(tenant, body["document"],
                                                            current_app.extensions["aos.publisher"],
                                                            plan=body["plan"], wait_s=min(wait_s, MAX_WAIT_S))
        return answer if done else _pending(answer)


@blp.route("/golden/replay/<run_id>/report")
class GoldenReplayReport(MethodView):
    @blp.arguments(GoldenVerifySchema)
    @blp.response(200, ReplayReportSchema)
    @blp.alt_response(202, schema=ReplayPendingSchema, description="The replay run is not final yet: poll again")
    @blp.alt_response(404, description="No such run for this tenant (NOT_FOUND)")
    @blp.alt_response(409, description="The run is not a replay of this document (CONFLICT)")
    @blp.alt_response(422, description=_BAD_DOCUMENT)
    @blp.alt_response(503, description=_NO_KEY)
    def post(self, body, run_id):  # noqa: ANN001, ANN201
        """The comparison of a replay started earlier (202 while its run is not final).

        Send the same golden document again: the server keeps the replay run, not the document."""
        tenant = current_tenant()
        tenant.require("runs:read")
        done, answer = golden_service.report(tenant, body["document"], run_id)
        return answer if done else _pending(answer)


def _pending(answer: dict) -> Response:
    """202 with the pending replay (flask-smorest would dump a returned dict with the 200 schema)."""
    response = jsonify(ReplayPendingSchema().dump(answer))
    response.status_code = 202
    response.headers["Location"] = answer["report"]
    return response
