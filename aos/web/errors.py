"""Errors as RFC 9457 problem+json, each with a failure-catalog ``code``. Never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from aos.config import ConfigError
from aos.errors import AosError
from aos.limits import child_path
from aos.runtime.catalog import CATALOG

log = logging.getLogger(__name__)

PROBLEM_MIME = "application/problem+json"

# werkzeug/webargs statuses → catalog codes, for errors raised below our own code
STATUS_CODES = {400: "BODY_MALFORMED", 401: "AUTH_MISSING", 403: "FORBIDDEN_SCOPE", 404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "REQUEST_TOO_LARGE", 415: "VALIDATION_ERROR",
                422: "VALIDATION_ERROR", 429: "RATE_LIMITED", 503: "SERVICE_UNAVAILABLE"}


def problem(code: str, detail: str, *, status: int | None = None, **extra: Any) -> Response:
    entry = CATALOG.get(code)
    body = {"type": f"/api/v1/errors/{code}", "title": entry.description, "status": status or entry.http_status,
            "detail": detail, "code": code, "instance": request.path if request else None, **extra}
    return Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_MIME)


def problem_from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    code = STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR")
    detail = error.description or error.name
    extra: dict[str, Any] = {}
    if messages:
        # webargs puts an unparseable body under json._schema: that is malformed JSON, not a bad field
        text = json.dumps(messages)
        if status == 400 and "Invalid JSON body" in text:
            code, detail = "BODY_MALFORMED", "the request body is not valid JSON"
        else:
            code, status = "VALIDATION_ERROR", 422
            extra["problems"] = _flatten(messages)
            detail = "; ".join(f"{p['path']}: {p['message']}" for p in extra["problems"][:5])
    if code == "NOT_FOUND":
        detail = f"no such resource {request.path}; the API is described at /api/v1/openapi.json"
    response = problem(code, detail, status=status, **extra)
    # the exception's own headers: `Allow` of a 405 (RFC 9110 §15.5.6 requires it), `WWW-Authenticate`, …
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _flatten(messages: Any, path: str = "$") -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for k, v in messages.items():
            if k in ("json", "query", "path", "headers", "form", "files"):
                out += _flatten(v, path if k == "json" else f"{k}")
            elif k == "_schema":
                out += _flatten(v, path)
            else:
                out += _flatten(v, child_path(path, int(k) if isinstance(k, int) else str(k)))
    elif isinstance(messages, list):
        for m in messages:
            if isinstance(m, (dict, list)):
                out += _flatten(m, path)
            else:
                out.append({"path": path, "code": "VALIDATION_ERROR", "message": str(m)})
    else:
        out.append({"path": path, "code": "VALIDATION_ERROR", "message": str(messages)})
    return out


def register_error_handlers(app: Flask) -> None:
    """AosError → its catalog status; HTTP errors → problem+json; anything else → 500 INTERNAL_ERROR, logged."""

    @app.errorhandler(AosError)
    def _aos_error(exc: AosError) -> Response:
        extra = {"problems": exc.problems} if exc.problems else {}
        if exc.details:
            extra["details"] = exc.details
        response = problem(exc.code, exc.message, **extra)
        retry_after = exc.details.get("retry_after_s") if exc.details else None
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return problem_from_http_exception(exc)

    @app.errorhandler(ConfigError)
    def _config_error(exc: ConfigError) -> Response:
        log.error("configuration error: %s", exc)
        return problem("SERVICE_UNAVAILABLE", "the server is misconfigured; see its log")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, RecursionError):  # a JSON body nested deeper than the parser can go
            return problem("BODY_MALFORMED", "the request body is nested too deeply to parse")
        if isinstance(exc, OperationalError):
            log.error("database unavailable: %s", exc)
            return problem("SERVICE_UNAVAILABLE", "the database is unreachable; retry shortly")
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem("INTERNAL_ERROR", "an unexpected error occurred; it was logged")
