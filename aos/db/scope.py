"""Whose rows a database transaction may see: one tenant's, every tenant's (the operator), or none.

Postgres row-level security (migration 0007_rls, docs/security.md) keeps every tenant-owned table to
the rows of the tenant named by the transaction's ``aos.tenant_id`` setting, for every role but the
operator role. AOS connects as (or ``SET ROLE``s every connection to) the application role,
``AOS_DB_APP_ROLE``, and each transaction is scoped by what the code runs for:

- ``tenant(id)``: an authenticated API request, a step of one of the tenant's runs — the transaction
  sets ``aos.tenant_id`` locally; a query without a tenant condition still sees only that tenant;
- ``operator()``: work that crosses tenants by nature — resolving an API key, beat's jobs (outbox drain,
  reaper, schedules, retention, dead-letter reconciliation), the CLI, metrics read at scrape time — the
  transaction switches locally to ``AOS_DB_OPERATOR_ROLE``, whose policies let it see every row;
- neither: the application role with no tenant sees no tenant-owned row at all (fail closed). The API
  and workers start every request and task there.

The scope is a context variable (per thread, per asyncio task), so a service function needs no
argument for it: the door that knows who is calling sets it. On the hot path the setting travels in
the same round trip as the statement (``aos.db.statements``); a session applies it when its
transaction begins (``aos.db.session``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    """``tenant`` set: that tenant's rows; ``operator``: every row; neither: no tenant-owned row."""

    tenant: uuid.UUID | None = None
    operator: bool = False


NOBODY = Scope()
OPERATOR = Scope(operator=True)

_current: ContextVar[Scope | None] = ContextVar("aos_db_scope", default=None)
_process_default = NOBODY


def current() -> Scope:
    """The scope of the code running now (the process default when nothing set one)."""
    scope = _current.get()
    return _process_default if scope is None else scope


def set_process_default(scope: Scope) -> None:
    """The scope of code that set none: NOBODY (the API and workers: fail closed) unless a process that
    works across tenants by nature (the CLI, tests) says OPERATOR."""
    global _process_default
    _process_default = scope


@contextmanager
def scoped(scope: Scope) -> Iterator[Scope]:
    """Run the ``with`` block in ``scope``."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def tenant(tenant_id: uuid.UUID) -> Scope:
    return Scope(tenant=tenant_id)


def as_tenant(tenant_id: uuid.UUID):  # noqa: ANN201 — a context manager
    """``with as_tenant(id)``: that tenant's rows only."""
    return scoped(tenant(tenant_id))


def as_operator():  # noqa: ANN201 — a context manager
    """``with as_operator()``: every tenant's rows (cross-tenant work; see the module docstring)."""
    return scoped(OPERATOR)


def enter(scope: Scope) -> object:
    """Set ``scope`` until ``leave(token)`` (for doors whose start and end are two hooks, like a request)."""
    return _current.set(scope)


def leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
