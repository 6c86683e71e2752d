"""CLI tests share the SDK tests' live API server."""

from tests.sdk.conftest import live_api  # noqa: F401 — a fixture, used by name
