"""The embedders: the offline one (deterministic, L2-normalised, no network) and OpenAI's, through the real
client against a local server speaking its protocol; vectors cached by the hash of their text."""

from __future__ import annotations

import math

import pytest

from aos.db.types import EMBEDDING_DIM
from aos.services import recovery
from aos.services.recovery.embedding import HashingEmbedder, cosine
from aos.services.recovery.signature import signature_of
from tests.services.recovery.helpers import failed_run, word
from tests.support.llm_server import OPENAI_EMBEDDINGS_PATH, FakeLlmServer


def test_the_offline_embedder_is_deterministic_normalised_and_needs_nothing():
    e = HashingEmbedder()
    a, b = e.vector("read timed out after <n>"), e.vector("read timed out after <n>")
    assert a == b and len(a) == EMBEDDING_DIM
    assert math.sqrt(sum(x * x for x in a)) == pytest.approx(1.0)
    assert e.embed("anything").tokens == 0 and e.embed("anything").cost_usd == 0.0


def test_similar_wording_is_near_and_other_failures_are_not():
    def vec(message: str) -> list[float]:
        sig = signature_of("HTTP_TIMEOUT", "http.request", message)
        return HashingEmbedder().vector(sig.normalised, f"{sig.code} {sig.skill}")

    base = vec("connection timed out while reading from upstream after 30s")
    assert cosine(base, vec("read from upstream timed out after 45s")) >= 0.90
    assert cosine(base, vec("TLS certificate verify failed for host")) < 0.90


def test_the_openai_embedder_is_called_once_per_text_and_its_tokens_are_counted(tenant, settings_env):
    ctx, _ = tenant
    with FakeLlmServer() as srv:
        settings_env(AOS_RECOVERY_EMBEDDER="openai", AOS_OPENAI_API_KEY="sk-test-openai-000000",
                     AOS_OPENAI_BASE_URL=srv.openai_url)
        message = f"upstream {word()} timed out after 30s"
        first = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", message))
        assert first["layer"] == "llm"
        calls = [r for r in srv.requests if r.path == OPENAI_EMBEDDINGS_PATH]
        assert len(calls) == 1
        body = calls[0].body
        assert body["model"] == "text-embedding-3-small" and body["dimensions"] == EMBEDDING_DIM
        assert "<n>" in body["input"] and "http.request" in body["input"]
        # the same signature again: answered by the cache, nothing embedded
        recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", message.replace("30s", "12s")))
        assert len([r for r in srv.requests if r.path == OPENAI_EMBEDDINGS_PATH]) == 1
    usage = recovery.quota_status(ctx)["quotas"]["embedding"]
    assert usage["calls"] == 1 and usage["tokens"] > 0 and usage["cost_usd"] > 0
