"""Every plan in examples/ is valid, and the ones meant to succeed run to success step by step under
`aos runs submit … --follow` (the failing one is checked in test_cli_api.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.plan import parse_plan
from aos.skills.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SUCCEEDING = [p for p in EXAMPLES if p.name != "failing.json"]


def test_there_are_examples_of_each_kind():
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.json", "failing.json"} <= names and len(names) >= 4
    skills = {st["skill"].split("@")[0] for p in EXAMPLES for st in json.loads(p.read_text())["steps"]}
    assert {"llm.complete", "calendar.business_days", "calendar.free_slots", "json.validate"} <= skills


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates(path):
    plan = parse_plan(json.loads(path.read_text()), default_registry())
    assert plan.steps and plan.name


def test_the_packaged_quickstart_is_the_example():
    assert json.loads((ROOT / "aos" / "examples" / "quickstart.json").read_text()) == \
        json.loads((ROOT / "examples" / "quickstart.json").read_text())


@pytest.mark.parametrize("path", SUCCEEDING, ids=[p.name for p in SUCCEEDING])
def test_example_runs_to_success_step_by_step(path, live_api, tenant, worker):
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        cli, ["runs", "submit", str(path), "--follow", "--url", live_api, "--api-key", tenant[1]])
    assert res.exit_code == 0, res.output + worker.tail()
    lines = res.stdout.splitlines()
    done = [re.fullmatch(r"\s*✓ (\w+)\s+[\d.]+ ms\s+\$[\d.]+", line) for line in lines if "✓" in line]
    assert all(done), lines  # each step with its duration and cost
    assert [m.group(1) for m in done] == [st["id"] for st in json.loads(path.read_text())["steps"]]
    assert lines[-2].startswith("run succeeded") or lines[-1].startswith("run succeeded")
