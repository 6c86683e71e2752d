"""Verifying a golden file: the signature first, then each step hash and the total, then its bytes.

Each failure has its own code and a message that says where:
- GOLDEN_FORMAT_INVALID: not JSON, not a golden file, an unknown format version,
  a missing or unexpected field (named), or bytes that are not the canonical form;
- GOLDEN_SECRET_MISSING / GOLDEN_KEY_UNKNOWN: no secret for the file's key id;
- GOLDEN_SIGNATURE_INVALID: the HMAC does not match, with the part that changed
  when the recorded hashes can tell (a step, the body outside the steps, or the
  signature field itself);
- GOLDEN_HASH_MISMATCH: a step's (or the body's) recorded hash is not the hash
  of its content although the signature matches (the signer wrote it wrong).

The byte check closes the last gap: JSON allows several spellings of one value
(``1e+21`` and ``1E021``), so a one-byte change can leave the parsed content, and
thus the signature, intact. A golden file is exactly the canonical JSON of its
document plus one newline; anything else fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aos.errors import AosError
from aos.golden import FORMAT
from aos.golden.canonical import CanonicalError, canonical, sha256_hex
from aos.golden.record import step_hash
from aos.golden.sign import KeyRing, signature_matches

TOP_FIELDS: dict[str, type] = {"format": str, "key_id": str, "hash": str, "signature": str, "body": dict}
BODY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "source": dict, "plan": dict, "plan_hash": str, "inputs": dict, "skill_versions": dict, "steps": list}
STEP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "index": int, "id": str, "skill": str, "deterministic": bool, "status": str, "attempts": list, "hash": str}
STEP_NULLABLE = ("args", "outcome")
ATTEMPT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "attempt": int, "status": str, "call": dict, "fallback": (dict, type(None))}
CALL_FIELDS: dict[str, type | tuple[type, ...]] = {"skill": str, "deterministic": bool}


@dataclass(frozen=True)
class Verified:
    key_id: str
    hash: str
    source_run_id: str | None
    steps: int


def _invalid(message: str, **details: Any) -> AosError:
    return AosError("GOLDEN_FORMAT_INVALID", message, details=details)


def parse(data: bytes) -> dict[str, Any]:
    """The document in ``data`` (a golden file's bytes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"the file is not UTF-8 (byte {exc.start})", byte=exc.start) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(f"the file is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
                       line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise _invalid("the file is nested too deeply to be a golden document") from None
    except ValueError as exc:  # an integer too long for Python to convert (more than 4,300 digits)
        raise _invalid(f"the file holds a number AOS cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"the file holds a JSON {type(doc).__name__}, not a golden document")
    return doc


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean", type(None): "null"}
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _check_fields(obj: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]], where: str) -> None:
    for name, t in fields.items():
        if name not in obj:
            raise _invalid(f"missing field {where}.{name}", path=f"{where}.{name}")
        value = obj[name]
        wanted = t if isinstance(t, tuple) else (t,)
        bad_bool = isinstance(value, bool) and bool not in wanted  # bool is an int in Python, not in JSON
        if bad_bool or not isinstance(value, wanted):
            raise _invalid(f"field {where}.{name} must be {_type_name(t)}", path=f"{where}.{name}")


def check_structure(body: Mapping[str, Any]) -> None:
    """Every field a replay and the hashes rely on, with its JSON path when missing."""
    _check_fields(body, BODY_FIELDS, "$.body")
    if "amendments" in body and not isinstance(body["amendments"], list):
        raise _invalid("field $.body.amendments must be array", path="$.body.amendments")
    for i, step in enumerate(body["steps"]):
        where = f"$.body.steps[{i}]"
        if not isinstance(step, dict):
            raise _invalid(f"{where} must be an object", path=where)
        _check_fields(step, STEP_FIELDS, where)
        for name in STEP_NULLABLE:
            if name not in step:
                raise _invalid(f"missing field {where}.{name}", path=f"{where}.{name}")
        for j, attempt in enumerate(step["attempts"]):
            at = f"{where}.attempts[{j}]"
            if not isinstance(attempt, dict):
                raise _invalid(f"{at} must be an object", path=at)
            _check_fields(attempt, ATTEMPT_FIELDS, at)
            for role in ("call", "fallback"):
                call = attempt[role]
                if call is None:
                    continue
                _check_fields(call, CALL_FIELDS, f"{at}.{role}")
                for name in ("args", "outcome"):
                    if name not in call:
                        raise _invalid(f"missing field {at}.{role}.{name}", path=f"{at}.{role}.{name}")
                if not call["deterministic"] and "raw" not in call:
                    raise _invalid(f"missing field {at}.{role}.raw (a non-deterministic call keeps its response)",
                                   path=f"{at}.{role}.raw")


