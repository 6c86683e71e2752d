"""The console's blueprint: who may see a page, the CSRF check on every form, HTML error pages with their catalog
code, the pinned assets, the Content-Security-Policy, and the small formatting filters the templates share."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, g, redirect, render_template, request, send_from_directory, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from aos.db import scope
from aos.errors import AosError
from aos.runtime.catalog import CATALOG
from aos.web.console import session as console_session
from aos.web.errors import STATUS_CODES

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Only this server: no inline script or style at all, forms post only here, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.asset"})
# what a page's script fetches: signed out, these answer 401 (the script reloads the page) rather than a redirect
PARTS = frozenset({"console.run_events", "console.run_live"})
_ONE_DAY = 86400

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")


def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


ASSET_VERSIONS = {p.name: _asset_version(p.name) for p in STATIC_DIR.iterdir() if p.is_file()}


@bp.get("/assets/<path:filename>")
def asset(filename: str) -> Response:
    """The console's own CSS and JavaScript (versioned by content hash in their URLs)."""
    return send_from_directory(STATIC_DIR, filename, max_age=_ONE_DAY)


def asset_url(name: str) -> str:
    return url_for("console.asset", filename=name, v=ASSET_VERSIONS[name])


# --- access: the session, then the form's CSRF token -----------------------------------------------------------


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if request.method == "POST":
        console_session.check_csrf(request.form)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    ctx = console_session.signed_in()
    if ctx is None:
        if request.method == "GET" and request.endpoint not in PARTS:
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
        raise AosError("AUTH_MISSING", "your console session ended; sign in again")
    g.console_ctx = g.tenant = ctx  # g.tenant: the access log names the tenant, as for the API
    scope.enter(scope.tenant(ctx.tenant_id))  # row-level security: this request sees its tenant's rows only
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.asset":
        response.headers["Cache-Control"] = "no-store"  # pages show live state and carry a CSRF token
    return response


# --- errors: a page that says what happened, its code, and what to do ----------------------------------------------


def error_page(code: str, detail: str, *, status: int | None = None, problems: list | None = None) -> Response:
    entry = CATALOG.get(code)
    status = status or entry.http_status
    html = render_template("console/error.html", code=code, title=entry.description, detail=detail,
                           status=status, problems=problems or [])
    return Response(html, status=status, mimetype="text/html")


@bp.errorhandler(AosError)
def _aos_error(exc: AosError) -> Response:
    return error_page(exc.code, exc.message, problems=exc.problems)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return error_page(STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"),
                      exc.description or exc.name, status=status)


@bp.errorhandler(OperationalError)
def _database_down(exc: OperationalError) -> Response:
    log.error("console: database unavailable: %s", exc)
    return error_page("SERVICE_UNAVAILABLE", "the database is unreachable; retry shortly")


# --- what every template may use ------------------------------------------------------------------------------------


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    ctx = g.get("console_ctx")
    return {"asset_url": asset_url, "csrf_token": console_session.csrf_token, "console_ctx": ctx,
            "can": (lambda scope: ctx is not None and (scope in ctx.scopes or "admin" in ctx.scopes)),
            "query_with": _query_with}


def _query_with(**changes: Any) -> str:
    """This page's query string with some parameters changed (None drops one)."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v not in (None, "")})
    return "?" + urlencode(args) if args else request.path


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


@bp.app_template_filter("when")
def when(ts: str | None) -> str:
    """An ISO timestamp as `2026-12-06 04:18:03 UTC`."""
    dt = _parse(ts)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


@bp.app_template_filter("ms")
def ms(value: float | None) -> str:
    """A duration in milliseconds, readable."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 120_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60_000:.1f} min"


@bp.app_template_filter("between")
def between(start: str | None, end: str | None) -> str:
    """The time from one ISO timestamp to another."""
    a, b = _parse(start), _parse(end)
    if not (a and b):
        return "—"
    return ms((b - a).total_seconds() * 1000)


@bp.app_template_filter("usd")
def usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


@bp.app_template_filter("compact")
def compact(value: Any) -> str:
    """JSON on one line, as written (no escapes for quotes or non-ASCII: the template escapes HTML)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


@bp.app_template_filter("pretty")
def pretty(value: Any) -> str:
    """JSON, indented for reading."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
