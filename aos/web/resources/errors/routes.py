"""The failure catalog: every error code AOS produces, what it means and what to do about it.

Public (no API key): every problem+json response links its `type` here.
"""

from __future__ import annotations

from flask.views import MethodView

from aos.errors import AosError
from aos.runtime.catalog import CATALOG
from aos.services.failures import catalog_entry_view
from aos.web.blueprint import ApiBlueprint
from aos.web.resources.errors.schemas import CatalogEntrySchema, CatalogSchema

blp = ApiBlueprint("errors", __name__, url_prefix="/api/v1/errors", description="The failure catalog")


@blp.route("")
class Errors(MethodView):
    @blp.doc(security=[])
    @blp.response(200, CatalogSchema)
    def get(self):  # noqa: ANN201
        """Every catalog code with its category, retryable flag, recovery mode, HTTP status and advice."""
        return {"items": [catalog_entry_view(e) for e in CATALOG]}


@blp.route("/<code>")
class ErrorItem(MethodView):
    @blp.doc(security=[])
    @blp.response(200, CatalogEntrySchema)
    def get(self, code):  # noqa: ANN001, ANN201
        """One catalog code."""
        if code not in CATALOG:
            raise AosError("NOT_FOUND", f"no catalog code {code!r}; GET /api/v1/errors lists them")
        return catalog_entry_view(CATALOG.get(code))
