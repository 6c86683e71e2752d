"""Recording: no timing in any hash (the seeds' P0-3), only finished runs, only the tenant's own runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from aos.db.models import Checkpoint
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import golden
from aos.services.runs import submit_run
from tests.golden.helpers import mixed_plan, record, run_plan

TIMING_KEYS = {"timing", "duration_ms", "started_at", "finished_at", "worker", "deliveries", "checkpoint_id"}


def _keys(value, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            found.add(k)
            _keys(v, found)
    elif isinstance(value, list):
        for v in value:
            _keys(v, found)
    return found


def test_timings_are_absent_so_the_same_run_with_other_durations_hashes_the_same(tenant, worker, golden_key, stubs):
    ctx, _ = tenant
    run_id = run_plan(ctx, mixed_plan(stubs["http"].base_url, stubs["llm"].openai_url))
    first = record(ctx, run_id)
    assert not (_keys(first["body"], set()) & TIMING_KEYS)
    # the same run, as if every attempt had taken other times on another worker
    with session_scope() as s:
        for cp in s.scalars(select(Checkpoint).where(Checkpoint.run_id == uuid.UUID(run_id))):
            cp.duration_ms = 98765.432
            cp.started_at = datetime(2020, 1, 1, tzinfo=UTC)
            cp.finished_at = cp.started_at + timedelta(seconds=99)
            cp.worker, cp.deliveries = "elsewhere:1", 7
            cp.outcome = {**cp.outcome, "timing": {"started_at": "2020-01-01T00:00:00+00:00", "duration_ms": 98765.4}}
            if cp.fallback_from:
                cp.fallback_from = {**cp.fallback_from, "outcome": {**cp.fallback_from["outcome"],
                                                                    "timing": {"duration_ms": 1.0}}}
    second = record(ctx, run_id)
    assert [s["hash"] for s in second["body"]["steps"]] == [s["hash"] for s in first["body"]["steps"]]
    assert second["hash"] == first["hash"] and second["body"] == first["body"]


def test_only_finished_runs_are_recorded(tenant, golden_key):
    ctx, _ = tenant
    queued = submit_run(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]},
                        None)  # never published: it stays queued
    with pytest.raises(AosError) as exc:
        golden.record_run(ctx, queued)
    assert exc.value.code == "CONFLICT" and "queued" in exc.value.message


def test_another_tenants_run_is_not_found(tenant, worker, golden_key, aos_env):
    from aos.services.tenancy import TenantContext, create_tenant

    ctx, _ = tenant
    run_id = run_plan(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]})
    with session_scope() as s:
        other = create_tenant(s, f"other-{uuid.uuid4().hex[:8]}")
        other_ctx = TenantContext(tenant_id=other.id, tenant_name=other.name, key_id=None, scopes=frozenset())
    for rid in (run_id, str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(AosError) as exc:
            golden.record_run(other_ctx, rid)
        assert exc.value.code == "NOT_FOUND"


def test_recording_without_a_secret_names_the_run_first_then_the_missing_setting(tenant, worker, settings_env):
    ctx, _ = tenant
    run_id = run_plan(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]})
    settings_env(AOS_GOLDEN_SECRET="")
    for rid in (str(uuid.uuid4()), "not-a-uuid"):  # the run is looked up first
        with pytest.raises(AosError) as exc:
            golden.record_run(ctx, rid)
        assert exc.value.code == "NOT_FOUND"
    with pytest.raises(AosError) as exc:
        golden.record_run(ctx, run_id)
    assert exc.value.code == "GOLDEN_SECRET_MISSING" and "AOS_GOLDEN_SECRET" in exc.value.message


def test_a_recorded_file_fails_verification_when_any_sampled_byte_changes(tenant, worker, golden_key, stubs):
    """The exhaustive every-byte check runs on a small document (test_verify.py); here 1,500 positions of a
    real recording of the mixed plan (HTTP, LLM, retries, a fallback) are each changed in turn."""
    import random

    from aos.golden.verify import encode, parse

    ctx, _ = tenant
    data = encode(record(ctx, run_plan(ctx, mixed_plan(stubs["http"].base_url, stubs["llm"].openai_url))))
    golden.verify(ctx, parse(data), data)
    rng = random.Random(6)
    for i in rng.sample(range(len(data)), min(1500, len(data))):
        tampered = data[:i] + bytes([data[i] ^ rng.choice((0x01, 0x02, 0x10, 0x20))]) + data[i + 1:]
        with pytest.raises(AosError) as exc:
            golden.verify(ctx, parse(tampered), tampered)
        assert exc.value.code.startswith("GOLDEN_"), (i, exc.value)
