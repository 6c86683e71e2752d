"""A 1,000-step recording replays in seconds: measured and printed (the figure is in docs/performance.md)."""

from __future__ import annotations

import time

from aos.golden.verify import encode
from aos.services import golden
from tests.golden.helpers import PUB, run_plan
from tests.support.http_server import Reply, serve_http

STEPS = 1000


def long_plan(url: str) -> dict:
    """A chain of 1,000 steps: an HTTP call every 100 steps, transforms in between, each reading the last."""
    steps = []
    for i in range(STEPS):
        if i % 100 == 0:
            steps.append({"id": f"s{i}", "skill": "http.request", "args": {"url": f"{url}/n?i={i}"}})
        elif i % 100 == 1:
            steps.append({"id": f"s{i}", "skill": "json.transform",
                          "args": {"input": {"$ref": f"steps.s{i - 1}.output.json"}, "expr": "n"}})
        else:
            steps.append({"id": f"s{i}", "skill": "json.transform",
                          "args": {"input": {"prev": {"$ref": f"steps.s{i - 1}.output"}, "i": i},
                                   "expr": "sum([prev, i])"}})
    return {"name": "golden-long", "steps": steps}


def test_a_1000_step_recording_replays_in_seconds(tenant, worker, golden_key):
    ctx, _ = tenant
    with serve_http({"/n": Reply(json={"n": 7})}) as srv:
        t0 = time.perf_counter()
        run_id = run_plan(ctx, long_plan(srv.url("")), timeout=900)
        ran = time.perf_counter() - t0
    t0 = time.perf_counter()
    doc = golden.record_run(ctx, run_id)
    size = len(encode(doc))
    golden.verify(ctx, doc)
    recorded = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = golden.replay(ctx, doc, PUB, timeout_s=900)
    replayed = time.perf_counter() - t0
    print(f"\n1,000-step run: executed in {ran:.1f}s; recorded + verified in {recorded:.2f}s "
          f"({size / 1e6:.2f} MB); replayed (HTTP stub stopped) and compared in {replayed:.1f}s "
          f"({STEPS / replayed:.0f} steps/s)")
    assert report["identical"], report["divergence"]
    assert len(report["steps"]) == STEPS
