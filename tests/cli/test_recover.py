"""`aos runs recover`: the learned suggestion of a failed run, feedback and apply, through the live API."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.services import recovery
from tests.sdk.conftest import live_api  # noqa: F401 — a fixture, used by name
from tests.services.recovery.helpers import failed_run, word


@pytest.fixture
def aos(live_api, tenant):  # noqa: F811
    runner = CliRunner(env={"COLUMNS": "200"})

    def invoke(*args: str):
        return runner.invoke(cli, [*args, "--url", live_api, "--api-key", tenant[1]])

    return invoke


def test_recover_shows_the_suggestion_and_the_command_to_apply_it(aos, tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"GET https://api.example.com {word()} timed out")
    sug = recovery.suggest_for_run(run_id)
    out = aos("runs", "recover", str(run_id))
    assert out.exit_code == 0, out.output
    assert "learned recovery (llm" in out.output and "RETRY (delay_s=5)" in out.output
    assert f"aos runs recover {run_id} --apply --suggestion {sug['id']}" in out.output
    shown = aos("runs", "show", str(run_id))
    assert "learned recovery" in shown.output and "--apply" in shown.output


def test_recover_apply_and_feedback(aos, tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    recovery.suggest_for_run(run_id)
    out = aos("runs", "recover", str(run_id), "--apply", "--helpful", "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["status"] == "applied" and got["helpful"] is True


def test_recover_refusals_are_one_line_and_exit_non_zero(aos, tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_NOT_FOUND", f"GET {word()} returned 404")
    recovery.suggest_for_run(run_id)
    out = aos("runs", "recover", str(run_id), "--apply")
    assert out.exit_code != 0 and "SUGGESTION_NOT_APPLICABLE" in out.output
    out = aos("runs", "recover", str(run_id), "--suggestion", "00000000-0000-0000-0000-000000000000", "--apply")
    assert out.exit_code != 0 and "SUGGESTION_NOT_FOUND" in out.output
    never = failed_run(ctx, "HTTP_TIMEOUT", "x")
    out = aos("runs", "recover", str(never), "--wait", "0")
    assert out.exit_code == 1 and "no recovery suggestion" in out.output
