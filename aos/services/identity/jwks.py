"""The public keys of RS256/ES256 tokens, from a JWKS document at a URL or in a file.

Fetched lazily and kept for ``AOS_JWT_JWKS_CACHE_S``; a token naming a ``kid`` the cached set lacks
makes one fetch (the provider rotated its keys), but at most one per ``AOS_JWT_JWKS_MIN_REFRESH_S``, so
forged key ids cannot turn the API into a flood against the identity provider. A failed fetch keeps
the keys already known.

The URL is the operator's own setting (like AOS_ANTHROPIC_BASE_URL): fetched through AOS's guarded
transport (aos/skills/egress.py) with its host trusted by name — a private identity provider is fine, a
cloud-metadata address never — following no redirect, with a short timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from aos.skills.base import SkillError
from aos.skills.egress import EgressPolicy, guarded_client

log = logging.getLogger("aos.jwt")
FETCH_TIMEOUT_S = 5.0


class JwksKeys:
    """kid → public key, refreshed as the module docstring says."""

    def __init__(self, source: str, *, cache_s: float, min_refresh_s: float,
                 policy: EgressPolicy | None = None) -> None:
        self.source = source
        self.policy = policy or EgressPolicy()
        self.cache_s = cache_s
        self.min_refresh_s = min_refresh_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> Any | None:
        """The key with id ``kid`` (None: unknown, also after a refresh). A JWKS with a single key answers a
        token without ``kid`` with that key."""
        now = time.monotonic()
        if now - self._fetched_at > self.cache_s or (kid not in self._keys and kid is not None
                                                     and now - self._fetched_at > self.min_refresh_s):
            self._refresh(now)
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        with self._lock:
            if self._fetched_at == now or (now - self._fetched_at <= self.min_refresh_s and self._keys):
                return  # another thread just did it
            self._fetched_at = now
            try:
                document = self._read()
                keys = {}
                for jwk in document.get("keys", []):
                    if jwk.get("use", "sig") != "sig":
                        continue
                    try:
                        keys[jwk.get("kid")] = jwt.PyJWK(jwk).key
                    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                        log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
                self._keys = keys
            except (OSError, httpx.HTTPError, ValueError, SkillError) as exc:  # SkillError: the guard refused
                log.warning("JWKS fetch from %s failed (keeping %d known keys): %s", self.source, len(self._keys),
                            exc)

    def _read(self) -> dict[str, Any]:
        if self.source.startswith(("http://", "https://")):
            host = httpx.URL(self.source).host
            with guarded_client(self.policy.trusting(host), timeout=FETCH_TIMEOUT_S) as client:
                resp = client.get(self.source)
                resp.raise_for_status()
                document = resp.json()
        else:
            path = self.source.removeprefix("file://")
            document = json.loads(Path(path).read_text())
        if not isinstance(document, dict):
            raise ValueError("a JWKS document is a JSON object with `keys`")
        return document
