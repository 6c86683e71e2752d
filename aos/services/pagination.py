"""Keyset pagination over ``(created_at, id)``, newest first.

An offset page shifts when rows are inserted; a keyset page does not: the cursor
names the last row seen, and the next page is every row strictly older. The
cursor is opaque to clients (base64url of ``[created_at, id]``); it carries no
tenant and grants nothing, because every query it feeds is already tenant-scoped.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aos.errors import AosError

if TYPE_CHECKING:  # the cursors alone serve listings read without SQLAlchemy (aos.services.listings)
    from sqlalchemy import Select
    from sqlalchemy.orm import Session

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_CHARS = 256
_BIGINT_MAX = 2**63 - 1


def encode_cursor(created_at: datetime, key: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(key) if isinstance(key, uuid.UUID) else key],
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def decode_cursor(token: str, key_type: type) -> tuple[datetime, Any]:
    """``(created_at, id)`` of a cursor; CURSOR_INVALID for anything this module did not write."""
    try:
        if not 0 < len(token) <= MAX_CURSOR_CHARS:
            raise ValueError("length")
        raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode("ascii"))
        at_text, key = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        if key_type is int:
            if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= _BIGINT_MAX:
                raise ValueError("id")
        else:
            key = uuid.UUID(key)
        return at, key
    except (ValueError, TypeError, AttributeError, UnicodeError, binascii.Error):
        raise AosError("CURSOR_INVALID", "the cursor is not one this API returned; pass `next_cursor` from "
                       "the previous page unchanged, or omit it for the first page") from None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise AosError("VALIDATION_ERROR", f"limit must be between 1 and {MAX_LIMIT}",
                       problems=[{"path": "limit", "code": "VALIDATION_ERROR",
                                  "message": f"must be between 1 and {MAX_LIMIT}"}])
    return limit


def paginate(s: Session, query: Select, *, created_col: Any, id_col: Any, limit: int, cursor: str | None,
             view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """One page of ``query`` (a select of ORM rows): ``{"items": [...], "next_cursor": str | None}``.

    ``created_col``/``id_col`` are the mapped columns of the row's creation time and id; rows come
    newest first and the page after a cursor holds only rows strictly older than it.
    """
    from sqlalchemy import literal, tuple_

    check_limit(limit)
    if cursor:
        at, key = decode_cursor(cursor, int if id_col.type.python_type is int else uuid.UUID)
        query = query.where(tuple_(created_col, id_col) < tuple_(literal(at, created_col.type),
                                                                 literal(key, id_col.type)))
    rows = s.scalars(query.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(getattr(last, created_col.key), getattr(last, id_col.key))
    return {"items": [view(r) for r in page], "next_cursor": next_cursor}
