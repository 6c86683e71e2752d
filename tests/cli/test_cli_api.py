"""The API commands of `aos` (runs, workflows, agents, simulate) against the live API, through the SDK.

People's output is checked for what a person needs to see; `--json` output must parse and say the same.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.sdk import Client
from tests.support.http_server import Reply, serve_http

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
FAILING = EXAMPLES / "failing.json"

SUM_PLAN = {
    "name": "cli-sum",
    "inputs": {"items": [{"qty": 2}, {"qty": 3}]},
    "steps": [
        {"id": "qtys", "skill": "json.transform", "args": {"input": {"$ref": "inputs.items"}, "expr": "[*].qty"}},
        {"id": "total", "skill": "json.transform", "args": {"input": {"$ref": "steps.qtys.output"}, "expr": "sum(@)"}},
    ],
}
# four steps under max_steps 5: the fourth start crosses 80% of the budget
NEAR_BUDGET_PLAN = {
    "name": "cli-near-budget",
    "budget": {"max_steps": 5},
    "steps": [{"id": f"s{i}", "skill": "json.transform", "args": {"input": i, "expr": "@"}} for i in range(4)],
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def aos(runner, live_api, tenant):
    """Run `aos …` against the live API with this test's tenant key."""
    key = tenant[1]

    def invoke(*args: str):
        return runner.invoke(cli, [*args, "--url", live_api, "--api-key", key])

    invoke.key = key
    invoke.url = live_api
    return invoke


def _plan_file(tmp_path: Path, plan: dict, name: str = "plan.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return str(path)


def _one_error_line(res, code: str) -> str:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), res.stderr
    return lines[0]


# --- runs ------------------------------------------------------------------------------------------------------


def test_follow_of_a_failing_example_ends_with_code_recovery_and_exit_1(aos, worker):
    res = aos("runs", "submit", str(FAILING), "--follow")
    assert res.exit_code == 1, res.output + worker.tail()
    out = res.stdout
    assert "✓ line" in out and "✗ check" in out                      # step by step
    assert "run failed: JSON_SCHEMA_MISMATCH" in out
    assert "at step check (json.validate@1)" in out or "at step check (json.validate)" in out
    with Client(aos.url, aos.key) as sdk:
        suggestion = sdk.errors.get("JSON_SCHEMA_MISMATCH").suggestion
    assert suggestion and f"suggested recovery: ABORT — {suggestion}" in out, out
    assert "aos runs resume" in out
    assert "confirm" not in out.split("run failed")[0]               # the step after the failure never ran


def test_follow_shows_budget_warnings_as_they_happen(aos, worker, tmp_path):
    res = aos("runs", "submit", _plan_file(tmp_path, NEAR_BUDGET_PLAN), "--follow")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    warning = next(i for i, line in enumerate(lines) if "budget warning" in line)
    assert "steps 80%" in lines[warning]
    assert "✓ s3" in lines[warning - 1]     # right after the step that crossed 80%, before the outcome
    assert any("run succeeded" in line for line in lines[warning + 1:])


def test_runs_list_pages_with_a_cursor_and_all(aos):
    with Client(aos.url, aos.key) as sdk:
        ids = [sdk.runs.create({**SUM_PLAN, "name": f"l{i}"}).id for i in range(5)]

    first = aos("runs", "list", "--limit", "2", "--json")
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    assert [r["id"] for r in page["items"]] == ids[::-1][:2] and page["next_cursor"]
    second = json.loads(aos("runs", "list", "--limit", "2", "--cursor", page["next_cursor"], "--json").stdout)
    assert [r["id"] for r in second["items"]] == ids[::-1][2:4]

    every = json.loads(aos("runs", "list", "--limit", "2", "--all", "--json").stdout)
    assert [r["id"] for r in every["items"]] == ids[::-1] and every["next_cursor"] is None

    table = aos("runs", "list", "--limit", "2")
    assert table.exit_code == 0 and ids[-1] in table.stdout and ids[0] not in table.stdout
    assert f"more: aos runs list --cursor {page['next_cursor']} --limit 2" in table.stdout


def test_runs_list_filters_by_status(aos, worker, tmp_path):
    with Client(aos.url, aos.key) as sdk:
        ok = sdk.runs.create(SUM_PLAN).wait(timeout=60)
        bad = sdk.runs.create(json.loads(FAILING.read_text())).wait(timeout=60)
    failed = json.loads(aos("runs", "list", "--status", "failed", "--json").stdout)["items"]
    assert [r["id"] for r in failed] == [bad.id] and failed[0]["error"]["code"] == "JSON_SCHEMA_MISMATCH"
    assert [r["id"] for r in json.loads(aos("runs", "list", "--status", "succeeded", "--json").stdout)["items"]] \
        == [ok.id]
    res = aos("runs", "list", "--status", "bogus")
    assert res.exit_code == 2 and "bogus" in res.output


