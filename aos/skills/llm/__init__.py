"""llm.complete: one completion from Anthropic, OpenAI, an OpenAI-compatible server, or the offline provider.

Usage and cost come from the provider's token counts priced by the pricing
table (``aos.skills.llm.pricing``). The raw provider response is returned as
``SkillResult.raw`` so a golden file can record it and replay answer from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from aos.config import ConfigError, Settings, get_settings
from aos.skills.base import (
    CostModel,
    Estimate,
    RetryPolicy,
    SideEffect,
    Skill,
    SkillContext,
    SkillError,
    SkillResult,
)
from aos.skills.egress import EgressPolicy, load_transports
from aos.skills.llm import pricing
from aos.skills.llm.providers import (
    ANTHROPIC_DEFAULT_BASE_URL,
    OPENAI_DEFAULT_BASE_URL,
    Completion,
    LlmRequest,
    complete_anthropic,
    complete_offline,
    complete_openai,
    import_sdks,
    parse_recorded,
)
from aos.values import Usage

PROVIDERS = ("anthropic", "openai", "openai_compatible", "offline")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini",
                  "openai_compatible": "gpt-4o-mini", "offline": "offline"}
DEFAULT_TIMEOUT_S = 60.0
_FENCED = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(.*)\n\s*```$", re.DOTALL)


def resolve_model(args: Mapping[str, Any], provider: str, settings: Settings) -> str:
    """args.model, else AOS_LLM_MODEL when the provider is the default one, else the provider's default.

    AOS_LLM_MODEL names a model of AOS_LLM_PROVIDER; sending it to another provider would only fail.
    """
    if args.get("model"):
        return str(args["model"])
    if settings.llm_default_model and provider == settings.llm_default_provider:
        return settings.llm_default_model
    return DEFAULT_MODELS[provider]


def _messages(args: Mapping[str, Any]) -> list[dict[str, str]]:
    if "messages" in args:
        return [{"role": m["role"], "content": m["content"]} for m in args["messages"]]
    return [{"role": "user", "content": args["prompt"]}]


def parse_json_reply(text: str) -> Any:
    """The JSON value of a reply; tolerates surrounding whitespace and one Markdown code fence."""
    stripped = text.strip()
    fenced = _FENCED.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped)


@dataclass(frozen=True)
class LlmCostModel(CostModel):
    """Prompt tokens estimated at 4 characters each, plus max_tokens of output, at the model's price."""

    latency_ms: float = 2000.0

    def estimate(self, args: Mapping[str, Any]) -> Estimate:
        try:
            settings = get_settings()
        except ConfigError:
            settings = Settings()
        provider = args.get("provider") or settings.llm_default_provider
        if provider not in PROVIDERS:
            provider = "anthropic"
        chars = len(str(args.get("system") or "")) + len(str(args.get("prompt") or ""))
        chars += sum(len(str(m.get("content", ""))) for m in args.get("messages") or [] if isinstance(m, Mapping))
        input_tokens = chars // 4 + 1
        max_tokens = int(args.get("max_tokens") or 1024)
        cost = 0.0
        if provider != "offline":
            try:
                price = pricing.lookup(resolve_model(args, provider, settings),
                                       pricing.price_table(settings.llm_pricing))
            except pricing.PricingError:
                price = None
            cost = price.cost_usd(input_tokens, max_tokens) if price else 0.0
        return Estimate(cost_usd=cost, tokens=input_tokens + max_tokens, latency_ms=self.latency_ms)


