"""The Flask app factory: read it top to bottom as the table of contents of the API."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from aos import __version__
from aos.config import get_settings
from aos.redaction import install_log_redaction
from aos.web import auth, console, docs_ui, ratelimit, traffic
from aos.web.errors import register_error_handlers
from aos.web.extensions import api
from aos.web.json_body import BodyJSONProvider


def create_app(publisher: Any = None, **overrides: Any) -> Flask:
    """Build the API. ``publisher`` is how runs reach the broker (Celery unless a test passes another)."""
    install_log_redaction()  # before anything logs: no secret reaches a log line
    app = Flask("aos")
    app.json = BodyJSONProvider(app)
    configure(app, overrides)
    auth.register(app)  # first: every request starts seeing no tenant's rows (row-level security)
    register_extensions(app, publisher)
    register_blueprints(app)
    register_error_handlers(app)
    traffic.register(app)  # request ids, the access log, HTTP metrics by route template (after the routes exist)
    # per caller and per tenant, in Redis: after the blueprints (it limits the protected ones) and after traffic
    # (a refused or unauthenticated request still gets its request id and its access-log line)
    ratelimit.register(app)
    return app


def configure(app: Flask, overrides: dict[str, Any]) -> None:
    """Flask and OpenAPI settings from aos.config."""
    settings = get_settings()
    app.config.update(
        SECRET_KEY=settings.secret_key or "development-only",
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        API_TITLE="AOS — Agent Operating System",
        API_VERSION=f"v1 ({__version__})",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs_ui.SWAGGER_UI_URL,  # pinned assets served by the API itself, no CDN
        OPENAPI_SWAGGER_UI_CONFIG=docs_ui.SWAGGER_UI_CONFIG,
        OPENAPI_REDOC_PATH="redoc",
        OPENAPI_REDOC_URL=docs_ui.REDOC_URL,
        API_SPEC_OPTIONS={
            "info": {"description": "Submit plans, follow runs. Errors are application/problem+json with a "
                                    "failure-catalog `code`; see /api/v1/errors. Every operation lists each "
                                    "status it can answer. Unknown body fields and query parameters are "
                                    "refused; text anywhere in a body must not contain NUL (U+0000)."},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
        **overrides,
    )
    logging.getLogger("aos").setLevel(settings.log_level)


def register_extensions(app: Flask, publisher: Any) -> None:
    """flask-smorest, and the publisher the run services use."""
    if publisher is None:
        from aos.tasks.publisher import CeleryPublisher

        publisher = CeleryPublisher()
    app.extensions["aos.publisher"] = publisher
    api.init_app(app)


def register_blueprints(app: Flask) -> None:
    """One blueprint per resource."""
    from aos.skills.registry import default_registry
    from aos.web.metrics import bp as metrics
    from aos.web.openapi import document_components, use_problem_responses
    from aos.web.resources.agents.routes import blp as agents
    from aos.web.resources.dead_letters.routes import blp as dead_letters
    from aos.web.resources.errors.routes import blp as errors
    from aos.web.resources.golden.routes import blp as golden
    from aos.web.resources.health.routes import blp as health
    from aos.web.resources.inspect.routes import blp as inspect
    from aos.web.resources.quotas.routes import blp as quotas
    from aos.web.resources.recovery.routes import blp as run_recovery
    from aos.web.resources.recovery.routes import tenant_blp as recovery
    from aos.web.resources.runs.routes import blp as runs
    from aos.web.resources.simulate.routes import blp as simulate
    from aos.web.resources.skills.routes import blp as skills
    from aos.web.resources.webhooks.routes import blp as webhook
    from aos.web.resources.workflows.routes import blp as workflows

    use_problem_responses(api)  # before any blueprint: their operations reference these responses
    document_components(api, default_registry())
    api.register_blueprint(health)
    api.register_blueprint(runs)
    for blp in (workflows, agents, skills, errors, simulate, inspect):
        api.register_blueprint(blp)
    api.register_blueprint(golden)
    api.register_blueprint(dead_letters)
    api.register_blueprint(webhook)
    api.register_blueprint(quotas)
    api.register_blueprint(run_recovery)
    api.register_blueprint(recovery)
    docs_ui.register(app)  # the docs pages' assets (public, like the pages) and their Content-Security-Policy
    app.register_blueprint(metrics)  # plain Flask: /metrics is for Prometheus, outside /api/v1 and its OpenAPI
    console.register(app)  # plain Flask too: server-rendered pages at /console, signed in by a session cookie
