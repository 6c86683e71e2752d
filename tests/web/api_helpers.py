"""Plans, keys and small helpers shared by the API tests."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager

from werkzeug.serving import make_server

from aos.db.session import session_scope
from aos.services.tenancy import authenticate, create_api_key, create_tenant

TRANSFORM_PLAN = {
    "name": "transform-chain",
    "inputs": {"order": {"items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}], "customer": "ada"}},
    "steps": [
        {"id": "items", "skill": "json.transform", "args": {"input": {"$ref": "inputs.order"}, "expr": "items"}},
        {"id": "qtys", "skill": "json.transform", "args": {"input": {"$ref": "steps.items.output"},
                                                           "expr": "[*].qty"}},
        {"id": "total", "skill": "json.transform", "args": {"input": {"$ref": "steps.qtys.output"},
                                                            "expr": "sum(@)"}},
    ],
}

# json.validate with raise_on_invalid fails with JSON_SCHEMA_MISMATCH (not retryable, one attempt)
FAILING_PLAN = {
    "name": "failing",
    "steps": [
        {"id": "ok", "skill": "json.transform", "args": {"input": {"a": 1}, "expr": "a"}},
        {"id": "check", "skill": "json.validate",
         "args": {"input": {"$ref": "steps.ok.output"}, "schema": {"type": "string"}, "raise_on_invalid": True}},
    ],
}


def one_step_plan(expr: str = "a", name: str = "one") -> dict:
    return {"name": name, "inputs": {"x": {"a": 1, "b": 2}},
            "steps": [{"id": "pick", "skill": "json.transform", "args": {"input": {"$ref": "inputs.x"}, "expr": expr}}]}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_tenant(scopes: tuple[str, ...] = ("runs:read", "runs:write", "admin"), *, daily_budget_usd=None):
    """A fresh tenant and key: (TenantContext, key)."""
    with session_scope() as s:
        t = create_tenant(s, f"t-{uuid.uuid4().hex[:10]}")
        t.daily_budget_usd = daily_budget_usd
        key, _ = create_api_key(s, t, "test", scopes)
        return authenticate(s, key), key


def new_caller(kind: str, settings_env, scopes: tuple[str, ...] = ("runs:read", "runs:write", "admin")):
    """A fresh tenant and a credential for it: an API key (``kind="key"``) or a JWT signed with the shared
    secret this sets (``kind="jwt"``)."""
    from tests.support.jwt_issuer import AUDIENCE, HS_SECRET, ISSUER, claims, sign_hs

    ctx, key = new_tenant(scopes)
    if kind == "key":
        return ctx, key
    settings_env(AOS_JWT_SECRET=HS_SECRET, AOS_JWT_ISSUER=ISSUER, AOS_JWT_AUDIENCE=AUDIENCE)
    return ctx, sign_hs(claims(ctx.tenant_name, scope=" ".join(scopes)))


@contextmanager
def live_server(app):
    """The Flask app on a real HTTP server (threaded werkzeug) on a free local port: yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def parse_sse(text: str) -> list[dict]:
    """Frames of a server-sent event stream: [{"id", "event", "data", "comment"}]."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        frame: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                frame["comment"] = line[1:].strip()
            else:
                field, _, value = line.partition(": ")
                frame[field] = value
        frames.append(frame)
    return frames
