"""Scopes, declared once per blueprint: reads need ``runs:read``, writes ``runs:write`` (admin has all)."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from aos.web.auth import current_tenant

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_scopes(blp: Blueprint, *, read: str = "runs:read", write: str = "runs:write") -> None:
    """Check the key's scope for every request of ``blp`` (after its authentication hook)."""

    def _check() -> None:
        current_tenant().require(read if request.method in SAFE_METHODS else write)

    blp.before_request(_check)
