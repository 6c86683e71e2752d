"""Provider adapters of llm.complete: Anthropic, OpenAI (and OpenAI-compatible servers), offline.

Each adapter makes exactly one HTTP request: the SDK clients are built with
``max_retries=0`` because the AOS engine owns retries (backoff with seeded
jitter, budgets, the catalog's verdict), and with an ``http_client`` of
aos.skills.egress: every connection is vetted by the SSRF guard and goes to the
address it vetted, and no redirect is followed (an LLM API does not redirect; a
3xx is the provider error it is). Every SDK failure becomes a ``SkillError``
with an ``LLM_*`` code, or the guard's own code when the guard refused;
messages and details are scrubbed of the API key (OpenAI echoes part of a
wrong key in its 401 message).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from aos.skills.base import SkillError
from aos.skills.egress import EgressPolicy, guarded_client2, refusal_in
from aos.skills.retry_after import parse_retry_after

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OFFLINE_PREFIX = "[offline provider: no LLM was called] "
JSON_INSTRUCTION = "Respond with a single JSON value only: no prose before or after it, no Markdown code fences."

_CONTEXT_TOO_LONG = re.compile(
    r"prompt is too long|context length|context_length|context window|maximum context|too many tokens",
    re.IGNORECASE)
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{6,}")


@dataclass(frozen=True)
class LlmRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    stop: list[str] = field(default_factory=list)
    json_output: bool = False

    def system_prompt(self) -> str | None:
        """The system prompt sent to a real model; JSON output is asked for in words as well."""
        if not self.json_output:
            return self.system
        return f"{self.system}\n\n{JSON_INSTRUCTION}" if self.system else JSON_INSTRUCTION


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    stop_reason: str
    input_tokens: int
    output_tokens: int
    raw: dict[str, Any]
    refusal: str | None = None  # set when the provider refused or filtered the content


def sdk(name: str) -> ModuleType:
    """The provider SDK (``anthropic`` or ``openai``), imported on first use.

    Importing both takes over a second, and everything that only lists skills (`aos skills list`, the
    API's /skills, plan validation) must not pay it. A worker imports them once before its pool forks
    (``import_sdks``, from ``Skill.warm_up``), so no step spends its time limit on an import."""
    return importlib.import_module(name)


def import_sdks() -> None:
    for name in ("anthropic", "openai"):
        sdk(name)


def scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    """``text`` without any secret, nor anything shaped like an API key."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def _host(url: str) -> str:
    # only scheme, host and port: a base URL may carry credentials in its userinfo
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _retry_after_s(headers: Any) -> float | None:
    """Seconds the provider asks us to wait: ``retry-after-ms``, else ``retry-after`` (seconds or date)."""
    ms = parse_retry_after(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    return parse_retry_after(headers.get("retry-after"))


def _error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    """(type, code, message) from an Anthropic or OpenAI error body, whichever shape it has."""
    if not isinstance(body, dict):
        return None, None, (str(body)[:500] if body else None)
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    etype, code, message = inner.get("type"), inner.get("code"), inner.get("message")
    return (str(etype) if etype else None, str(code) if code else None,
            str(message) if message is not None else None)


def _status_code_for(status: int, etype: str | None, ecode: str | None, message: str) -> tuple[str, str]:
    """(catalog code, short reason) for an HTTP error answer of a provider."""
    if status == 529 or etype == "overloaded_error" or status == 503:
        return "LLM_OVERLOADED", "overloaded"
    if status == 429:
        if ecode == "insufficient_quota":  # a billing state, not a rate: waiting will not help
            return "LLM_AUTH_FAILED", "account has no quota left"
        return "LLM_RATE_LIMITED", "rate limited"
    if status in (401, 402, 403) or etype in ("authentication_error", "permission_error", "billing_error"):
        return "LLM_AUTH_FAILED", "authentication or permission failed"
    if ecode == "content_filter" or ecode == "content_policy_violation":
        return "LLM_CONTENT_FILTERED", "content filtered"
    if status == 404 or ecode == "model_not_found":
        return "LLM_MODEL_NOT_FOUND", "model not found"
    if status == 413 or ecode == "context_length_exceeded" or (status == 400 and _CONTEXT_TOO_LONG.search(message)):
        return "LLM_CONTEXT_TOO_LONG", "context too long"
    if status in (408, 504):
        return "LLM_TIMEOUT", "provider timed out"
    if 400 <= status < 500:
        return "LLM_INVALID_REQUEST", "invalid request"
    return "LLM_PROVIDER_ERROR", "provider error"


def _sdk_failure(provider: str, sdk: Any, exc: Exception, base_url: str,
                 secrets: tuple[str | None, ...]) -> SkillError:
    """Map one SDK exception (anthropic or openai module ``sdk``) to a SkillError."""
    refused = refusal_in(exc)
    if refused is not None:  # the guarded transport said no (HTTP_SSRF_BLOCKED, CAPABILITY_DENIED, …)
        return refused
    if isinstance(exc, sdk.APITimeoutError):
        return SkillError("LLM_TIMEOUT", f"{provider}: no answer from {_host(base_url)} within the timeout",
                          details={"provider": provider})
    if isinstance(exc, sdk.APIConnectionError):
        cause = scrub(str(exc.__cause__ or exc), secrets)
        return SkillError("LLM_CONNECTION_ERROR", f"{provider}: cannot reach {_host(base_url)}: {cause}",
                          details={"provider": provider, "base_url": _host(base_url)})
    if isinstance(exc, sdk.APIStatusError) and 300 <= exc.status_code < 400:
        location = exc.response.headers.get("location", "")
        return SkillError("LLM_PROVIDER_ERROR", f"{provider}: {_host(base_url)} answered {exc.status_code} "
                          f"(a redirect{' to ' + _host(location) if location.startswith('http') else ''}); AOS "
                          "does not follow redirects from an LLM API: configure its final base URL",
                          details={"provider": provider, "status": exc.status_code})
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        etype, ecode, emsg = _error_fields(exc.body)
        message = scrub(emsg or f"HTTP {status}", secrets)
        code, reason = _status_code_for(status, etype, ecode, message)
        retry_after = _retry_after_s(exc.response.headers) if code in ("LLM_RATE_LIMITED", "LLM_OVERLOADED") else None
        details: dict[str, Any] = {"provider": provider, "status": status}
        if etype:
            details["provider_error_type"] = etype
        if ecode:
            details["provider_error_code"] = ecode
        request_id = exc.response.headers.get("request-id") or exc.response.headers.get("x-request-id")
        if request_id:
            details["request_id"] = request_id
        return SkillError(code, f"{provider}: {reason} (HTTP {status}): {message}",
                          details=details, retry_after_s=retry_after)
    return SkillError("LLM_PROVIDER_ERROR",
                      f"{provider}: unusable answer: {scrub(str(exc), secrets)[:300]}",
                      details={"provider": provider, "exception": type(exc).__name__})


def _malformed(provider: str, what: str) -> SkillError:
    return SkillError("LLM_PROVIDER_ERROR", f"{provider}: malformed response: {what}",
                      details={"provider": provider})


def _json_body(http_response: Any, provider: str) -> Any:
    try:
        return http_response.json()
    except ValueError:
        raise _malformed(provider, "the body is not JSON") from None


def complete_anthropic(req: LlmRequest, *, api_key: str, base_url: str | None, timeout_s: float,
                       policy: EgressPolicy) -> Completion:
    """One Messages API call through the official SDK."""
    url = base_url or ANTHROPIC_DEFAULT_BASE_URL
    kwargs: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens, "messages": req.messages}
    system = req.system_prompt()
    if system:
        kwargs["system"] = system
    if req.temperature is not None:
        # the installed SDK no longer declares temperature, but the Messages API still takes it on
        # the wire for the models that support it (others answer 400 -> LLM_INVALID_REQUEST)
        kwargs["extra_body"] = {"temperature": req.temperature}
    if req.stop:
        kwargs["stop_sequences"] = req.stop
    anthropic = sdk("anthropic")
    try:
        # base_url is always explicit so ANTHROPIC_* variables outside AOS's config never redirect calls
        with guarded_client2(policy) as http, anthropic.Anthropic(
                api_key=api_key, base_url=url, max_retries=0, timeout=timeout_s, http_client=http) as client:
            response = client.messages.with_raw_response.create(**kwargs)
    except anthropic.AnthropicError as exc:
        raise _sdk_failure("anthropic", anthropic, exc, url, (api_key,)) from None
    return parse_anthropic(_json_body(response.http_response, "anthropic"), req)


def parse_anthropic(raw: Any, req: LlmRequest) -> Completion:
    """A Messages API response body as a Completion (also how a golden replay reads a recorded one)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        raise _malformed("anthropic", "no content list")
    text = "".join(b.get("text", "") for b in raw["content"] if isinstance(b, dict) and b.get("type") == "text")
    usage = raw.get("usage") or {}
    stop_reason = raw.get("stop_reason") or "end_turn"
    return Completion(
        text=text, model=raw.get("model") or req.model, stop_reason=stop_reason,
        input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0),
        raw=raw, refusal=("the model refused (stop_reason: refusal)" if stop_reason == "refusal" else None))


# OpenAI finish reasons in the Anthropic vocabulary, so a plan can test one set of values
_OPENAI_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}


def complete_openai(req: LlmRequest, *, provider: str, api_key: str, base_url: str,
                    timeout_s: float, policy: EgressPolicy) -> Completion:
    """One Chat Completions call through the official SDK (OpenAI or a compatible server)."""
    messages = list(req.messages)
    system = req.system_prompt()
    if system:
        messages.insert(0, {"role": "system", "content": system})
    kwargs: dict[str, Any] = {"model": req.model, "messages": messages}
    if provider == "openai":
        # OpenAI's reasoning models refuse max_tokens; compatible servers mostly know only max_tokens
        kwargs["max_completion_tokens"] = req.max_tokens
        if req.json_output:
            kwargs["response_format"] = {"type": "json_object"}
    else:
        kwargs["max_tokens"] = req.max_tokens
    if req.temperature is not None:
        kwargs["temperature"] = req.temperature
    if req.stop:
        kwargs["stop"] = req.stop
    openai = sdk("openai")
    try:
        with guarded_client2(policy) as http, openai.OpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=http) as client:
            response = client.chat.completions.with_raw_response.create(**kwargs)
    except openai.OpenAIError as exc:
        raise _sdk_failure(provider, openai, exc, base_url, (api_key,)) from None
    return parse_openai(_json_body(response.http_response, provider), req, provider)


def parse_openai(raw: Any, req: LlmRequest, provider: str) -> Completion:
    """A Chat Completions response body as a Completion (also how a golden replay reads a recorded one)."""
    try:
        choice = raw["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _malformed(provider, "no choices[0]") from None
    usage = raw.get("usage") or {}
    finish = choice.get("finish_reason") or "stop"
    refusal = message.get("refusal")
    if finish == "content_filter":
        refusal = refusal or "the provider's content filter stopped the completion"
    return Completion(
        text=message.get("content") or "", model=raw.get("model") or req.model,
        stop_reason=_OPENAI_STOP.get(finish, finish),
        input_tokens=int(usage.get("prompt_tokens") or 0), output_tokens=int(usage.get("completion_tokens") or 0),
        raw=raw, refusal=refusal)


def complete_offline(req: LlmRequest) -> Completion:
    """A deterministic answer computed from the request alone: no network, no model, no cost."""
    canonical = json.dumps([req.model, req.system, req.messages, req.max_tokens],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    last_user = next((m["content"] for m in reversed(req.messages) if m["role"] == "user"), "")
    excerpt = " ".join(last_user.split())
    if len(excerpt) > 60:
        excerpt = excerpt[:60] + "..."
    if req.json_output:
        text = json.dumps({"offline": True, "note": OFFLINE_PREFIX.strip(" []"), "digest": digest[:16],
                           "echo": excerpt}, sort_keys=True)
    else:
        text = f'{OFFLINE_PREFIX}Deterministic reply {digest[:12]} to: "{excerpt}"'
    stop_reason = "end_turn"
    if len(text) // 4 + 1 > req.max_tokens:
        text, stop_reason = text[: req.max_tokens * 4], "max_tokens"
    prompt_chars = len(req.system or "") + sum(len(m["content"]) for m in req.messages)
    input_tokens, output_tokens = prompt_chars // 4 + 1, min(len(text) // 4 + 1, req.max_tokens)
    raw = {"provider": "offline", "id": f"offline-{digest[:24]}", "model": req.model, "text": text,
           "stop_reason": stop_reason, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}
    return Completion(text=text, model=req.model, stop_reason=stop_reason, input_tokens=input_tokens,
                      output_tokens=output_tokens, raw=raw)


def parse_recorded(raw: Any, req: LlmRequest, provider: str) -> Completion:
    """A recorded raw response (a golden file's) as a Completion, read by the shape it has: the
    offline provider's, an Anthropic message, or an OpenAI chat completion. Nothing is called."""
    if isinstance(raw, dict) and raw.get("provider") == "offline":
        usage = raw.get("usage") or {}
        return Completion(text=str(raw.get("text") or ""), model=str(raw.get("model") or req.model),
                          stop_reason=str(raw.get("stop_reason") or "end_turn"),
                          input_tokens=int(usage.get("input_tokens") or 0),
                          output_tokens=int(usage.get("output_tokens") or 0), raw=raw)
    if isinstance(raw, dict) and "choices" in raw:
        return parse_openai(raw, req, provider)
    if isinstance(raw, dict) and "content" in raw:
        return parse_anthropic(raw, req)
    raise _malformed(provider, "the recorded response is none of the known shapes")
