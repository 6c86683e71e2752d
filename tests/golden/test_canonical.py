"""Canonical JSON (RFC 8785 style): one byte form per value, the basis of every hash and signature."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from aos.golden.canonical import CanonicalError, canonical, format_number, sha256_hex

# RFC 8785 appendix B: IEEE-754 bit patterns and the text ECMAScript (and so JCS) writes for them
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_numbers_are_written_as_ecmascript_writes_them(bits, text):
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert format_number(value) == text
    assert canonical(value) == text.encode()


def test_number_formatting_is_stable_and_round_trips():
    assert canonical([1.0, 1, 100.0, 0.1, 1.5e-7, 1e21, 1e20, -0.0, 2.5]) == \
        b"[1,1,100,0.1,1.5e-7,1e+21,100000000000000000000,0,2.5]"
    rng = random.Random(20261122)
    for _ in range(20_000):
        x = struct.unpack("<d", rng.randbytes(8))[0]
        if math.isnan(x) or math.isinf(x):
            continue
        text = canonical(x)
        assert float(text) == x, (x, text)
        assert canonical(json.loads(text)) == text


def test_integers_stay_exact_and_booleans_are_not_numbers():
    big = 2**64 + 1
    assert canonical(big) == b"18446744073709551617"  # never rounded through a double
    assert canonical(big) != canonical(big - 1)
    assert canonical([True, False, None, 1, 0]) == b"[true,false,null,1,0]"


def test_keys_are_sorted_by_utf16_code_units_at_every_level():
    # RFC 8785 §3.2.3's example: a code point above U+FFFF sorts by its surrogates, before U+FB33
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\U0001F600": "Emoji: Grinning Face", "\u0080": "Control",
             "\u00f6": "Latin Small Letter O With Diaeresis"}
    keys = list(json.loads(canonical(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"]
    a = {"b": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": 0}
    b = {"a": 0, "b": {"x": [{"c": 2, "d": 1}], "y": 1}}
    assert canonical(a) == canonical(b) == b'{"a":0,"b":{"x":[{"c":2,"d":1}],"y":1}}'
    assert sha256_hex(a) == sha256_hex(b)


def test_strings_are_utf8_with_only_the_escapes_json_requires():
    text = canonical(["caf\u00e9 \u2615 \U0001F600", "q\"b\\s/", "\n\t\x01\x1f\x7f"])
    assert text == '["caf\u00e9 \u2615 \U0001F600","q\\"b\\\\s/","\\n\\t\\u0001\\u001f\x7f"]'.encode()
    assert b" " not in canonical({"a": [1, 2], "b": {"c": None}})  # no whitespace anywhere


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {1: "x"}, {"a": {1, 2}}, b"bytes", "\ud800",
                                   {"a": [object()]}])
def test_values_without_a_canonical_form_are_refused(value):
    with pytest.raises(CanonicalError):
        canonical(value)


def test_a_refusal_names_the_path_of_the_bad_value():
    with pytest.raises(CanonicalError, match=r"\$\.steps\[1\]\.x"):
        canonical({"steps": [{}, {"x": math.nan}]})


def test_random_documents_round_trip_byte_for_byte():
    rng = random.Random(7)

    def gen(depth: int):
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.randint(-(2**70), 2**70)
        if kind == 2:
            return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
        if kind == 3:
            return "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0xd7ff),
                                           rng.randint(0xe000, 0x10ffff)])) for _ in range(rng.randint(0, 8)))
        if kind in (4, 5):
            return {f"k{rng.randint(0, 99)}\u00e9": gen(depth + 1) for _ in range(rng.randint(0, 5))}
        return [gen(depth + 1) for _ in range(rng.randint(0, 5))]

    for _ in range(500):
        value = gen(0)
        text = canonical(value)
        assert canonical(json.loads(text)) == text
