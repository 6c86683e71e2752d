"""The chaos workload: a mix of plan kinds whose final state is known in advance, and the HTTP service
they call, which applies each Idempotency-Key at most once (as a payment API does).

Every kind says what its run must end as (status, error code, which steps succeed or are skipped), so a
chaos test asserts the right outcome per run, not just "some final state".
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from tests.support.http_server import HttpTestServer, RecordedRequest, Reply

STEP_TIMEOUT_S = 5  # lease = 5 + AOS_HARD_TIMEOUT_GRACE_S + AOS_LEASE_GRACE_S


@dataclass(frozen=True)
class Expected:
    status: str                        # succeeded | failed
    error_code: str | None = None
    skipped: tuple[str, ...] = ()      # steps that end 'skipped'
    applied: tuple[str, ...] = ()      # steps whose POST must be applied exactly once by the service
    fallback: tuple[str, ...] = ()     # steps that must have run their fallback


# kind -> (weight, expected outcome)
KINDS: dict[str, tuple[int, Expected]] = {
    "pure": (3, Expected("succeeded")),
    "charge": (5, Expected("succeeded", applied=("charge",))),
    "flaky": (3, Expected("succeeded", applied=("charge",))),          # 503 on attempt 1, applied on 2
    "exhausted": (1, Expected("dead_lettered", "HTTP_SERVICE_UNAVAILABLE")),  # 503 until retries run out
    "llm": (3, Expected("succeeded")),
    "fallback": (2, Expected("succeeded", fallback=("charge",))),      # 404, then the fallback step
    "abort": (1, Expected("failed", "HTTP_NOT_FOUND")),
    "skip": (2, Expected("succeeded", skipped=("notify",))),
}


def _post(url: str, **extra: Any) -> dict[str, Any]:
    return {"skill": "http.request", "timeout_s": STEP_TIMEOUT_S,
            "args": {"method": "POST", "url": url, "json": {"amount": {"$ref": "inputs.amount"}}}, **extra}


def make_plan(kind: str, i: int, base_url: str, rng: random.Random) -> dict[str, Any]:
    """Plan number ``i`` of ``kind``; about three short steps, HTTP delays of 0-250 ms."""
    delay = rng.randint(0, 250)
    inputs = {"amount": i, "n": [i, i + 1, i + 2]}
    first = {"id": "prepare", "skill": "json.transform",
             "args": {"input": {"$ref": "inputs"}, "expr": "{amount: amount, total: sum(n)}"}}
    receipt = {"id": "receipt", "skill": "json.transform",
               "args": {"input": {"$ref": "steps.charge.output.json"}, "expr": "charged"}}
    retry = {"max_attempts": 3, "backoff_s": 0.2, "backoff_max_s": 1}
    if kind == "pure":
        steps = [first,
                 {"id": "double", "skill": "json.transform",
                  "args": {"input": {"$ref": "steps.prepare.output"}, "expr": "sum([total, total])"}},
                 {"id": "label", "skill": "json.transform",
                  "args": {"input": {"$ref": "steps.double.output"}, "expr": "to_string(@)"}}]
    elif kind == "charge":
        steps = [first, {"id": "charge", **_post(f"{base_url}/charge?delay_ms={delay}")}, receipt]
    elif kind == "flaky":
        steps = [first, {"id": "charge", **_post(f"{base_url}/charge?delay_ms={delay}&fail_until=2", retry=retry)},
                 receipt]
    elif kind == "exhausted":
        steps = [first, {"id": "charge", **_post(f"{base_url}/charge?delay_ms={delay}&fail_until=99",
                                                 retry={**retry, "max_attempts": 2})}, receipt]
    elif kind == "llm":
        steps = [first,
                 # timeout_s: llm.complete's default (120 s) would make a lease of 124 s, which a retry after a
                 # database error waits out (test_abandoned_lease.py) — longer than these tests' bound
                 {"id": "say", "skill": "llm.complete", "timeout_s": STEP_TIMEOUT_S,
                  "args": {"prompt": "Summarise order ${inputs.amount} of ${steps.prepare.output.total}.",
                           "max_tokens": 64}},
                 {"id": "text", "skill": "json.transform", "args": {"input": {"$ref": "steps.say.output"},
                                                                    "expr": "text"}}]
    elif kind == "fallback":
        steps = [first,
                 {"id": "charge", **_post(f"{base_url}/gone?delay_ms={delay}", on_error={
                     "mode": "FALLBACK", "fallback": {"skill": "json.transform", "args": {
                         "input": {"charged": False}, "expr": "{json: @}"}}})},
                 receipt]
    elif kind == "abort":
        steps = [first, {"id": "charge", **_post(f"{base_url}/gone?delay_ms={delay}")}, receipt]
    elif kind == "skip":
        steps = [first, {"id": "notify", **_post(f"{base_url}/gone?delay_ms={delay}", on_error={"mode": "SKIP"})},
                 {"id": "done", "skill": "json.transform", "args": {"input": {"$ref": "steps.prepare.output"},
                                                                    "expr": "amount"}}]
    else:
        raise ValueError(kind)
    return {"name": f"chaos-{kind}", "inputs": inputs, "steps": steps}


def workload(n: int, base_url: str, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """``n`` (kind, plan) pairs in a shuffled but reproducible order, every kind present."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    kinds = names + rng.choices(names, weights=weights, k=n - len(names))
    rng.shuffle(kinds)
    return [(kind, make_plan(kind, i, base_url, rng)) for i, kind in enumerate(kinds)]


