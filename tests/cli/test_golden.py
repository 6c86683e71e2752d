"""`aos golden record|verify|replay` against a live API and a real worker; failures are one line and exit 1."""

from __future__ import annotations

import copy
import json
import threading
import uuid

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from aos.cli.main import cli
from tests.golden.helpers import SECRET, run_plan

PLAN = {"name": "cli-golden", "inputs": {"order": {"items": [{"qty": 2}, {"qty": 3}]}},
        "steps": [{"id": "qtys", "skill": "json.transform",
                   "args": {"input": {"$ref": "inputs.order"}, "expr": "items[*].qty"}},
                  {"id": "total", "skill": "json.transform",
                   "args": {"input": {"$ref": "steps.qtys.output"}, "expr": "sum(@)"}}]}


@pytest.fixture
def api_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def golden_key(settings_env):
    return settings_env(AOS_GOLDEN_SECRET=SECRET, AOS_GOLDEN_KEY_ID="cli-k1")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _api(api_url: str, key: str) -> list[str]:
    return ["--url", api_url, "--api-key", key]


def _error_line(res, code: str) -> str:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def test_record_verify_replay_round_trip(api_url, tenant, worker, golden_key, runner, tmp_path):
    ctx, key = tenant
    run_id = run_plan(ctx, PLAN)
    out = tmp_path / "run.golden.json"
    res = runner.invoke(cli, ["golden", "record", run_id, "-o", str(out), *_api(api_url, key)])
    assert res.exit_code == 0, res.output
    assert f"recorded run {run_id}: 2 steps" in res.stdout and "key tenant:cli-k1" in res.stdout
    assert out.read_bytes().endswith(b"}\n") and [p.name for p in tmp_path.iterdir()] == [out.name]

    res = runner.invoke(cli, ["golden", "verify", str(out), "--tenant", ctx.tenant_name])
    assert res.exit_code == 0, res.output
    assert "valid (key tenant:cli-k1, 2 steps" in res.stdout
    # signed for its tenant: without the tenant, or with another, it does not verify
    assert "--tenant" in _error_line(runner.invoke(cli, ["golden", "verify", str(out)]), "VALIDATION_ERROR")
    other = str(uuid.uuid4())
    _error_line(runner.invoke(cli, ["golden", "verify", str(out), "--tenant", other]), "GOLDEN_SIGNATURE_INVALID")

    res = runner.invoke(cli, ["golden", "replay", str(out), *_api(api_url, key)])
    assert res.exit_code == 0, res.output
    assert "identical: 2 steps, every hash matches" in res.stdout

    res = runner.invoke(cli, ["golden", "replay", str(out), "--json", *_api(api_url, key)])
    assert res.exit_code == 0 and json.loads(res.stdout)["identical"] is True


def test_replay_of_a_changed_plan_exits_1_naming_step_path_and_both_values(api_url, tenant, worker, golden_key,
                                                                           runner, tmp_path):
    ctx, key = tenant
    out = tmp_path / "run.golden.json"
    res = runner.invoke(cli, ["golden", "record", run_plan(ctx, PLAN), "-o", str(out), *_api(api_url, key)])
    assert res.exit_code == 0, res.output
    plan = copy.deepcopy(PLAN)
    plan["steps"][1]["args"]["expr"] = "max(@)"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    res = runner.invoke(cli, ["golden", "replay", str(out), "--plan", str(plan_file), *_api(api_url, key)])
    assert res.exit_code == 1, res.output
    assert "DIVERGED at step 1 (total), path args.expr" in res.stdout
    assert 'recorded: "sum(@)"' in res.stdout and 'replayed: "max(@)"' in res.stdout
    assert "1/2 steps identical" in res.stdout


def test_verify_of_a_tampered_file_fails_in_one_line(api_url, tenant, worker, golden_key, runner, tmp_path):
    ctx, key = tenant
    out = tmp_path / "run.golden.json"
    runner.invoke(cli, ["golden", "record", run_plan(ctx, PLAN), "-o", str(out), *_api(api_url, key)])
    data = out.read_bytes()
    out.write_bytes(data.replace(b'"output":5', b'"output":6', 1))
    mine = ["--tenant", str(ctx.tenant_id)]
    line = _error_line(runner.invoke(cli, ["golden", "verify", str(out), *mine]), "GOLDEN_SIGNATURE_INVALID")
    assert "steps[1] ('total') was changed" in line
    out.write_bytes(data.replace(b'"format"', b'"fornat"', 1))
    assert "$.format" in _error_line(runner.invoke(cli, ["golden", "verify", str(out), *mine]),
                                     "GOLDEN_FORMAT_INVALID")
    res = runner.invoke(cli, ["golden", "replay", str(out), *_api(api_url, key)])
    _error_line(res, "GOLDEN_FORMAT_INVALID")


def test_verify_with_another_key_or_none_and_a_missing_file(golden_key, runner, tmp_path, settings_env):
    from aos.golden.record import seal
    from aos.golden.sign import KeyRing
    from aos.golden.verify import encode
    from tests.golden.docs import sample_body

    out = tmp_path / "old.golden.json"
    out.write_bytes(encode(seal(sample_body(), KeyRing("k0", {"k0": "old"}))))
    _error_line(runner.invoke(cli, ["golden", "verify", str(out)]), "GOLDEN_KEY_UNKNOWN")
    settings_env(AOS_GOLDEN_KEYS=json.dumps({"k0": "old"}))
    assert runner.invoke(cli, ["golden", "verify", str(out)]).exit_code == 0
    settings_env(AOS_GOLDEN_SECRET="", AOS_GOLDEN_KEYS="{}")
    _error_line(runner.invoke(cli, ["golden", "verify", str(out)]), "GOLDEN_SECRET_MISSING")
    _error_line(runner.invoke(cli, ["golden", "verify", str(tmp_path / "nope.json")]), "NOT_FOUND")


def test_record_into_a_missing_directory_fails_in_one_line(api_url, tenant, worker, golden_key, runner, tmp_path):
    ctx, key = tenant
    res = runner.invoke(cli, ["golden", "record", run_plan(ctx, PLAN), "-o", str(tmp_path / "no" / "x.json"),
                              *_api(api_url, key)])
    _error_line(res, "FILE_NOT_FOUND")
