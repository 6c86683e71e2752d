"""The console's door onto signal delivery (a waiting run resumed by a person), which the waiting-runs work of
issue 15 provides as ``aos.services.signals.deliver_signal(ctx, run_id, name, payload, idempotency_key,
publisher)`` (the same call as ``POST /api/v1/runs/{id}/signals/{name}``). Until that module exists the run page
shows no signal form and a posted one is refused with NOT_IMPLEMENTED: the console never pretends a signal was
delivered."""

from __future__ import annotations

import json
from typing import Any

from aos.errors import AosError
from aos.services.publisher import Publisher
from aos.services.tenancy import TenantContext

try:
    from aos.services import signals as signal_service  # type: ignore[attr-defined]
except ImportError:  # built on another branch; see docs/console.md
    signal_service = None

MAX_PAYLOAD_CHARS = 256 * 1024


def available() -> bool:
    """Whether this server can deliver signals."""
    return callable(getattr(signal_service, "deliver_signal", None))


def parse_payload(text: str) -> Any:
    """The JSON typed into the signal form (empty: ``null``); VALIDATION_ERROR naming the problem otherwise."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_PAYLOAD_CHARS:
        raise AosError("VALIDATION_ERROR", f"the payload is longer than {MAX_PAYLOAD_CHARS} characters",
                       problems=[{"path": "payload", "code": "VALIDATION_ERROR", "message": "too long"}])
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        message = f"not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise AosError("VALIDATION_ERROR", f"the payload is {message}",
                       problems=[{"path": "payload", "code": "VALIDATION_ERROR", "message": message}]) from None


def deliver(ctx: TenantContext, run_id: str, name: str, payload: Any, *, key: str,
            publisher: Publisher | None) -> Any:
    """Deliver signal ``name`` with ``payload`` to a waiting run, idempotent by ``key``."""
    if not available():
        raise AosError("NOT_IMPLEMENTED", "this server cannot deliver signals (waiting runs are not built in)")
    return signal_service.deliver_signal(ctx, run_id, name, payload, key, publisher)