def test_runs_show_and_step_of_a_failed_run(aos, worker):
    with Client(aos.url, aos.key) as sdk:
        run = sdk.runs.create(json.loads(FAILING.read_text())).wait(timeout=60)
    shown = aos("runs", "show", run.id)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert f"run {run.id}  failed" in out and "error JSON_SCHEMA_MISMATCH" in out
    assert "suggested recovery: ABORT" in out
    for step, status in (("line", "succeeded"), ("check", "failed"), ("confirm", "not_run")):
        row = next(line for line in out.splitlines() if line.split()[:1] == [step])
        assert status in row, row

    step = aos("runs", "step", run.id, "check")
    assert step.exit_code == 0, step.output
    assert "step check (json.validate" in step.stdout and "JSON_SCHEMA_MISMATCH" in step.stdout
    detail = json.loads(aos("runs", "step", run.id, "check", "--json").stdout)
    assert detail["attempts"][0]["error"]["code"] == "JSON_SCHEMA_MISMATCH"
    _one_error_line(aos("runs", "step", run.id, "nope"), "STEP_NOT_FOUND")


def test_runs_follow_of_a_finished_run_and_resume_conflict(aos, worker):
    with Client(aos.url, aos.key) as sdk:
        run = sdk.runs.create(SUM_PLAN).wait(timeout=60)
    res = aos("runs", "follow", run.id)
    assert res.exit_code == 0, res.output
    assert "✓ qtys" in res.stdout and "✓ total" in res.stdout and "run succeeded" in res.stdout
    line = _one_error_line(aos("runs", "resume", run.id), "CONFLICT")
    assert "succeeded" in line
    _one_error_line(aos("runs", "cancel", run.id), "CONFLICT")


def test_resume_follow_continues_a_failed_run_from_its_failed_step(aos, worker, tmp_path):
    # the first run fails at `check`; its cause cannot be fixed for that run, so resuming fails the same way:
    # what matters here is that --follow shows only what happened after the resume
    with Client(aos.url, aos.key) as sdk:
        run = sdk.runs.create(json.loads(FAILING.read_text())).wait(timeout=60)
    res = aos("runs", "resume", run.id, "--follow")
    assert res.exit_code == 1, res.output
    assert "resumed from step 1" in res.stdout
    assert "✓ line" not in res.stdout and "✗ check" in res.stdout  # `line` succeeded before: not run again
    assert res.stdout.count("run failed: JSON_SCHEMA_MISMATCH") == 1


def test_follow_stops_at_its_timeout_while_the_run_goes_on(aos, worker, tmp_path):
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=3)}) as srv:
        plan = {"name": "slow", "steps": [{"id": "call", "skill": "http.request", "args": {"url": srv.url("/slow")}}]}
        res = aos("runs", "submit", _plan_file(tmp_path, plan), "--follow", "--timeout", "1")
        assert res.exit_code == 1, res.output
        run_id = res.stdout.split()[1]
        assert f"still running after 1s; the run goes on: `aos runs follow {run_id}`" in res.stdout
        with Client(aos.url, aos.key) as sdk:
            assert sdk.runs.wait(run_id, timeout=30).status == "succeeded"


