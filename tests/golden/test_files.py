"""Atomic golden writes: never a torn file, never a temporary file left behind, never check-then-write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aos.errors import AosError
from aos.golden.files import read_bytes, write_atomic
from aos.golden.verify import encode, parse, verify_document
from tests.golden.docs import KEYS, sample_document

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from aos.golden.files import write_atomic
path, source, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(source, "rb").read()
open(path + "." + sys.argv[4] + ".ready", "w").close()
while not __import__("os").path.exists(path + ".go"):
    pass
for _ in range(rounds):
    write_atomic(path, data)
"""


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_write_creates_and_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "run.golden.json"
    write_atomic(target, b"first\n")
    write_atomic(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    target = tmp_path / "run.golden.json"
    write_atomic(target, b"old\n")
    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]  # fails after the temp file exists
    assert target.read_bytes() == b"old\n"
    assert _leftovers(tmp_path) == []


def test_writing_into_a_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(AosError) as exc:
        write_atomic(tmp_path / "nope" / "x.json", b"x")
    assert exc.value.code == "FILE_NOT_FOUND" and "nope" in exc.value.message
    with pytest.raises(AosError) as exc:
        read_bytes(tmp_path / "missing.json")
    assert exc.value.code == "NOT_FOUND"


def test_two_processes_writing_one_path_at_once_leave_one_complete_valid_file(tmp_path):
    """Two writer processes replace the same path hundreds of times at once while this process reads it
    continuously: every read is one whole, verifying document (never a mix or a prefix), and so is the
    file at the end. Large documents make a torn write likely if the write were not atomic."""
    docs = {tag: encode(sample_document(tag, padding=300_000)) for tag in ("a", "b")}
    sources = {}
    for tag, data in docs.items():
        sources[tag] = tmp_path / f"source-{tag}.json"
        sources[tag].write_bytes(data)
    target = tmp_path / "shared.golden.json"
    write_atomic(target, docs["a"])
    rounds = 150
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(sources[tag]), str(rounds), tag],
                              env=env, cwd=ROOT) for tag in docs]
    deadline = time.monotonic() + 60
    while not all(Path(f"{target}.{tag}.ready").exists() for tag in docs):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), "a writer exited early"
        time.sleep(0.01)
    Path(f"{target}.go").touch()
    reads = 0
    seen: set[str] = set()
    try:
        while any(p.poll() is None for p in procs):
            data = target.read_bytes()
            reads += 1
            assert data in (docs["a"], docs["b"]), f"read {reads}: a torn or mixed file of {len(data)} bytes"
            seen.add("a" if data == docs["a"] else "b")
            assert time.monotonic() < deadline + 120, "writers did not finish"
    finally:
        for p in procs:
            p.wait(timeout=120)
    assert [p.returncode for p in procs] == [0, 0]
    final = target.read_bytes()
    assert final in (docs["a"], docs["b"])
    verify_document(parse(final), KEYS, data=final)
    assert _leftovers(tmp_path) == []
    print(f"\n{reads} reads during {2 * rounds} concurrent atomic writes; saw documents {sorted(seen)}")
    assert reads > 10
