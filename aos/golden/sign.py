"""Signing golden files: HMAC-SHA256 with a named key, so keys can rotate.

The signature is an HMAC over the canonical JSON of ``{"body_sha256", "format",
"key_id"}``: the SHA-256 of the canonical body (hash-then-MAC), bound to the
format version and to the id of the key that signed. New files are signed with
``AOS_GOLDEN_SECRET`` under ``AOS_GOLDEN_KEY_ID``; files signed with older keys
still verify while their secrets are listed in ``AOS_GOLDEN_KEYS``
(``{"key id": "secret"}``).
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


@dataclass(frozen=True)
class KeyRing:
    """The key that signs (``signing_key_id``) and every key that verifies."""

    signing_key_id: str
    keys: Mapping[str, str] = field(default_factory=dict)

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
                           f"server (it signs under AOS_GOLDEN_KEY_ID={self.signing_key_id!r})")
        return secret


def signature(secret: str, key_id: str, body_sha256: str, fmt: str = FORMAT) -> str:
    message = canonical({"body_sha256": body_sha256, "format": fmt, "key_id": key_id})
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, key_id: str, body_sha256: str, claimed: str, fmt: str = FORMAT) -> bool:
    return hmac.compare_digest(signature(secret, key_id, body_sha256, fmt), claimed)