class LlmComplete(Skill):
    name = "llm.complete"
    version = 1
    summary_text = "One completion of an LLM"
    description = ("One completion from an LLM: Anthropic (default), OpenAI, any OpenAI-compatible server, "
                   "or the deterministic offline provider. Usage and cost are recorded; "
                   "json_output parses the reply as JSON.")
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "description": "a single user message"},
            "messages": {
                "type": "array", "minItems": 1,
                "description": "the conversation so far (instead of prompt)",
                "items": {
                    "type": "object", "additionalProperties": False, "required": ["role", "content"],
                    "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}},
                },
            },
            "system": {"type": "string"},
            "model": {"type": "string", "minLength": 1},
            "provider": {"enum": list(PROVIDERS)},
            "max_tokens": {"type": "integer", "minimum": 1, "default": 1024},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "json_output": {"type": "boolean", "default": False,
                            "description": "ask for JSON and parse the reply into `json`"},
            "stop": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "base_url": {"type": "string", "pattern": "^https?://",
                         "description": "only for provider openai_compatible (default AOS_OPENAI_BASE_URL)"},
        },
    }
    output_schema = {
        "type": "object",
        "required": ["text", "model", "provider", "stop_reason", "usage"],
        "properties": {
            "text": {"type": "string"},
            "json": {"description": "the parsed reply, when json_output"},
            "model": {"type": "string"},
            "provider": {"enum": list(PROVIDERS)},
            "stop_reason": {"type": "string"},
            "usage": {"type": "object", "properties": {"input_tokens": {"type": "integer"},
                                                        "output_tokens": {"type": "integer"}}},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    }
    # no effect in the world: a repeated call only costs tokens
    side_effect = SideEffect.IDEMPOTENT
    deterministic = False
    cost_model = LlmCostModel()
    default_timeout_s = 120.0
    default_retry = RetryPolicy(max_attempts=4, backoff_s=2, backoff_max_s=60)
    recommended = 3

    def warm_up(self) -> None:
        import_sdks()
        load_transports()

    def upstream(self, args: dict[str, Any], ctx: SkillContext) -> str | None:
        """The provider (what a circuit breaker guards); the offline provider has no upstream."""
        provider = args.get("provider") or ctx.settings.llm_default_provider
        return None if provider == "offline" else str(provider)

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        provider, table, req = self._prepare(args, ctx.settings)
        return self._result(provider, req, self._complete(provider, req, args, ctx), table)

    def replay(self, args: dict[str, Any], recorded: SkillResult, ctx: SkillContext) -> SkillResult:
        """The recorded provider response read and priced again, exactly as ``run`` reads a live one."""
        provider, table, req = self._prepare(args, ctx.settings)
        return self._result(provider, req, parse_recorded(recorded.raw, req, provider), table)

    def _prepare(self, args: dict[str, Any], settings: Settings) -> tuple[str, dict[str, Any], LlmRequest]:
        provider = args.get("provider") or settings.llm_default_provider
        if provider not in PROVIDERS:
            raise SkillError("LLM_NOT_CONFIGURED", f"AOS_LLM_PROVIDER={provider!r} is not a provider; "
                             f"use one of {', '.join(PROVIDERS)}")
        if "base_url" in args and provider != "openai_compatible":
            raise SkillError("SKILL_ARGS_INVALID", f"args.base_url is only for provider openai_compatible, "
                             f"not {provider}")
        try:
            table = pricing.price_table(settings.llm_pricing)
        except pricing.PricingError as exc:
            raise SkillError("LLM_NOT_CONFIGURED", str(exc)) from None
        req = LlmRequest(
            model=resolve_model(args, provider, settings), messages=_messages(args),
            max_tokens=int(args.get("max_tokens", 1024)), system=args.get("system"),
            temperature=args.get("temperature"), stop=list(args.get("stop") or []),
            json_output=bool(args.get("json_output", False)))
        return provider, table, req

    def _result(self, provider: str, req: LlmRequest, completion: Completion, table: Any) -> SkillResult:
        warnings: list[str] = []
        cost = 0.0
        if provider != "offline":
            price = pricing.lookup(completion.model, table) or pricing.lookup(req.model, table)
            if price is None:
                warnings.append(f"no price for model {completion.model!r} in the pricing table; cost recorded "
                                "as 0 (add it with AOS_LLM_PRICING)")
            else:
                cost = price.cost_usd(completion.input_tokens, completion.output_tokens)
        usage = Usage(cost_usd=cost, input_tokens=completion.input_tokens, output_tokens=completion.output_tokens)
        if completion.refusal:
            raise SkillError("LLM_CONTENT_FILTERED", f"{provider}: {completion.refusal}",
                             details={"provider": provider, "model": completion.model,
                                      "stop_reason": completion.stop_reason}, usage=usage)

        output: dict[str, Any] = {
            "text": completion.text, "model": completion.model, "provider": provider,
            "stop_reason": completion.stop_reason,
            "usage": {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens},
        }
        if req.json_output:
            try:
                output["json"] = parse_json_reply(completion.text)
            except ValueError as exc:
                raise SkillError("LLM_OUTPUT_INVALID_JSON", f"{provider}: the reply is not JSON ({exc})",
                                 details={"provider": provider, "model": completion.model,
                                          "stop_reason": completion.stop_reason,
                                          "text_start": completion.text[:200]}, usage=usage) from None
        if warnings:
            output["warnings"] = warnings
        return SkillResult(output=output, usage=usage, raw=completion.raw)

    def _complete(self, provider: str, req: LlmRequest, args: Mapping[str, Any], ctx: SkillContext) -> Completion:
        settings = ctx.settings
        timeout_s = ctx.timeout_s or DEFAULT_TIMEOUT_S
        # every provider connects through the guarded transport; the endpoints the operator configured are
        # trusted hosts (a local model server is fine), anything a plan chose is vetted like http.request
        operator = EgressPolicy.of(settings)
        if provider == "offline":
            return complete_offline(req)
        if provider == "anthropic":
            if not settings.anthropic_api_key:
                raise SkillError("LLM_NOT_CONFIGURED", "Anthropic is not configured: set AOS_ANTHROPIC_API_KEY, "
                                 "or use provider \"offline\" (AOS_LLM_PROVIDER=offline) for a demo")
            url = settings.anthropic_base_url or ANTHROPIC_DEFAULT_BASE_URL
            return complete_anthropic(req, api_key=settings.anthropic_api_key, base_url=url, timeout_s=timeout_s,
                                      policy=operator.trusting(_host_of(url)))
        if provider == "openai":
            if not settings.openai_api_key:
                raise SkillError("LLM_NOT_CONFIGURED", "OpenAI is not configured: set AOS_OPENAI_API_KEY, "
                                 "or use provider \"offline\" (AOS_LLM_PROVIDER=offline) for a demo")
            url = settings.openai_base_url or OPENAI_DEFAULT_BASE_URL
            return complete_openai(req, provider="openai", api_key=settings.openai_api_key, base_url=url,
                                   timeout_s=timeout_s, policy=operator.trusting(_host_of(url)))
        base_url = args.get("base_url") or settings.openai_base_url
        if not base_url:
            raise SkillError("LLM_NOT_CONFIGURED", "openai_compatible needs a server: set AOS_OPENAI_BASE_URL "
                             "or args.base_url (e.g. http://localhost:11434/v1)")
        # a plan-chosen base_url never receives the configured OpenAI key: a plan must not be able
        # to send AOS's secret to a host of its choosing
        trusted = not args.get("base_url") or args["base_url"] == settings.openai_base_url
        policy = operator.trusting(_host_of(base_url)) if trusted else EgressPolicy.of(settings, ctx.capabilities)
        key = settings.openai_api_key if trusted and settings.openai_api_key else "not-needed"
        return complete_openai(req, provider="openai_compatible", api_key=key, base_url=base_url,
                               timeout_s=timeout_s, policy=policy)


def _host_of(url: str) -> str:
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL:
        raise SkillError("LLM_NOT_CONFIGURED", "the configured LLM base URL does not parse") from None


SKILLS: list[Skill] = [LlmComplete()]
