"""Embeddings of failure text: the offline feature-hashing embedder (default) and OpenAI's embeddings API.

The offline embedder needs no download and no network: word unigrams and bigrams and character 3- to
5-grams of the normalised message are hashed (BLAKE2b, signed) into ``EMBEDDING_DIM`` buckets, weighted
``1 + log(tf)``; the code and skill, which every failure of a kind shares, get a block of their own that
weighs ``IDENTITY_WEIGHT`` of the vector. The result is L2-normalised and deterministic (same text, same
vector on every machine), so replays and tests are stable. Two messages of the same code and skill reach a
cosine similarity of 0.90 when their own wording is about 0.6 alike.

Every text passes ``sanitize_for_embedding`` before it is embedded. Vectors are cached by the SHA-256 of
the text they embed (per process, and in Redis through ``EmbeddingCache``) so a text is embedded once.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aos.db.types import EMBEDDING_DIM
from aos.services.recovery.sanitize import sanitize_for_embedding

IDENTITY_WEIGHT = 0.75  # share of the squared norm held by the code and skill
_WORD = re.compile(r"<[a-z\-]+>|[a-z0-9_]+")
OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
OPENAI_PRICE_PER_MTOK = 0.02


@dataclass(frozen=True, slots=True)
class Embedded:
    vector: list[float]
    tokens: int
    cost_usd: float
    cached: bool = False


class Embedder(Protocol):
    name: str

    def embed(self, text: str) -> Embedded: ...


def _bucket(feature: str) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return h % EMBEDDING_DIM, (1.0 if (h >> 63) & 1 else -1.0)


def _features(text: str) -> dict[str, int]:
    words = _WORD.findall(text.lower())
    counts: dict[str, int] = {}
    for w in words:
        counts["w:" + w] = counts.get("w:" + w, 0) + 1
    for a, b in zip(words, words[1:], strict=False):
        key = f"b:{a} {b}"
        counts[key] = counts.get(key, 0) + 1
    for w in words:
        if w.startswith("<"):
            continue
        padded = f" {w} "
        for n in (3, 4, 5):
            for i in range(len(padded) - n + 1):
                key = "c:" + padded[i:i + n]
                counts[key] = counts.get(key, 0) + 1
    return counts


def _hashed(features: dict[str, int]) -> list[float]:
    vec = [0.0] * EMBEDDING_DIM
    for feature, tf in features.items():
        i, sign = _bucket(feature)
        vec[i] += sign * (1.0 + math.log(tf))
    return vec


def _normalised(vec: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vec))
    return vec if norm == 0 else [x / norm for x in vec]


class HashingEmbedder:
    """The offline embedder: deterministic feature hashing, no download, no network, no cost."""

    name = "offline"

    def embed(self, text: str) -> Embedded:
        return Embedded(self.vector(text), tokens=0, cost_usd=0.0)

    def vector(self, text: str, identity: str = "") -> list[float]:
        message = _normalised(_hashed(_features(sanitize_for_embedding(text))))
        if not identity:
            return message
        ident = _normalised(_hashed({"i:" + t: 1 for t in identity.split()}))
        a, b = math.sqrt(IDENTITY_WEIGHT), math.sqrt(1 - IDENTITY_WEIGHT)
        return _normalised([a * x + b * y for x, y in zip(ident, message, strict=True)])


class OpenAIEmbedder:
    """OpenAI's embeddings API through the official client (one request, no SDK retries; AOS's egress guard)."""

    name = "openai"

    def __init__(self, *, api_key: str, base_url: str, http_client: Callable[[], Any],
                 model: str = OPENAI_EMBEDDING_MODEL, timeout_s: float = 10.0) -> None:
        # http_client: a new client of AOS's guarded transport (aos.skills.egress) per call
        self.api_key, self.base_url, self.model, self.timeout_s = api_key, base_url, model, timeout_s
        self._http_client = http_client

    def embed(self, text: str) -> Embedded:
        import openai  # the SDK takes a second to import: only the process that embeds pays it

        clean = sanitize_for_embedding(text)
        with self._http_client() as http, openai.OpenAI(
                api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s,
                http_client=http) as client:
            answer = client.embeddings.create(model=self.model, input=clean, dimensions=EMBEDDING_DIM)
        vector = [float(x) for x in answer.data[0].embedding]
        if len(vector) != EMBEDDING_DIM:
            raise ValueError(f"the embeddings API answered {len(vector)} dimensions, not {EMBEDDING_DIM}")
        tokens = int(getattr(answer.usage, "total_tokens", 0) or getattr(answer.usage, "prompt_tokens", 0) or 0)
        return Embedded(_normalised(vector), tokens=tokens, cost_usd=tokens * OPENAI_PRICE_PER_MTOK / 1_000_000)


class EmbeddingCache:
    """Vectors by the SHA-256 of (embedder, text): an LRU in this process in front of an optional shared store
    (``get``/``set`` of bytes, e.g. Redis)."""

    def __init__(self, shared: Any | None = None, *, size: int = 4096, ttl_s: int = 7 * 86400) -> None:
        self._lru: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._shared, self._size, self._ttl_s = shared, size, ttl_s

    @staticmethod
    def key(embedder: str, text: str) -> str:
        return "aos:recovery:emb:" + hashlib.sha256(f"{embedder}\x1f{text}".encode()).hexdigest()

    def get(self, key: str) -> list[float] | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                return hit
        if self._shared is None:
            return None
        try:
            raw = self._shared.get(key)
        except Exception:  # noqa: BLE001 — a cache that is down is a miss
            return None
        if not raw:
            return None
        vec = [float(x) for x in raw.decode().split(",")]
        self._remember(key, vec)
        return vec

    def put(self, key: str, vec: list[float]) -> None:
        self._remember(key, vec)
        if self._shared is not None:
            try:
                self._shared.set(key, ",".join(f"{x:.7g}" for x in vec).encode(), ex=self._ttl_s)
            except Exception:  # noqa: BLE001 — a cache that is down only costs a recomputation
                pass

    def _remember(self, key: str, vec: list[float]) -> None:
        with self._lock:
            self._lru[key] = vec
            self._lru.move_to_end(key)
            while len(self._lru) > self._size:
                self._lru.popitem(last=False)


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two L2-normalised vectors (their dot product)."""
    return sum(x * y for x, y in zip(a, b, strict=True))
