"""Verifying golden files: the signature first, then the hashes, then the bytes; each failure says where."""

from __future__ import annotations

import json

import pytest

from aos.errors import AosError
from aos.golden.record import seal, step_hash
from aos.golden.sign import KeyRing
from aos.golden.verify import encode, parse, verify_document
from tests.golden.docs import KEYS, sample_body, sample_document

GOLDEN_CODES = {"GOLDEN_FORMAT_INVALID", "GOLDEN_SIGNATURE_INVALID", "GOLDEN_HASH_MISMATCH", "GOLDEN_KEY_UNKNOWN"}


def _verify_bytes(data: bytes, keys: KeyRing = KEYS):
    return verify_document(parse(data), keys, data=data)


def _fails(data_or_doc, code: str, keys: KeyRing = KEYS) -> AosError:
    with pytest.raises(AosError) as exc:
        if isinstance(data_or_doc, bytes):
            _verify_bytes(data_or_doc, keys)
        else:
            verify_document(data_or_doc, keys)
    assert exc.value.code == code, exc.value
    return exc.value


def test_a_sealed_document_verifies_from_its_file_bytes():
    doc = sample_document()
    data = encode(doc)
    assert data.endswith(b"}\n") and data.count(b"\n") == 1
    v = _verify_bytes(data)
    assert (v.key_id, v.hash, v.steps) == ("k1", doc["hash"], 2)


def test_every_single_byte_change_fails_verification():
    data = encode(sample_document())
    for i in range(len(data)):
        for flip in (0x01, 0x20):
            tampered = data[:i] + bytes([data[i] ^ flip]) + data[i + 1:]
            with pytest.raises(AosError) as exc:
                _verify_bytes(tampered)
            assert exc.value.code in GOLDEN_CODES, (i, exc.value)


def test_a_changed_step_value_names_the_step():
    data = encode(sample_document())
    tampered = data.replace(b'"output":21.5', b'"output":21.6', 1)
    assert tampered != data
    err = _fails(tampered, "GOLDEN_SIGNATURE_INVALID")
    assert "steps[1] ('temp') was changed" in err.message


def test_a_changed_signature_or_a_wrong_secret_says_so():
    doc = sample_document()
    doc["signature"] = ("0" if doc["signature"][0] != "0" else "1") + doc["signature"][1:]
    err = _fails(doc, "GOLDEN_SIGNATURE_INVALID")
    assert "signature field was changed" in err.message
    other = sample_document(keys=KeyRing("k1", {"k1": "another-secret"}))
    _fails(other, "GOLDEN_SIGNATURE_INVALID")


def test_a_changed_plan_is_a_change_of_the_body_outside_the_steps():
    doc = sample_document()
    doc["body"]["plan"]["steps"][1]["args"]["expr"] = "u"
    err = _fails(doc, "GOLDEN_SIGNATURE_INVALID")
    assert "body" in err.message and "$.hash" in err.message


def test_a_respelled_number_keeps_the_signature_but_fails_the_byte_check():
    data = encode(sample_document())
    assert b'"big":1e+21' in data
    respelled = data.replace(b'"big":1e+21', b'"big":1E+21', 1)  # the same number, one byte changed
    assert parse(respelled) == parse(data)
    err = _fails(respelled, "GOLDEN_FORMAT_INVALID")
    assert "canonical form" in err.message and "byte" in err.message


@pytest.mark.parametrize("field", ["format", "key_id", "hash", "signature", "body"])
def test_a_missing_field_is_named(field):
    doc = sample_document()
    del doc[field]
    err = _fails(doc, "GOLDEN_FORMAT_INVALID")
    assert f"$.{field}" in err.message


def test_an_extra_field_an_unknown_format_and_non_json_are_format_errors():
    doc = sample_document()
    assert "unexpected field $.note" in _fails({**doc, "note": "hi"}, "GOLDEN_FORMAT_INVALID").message
    assert "aos.golden/2" in _fails({**doc, "format": "aos.golden/2"}, "GOLDEN_FORMAT_INVALID").message
    assert "not JSON" in _fails(b"{not json", "GOLDEN_FORMAT_INVALID").message
    assert "not UTF-8" in _fails(b'{"a":"\xff"}', "GOLDEN_FORMAT_INVALID").message
    assert "JSON list" in _fails(b"[]", "GOLDEN_FORMAT_INVALID").message


def test_a_missing_step_field_is_named_with_its_path():
    body = sample_body()
    del body["steps"][1]["attempts"][0]["call"]["outcome"]
    doc = seal(body, KEYS)
    err = _fails(doc, "GOLDEN_FORMAT_INVALID")
    assert "$.body.steps[1].attempts[0].call.outcome" in err.message


def test_a_step_hash_that_does_not_match_its_content_is_a_hash_mismatch_even_when_signed():
    body = sample_body()
    body["steps"][0]["hash"] = "f" * 64  # the signer wrote a wrong hash, then signed
    err = _fails(seal(body, KEYS), "GOLDEN_HASH_MISMATCH")
    assert "steps[0] ('fetch')" in err.message
    assert err.details["computed"] == step_hash(body["steps"][0])


def test_a_wrong_recorded_body_hash_is_a_hash_mismatch():
    # the signature binds the body's actual hash, so it still verifies; the recorded total does not
    doc = sample_document()
    doc["hash"] = "0" * 64
    err = _fails(doc, "GOLDEN_HASH_MISMATCH")
    assert err.details["path"] == "$.hash"


def test_keys_rotate_old_files_verify_while_their_key_is_listed():
    old = sample_document(keys=KeyRing("k0", {"k0": "old-secret"}))
    rotated = KeyRing("k1", {"k1": "new-secret", "k0": "old-secret"})
    assert verify_document(old, rotated).key_id == "k0"
    new = sample_document(keys=rotated)
    assert new["key_id"] == "k1"
    err = _fails(old, "GOLDEN_KEY_UNKNOWN", keys=KeyRing("k1", {"k1": "new-secret"}))
    assert "'k0'" in err.message and "AOS_GOLDEN_KEYS" in err.message


def test_no_key_at_all_is_secret_missing():
    _fails(sample_document(), "GOLDEN_SECRET_MISSING", keys=KeyRing("k1", {}))
    with pytest.raises(AosError) as exc:
        seal(sample_body(), KeyRing("k1", {"k0": "only-an-old-key"}))
    assert exc.value.code == "GOLDEN_SECRET_MISSING"


def test_keyring_from_settings_reads_the_secret_and_the_old_keys(settings_env):
    settings = settings_env(AOS_GOLDEN_SECRET="s1", AOS_GOLDEN_KEY_ID="k2",
                            AOS_GOLDEN_KEYS=json.dumps({"k1": "s0"}))
    ring = KeyRing.from_settings(settings)
    assert ring.signing_key_id == "k2" and dict(ring.keys) == {"k1": "s0", "k2": "s1"}


@pytest.mark.parametrize("data", [b'{"format": ' + b"9" * 5000 + b"}", b"[" * 100_000])
def test_a_file_with_an_unreadable_number_or_endless_nesting_is_a_format_error(data):
    with pytest.raises(AosError) as exc:
        parse(data)
    assert exc.value.code == "GOLDEN_FORMAT_INVALID"
