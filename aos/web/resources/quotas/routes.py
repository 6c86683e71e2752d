"""/quotas: the tenant's limits and what it used of them today; operators change them."""

from __future__ import annotations

from contextlib import nullcontext

from flask import current_app
from flask.views import MethodView

from aos.config import get_settings
from aos.db.scope import as_operator
from aos.db.session import session_scope
from aos.services import quotas as service
from aos.services.tenancy import TenantContext, get_tenant_by_name
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.ratelimit import rate_limits_of
from aos.web.resources.quotas.schemas import QuotasQuerySchema, QuotasSchema, QuotasUpdateSchema

blp = ProtectedBlueprint("quotas", __name__, url_prefix="/api/v1/quotas",
                         description="Rate limits, daily quotas and the daily budget (read: runs:read; change: "
                                     "operator)")


def _target(ctx: TenantContext, name: str | None):  # noqa: ANN202
    """The caller's tenant, or (operator scope) the one named."""
    if name is None or name == ctx.tenant_name:
        return ctx.tenant_id
    ctx.require("operator")
    with session_scope() as s:
        return get_tenant_by_name(s, name).id


def _crossing(ctx: TenantContext, name: str | None):  # noqa: ANN202 — a context manager
    """Another tenant's quotas are the operator's to read and change: as the operator role (row-level
    security), once the scope is checked; the caller's own, as itself."""
    if name is None or name == ctx.tenant_name:
        return nullcontext()
    ctx.require("operator")
    return as_operator()


def _view(tenant_id) -> dict:  # noqa: ANN001
    settings = get_settings()
    return service.quotas_view(
        tenant_id, requests_today=rate_limits_of(current_app).requests_today(tenant_id),
        defaults={"key_requests_per_minute": settings.rate_limit_key_per_minute,
                  "tenant_requests_per_minute": settings.rate_limit_tenant_per_minute})


@blp.route("")
class Quotas(MethodView):
    @blp.arguments(QuotasQuerySchema, location="query")
    @blp.response(200, QuotasSchema)
    def get(self, query):  # noqa: ANN001, ANN201
        """The tenant's limits and today's usage (UTC day): cost, tokens, runs, requests.

        Needs `runs:read`; another tenant's (`?tenant=`) needs `operator`."""
        ctx = current_tenant()
        ctx.require("runs:read")
        with _crossing(ctx, query.get("tenant")):
            return _view(_target(ctx, query.get("tenant")))

    @blp.arguments(QuotasUpdateSchema)
    @blp.response(200, QuotasSchema)
    def put(self, body):  # noqa: ANN001, ANN201
        """Change limits (`operator` scope: a tenant's own admin cannot raise its limits). Only the fields
        sent change; `null` removes a limit (rates: back to the deployment's default)."""
        ctx = current_tenant()
        ctx.require("operator")
        name = body.pop("tenant", None)
        with _crossing(ctx, name):
            tenant_id = _target(ctx, name)
            with session_scope() as s:
                service.set_quotas(s, tenant_id, body)
            return _view(tenant_id)
