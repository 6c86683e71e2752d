"""Fixtures of the durability tests: a second worker, a private broker, workers on it, and a
"beat-like" helper process that talks to a broker of the test's choosing.

The helper is a separate, spawned Python process because AOS reads its settings
(AOS_BROKER_URL among them) from the environment once per process and the
Celery app configures its broker connection from them on first use: a fresh
process with the environment set before anything is imported is the honest way
to have an API, a drainer or a reaper that talks to a private broker, without
re-pointing the test process's own Celery app (which other tests share).
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool

import pytest

from tests.support.broker import PrivateRedis
from tests.support.worker import WorkerProcess


def init_helper_process(env: dict[str, str]) -> None:
    """Pool initializer (runs in the spawned child): its own settings, engine and Celery connection."""
    os.environ.update(env)
    from aos.config import reset_settings
    from aos.db.session import reset_engine

    reset_settings()
    reset_engine()


@pytest.fixture(scope="module")
def second_worker(aos_env, tmp_path_factory) -> Iterator[WorkerProcess]:
    """Another real prefork worker (2 processes) on the session's broker and step queue."""
    w = WorkerProcess(aos_env, tmp_path_factory.mktemp("worker2"), name=f"w2-{uuid.uuid4().hex[:6]}",
                      concurrency=2)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def private_broker(tmp_path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own, on 127.0.0.1:<port>, that the test may stop and start again."""
    broker = PrivateRedis(tmp_path / "redis").start()
    yield broker
    broker.stop()


@pytest.fixture
def start_worker(aos_env, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers with some AOS_* variables overridden (e.g. another broker); all are
    stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str, concurrency: int = 2, **overrides: str) -> WorkerProcess:
        w = WorkerProcess({**aos_env, **overrides}, tmp_path, name=f"{name}-{uuid.uuid4().hex[:6]}",
                          concurrency=concurrency)
        started.append(w)
        w.start()
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def helper_process(aos_env) -> Iterator[Callable[..., Pool]]:
    """A spawned process with the session's AOS_* environment plus overrides, to call services in
    (``pool.apply_async(fn, args).get(timeout=…)``). Terminated at the end of the test."""
    pools: list[Pool] = []

    def make(**overrides: str) -> Pool:
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(1, initializer=init_helper_process, initargs=({**aos_env, **overrides},))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()
