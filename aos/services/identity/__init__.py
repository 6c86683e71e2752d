"""Who is calling: API keys (``aos.services.tenancy``) and JWT bearer tokens (``tokens``), one door.

``authenticate_bearer`` is what the API calls for every protected request: a credential shaped like an
API key (``aos_…``) takes the one-read key path unchanged; anything else is a JWT, accepted only when
the deployment configured a way to verify one (AOS_JWT_SECRET, AOS_JWT_JWKS_URL).
"""

from __future__ import annotations

from aos.services.identity.tokens import TokenVerifier, verifier
from aos.services.tenancy import KEY_PREFIX, TenantContext, authenticate_key

__all__ = ["TokenVerifier", "authenticate_bearer", "verifier"]


def authenticate_bearer(credential: str) -> TenantContext:
    """The tenant and scopes of a bearer credential (an API key or a JWT); AUTH_INVALID / AUTH_EXPIRED."""
    if credential.startswith(KEY_PREFIX):
        return authenticate_key(credential)
    return verifier().authenticate(credential)
