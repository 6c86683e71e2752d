"""The LLM layer: a new suggestion, written by a provider from the sanitised failure context.

``offline`` (the default) writes it from the catalog, without any call: the code's recovery mode, timing
for the retryable categories, and the catalog's advice. ``anthropic`` and ``openai`` are asked through
their official clients (the guarded transport of aos.skills.egress, one request, no SDK retries) with the
sanitised message and args, the skill and its args schema, and the catalog's recovery modes; the answer
must be one JSON object valid against ``SUGGESTION_SCHEMA`` — anything else is discarded, never shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from aos.config import Settings
from aos.runtime.catalog import Category, RecoveryMode
from aos.services.failures import entry_for, suggestion
from aos.services.recovery.sanitize import sanitize_for_embedding, sanitize_value
from aos.skills.egress import EgressPolicy
from aos.skills.llm import pricing
from aos.skills.llm.providers import (
    ANTHROPIC_DEFAULT_BASE_URL,
    OPENAI_DEFAULT_BASE_URL,
    LlmRequest,
    complete_anthropic,
    complete_openai,
)

MODES = [str(m) for m in RecoveryMode]
# Retries: ``apply`` carries them out with changed timing alone (auto-apply too), or with the changes of
# ``aos.services.amendments.AMENDABLE`` as an amendment of the step (a person only).
SAFE_MODES = frozenset({"RETRY", "RETRY_AFTER"})
# The longest wait a suggestion may ask for before its retry (``delay_s``); applying honours it.
MAX_DELAY_S = 3600
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini"}
SUGGESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mode", "explanation", "confidence"],
    "properties": {
        "mode": {"enum": MODES},
        "parameters": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "delay_s": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
                "backoff_s": {"type": "number", "minimum": 0, "maximum": 3600},
                "fallback_skill": {"type": "string", "minLength": 1, "maxLength": 200},
                "args": {"type": "object"},
            },
        },
        "explanation": {"type": "string", "minLength": 1, "maxLength": 2000},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SUGGESTION_SCHEMA)
SYSTEM = ("You help operators of a workflow runtime recover failed steps. Answer with one JSON object matching "
          "this JSON Schema, nothing else:\n" + json.dumps(SUGGESTION_SCHEMA) +
          "\nPrefer the least invasive mode that will work; confidence is your probability that it succeeds.")


@dataclass(frozen=True)
class FailureContext:
    """What a writer may see: everything here is sanitised already."""

    code: str
    skill: str
    message: str
    args: Any
    args_schema: dict[str, Any]
    timeout_s: float | None
    attempts: int

    @classmethod
    def of(cls, *, code: str, skill: str, message: str, args: Any, args_schema: dict[str, Any],
           timeout_s: float | None, attempts: int) -> FailureContext:
        return cls(code=code, skill=skill, message=sanitize_for_embedding(message or ""), args=sanitize_value(args),
                   args_schema=args_schema, timeout_s=timeout_s, attempts=attempts)

    def prompt(self) -> str:
        entry = entry_for(self.code)
        return json.dumps({
            "failure": {"code": self.code, "category": str(entry.category), "retryable": entry.retryable,
                        "catalog_recovery_mode": str(entry.recovery), "catalog_advice": suggestion(entry),
                        "message": self.message},
            "step": {"skill": self.skill, "args": self.args, "args_schema": self.args_schema,
                     "timeout_s": self.timeout_s, "attempts": self.attempts},
            "recovery_modes": MODES,
        }, ensure_ascii=False, default=str)


@dataclass
class Written:
    suggestion: dict[str, Any] | None      # None: the answer was invalid and is discarded
    provider: str
    model: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    problems: list[str] = field(default_factory=list)


def validate(candidate: Any) -> list[str]:
    """What is wrong with a candidate suggestion (empty: valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in _VALIDATOR.iter_errors(candidate)]


def catalog_suggestion(code: str) -> dict[str, Any]:
    """The catalog's own answer for a code: its recovery mode and advice (what AOS showed before recovery)."""
    entry = entry_for(code)
    return {"mode": str(entry.recovery), "parameters": {}, "explanation": suggestion(entry), "confidence": 0.3}


def offline_suggestion(ctx: FailureContext) -> dict[str, Any]:
    """A deterministic suggestion from the catalog and the step: no provider, no cost."""
    entry = entry_for(ctx.code)
    params: dict[str, Any] = {}
    mode = str(entry.recovery)
    note = suggestion(entry)
    if entry.category in (Category.TRANSIENT, Category.RATE_LIMIT, Category.RESOURCE) and entry.retryable:
        mode = str(RecoveryMode.RETRY_AFTER if entry.category == Category.RATE_LIMIT else RecoveryMode.RETRY)
        params["delay_s"] = 30 if entry.category == Category.RATE_LIMIT else 5
        note = (f"{ctx.skill} failed with {ctx.code} ({entry.category}) after {ctx.attempts} attempt(s); the cause "
                f"is usually passing: resume the run from this step after {params['delay_s']} s.")
        if "TIMEOUT" in ctx.code and ctx.timeout_s:
            note += f" If it keeps timing out, raise the step's timeout_s (now {ctx.timeout_s:g} s)."
    return {"mode": mode, "parameters": params, "explanation": note,
            "confidence": 0.6 if mode in SAFE_MODES else 0.4}


def write(ctx: FailureContext, settings: Settings) -> Written:
    """Ask the configured provider for a suggestion (one call)."""
    provider = settings.recovery_llm_provider
    if provider == "offline":
        return Written(offline_suggestion(ctx), "offline")
    model = settings.recovery_llm_model or DEFAULT_MODELS[provider]
    req = LlmRequest(model=model, messages=[{"role": "user", "content": ctx.prompt()}], max_tokens=600,
                     system=SYSTEM, temperature=0.0, json_output=True)
    operator = EgressPolicy.of(settings)
    if provider == "anthropic":
        url = settings.anthropic_base_url or ANTHROPIC_DEFAULT_BASE_URL
        done = complete_anthropic(req, api_key=settings.anthropic_api_key or "", base_url=url,
                                  timeout_s=settings.recovery_timeout_s, policy=operator.trusting(_host(url)))
    else:
        url = settings.openai_base_url or OPENAI_DEFAULT_BASE_URL
        done = complete_openai(req, provider="openai", api_key=settings.openai_api_key or "", base_url=url,
                               timeout_s=settings.recovery_timeout_s, policy=operator.trusting(_host(url)))
    tokens = done.input_tokens + done.output_tokens
    price = pricing.lookup(done.model, pricing.price_table(settings.llm_pricing))
    cost = price.cost_usd(done.input_tokens, done.output_tokens) if price else 0.0
    try:
        candidate = json.loads(_unfenced(done.text))
    except ValueError as exc:
        return Written(None, provider, done.model, tokens, cost, [f"not JSON: {exc}"])
    problems = validate(candidate)
    if problems:
        return Written(None, provider, done.model, tokens, cost, problems)
    candidate.setdefault("parameters", {})
    candidate["explanation"] = sanitize_for_embedding(candidate["explanation"])
    return Written(candidate, provider, done.model, tokens, cost)


def _unfenced(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        t = t.rsplit("```", 1)[0]
    return t


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


__all__ = ["MAX_DELAY_S", "SAFE_MODES", "FailureContext", "Written", "catalog_suggestion", "offline_suggestion",
           "validate", "write"]
