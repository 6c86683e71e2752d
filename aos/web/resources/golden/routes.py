"""Golden files: record a finished run as a signed document, verify one, replay one through the engine."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services import golden as golden_service
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.golden.schemas import (
    GoldenDocumentSchema,
    GoldenReplaySchema,
    GoldenVerifySchema,
    ReplayReportSchema,
    VerifiedSchema,
)

blp = ProtectedBlueprint("golden", __name__, url_prefix="/api/v1", description="Golden files: record, verify, replay")

_BAD_DOCUMENT = ("The document does not verify: problem+json with GOLDEN_FORMAT_INVALID, GOLDEN_KEY_UNKNOWN, "
                 "GOLDEN_SIGNATURE_INVALID or GOLDEN_HASH_MISMATCH and a message naming where")


@blp.route("/runs/<run_id>/golden")
class RunGolden(MethodView):
    @blp.response(200, GoldenDocumentSchema)
    @blp.alt_response(409, description="The run is not finished, or was cancelled (CONFLICT)")
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
    def post(self, body):  # noqa: ANN001, ANN201
        """Verify a golden document: signature first, then each step hash and the body hash."""
        current_tenant().require("runs:read")
        v = golden_service.verify(body["document"])
        return {"valid": True, "key_id": v.key_id, "hash": v.hash, "source_run_id": v.source_run_id,
                "steps": v.steps}


@blp.route("/golden/replay")
class GoldenReplay(MethodView):
    @blp.arguments(GoldenReplaySchema)
    @blp.response(200, ReplayReportSchema)
    @blp.alt_response(422, description=_BAD_DOCUMENT)
    @blp.alt_response(504, description="The replay run did not finish in time (GOLDEN_REPLAY_TIMEOUT; it goes on)")
    def post(self, body):  # noqa: ANN001, ANN201
        """Replay a golden document through the real engine and compare it, hash by hash.

        The recorded plan runs again on the workers: deterministic skills for real,
        non-deterministic ones (HTTP, LLM, SQL) answered from the recording, so nothing
        external is called. `identical` says whether every step hash matched; otherwise
        `divergence` names the first step, the JSON path inside it and both values.
        A divergence is a result, not an error: the status is 200."""
        tenant = current_tenant()
        tenant.require("runs:write")
        return golden_service.replay(tenant, body["document"], current_app.extensions["aos.publisher"],
                                     plan=body["plan"], timeout_s=body["timeout_s"])
