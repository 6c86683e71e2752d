"""JWT bearer tokens beside API keys: real tokens signed by keys generated here, HS256 with the shared secret
and RS256/ES256 from a JWKS served over HTTP by a local server, including a key rotation."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.support.jwt_issuer import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    SigningKey,
    claims,
    jwks_server,
    sign,
    sign_hs,
)
from tests.web.api_helpers import auth, new_tenant, one_step_plan


@pytest.fixture
def jwt_env(settings_env):
    """JWT settings for one test; returns a function that applies more."""
    def apply(**more: str):
        return settings_env(**{"AOS_JWT_SECRET": HS_SECRET, "AOS_JWT_ISSUER": ISSUER, "AOS_JWT_AUDIENCE": AUDIENCE,
                               "AOS_JWT_JWKS_MIN_REFRESH_S": "0", **more})
    return apply


def _refused(r, code: str = "AUTH_INVALID") -> None:
    assert r.status_code == 401, r.get_data(as_text=True)
    assert r.content_type == "application/problem+json"
    assert r.json["code"] == code


def test_hs256_token_names_its_tenant_and_its_scopes_decide(client, jwt_env, aos_env):
    jwt_env()
    ctx, key = new_tenant()
    token = sign_hs(claims(ctx.tenant_name))
    created = client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(token))
    assert created.status_code == 201, created.json
    # the run is the tenant's: its API key sees it
    assert client.get(f"/api/v1/runs/{created.json['id']}", headers=auth(key)).status_code == 200
    read_only = sign_hs(claims(ctx.tenant_name, scope="runs:read"))
    assert client.get("/api/v1/runs", headers=auth(read_only)).status_code == 200
    r = client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(read_only))
    assert r.status_code == 403 and r.json["code"] == "FORBIDDEN_SCOPE"
    # scopes AOS does not know are ignored, and `admin` never implies `operator`
    odd = sign_hs(claims(ctx.tenant_name, scope="email openid admin"))
    assert client.get("/api/v1/runs", headers=auth(odd)).status_code == 200


def test_every_failed_check_is_auth_invalid_and_says_nothing_more(client, jwt_env, aos_env):
    jwt_env()
    ctx, _ = new_tenant()
    good = claims(ctx.tenant_name)
    rsa = SigningKey.new("RS256")
    now = int(time.time())
    bad = {
        "wrong secret": sign_hs(good, secret=HS_SECRET + "x"),
        "wrong issuer": sign_hs({**good, "iss": "https://evil.invalid"}),
        "wrong audience": sign_hs({**good, "aud": "someone-else"}),
        "no audience": sign_hs({k: v for k, v in good.items() if k != "aud"}),
        "no exp": sign_hs({k: v for k, v in good.items() if k != "exp"}),
        "not yet valid": sign_hs({**good, "nbf": now + 600}),
        "unknown tenant": sign_hs({**good, "aos_tenant": "no-such-tenant"}),
        "no tenant": sign_hs({k: v for k, v in good.items() if k != "aos_tenant"}),
        "tenant not a string": sign_hs({**good, "aos_tenant": ["a"]}),
        "alg none": jwt.encode(good, None, algorithm="none"),
        "RS256 without a JWKS configured": sign(rsa, good),
        "tampered payload": _tamper(sign_hs(good)),
        "garbage": "not.a.token",
    }
    details = set()
    for why, token in bad.items():
        r = client.get("/api/v1/runs", headers=auth(token))
        assert (r.status_code, r.json["code"]) == (401, "AUTH_INVALID"), why
        details.add(r.json["detail"])
    assert len(details) == 1, details  # one message for every failed check: no oracle


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body["scope"] = "admin operator"
    return ".".join([head, jwt.utils.base64url_encode(json.dumps(body).encode()).decode(), sig])


def test_expiry_is_auth_expired_with_leeway(client, jwt_env, aos_env):
    jwt_env(AOS_JWT_LEEWAY_S="30")
    ctx, _ = new_tenant()
    _refused(client.get("/api/v1/runs", headers=auth(sign_hs(claims(ctx.tenant_name, ttl_s=-120)))), "AUTH_EXPIRED")
    # ten seconds past exp is within the leeway: a clock that runs a little behind is not refused
    assert client.get("/api/v1/runs", headers=auth(sign_hs(claims(ctx.tenant_name, ttl_s=-10)))).status_code == 200
    soon = sign_hs({**claims(ctx.tenant_name), "nbf": int(time.time()) + 10})
    assert client.get("/api/v1/runs", headers=auth(soon)).status_code == 200


def test_configurable_tenant_claim(client, jwt_env, aos_env):
    jwt_env(AOS_JWT_TENANT_CLAIM="https://aos/tenant")
    ctx, _ = new_tenant()
    token = sign_hs({**claims("ignored"), "https://aos/tenant": ctx.tenant_name})
    assert client.get("/api/v1/runs", headers=auth(token)).status_code == 200
    _refused(client.get("/api/v1/runs", headers=auth(sign_hs(claims(ctx.tenant_name)))))


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_public_key_tokens_from_a_jwks_url_and_a_rotation(client, jwt_env, aos_env, alg):
    ctx, _ = new_tenant()
    old, new = SigningKey.new(alg), SigningKey.new(alg)
    with jwks_server(old) as idp:
        jwt_env(AOS_JWT_JWKS_URL=idp.url)
        assert client.get("/api/v1/runs", headers=auth(sign(old, claims(ctx.tenant_name)))).status_code == 200
        assert client.get("/api/v1/runs", headers=auth(sign(old, claims(ctx.tenant_name)))).status_code == 200
        assert idp.fetches == 1  # cached
        # the provider rotates: new tokens carry a kid the cache lacks, which makes one fetch
        idp.keys = [new, old]
        assert client.get("/api/v1/runs", headers=auth(sign(new, claims(ctx.tenant_name)))).status_code == 200
        assert idp.fetches == 2
        assert client.get("/api/v1/runs", headers=auth(sign(old, claims(ctx.tenant_name)))).status_code == 200
        # the old key is withdrawn: once the set is fetched again, its tokens are refused
        idp.keys = [new]
        forged = SigningKey.new(alg)
        _refused(client.get("/api/v1/runs", headers=auth(sign(forged, claims(ctx.tenant_name)))))  # refetch
        _refused(client.get("/api/v1/runs", headers=auth(sign(old, claims(ctx.tenant_name)))))
        assert client.get("/api/v1/runs", headers=auth(sign(new, claims(ctx.tenant_name)))).status_code == 200
        # a public key never serves as an HMAC secret (algorithm confusion)
        pem = new.private.public_key().public_bytes(
            encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
            format=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"])
            .PublicFormat.SubjectPublicKeyInfo)
        confused = _hs_with_raw_key(claims(ctx.tenant_name), pem, kid=new.kid)
        _refused(client.get("/api/v1/runs", headers=auth(confused)))


def _hs_with_raw_key(body: dict, key: bytes, kid: str) -> str:
    import hashlib
    import hmac

    enc = jwt.utils.base64url_encode
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = enc(json.dumps(body).encode())
    sig = enc(hmac.new(key, head + b"." + payload, hashlib.sha256).digest())
    return b".".join([head, payload, sig]).decode()


def test_unknown_kids_do_not_flood_the_identity_provider(client, jwt_env, aos_env):
    ctx, _ = new_tenant()
    key = SigningKey.new("ES256")
    with jwks_server(key) as idp:
        jwt_env(AOS_JWT_JWKS_URL=idp.url, AOS_JWT_JWKS_MIN_REFRESH_S="60")
        assert client.get("/api/v1/runs", headers=auth(sign(key, claims(ctx.tenant_name)))).status_code == 200
        for i in range(5):
            _refused(client.get("/api/v1/runs", headers=auth(sign(key, claims(ctx.tenant_name), kid=f"forged-{i}"))))
        assert idp.fetches == 1


def test_jwks_from_a_file(client, jwt_env, aos_env, tmp_path):
    ctx, _ = new_tenant()
    key = SigningKey.new("RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.jwk()]}))
    jwt_env(AOS_JWT_JWKS_URL=str(path))
    assert client.get("/api/v1/runs", headers=auth(sign(key, claims(ctx.tenant_name)))).status_code == 200


def test_without_jwt_settings_only_api_keys_work(client, settings_env, aos_env):
    settings_env()
    ctx, key = new_tenant()
    _refused(client.get("/api/v1/runs", headers=auth(sign_hs(claims(ctx.tenant_name)))))
    assert client.get("/api/v1/runs", headers=auth(key)).status_code == 200
