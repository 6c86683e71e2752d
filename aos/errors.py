"""AosError: the one exception type the domain and services raise for expected failures.

It carries a failure-catalog code; the web layer turns it into problem+json with
the catalog's HTTP status, the CLI into a one-line message and a non-zero exit.
"""

from __future__ import annotations

from typing import Any


class AosError(Exception):
    """An expected failure with a catalog code, a message that says what to do next, and details."""

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None,
                 problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        # Validation reports every problem, each with its JSON path and code.
        self.problems = problems or []

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
