"""Tenants and API keys: keys are stored hashed, found by prefix, revocable, and scoped."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import func, select, text

from aos.db.models import ApiKey
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.tenancy import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    authenticate,
    create_api_key,
    create_tenant,
    revoke_api_key,
)


def _tenant_with_key(scopes=DEFAULT_SCOPES):
    with session_scope() as s:
        t = create_tenant(s, f"ten-{uuid.uuid4().hex[:10]}")
        key, row = create_api_key(s, t, "k", scopes)
        return t.id, t.name, key, row.id, row.prefix


def _auth(key: str):
    with session_scope() as s:
        return authenticate(s, key)


def _code(call) -> str:
    with pytest.raises(AosError) as exc:
        call()
    return exc.value.code


def test_a_key_is_stored_only_as_its_hash(aos_env):
    _, _, key, key_id, prefix = _tenant_with_key()
    secret = key.split("_", 2)[2]
    with session_scope() as s:
        row = s.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key_id}).mappings().one()
    for column, value in row.items():
        assert key not in str(value), f"api_keys.{column} holds the key in clear"
        assert secret not in str(value), f"api_keys.{column} holds the key's secret"
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["prefix"] == prefix


def test_a_key_is_found_by_its_prefix_and_resolves_to_its_own_tenant(aos_env):
    a_id, a_name, a_key, a_key_id, a_prefix = _tenant_with_key()
    b_id, b_name, b_key, _, _ = _tenant_with_key()
    assert a_key.startswith(f"aos_{a_prefix}_")
    ctx = _auth(a_key)
    assert (ctx.tenant_id, ctx.tenant_name, ctx.key_id) == (a_id, a_name, a_key_id)
    assert ctx.scopes == frozenset(DEFAULT_SCOPES)
    assert _auth(b_key).tenant_id == b_id != a_id


def test_the_right_prefix_with_a_wrong_secret_is_refused(aos_env):
    _, _, key, _, prefix = _tenant_with_key()
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert _code(lambda: _auth(tampered)) == "AUTH_INVALID"
    assert _code(lambda: _auth(f"aos_{prefix}_")) == "AUTH_INVALID"
    assert _code(lambda: _auth(f"aos_{prefix}_{key}")) == "AUTH_INVALID"


@pytest.mark.parametrize("bad", ["", "aos", "aos_", "aos__secret", "abc_def_ghi", "AOS_abc_def", "Bearer aos_a_b",
                                 "aos_abc", "aos_unknownprefix_secret", "aos_" + "p" * 40 + "_secret",
                                 "aos_ü_secret"])
def test_malformed_or_unknown_keys_are_auth_invalid(aos_env, bad):
    assert _code(lambda: _auth(bad)) == "AUTH_INVALID"


def test_a_key_with_a_nul_byte_is_auth_invalid(aos_env):
    assert _code(lambda: _auth("aos_a\x00b_secret")) == "AUTH_INVALID"


def test_a_revoked_key_is_refused_and_cannot_be_revoked_twice(aos_env):
    t_id, _, key, _, prefix = _tenant_with_key()
    other_key = _tenant_with_key()[2]
    with session_scope() as s:
        revoke_api_key(s, t_id, prefix)
    assert _code(lambda: _auth(key)) == "AUTH_INVALID"
    assert _auth(other_key)  # other keys are untouched

    def again():
        with session_scope() as s:
            revoke_api_key(s, t_id, prefix)
    assert _code(again) == "NOT_FOUND"


def test_a_key_cannot_be_revoked_by_another_tenant(aos_env):
    _, _, key, _, prefix = _tenant_with_key()
    other_id = _tenant_with_key()[0]

    def revoke():
        with session_scope() as s:
            revoke_api_key(s, other_id, prefix)
    assert _code(revoke) == "NOT_FOUND"
    assert _auth(key)


def test_a_key_allows_only_its_scopes(aos_env):
    ctx = _auth(_tenant_with_key(("runs:read",))[2])
    ctx.require("runs:read")
    with pytest.raises(AosError) as exc:
        ctx.require("runs:write")
    assert exc.value.code == "FORBIDDEN_SCOPE"
    assert "runs:write" in exc.value.message and "aos keys create --scope runs:write" in exc.value.message
    assert _code(lambda: ctx.require("admin")) == "FORBIDDEN_SCOPE"


def test_the_admin_scope_allows_everything_of_its_tenant_but_not_the_operators(aos_env):
    ctx = _auth(_tenant_with_key(("admin",))[2])
    for scope in ALL_SCOPES:
        if scope != "operator":
            ctx.require(scope)
    with pytest.raises(AosError) as exc:
        ctx.require("operator")  # the deployment's scope is given by name, never implied
    assert exc.value.code == "FORBIDDEN_SCOPE"


def test_unknown_scopes_are_refused_and_no_key_is_made(aos_env):
    with session_scope() as s:
        t = create_tenant(s, f"ten-{uuid.uuid4().hex[:10]}")
        t_id = t.id
    for scopes in (("runs:delete",), ("runs:read", "ADMIN"), ("",)):
        def make(scopes=scopes):
            with session_scope() as s:
                create_api_key(s, s.get(type(t), t_id), "k", scopes)
        with pytest.raises(AosError) as exc:
            make()
        assert exc.value.code == "VALIDATION_ERROR" and "unknown scope" in exc.value.message
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.tenant_id == t_id)) == 0


def test_tenant_names_are_unique_and_not_blank(aos_env):
    name = f"ten-{uuid.uuid4().hex[:10]}"
    with session_scope() as s:
        create_tenant(s, name)

    def make(n):
        def go():
            with session_scope() as s:
                create_tenant(s, n)
        return go
    assert _code(make(name)) == "CONFLICT"
    assert _code(make(f"  {name} ")) == "CONFLICT"  # names are trimmed
    assert _code(make("   ")) == "VALIDATION_ERROR"
    assert _code(make("x" * 101)) == "VALIDATION_ERROR"


def test_every_key_has_its_own_prefix(aos_env):
    with session_scope() as s:
        t = create_tenant(s, f"ten-{uuid.uuid4().hex[:10]}")
        keys = [create_api_key(s, t)[0] for _ in range(20)]
    assert len({k.split("_", 2)[1] for k in keys}) == 20
    assert all(_auth(k).tenant_id == t.id for k in keys)