def _where_changed(doc: Mapping[str, Any], body_sha: str) -> str:
    """Best explanation of a signature mismatch from the hashes the file carries."""
    body = doc["body"]
    steps = body.get("steps") if isinstance(body.get("steps"), list) else []
    for i, step in enumerate(steps):
        if isinstance(step, dict) and isinstance(step.get("hash"), str):
            try:
                if step_hash(step) != step["hash"]:
                    return f"steps[{i}] ({step.get('id')!r}) was changed after signing: its content no longer " \
                           f"matches its recorded hash"
            except CanonicalError:
                return f"steps[{i}] ({step.get('id')!r}) holds a value with no canonical JSON form"
    if body_sha != doc["hash"]:
        return "the body (plan, inputs, source or a step hash) or its recorded hash $.hash was changed after " \
               "signing: the body no longer hashes to $.hash"
    return "the content matches its hashes, so the signature field was changed, or the file was signed with " \
           f"another secret under key id {doc['key_id']!r}, or for another tenant (golden files are signed per " \
           "tenant: only the tenant that recorded a run verifies and replays its file)"


def verify_document(doc: Any, keys: KeyRing, *, data: bytes | None = None) -> Verified:
    """Verify a parsed document (and, given ``data``, that these are its canonical bytes)."""
    if not isinstance(doc, dict):
        raise _invalid("a golden document is a JSON object")
    if "format" not in doc:
        raise _invalid("missing field $.format: this is not a golden file", path="$.format")
    if doc["format"] != FORMAT:
        raise _invalid(f"format {doc['format']!r} is not one AOS reads ({FORMAT}); re-record the run",
                       path="$.format")
    _check_fields(doc, TOP_FIELDS, "$")
    extra = sorted(set(doc) - set(TOP_FIELDS))
    if extra:  # nothing outside the signed body may ride along
        raise _invalid(f"unexpected field $.{extra[0]} (a golden file has only {', '.join(TOP_FIELDS)})",
                       path=f"$.{extra[0]}")
    secret = keys.secret(doc["key_id"])
    try:
        body_sha = sha256_hex(doc["body"])
    except CanonicalError as exc:
        raise _invalid(f"the body has no canonical JSON form: {exc}") from None
    if not signature_matches(secret, doc["key_id"], body_sha, doc["signature"]):
        raise AosError("GOLDEN_SIGNATURE_INVALID", f"the signature does not verify: {_where_changed(doc, body_sha)}",
                       details={"key_id": doc["key_id"]})
    body = doc["body"]
    check_structure(body)
    for i, step in enumerate(body["steps"]):
        actual = step_hash(step)
        if actual != step["hash"]:
            raise AosError("GOLDEN_HASH_MISMATCH",
                           f"steps[{i}] ({step['id']!r}): the recorded hash {step['hash'][:16]}… is not the hash "
                           f"of the step's content ({actual[:16]}…)",
                           details={"path": f"$.body.steps[{i}].hash", "step_id": step["id"],
                                    "recorded": step["hash"], "computed": actual})
    if body_sha != doc["hash"]:
        raise AosError("GOLDEN_HASH_MISMATCH", f"the recorded body hash {doc['hash'][:16]}… is not the hash of "
                       f"the body ({body_sha[:16]}…)",
                       details={"path": "$.hash", "recorded": doc["hash"], "computed": body_sha})
    if data is not None:
        expected = canonical(doc) + b"\n"
        if data != expected:
            at = next((i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b),
                      min(len(data), len(expected)))
            raise _invalid(f"the file is not in canonical form (first difference at byte {at}): a golden file is "
                           "byte-exact; pretty-print a copy to read it, never the file itself", byte=at)
    source = body["source"].get("run_id")
    return Verified(key_id=doc["key_id"], hash=body_sha, source_run_id=str(source) if source else None,
                    steps=len(body["steps"]))


def encode(doc: Mapping[str, Any]) -> bytes:
    """A document's file bytes: its canonical JSON and one newline."""
    return canonical(doc) + b"\n"
