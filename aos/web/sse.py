"""Server-sent events of a run's timeline, read from Postgres (no pub/sub to lose or to keep in step).

The stream polls the timeline every ``AOS_SSE_POLL_S`` with a short session of its
own, sends each event as ``id``/``event``/``data``, a ``: keepalive`` comment after
``AOS_SSE_KEEPALIVE_S`` of silence, and, once the run is final and every event was
sent, an ``end`` event carrying the run summary. A stream lives at most
``AOS_SSE_MAX_S``: the client reconnects with ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import OperationalError

from aos.config import get_settings
from aos.db.scope import as_tenant
from aos.errors import AosError
from aos.services import runs as run_service
from aos.services.tenancy import TenantContext

log = logging.getLogger(__name__)

RECONNECT_MS = 1000


def frame(data: Any, *, event: str | None = None, id_: int | None = None) -> str:
    lines = []
    if id_ is not None:
        lines.append(f"id: {id_}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), default=str)}")
    return "\n".join(lines) + "\n\n"


def run_event_stream(ctx: TenantContext, run_id: str, after_id: int) -> Iterator[str]:
    """The frames of a run's stream from event ``after_id`` on (see the module docstring)."""
    settings = get_settings()
    started = last_sent = time.monotonic()
    yield f"retry: {RECONNECT_MS}\n\n"
    while True:
        try:
            # a streamed response runs after its request's hooks: each poll scopes itself to the tenant
            with as_tenant(ctx.tenant_id):
                final, summary, events = run_service.poll_events(ctx, run_id, after_id)
        except AosError:  # the run was deleted (retention) while streamed: nothing more will come
            return
        except OperationalError:
            log.warning("event stream of run %s: database unreachable; retrying", run_id)
            final, summary, events = False, {}, []
        for e in events:
            yield frame(e, event=e["type"], id_=e["id"])
            after_id = e["id"]
        now = time.monotonic()
        if events:
            last_sent = now
        elif final:  # final, and the poll after the final one found nothing more: complete
            yield frame(summary, event="end")
            return
        if now - started >= settings.sse_max_s:
            return
        if now - last_sent >= settings.sse_keepalive_s:
            yield ": keepalive\n\n"
            last_sent = now
        if not events:
            time.sleep(settings.sse_poll_s)
