"""How a failure is shown to people and programs: its code, plus what the catalog knows about the code.

One place builds the ``error`` object of runs and steps (API, CLI, SDK) and the
catalog entries of ``/errors``, so a failure reads the same everywhere: what
happened (``message``), how to classify it (``category``, ``retryable``), what the
engine does about it (``recovery_mode``) and what a person should do next
(``suggestion``).
"""

from __future__ import annotations

from typing import Any

from aos.runtime.catalog import CATALOG, CatalogEntry


def suggestion(entry: CatalogEntry) -> str:
    """The "what to do next" half of a catalog description ("what happened; what to do")."""
    _, sep, advice = entry.description.partition("; ")
    text = advice if sep else entry.description
    return text[:1].upper() + text[1:]


def entry_for(code: str) -> CatalogEntry:
    """The catalog entry of ``code``; the catalog's fallback for a code it does not know (an old row)."""
    try:
        return CATALOG.get(code)
    except KeyError:
        return CATALOG.fallback


def error_view(code: str, message: str | None) -> dict[str, Any]:
    entry = entry_for(code)
    return {"code": code, "message": message, "category": str(entry.category), "retryable": entry.retryable,
            "recovery_mode": str(entry.recovery), "suggestion": suggestion(entry)}


# A retryable failure that ended its run: its catalog advice ("it is retried") no longer holds.
RETRIES_USED_UP = ("Its retries are used up; once the cause is gone, resume the run (`aos runs resume RUN`) or "
                   "replay its dead letter (`aos dlq replay ID`): the step starts again with a fresh retry budget.")


def final_error_view(code: str, message: str | None) -> dict[str, Any]:
    """The error of a run (or step) that ended with it: for a retryable code, what a person can do now."""
    view = error_view(code, message)
    if view["retryable"]:
        view["suggestion"] = RETRIES_USED_UP
    return view


def catalog_entry_view(entry: CatalogEntry) -> dict[str, Any]:
    return {"code": entry.code, "category": str(entry.category), "retryable": entry.retryable,
            "recovery_mode": str(entry.recovery), "http_status": entry.http_status,
            "description": entry.description, "suggestion": suggestion(entry)}
