"""The API's documentation pages (Swagger UI at /api/v1/docs, ReDoc at /api/v1/redoc) with their assets served
by the API itself: a pinned Swagger UI from the `swagger-ui-bundle` package and a pinned ReDoc vendored in
aos/web/static/redoc (see its VERSION). Nothing is loaded from a CDN, so the pages work offline and their
code cannot change under us."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Flask, Response, request, send_from_directory

ASSETS_PREFIX = "/api/v1/docs/assets"
SWAGGER_UI_URL = f"{ASSETS_PREFIX}/swagger-ui/"
REDOC_URL = f"{ASSETS_PREFIX}/redoc/redoc.standalone.js"
# Swagger UI asks validator.swagger.io to badge the document unless told not to: no request off the machine.
SWAGGER_UI_CONFIG = {"validatorUrl": None}

# The pages may load only from this server: a bundle that reaches for a CDN (ReDoc's sidebar logo does) is
# stopped by the browser before any request leaves. Inline scripts and styles: flask-smorest's page templates
# and ReDoc's styled-components use them; blob: workers are ReDoc's search.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                           "worker-src 'self' blob:; base-uri 'self'; form-action 'self'; frame-ancestors 'self'")
_PAGES = frozenset({"api-docs.openapi_swagger_ui", "api-docs.openapi_redoc"})

_REDOC_DIR = Path(__file__).resolve().parent / "static" / "redoc"
_ONE_DAY = 86400  # the files change only with the package version

bp = Blueprint("docs_assets", __name__, url_prefix=ASSETS_PREFIX)


@bp.get("/swagger-ui/<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    """A file of the pinned Swagger UI distribution."""
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=_ONE_DAY)


@bp.get("/redoc/<path:filename>")
def redoc_asset(filename: str) -> Response:
    """The pinned ReDoc bundle."""
    return send_from_directory(_REDOC_DIR, filename, max_age=_ONE_DAY)


def _self_only(response: Response) -> Response:
    if request.endpoint in _PAGES:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def register(app: Flask) -> None:
    """The assets' routes, and the pages' Content-Security-Policy."""
    app.register_blueprint(bp)
    app.after_request(_self_only)
