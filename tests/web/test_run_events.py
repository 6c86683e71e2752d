"""Following a run live over server-sent events, from a real HTTP server, while a real worker runs it."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from aos.services.outbox import drain_outbox
from aos.services.runs import submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run
from tests.web.api_helpers import TRANSFORM_PLAN, auth, live_server, new_tenant, parse_sse


def _read_frames(response: httpx.Response, *, until_event: str | None = None, deadline_s: float = 60):
    """Yield frames as they arrive (parsed from the line stream) until ``until_event`` or the end of stream."""
    frame: dict = {}
    deadline = time.monotonic() + deadline_s
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "the stream did not finish in time"
        if line == "":
            if frame:
                yield frame
                if until_event is not None and frame.get("event") == until_event:
                    return
            frame = {}
        elif line.startswith(":"):
            frame["comment"] = line[1:].strip()
        else:
            field, _, value = line.partition(": ")
            frame[field] = value
    if frame:
        yield frame


def test_the_stream_sends_events_as_they_happen_then_end(app, worker):
    ctx, key = new_tenant()
    # submitted but not yet published: the stream is open before the run starts
    run_id = submit_run(ctx, TRANSFORM_PLAN, None)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        with http.stream("GET", f"/api/v1/runs/{run_id}/events", headers=auth(key)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
            frames = _read_frames(r, until_event="end")
            first = [next(frames) for _ in range(2)]  # "retry:" then run.queued, before the run starts
            assert first[0] == {"retry": "1000"}
            assert first[1]["event"] == "run.queued"
            drain_outbox(CeleryPublisher())  # now publish it: the worker runs it while we read
            rest = list(frames)
        timeline = http.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(key)).json()["items"]
    events = [f for f in first[1:] + rest if "id" in f]
    end = rest[-1]
    assert end["event"] == "end" and "id" not in end
    summary = json.loads(end["data"])
    assert summary["id"] == str(run_id) and summary["status"] == "succeeded"
    types = [f["event"] for f in events]
    assert types[0] == "run.queued" and types[-1] == "run.succeeded"
    assert types.count("step.started") == 3 and types.count("step.succeeded") == 3
    ids = [int(f["id"]) for f in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # every timeline event, each once, in order; data is the Event JSON, its id and type on the frame
    assert [json.loads(f["data"]) for f in events] == timeline
    assert all(json.loads(f["data"])["type"] == f["event"] for f in events)


def test_last_event_id_or_after_id_resumes_after_that_event(client, worker):
    ctx, key = new_tenant()
    run_id = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=auth(key)).json["id"]
    wait_for_run(uuid.UUID(run_id))
    timeline = client.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(key)).json["items"]
    after = timeline[3]["id"]
    for query, headers in (("", {"Last-Event-ID": str(after)}), (f"?after_id={after}", {})):
        r = client.get(f"/api/v1/runs/{run_id}/events{query}", headers={**auth(key), **headers})
        assert r.status_code == 200
        frames = parse_sse(r.get_data(as_text=True))
        sent = [json.loads(f["data"]) for f in frames if "id" in f]
        assert sent == timeline[4:]
        assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"])["status"] == "succeeded"


def test_a_silent_stream_sends_keepalives_and_closes_at_its_maximum_life(client, aos_env, settings_env):
    settings_env(AOS_SSE_KEEPALIVE_S="0.3", AOS_SSE_MAX_S="1.2", AOS_SSE_POLL_S="0.05")
    ctx, key = new_tenant()
    run_id = submit_run(ctx, TRANSFORM_PLAN, None)  # never published: nothing happens to it
    started = time.monotonic()
    r = client.get(f"/api/v1/runs/{run_id}/events", headers=auth(key))
    frames = parse_sse(r.get_data(as_text=True))  # the test client streams while this reads
    elapsed = time.monotonic() - started
    assert 1.1 < elapsed < 10
    assert [f["event"] for f in frames if "event" in f] == ["run.queued"]  # no `end`: the run is not final
    assert sum(1 for f in frames if f.get("comment") == "keepalive") >= 2


def test_stream_of_an_unknown_or_foreign_run_is_404_and_a_bad_last_event_id_is_422(client, tenant):
    ctx, key = tenant
    _, other_key = new_tenant()
    run_id = submit_run(ctx, TRANSFORM_PLAN, None)
    for path, key_ in ((f"/api/v1/runs/{run_id}/events", other_key), (f"/api/v1/runs/{uuid.uuid4()}/events", key)):
        r = client.get(path, headers=auth(key_))
        assert r.status_code == 404 and r.content_type == "application/problem+json"
        assert r.json["code"] == "NOT_FOUND"
    r = client.get(f"/api/v1/runs/{run_id}/events", headers={**auth(key), "Last-Event-ID": "abc"})
    assert r.status_code == 422 and r.json["code"] == "VALIDATION_ERROR"
