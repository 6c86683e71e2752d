"""The determinism stress (bench/determinism.py) with a small N: its own database, queue and real workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_determinism_stress_small_n_counts_zero_diffs_and_no_external_call(servers, tmp_path):
    keep = tmp_path / "golden"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.determinism", "--iterations", "4", "--workers", "2", "--json",
         "--database", servers.admin_url, "--broker", servers.broker_url, "--keep", str(keep)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    print(f"\n{proc.stderr.strip().splitlines()[-1]}")
    assert result["golden_files"] == 5 and result["replays"] == 20
    assert result["diffs"] == 0 and result["divergences"] == []
    assert result["external_requests_during_replay"] == 0
    assert result["step_comparisons"] == 4 * (5 + 3 + 2 + 2 + 3)
    assert sorted(p.name for p in keep.iterdir()) == [f"{n}.golden.json" for n in
                                                      ("calendar", "failure", "fallback", "retry", "weather")]
