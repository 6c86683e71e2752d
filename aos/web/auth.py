"""Bearer credentials (API keys and JWTs) → the tenant of the request (``g.tenant``), declared once for every
protected blueprint.

The caller is resolved once per request, by whichever asks first: the rate limiter (an app-level hook,
which runs before the blueprint's) or the blueprint's own hook.
"""

from __future__ import annotations

from flask import Flask, g, request

from aos.db import scope
from aos.errors import AosError
from aos.services.identity import authenticate_bearer
from aos.services.tenancy import TenantContext
from aos.web.blueprint import ApiBlueprint


def current_tenant() -> TenantContext:
    return g.tenant


def resolve_caller() -> TenantContext:
    """The request's caller, authenticated on first use (AUTH_MISSING / AUTH_INVALID / AUTH_EXPIRED)."""
    ctx = g.get("tenant")
    if ctx is None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise AosError("AUTH_MISSING", "send `Authorization: Bearer <api key or token>`; `aos keys create` "
                           "makes a key")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AosError("AUTH_INVALID", "the Authorization header must be `Bearer <api key or token>`")
        ctx = g.tenant = authenticate_bearer(credential.strip())
        scope.enter(scope.tenant(ctx.tenant_id))  # every query of this request: this tenant's rows only
    return ctx


def _authenticate_request() -> None:
    resolve_caller()


def register(app: Flask) -> None:
    """Row-level security per request (aos/db/scope.py): a request sees no tenant's rows until its key is
    authenticated, then only its tenant's; the scope ends with the request."""

    @app.before_request
    def _fail_closed() -> None:
        g.db_scope = scope.enter(scope.NOBODY)

    @app.teardown_request
    def _end_scope(_exc: BaseException | None) -> None:
        token = g.pop("db_scope", None)
        if token is not None:
            scope.leave(token)


class ProtectedBlueprint(ApiBlueprint):
    """A blueprint whose every route needs an API key or a bearer token; the OpenAPI document says so."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.before_request(_authenticate_request)
