"""Fixtures of the golden-file tests: a signing key for this process, and running stub servers."""

from __future__ import annotations

import pytest

from tests.golden.helpers import SECRET, running_stubs


@pytest.fixture
def golden_key(settings_env):
    """AOS_GOLDEN_SECRET for this test process (recording and verifying happen here, not in workers)."""
    return settings_env(AOS_GOLDEN_SECRET=SECRET, AOS_GOLDEN_KEY_ID="test-k1")


@pytest.fixture
def stubs():
    """A running HTTP stub and LLM stub; the test stops them (``stubs["stop"]()``) before replaying."""
    with running_stubs() as running:
        yield running
