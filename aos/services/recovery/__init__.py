"""Failure recovery that learns: exact cache → similar patterns → LLM, with feedback and success rates.

The public face; docs/recovery.md tells the whole story. Nothing here runs on a step's path: the
``aos.recovery.suggest`` task calls ``suggest_for_run`` after a run's failure is committed.
"""

from __future__ import annotations

from aos.services.recovery.sanitize import SanitizingFilter, sanitize_for_embedding, sanitize_value
from aos.services.recovery.signature import FailureSignature, normalise_message, signature_of
from aos.services.recovery.suggestions import (
    apply_suggestion,
    feedback,
    get_settings_of,
    list_for_run,
    list_patterns,
    previews,
    quota_status,
    settle,
    settle_run,
    suggest_for_run,
    update_settings,
)

__all__ = [
    "FailureSignature", "SanitizingFilter", "apply_suggestion", "feedback", "get_settings_of", "list_for_run",
    "list_patterns", "normalise_message", "previews", "quota_status", "sanitize_for_embedding", "sanitize_value", "settle",
    "settle_run", "signature_of", "suggest_for_run", "update_settings",
]
