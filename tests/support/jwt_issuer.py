"""A small identity provider for tests: real keys generated here, real signed JWTs, and a JWKS document
served over HTTP by a local server (so key rotation is a change of what that server answers)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.test.invalid"
AUDIENCE = "aos-api"
HS_SECRET = "jwt-test-shared-secret-0123456789abcdef"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def new(cls, alg: str = "RS256") -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" \
            else ec.generate_private_key(ec.SECP256R1())
        return cls(kid=f"k-{uuid.uuid4().hex[:8]}", alg=alg, private=private)

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        return {**json.loads(algo.to_jwk(self.private.public_key())), "kid": self.kid, "alg": self.alg, "use": "sig"}


def claims(tenant: str, *, scope: str = "runs:read runs:write admin", sub: str = "user-1", ttl_s: float = 300,
           **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + int(ttl_s),
            "aos_tenant": tenant, "scope": scope, **extra}


def sign(key: SigningKey, body: dict[str, Any], *, kid: str | None = "same") -> str:
    headers = {"kid": key.kid if kid == "same" else kid} if kid is not None else {}
    return jwt.encode(body, key.private, algorithm=key.alg, headers=headers)


def sign_hs(body: dict[str, Any], secret: str = HS_SECRET) -> str:
    return jwt.encode(body, secret, algorithm="HS256")


@dataclass
class JwksServer:
    """Serves ``keys`` (changeable while running) as a JWKS document; counts the fetches."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    url: str = ""


@contextmanager
def jwks_server(*keys: SigningKey):
    state = JwksServer(keys=list(keys))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.fetches += 1
            body = json.dumps({"keys": [k.jwk() for k in state.keys]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
