"""Canonical JSON: one byte sequence per JSON value, so that hashes and signatures are stable.

It follows RFC 8785 (JSON Canonicalization Scheme): object keys sorted by their
UTF-16 code units, no whitespace, strings as UTF-8 with only the escapes JSON
requires (``"``, ``\\`` and control characters, lower-case ``\\u00XX``), and
numbers written the way ECMAScript writes them: the shortest digits that read
back as the same double, ``1.0`` as ``1``, ``-0.0`` as ``0``, exponents only
below 1e-6 and from 1e21 on. Python integers stay exact integers (JSON has no
size limit; Python reads them back as the same int). NaN and the infinities are
not JSON: they are refused, as are types JSON does not have.
"""

from __future__ import annotations

import hashlib
import math
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # C-accelerated, no ASCII escaping
from typing import Any


class CanonicalError(ValueError):
    """The value has no canonical JSON form (NaN, a set, a lone surrogate, a non-string key, …)."""


def canonical(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``."""
    parts: list[str] = []
    _write(value, parts, "$")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from "\ud800" in parsed JSON
        raise CanonicalError(f"a string holds a lone surrogate ({exc.reason}); it has no UTF-8 form") from None


def sha256_hex(value: Any) -> str:
    """SHA-256 of the canonical bytes of ``value``, in hex."""
    return hashlib.sha256(canonical(value)).hexdigest()


def format_number(x: int | float) -> str:
    """A number as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3); ints exactly."""
    if isinstance(x, bool):
        raise CanonicalError("a bool is not a number")
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        raise CanonicalError(f"{x!r} is not a JSON number")
    if x == 0:
        return "0"  # -0.0 too
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip (the same digits ECMAScript picks)
    mantissa, _, exp = repr(abs(x)).partition("e")
    int_part, _, frac = mantissa.partition(".")
    exponent = int(exp) if exp else 0
    significant = int_part.lstrip("0")
    if significant:
        n = len(significant) + exponent
        digits = (significant + frac).rstrip("0")
    else:  # 0.000ddd
        stripped = frac.lstrip("0")
        n = exponent - (len(frac) - len(stripped))
        digits = stripped.rstrip("0")
    # value = 0.<digits> × 10**n
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits[0] if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, int | float):
        try:
            out.append(format_number(value))
        except CanonicalError as exc:
            raise CanonicalError(f"{path}: {exc}") from None
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(encode_basestring(key))
            out.append(":")
            _write(value[key], out, f"{path}.{key}")
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]")
        out.append("]")
    else:
        raise CanonicalError(f"{path}: a {type(value).__name__} is not a JSON value")
