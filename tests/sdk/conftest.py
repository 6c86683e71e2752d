"""The live API for SDK and CLI tests: the real Flask app behind a real threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server


@pytest.fixture(scope="session")
def live_api(app) -> str:
    """The base URL of the session's API (real app, real Celery publisher to the session's queue)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-api", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
