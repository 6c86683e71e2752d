"""A failure's signature: catalog code, skill and the message normalised, hashed.

Two failures that differ only by identifiers (ids, numbers, timestamps, hosts, quoted values) have the same
signature, so the second is answered from the cache. The message is sanitised first
(``sanitize_for_embedding``): the normalised text is what a pattern stores and what is embedded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from aos.services.recovery.sanitize import sanitize_for_embedding

MAX_MESSAGE_CHARS = 1000

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+"), "<url>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?"), "<ts>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+(?:com|net|org|io|dev|internal|local|cloud|ai|co|"
                r"[a-z]{2})(?::\d+)?\b", re.IGNORECASE), "<host>"),
    (re.compile(r"\"[^\"]*\"|'[^']*'|`[^`]*`"), "<q>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\b\w*\d[\w.\-]*\b"), "<n>"),
)
_SPACE = re.compile(r"\s+")


def normalise_message(message: str) -> str:
    """The sanitised message with its identifiers replaced by placeholders, lower-cased, spaces collapsed."""
    text = sanitize_for_embedding(message[:MAX_MESSAGE_CHARS * 4])
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return _SPACE.sub(" ", text).strip().lower()[:MAX_MESSAGE_CHARS]


@dataclass(frozen=True, slots=True)
class FailureSignature:
    code: str
    skill: str
    normalised: str
    digest: str  # sha256 hex: failure_patterns.signature

    @property
    def text(self) -> str:
        """What is embedded: the code, the skill and the normalised message."""
        return f"{self.code} {self.skill} {self.normalised}"


def signature_of(code: str, skill: str, message: str) -> FailureSignature:
    normalised = normalise_message(message or "")
    digest = hashlib.sha256(f"{code}\x1f{skill}\x1f{normalised}".encode()).hexdigest()
    return FailureSignature(code=code, skill=skill, normalised=normalised, digest=digest)
