"""JWT bearer tokens → the caller's tenant and scopes.

HS256 with the shared ``AOS_JWT_SECRET``; RS256 and ES256 with keys from ``AOS_JWT_JWKS_URL``. The
algorithm a token may use follows from the key that verifies it (never from the token's header alone:
an RS256 public key is never tried as an HMAC secret). ``exp`` is required; ``exp``, ``nbf`` and
``iat`` get ``AOS_JWT_LEEWAY_S`` of clock skew; ``iss`` and ``aud`` are checked when configured. The
tenant is the one named by ``AOS_JWT_TENANT_CLAIM`` (default ``aos_tenant``), the scopes are the
space-separated ``scope`` claim (OAuth 2.0) or a ``scp`` list, and the per-caller rate limit follows
``sub``.

Every refusal is AUTH_INVALID, except an expired token (AUTH_EXPIRED); the message never says which
check failed.
"""

from __future__ import annotations

import threading
from typing import Any

import jwt

from aos.config import Settings, get_settings
from aos.errors import AosError
from aos.services.identity.jwks import JwksKeys
from aos.services.tenancy import TenantContext, tenant_context
from aos.skills.egress import EgressPolicy

HMAC_ALGORITHMS = ("HS256",)
PUBLIC_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 8192


def _invalid() -> AosError:
    return AosError("AUTH_INVALID", "the bearer token is not valid")


class TokenVerifier:
    """Verifies tokens with one deployment's settings (built once per process, see ``verifier``)."""

    def __init__(self, settings: Settings) -> None:
        self.secret = settings.jwt_secret
        self.jwks = JwksKeys(settings.jwt_jwks_url, cache_s=settings.jwt_jwks_cache_s,
                             min_refresh_s=settings.jwt_jwks_min_refresh_s,
                             policy=EgressPolicy.of(settings)) if settings.jwt_jwks_url else None
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.tenant_claim = settings.jwt_tenant_claim
        self.leeway = settings.jwt_leeway_s

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.jwks)

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``."""
        if not self.enabled:
            raise AosError("AUTH_INVALID", "unknown API key (keys look like aos_<prefix>_<secret>); this "
                           "deployment accepts no bearer tokens")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid() from None
        alg = header.get("alg")
        if alg in HMAC_ALGORITHMS and self.secret:
            key: Any = self.secret
        elif alg in PUBLIC_ALGORITHMS and self.jwks is not None:
            kid = header.get("kid")
            key = self.jwks.key(kid if isinstance(kid, str) else None)
            if key is None:
                raise _invalid()
        else:
            raise _invalid()
        try:
            return jwt.decode(token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                              leeway=self.leeway,
                              options={"require": ["exp", *(["iss"] if self.issuer else []),
                                                   *(["aud"] if self.audience else [])]})
        except jwt.ExpiredSignatureError:
            raise AosError("AUTH_EXPIRED", "the bearer token has expired; get a new one") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _invalid() from None

    def authenticate(self, token: str) -> TenantContext:
        claims = self.claims(token)
        sub = claims.get("sub")
        caller = f"jwt:{sub}" if isinstance(sub, str) and sub else f"jwt-tenant:{claims.get(self.tenant_claim)}"
        return tenant_context(claims.get(self.tenant_claim), scopes=_scopes(claims), caller=caller[:300])


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(s for s in scp if isinstance(s, str))
    return frozenset()


_lock = threading.Lock()
_verifier: tuple[Settings, TokenVerifier] | None = None


def verifier() -> TokenVerifier:
    """This process's verifier, rebuilt when the settings change (tests and `aos dev` reset them)."""
    global _verifier
    settings = get_settings()
    current = _verifier
    if current is None or current[0] is not settings:
        with _lock:
            current = _verifier
            if current is None or current[0] is not settings:
                current = _verifier = (settings, TokenVerifier(settings))
    return current[1]