def test_runs_cancel_prints_the_cancelled_run(aos, worker):
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=3)}) as srv:
        plan = {"name": "slow", "steps": [{"id": "call", "skill": "http.request", "args": {"url": srv.url("/slow")}},
                                          {"id": "after", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
        with Client(aos.url, aos.key) as sdk:
            run = sdk.runs.create(plan)
        res = aos("runs", "cancel", run.id)
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == f"run {run.id} cancelled"
        assert json.loads(aos("runs", "show", run.id, "--json").stdout)["status"] == "cancelled"
        _one_error_line(aos("runs", "cancel", run.id), "CONFLICT")


def test_submit_with_inputs_and_json(aos, worker, tmp_path):
    inputs = _plan_file(tmp_path, {"items": [{"qty": 40}, {"qty": 2}]}, "inputs.json")
    res = aos("runs", "submit", _plan_file(tmp_path, SUM_PLAN), "--inputs", inputs, "--follow", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert run["status"] == "succeeded" and run["steps"][-1]["output"] == 42


def test_a_plan_file_that_is_not_an_object_is_refused(aos, tmp_path):
    _one_error_line(aos("runs", "submit", _plan_file(tmp_path, [1, 2])), "VALIDATION_ERROR")


def test_an_invalid_plan_lists_every_problem(aos, tmp_path):
    bad = {"steps": [{"id": "a", "skill": "no.such", "args": {}}, {"id": "b", "skill": "nope.too", "args": {}}]}
    res = aos("runs", "submit", _plan_file(tmp_path, bad))
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) >= 2
    assert "$.steps[1].skill: SKILL_NOT_FOUND" in res.stderr


# --- workflows, agents ---------------------------------------------------------------------------------------------


def test_workflows_save_list_show_and_run_with_follow(aos, worker, tmp_path):
    name = f"wf-{uuid.uuid4().hex[:8]}"
    plan = _plan_file(tmp_path, SUM_PLAN)
    saved = aos("workflows", "save", name, plan)
    assert saved.exit_code == 0 and f"saved workflow {name} version 1" in saved.stdout, saved.output
    v2 = json.loads(aos("workflows", "save", name, plan, "--json").stdout)
    assert v2["version"] == 2 and v2["name"] == name

    listed = aos("workflows", "list")
    assert listed.exit_code == 0 and name in listed.stdout
    assert [(w["name"], w["version"]) for w in json.loads(aos("workflows", "list", "--json").stdout)["items"]] \
        == [(name, 2)]
    shown = json.loads(aos("workflows", "show", name, "--version", "1", "--json").stdout)
    assert shown["version"] == 1 and shown["plan"]["steps"] == SUM_PLAN["steps"]
    versions = json.loads(aos("workflows", "show", name, "--versions", "--json").stdout)["items"]
    assert [w["version"] for w in versions] == [2, 1]
    text = aos("workflows", "show", name)
    assert f"workflow {name} version 2" in text.stdout and '"expr": "sum(@)"' in text.stdout

    ran = aos("workflows", "run", name, "--follow")
    assert ran.exit_code == 0, ran.output
    assert "✓ total" in ran.stdout and "run succeeded" in ran.stdout
    _one_error_line(aos("workflows", "show", f"missing-{name}"), "NOT_FOUND")


def test_agents_create_list_show(aos, worker, tmp_path):
    caps = _plan_file(tmp_path, {"allowed_skills": ["json.transform"], "max_cost_usd": 0.5}, "caps.json")
    name = f"ag-{uuid.uuid4().hex[:6]}"
    created = aos("agents", "create", name, "--capabilities", caps, "--json")
    assert created.exit_code == 0, created.output
    agent = json.loads(created.stdout)
    assert agent["name"] == name and agent["capabilities"]["allowed_skills"] == ["json.transform"]

    assert [a["id"] for a in json.loads(aos("agents", "list", "--json").stdout)["items"]] == [agent["id"]]
    within = {**SUM_PLAN, "budget": {"max_cost_usd": 0.1}}  # the agent allows at most $0.5 per run
    submitted = aos("runs", "submit", _plan_file(tmp_path, within), "--agent", agent["id"], "--follow", "--json")
    assert submitted.exit_code == 0, submitted.output
    run = json.loads(submitted.stdout)
    assert run["status"] == "succeeded" and run["agent_id"] == agent["id"]
    shown = aos("agents", "show", agent["id"])
    assert shown.exit_code == 0 and name in shown.stdout and "allowed_skills" in shown.stdout
    assert run["id"] in shown.stdout  # its latest runs
    assert json.loads(aos("agents", "show", agent["id"], "--json").stdout)["id"] == agent["id"]

    denied = aos("runs", "submit", str(FAILING), "--agent", agent["id"])
    assert "CAPABILITY_DENIED" in _one_error_line(denied, "CAPABILITY_DENIED")
    _one_error_line(aos("agents", "show", str(uuid.uuid4())), "NOT_FOUND")


# --- simulate ------------------------------------------------------------------------------------------------------


def test_simulate_prints_a_table_with_totals_and_verdicts(aos):
    res = aos("simulate", str(EXAMPLES / "ticket-triage.json"))
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "nothing ran" in out and "total" in out
    for step in ("fields", "summary", "result"):
        assert step in out
    assert "budget: within" in out and "capabilities: not_checked" in out
    data = json.loads(aos("simulate", str(EXAMPLES / "ticket-triage.json"), "--json").stdout)
    assert [s["id"] for s in data["steps"]] == ["fields", "summary", "result"]
    assert data["budget"]["verdict"] == "within"


def test_simulate_exits_1_when_the_plan_would_exceed_its_budget(aos, tmp_path):
    plan = json.loads((EXAMPLES / "ticket-triage.json").read_text())
    plan["budget"] = {"max_tokens": 50}
    res = aos("simulate", _plan_file(tmp_path, plan))
    assert res.exit_code == 1, res.output
    assert "budget: exceeds" in res.stdout and "BUDGET_EXCEEDED" in res.stdout and "50 tokens" in res.stdout
    as_json = aos("simulate", _plan_file(tmp_path, plan), "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["budget"]["verdict"] == "exceeds"


def test_simulate_against_an_agent_reports_denied_capabilities(aos, tmp_path):
    with Client(aos.url, aos.key) as sdk:
        agent = sdk.agents.create(f"sim-{uuid.uuid4().hex[:6]}", capabilities={"allowed_skills": ["json.transform"]})
    res = aos("simulate", str(EXAMPLES / "ticket-triage.json"), "--agent", agent.id)
    assert res.exit_code == 1, res.output
    assert "capabilities: denied" in res.stdout and "llm.complete" in res.stdout
