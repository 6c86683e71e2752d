"""The web console at /console: server-rendered pages over aos/services, signed in with an API key.

Templates are Jinja (``templates/console``); the CSS and JavaScript are AOS's own small files (``static``),
served with a content hash in their URLs; nothing is loaded from anywhere else."""

from __future__ import annotations

from flask import Flask

from aos.web.console import catalog, operations, recovery, runs, signin  # noqa: F401 — their routes join the blueprint
from aos.web.console.blueprint import bp
from aos.web.console.session import configure_cookie


def register(app: Flask) -> None:
    """The console's routes and its session cookie."""
    configure_cookie(app)
    app.register_blueprint(bp)
