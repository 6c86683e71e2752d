"""Signing golden files: HMAC-SHA256 with a named key, so keys can rotate.

The signature is an HMAC over the canonical JSON of ``{"body_sha256", "format",
"key_id"}``: the SHA-256 of the canonical body (hash-then-MAC), bound to the
format version and to the id of the key that signed. New files are signed with
``AOS_GOLDEN_SECRET`` under ``AOS_GOLDEN_KEY_ID``; files signed with older keys
still verify while their secrets are listed in ``AOS_GOLDEN_KEYS``
(``{"key id": "secret"}``).

Per tenant (issue 13): a deployment-wide key would let tenant B verify, and so replay, tenant A's
recording. Files are therefore signed with a key derived for the tenant that records them, HKDF-SHA256
(RFC 5869) over the deployment secret with the tenant id as its ``info``, under the key id
``tenant:<deployment key id>``: only the same tenant derives the same key, and rotating the deployment
secret rotates every tenant's (older deployment keys in AOS_GOLDEN_KEYS keep verifying, per tenant).
Files signed before per-tenant keys (a bare key id) verify only where the operator accepts deployment
keys (AOS_GOLDEN_ACCEPT_DEPLOYMENT_KEYS), which reopens the cross-tenant hole: re-record them instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aos.errors import AosError
from aos.golden import FORMAT
from aos.golden.canonical import canonical

TENANT_PREFIX = "tenant:"
_HKDF_SALT = b"aos golden file v1"


def tenant_secret(secret: str, tenant_id: str) -> str:
    """HKDF-SHA256 (extract, then one expand block) of ``secret`` for ``tenant_id``: 32 bytes, hex."""
    prk = hmac.new(_HKDF_SALT, secret.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(prk, f"tenant:{tenant_id}".encode() + b"\x01", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The key that signs (``signing_key_id``) and every key that verifies."""

    signing_key_id: str
    keys: Mapping[str, str] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)  # key id → why a file signed with it is refused

    def for_tenant(self, tenant_id: str, *, accept_deployment_keys: bool = False) -> KeyRing:
        """The ring of one tenant: every deployment key derived for it (and, when accepted, the deployment
        keys themselves, for files recorded before per-tenant keys)."""
        keys = {f"{TENANT_PREFIX}{kid}": tenant_secret(secret, str(tenant_id)) for kid, secret in self.keys.items()}
        refused = {}
        if accept_deployment_keys:
            keys.update(self.keys)
        else:
            refused = {kid: "it was signed with the deployment-wide key, before golden files were signed per "
                            "tenant; re-record the run (or an operator sets AOS_GOLDEN_ACCEPT_DEPLOYMENT_KEYS, "
                            "which lets every tenant verify such files)" for kid in self.keys}
        return KeyRing(f"{TENANT_PREFIX}{self.signing_key_id}", keys, refused)

    @classmethod
    def from_settings(cls, settings: Any) -> KeyRing:
        keys = {str(k): str(v) for k, v in (settings.golden_keys or {}).items() if v}
        if settings.golden_secret:
            keys[settings.golden_key_id] = settings.golden_secret
        return cls(signing_key_id=settings.golden_key_id, keys=keys)

    def secret(self, key_id: str) -> str:
        if not self.keys:
            raise AosError("GOLDEN_SECRET_MISSING", "no golden key is configured: set AOS_GOLDEN_SECRET "
                           "(and AOS_GOLDEN_KEYS for older key ids)")
        secret = self.keys.get(key_id)
        if secret is None and key_id in self.refused:
            raise AosError("GOLDEN_KEY_UNKNOWN", f"the file's key id {key_id!r} is not accepted: {self.refused[key_id]}",
                           details={"key_id": key_id})
        if secret is None:
            raise AosError("GOLDEN_KEY_UNKNOWN",
                           f"the file was signed with key id {key_id!r}, which is not configured "
                           f"(known: {', '.join(sorted(self.keys))}); add its secret to AOS_GOLDEN_KEYS",
                           details={"key_id": key_id, "known": sorted(self.keys)})
        return secret

    def signing_secret(self) -> str:
        secret = self.keys.get(self.signing_key_id)
        if secret is None:
            raise AosError("GOLDEN_SECRET_MISSING", "golden files cannot be signed: set AOS_GOLDEN_SECRET on the "
                           "server (it signs under AOS_GOLDEN_KEY_ID="
                           f"{self.signing_key_id.removeprefix(TENANT_PREFIX)!r})")
        return secret


def signature(secret: str, key_id: str, body_sha256: str, fmt: str = FORMAT) -> str:
    message = canonical({"body_sha256": body_sha256, "format": fmt, "key_id": key_id})
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, key_id: str, body_sha256: str, claimed: str, fmt: str = FORMAT) -> bool:
    return hmac.compare_digest(signature(secret, key_id, body_sha256, fmt), claimed)
