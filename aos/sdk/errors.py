"""Exceptions of the SDK: every API error carries the failure-catalog ``code`` of its problem+json body.

``AosApiError`` is the base; the subclass says what kind of failure it is, so callers can
``except NotFound`` without comparing status numbers, and ``exc.code`` says exactly which
catalog entry it was (``RUN_NOT_FOUND``, ``PLAN_INVALID``, ...).
"""

from __future__ import annotations

from typing import Any

import httpx

# A response that is not problem+json (a proxy's HTML page, an old server) still gets a real catalog code.
_STATUS_CODES = {400: "BODY_MALFORMED", 401: "AUTH_MISSING", 403: "FORBIDDEN_SCOPE", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "REQUEST_TOO_LARGE", 415: "VALIDATION_ERROR",
                 422: "VALIDATION_ERROR", 429: "RATE_LIMITED", 502: "SERVICE_UNAVAILABLE", 503: "SERVICE_UNAVAILABLE",
                 504: "SERVICE_UNAVAILABLE"}


class AosApiError(Exception):
    """An error answer of the AOS API (or no answer at all, for ``ApiUnreachable``)."""

    def __init__(self, code: str, status: int | None, detail: str, problems: list[dict[str, Any]] | None = None,
                 *, title: str | None = None, body: Any = None, retry_after: float | None = None,
                 method: str | None = None, url: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status = status
        self.detail = detail
        # Validation errors list every problem, each {path, code, message}.
        self.problems: list[dict[str, Any]] = list(problems or [])
        self.title = title
        self.body = body
        self.retry_after = retry_after
        self.method = method
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, detail={self.detail!r})"


class ValidationFailed(AosApiError):
    """The request was refused as it is (400, 413, 415, 422): fix it; ``problems`` says where."""


class Unauthorized(AosApiError):
    """No API key, or one the server does not accept (401)."""


class Forbidden(AosApiError):
    """The key lacks the scope the operation needs (403)."""


class NotFound(AosApiError):
    """No such object for this key's tenant (404). Another tenant's object is a 404 too."""


class Conflict(AosApiError):
    """The object is not in a state that allows this (409), e.g. resuming a run that succeeded."""


class RateLimited(AosApiError):
    """Too many requests (429); ``retry_after`` holds the server's hint in seconds."""


class ServerError(AosApiError):
    """The server failed (5xx)."""


class ServiceUnavailable(ServerError):
    """The server is up but cannot serve now (503): database or broker unavailable, overloaded."""


class ApiUnreachable(AosApiError):
    """No HTTP answer at all: connection refused, DNS failure, timeout."""

    def __init__(self, base_url: str, cause: BaseException, *, method: str | None = None,
                 url: str | None = None) -> None:
        why = f"{type(cause).__name__}: {cause or 'no detail'}"
        if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout):
            detail = f"cannot reach the API at {base_url}: start it with `aos dev` or `aos api` ({why})"
        else:
            detail = f"no complete answer from the API at {base_url} ({why})"
        super().__init__("SERVICE_UNAVAILABLE", None, detail, method=method, url=url)
        self.cause = cause


class RunWaitTimeout(TimeoutError):
    """``wait()`` or an event stream gave up before the run reached a final status."""

    def __init__(self, run_id: str, timeout: float, last: Any = None) -> None:
        super().__init__(f"run {run_id} is not final after {timeout:g}s")
        self.run_id = run_id
        self.timeout = timeout
        self.last = last  # the last RunSummary/Run seen, when there was one


def _class_for(status: int) -> type[AosApiError]:
    if status in (400, 413, 415, 422):
        return ValidationFailed
    if status == 503:
        return ServiceUnavailable
    if status >= 500:
        return ServerError
    return {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 429: RateLimited}.get(status, AosApiError)


def error_from_response(resp: httpx.Response, retry_after: float | None = None) -> AosApiError:
    """The exception for an error response; a non-problem body still gets a catalog code by its status."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code, detail = body["code"], str(body.get("detail") or body.get("title") or "")
        problems, title = body.get("problems") or [], body.get("title")
    else:
        code = _STATUS_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR")
        detail = f"HTTP {status} from {resp.request.url}: {resp.text[:200].strip() or resp.reason_phrase}"
        problems, title = [], None
    return _class_for(status)(code, status, detail, problems, title=title, body=body, retry_after=retry_after,
                              method=resp.request.method, url=str(resp.request.url))