@dataclass(frozen=True)
class Webhook:
    """One webhook delivery as the receiver saw it."""

    id: str
    event: str
    attempt: str
    signature: str
    body: bytes


class IdempotentService:
    """``POST /charge``: applies a request once per Idempotency-Key and replays the stored answer to a
    repeated key (what a real payment API does); ``fail_until=k`` answers 503 to attempts below k
    (the attempt is the key's last field, ``run:step:attempt``). ``/gone`` is a 404. Every request is
    recorded by the server; ``applied`` counts real applications per key.

    ``POST /hooks`` is the tenant's webhook receiver: it records every delivery and refuses the first
    attempt of every third webhook id with a 503, so some are retried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.applied: Counter[str] = Counter()
        self._answers: dict[str, dict[str, Any]] = {}
        self.webhooks: list[Webhook] = []
        self.server = HttpTestServer({"POST /charge": self._charge, "POST /gone": self._gone,
                                      "POST /hooks": self._hook})

    def _delay(self, req: RecordedRequest) -> float:
        return int(req.query.get("delay_ms", ["0"])[0]) / 1000

    def _charge(self, req: RecordedRequest) -> Reply:
        key = req.headers.get("idempotency-key", "")
        attempt = int(key.rsplit(":", 1)[-1]) if key.rsplit(":", 1)[-1].isdigit() else 0
        if attempt < int(req.query.get("fail_until", ["0"])[0]):
            return Reply(status=503, body="busy", delay_s=self._delay(req))
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                self.applied[key] += 1
                answer = self._answers[key] = {"charged": True, "key": key, "amount": req.json()["amount"]}
        return Reply(json=answer, delay_s=self._delay(req))

    def _gone(self, req: RecordedRequest) -> Reply:
        return Reply(status=404, json={"error": "gone"}, delay_s=self._delay(req))

    def _hook(self, req: RecordedRequest) -> Reply:
        hook = Webhook(id=req.headers.get("aos-webhook-id", ""), event=req.headers.get("aos-event", ""),
                       attempt=req.headers.get("aos-delivery-attempt", ""),
                       signature=req.headers.get("aos-signature", ""), body=req.body)
        with self._lock:
            self.webhooks.append(hook)
        if hook.attempt == "1" and hook.id.isdigit() and int(hook.id) % 3 == 0:
            return Reply(status=503, body="try again")
        return Reply(status=204)

    def start(self) -> IdempotentService:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def url(self, path: str = "") -> str:
        return self.server.url(path)

    def requests_by_key(self) -> dict[str, list[RecordedRequest]]:
        out: dict[str, list[RecordedRequest]] = defaultdict(list)
        for r in list(self.server.requests):
            if r.path == "/charge":
                out[r.headers.get("idempotency-key", "")].append(r)
        return out
