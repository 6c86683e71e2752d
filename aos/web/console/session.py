"""Console sign-in: a credential (an API key, or a JWT where the server accepts them) becomes a session cookie.

The cookie is Flask's signed session (AOS_SECRET_KEY). It holds who signed in — the key's id, the tenant, the
scopes, when — and the session's CSRF token, never the key itself. Every request of a key's session re-reads
that key (one prepared read), so revoking it ends its console sessions at once; a JWT's session lasts until the
token's ``exp`` or AOS_CONSOLE_SESSION_S, whichever comes first (the console does not keep the token). Every POST
carries the session's CSRF token in a hidden field; a missing or wrong one is CSRF_INVALID (403) before any work.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, g, session

from aos.config import get_settings
from aos.errors import AosError
from aos.services.tenancy import TenantContext, authenticate_key, key_context

try:  # API keys and JWTs, one door (the tenancy work of issue 13); API keys alone before it
    from aos.services.identity import authenticate_bearer  # type: ignore[import-not-found]
except ImportError:
    authenticate_bearer = authenticate_key

COOKIE_NAME = "aos_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
_INSECURE_ENVS = frozenset({"development", "test"})  # plain http on a laptop or in the test suite


def configure_cookie(app: Flask) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure outside development and tests, sent to /console
    only (the API never sees it: it takes bearer credentials)."""
    settings = get_settings()
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH=COOKIE_PATH,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_SECURE=settings.env not in _INSECURE_ENVS,
                      PERMANENT_SESSION_LIFETIME=settings.console_session_s,
                      # set at sign-in, not re-sent with every answer: an old page's late answer (a live
                      # fragment, an event stream) cannot put back a session the browser has since replaced
                      SESSION_REFRESH_EACH_REQUEST=False)


def _token_expiry(credential: str) -> int | None:
    """The ``exp`` of a JWT that was just verified (so its payload can be read as is); None without one."""
    try:
        part = credential.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))).get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return int(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def accepts_tokens() -> bool:
    """Whether this server signs in with JWTs too (not only API keys)."""
    return authenticate_bearer is not authenticate_key


def sign_in(credential: str) -> TenantContext:
    """Check the credential and start a new session for it (a new CSRF token too: nothing carries over)."""
    credential = credential.strip()
    if not credential:
        raise AosError("AUTH_MISSING", "paste an API key (`aos keys create` makes one)")
    ctx = authenticate_bearer(credential)
    now = int(time.time())
    until = now + get_settings().console_session_s
    if ctx.key_id is None:  # a token: the session ends when the token does
        until = min(until, _token_expiry(credential) or until)
    session.clear()
    session.permanent = True
    session.update({"kind": "key" if ctx.key_id is not None else "jwt",
                    "kid": str(ctx.key_id) if ctx.key_id else None, "tid": str(ctx.tenant_id),
                    "tn": ctx.tenant_name, "scopes": sorted(ctx.scopes), "at": now, "until": until,
                    "csrf": secrets.token_urlsafe(32)})
    return ctx


def sign_out() -> None:
    session.clear()


def signed_in() -> TenantContext | None:
    """The context of this request's session, or None when there is none (or it ended)."""
    if "tid" not in session:
        return None
    if time.time() >= min(session.get("until", 0), session.get("at", 0) + get_settings().console_session_s):
        session.clear()
        return None
    if session.get("kind") == "key":
        try:
            return key_context(session["kid"])
        except AosError:
            session.clear()
            return None
    return TenantContext(tenant_id=uuid.UUID(session["tid"]), tenant_name=session["tn"], key_id=None,
                         scopes=frozenset(session.get("scopes", ())))


def current() -> TenantContext:
    """The signed-in tenant of this console request (set by the blueprint's before-request hook)."""
    return g.console_ctx


def csrf_token() -> str:
    """This session's CSRF token (made on first use, so the sign-in form has one too)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf(form: Any) -> None:
    """CSRF_INVALID unless the form carries this session's token."""
    sent = form.get(CSRF_FIELD, "")
    want = session.get("csrf")
    if not want or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), want.encode()):
        raise AosError("CSRF_INVALID", "this form did not come from your console session; nothing was changed. "
                                       "Reload the page and submit it again.")


def safe_next(target: str | None) -> str | None:
    """A place inside the console to go back to after sign-in; anything else (another host) is dropped."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(COOKIE_PATH + "/") or "\\" in target:
        return None
    return target
