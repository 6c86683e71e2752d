"""Bearer API keys → the tenant of the request (``g.tenant``), declared once for every protected blueprint."""

from __future__ import annotations

from flask import Flask, g, request

from aos.db import scope
from aos.errors import AosError
from aos.services.tenancy import TenantContext, authenticate_key
from aos.web.blueprint import ApiBlueprint


def current_tenant() -> TenantContext:
    return g.tenant


def _authenticate_request() -> None:
    header = request.headers.get("Authorization", "")
    if not header:
        raise AosError("AUTH_MISSING", "send `Authorization: Bearer <api key>`; `aos keys create` makes one")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AosError("AUTH_INVALID", "the Authorization header must be `Bearer <api key>`")
    g.tenant = authenticate_key(key.strip())
    scope.enter(scope.tenant(g.tenant.tenant_id))  # every query of this request: this tenant's rows only


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
    """A blueprint whose every route needs an API key; the OpenAPI document says so."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.before_request(_authenticate_request)
