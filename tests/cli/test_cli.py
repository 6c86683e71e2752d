"""The `aos` command: tenants and keys on the session database, skills, and `runs` against a live API.

Expected failures print one line `error: CODE: message` and exit 1; `--help` works everywhere.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aos.cli.main import cli
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.tenancy import authenticate
from aos.skills.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.json"

INVALID_INPUT_PLAN = {
    "name": "cli-invalid",
    "steps": [
        {"id": "pick", "skill": "json.transform", "args": {"input": {"n": "three"}, "expr": "@"}},
        {"id": "check", "skill": "json.validate",
         "args": {"input": {"$ref": "steps.pick.output"},
                  "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
                  "raise_on_invalid": True}},
    ],
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _one_error_line(res, code: str) -> str:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: {code}: "), lines[0]
    assert "Traceback" not in res.output
    return lines[0]


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def _auth(key: str):
    with session_scope() as s:
        return authenticate(s, key)


# --- tenants and keys ------------------------------------------------------------------------------------


def test_tenant_then_key_prints_a_key_once_that_authenticates(aos_env, runner):
    name = _name()
    res = runner.invoke(cli, ["tenants", "create", name])
    assert res.exit_code == 0, res.output
    assert f"tenant {name} created" in res.stdout and f"aos keys create --tenant {name}" in res.stdout

    res = runner.invoke(cli, ["keys", "create", "--tenant", name])
    assert res.exit_code == 0, res.output
    key = res.stdout.splitlines()[0]
    assert key.startswith("aos_")
    assert res.stdout.count(key) == 1  # shown once
    assert "not shown again" in res.stdout
    ctx = _auth(key)
    assert ctx.tenant_name == name and ctx.scopes == {"runs:read", "runs:write"}

    listed = runner.invoke(cli, ["tenants", "list"])
    assert listed.exit_code == 0 and name in listed.stdout


def test_json_variants_print_parseable_objects(aos_env, runner):
    name = _name()
    res = runner.invoke(cli, ["tenants", "create", name, "--json"])
    assert res.exit_code == 0, res.output
    tenant = json.loads(res.stdout)
    assert tenant["name"] == name and uuid.UUID(tenant["id"])

    res = runner.invoke(cli, ["keys", "create", "--tenant", name, "--name", "ci", "--scope", "runs:read", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["tenant"] == name and out["scopes"] == ["runs:read"]
    assert out["key"].startswith(f"aos_{out['prefix']}_")
    ctx = _auth(out["key"])
    assert str(ctx.tenant_id) == tenant["id"] and ctx.scopes == {"runs:read"}


def test_creating_the_same_tenant_twice_is_a_conflict(aos_env, runner):
    name = _name()
    assert runner.invoke(cli, ["tenants", "create", name]).exit_code == 0
    line = _one_error_line(runner.invoke(cli, ["tenants", "create", name]), "CONFLICT")
    assert name in line


def test_a_key_for_a_missing_tenant_is_not_found(aos_env, runner):
    line = _one_error_line(runner.invoke(cli, ["keys", "create", "--tenant", "missing-" + _name()]), "NOT_FOUND")
    assert "aos tenants create" in line


def test_a_key_with_an_unknown_scope_is_refused(aos_env, runner):
    name = _name()
    assert runner.invoke(cli, ["tenants", "create", name]).exit_code == 0
    _one_error_line(runner.invoke(cli, ["keys", "create", "--tenant", name, "--scope", "runs:delete"]),
                    "VALIDATION_ERROR")


def test_a_revoked_key_no_longer_authenticates(aos_env, runner):
    name = _name()
    assert runner.invoke(cli, ["tenants", "create", name]).exit_code == 0
    out = json.loads(runner.invoke(cli, ["keys", "create", "--tenant", name, "--json"]).stdout)
    _auth(out["key"])

    res = runner.invoke(cli, ["keys", "revoke", "--tenant", name, out["prefix"]])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"key {out['prefix']} revoked"
    with pytest.raises(AosError) as exc:
        _auth(out["key"])
    assert exc.value.code == "AUTH_INVALID"

    _one_error_line(runner.invoke(cli, ["keys", "revoke", "--tenant", name, out["prefix"]]), "NOT_FOUND")


def test_a_key_cannot_be_revoked_through_another_tenant(aos_env, runner):
    owner, other = _name(), _name()
    for n in (owner, other):
        assert runner.invoke(cli, ["tenants", "create", n]).exit_code == 0
    out = json.loads(runner.invoke(cli, ["keys", "create", "--tenant", owner, "--json"]).stdout)
    _one_error_line(runner.invoke(cli, ["keys", "revoke", "--tenant", other, out["prefix"]]), "NOT_FOUND")
    assert _auth(out["key"]).tenant_name == owner


# --- skills -----------------------------------------------------------------------------------------------


def test_skills_list_shows_every_registered_skill(runner):
    res = runner.invoke(cli, ["skills", "list"])
    assert res.exit_code == 0, res.output
    for skill in default_registry().all():
        assert skill.ref in res.stdout


def test_skills_list_shows_full_skill_refs_on_an_80_column_terminal():
    res = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["skills", "list"])
    assert res.exit_code == 0
    for skill in default_registry().all():
        assert skill.ref in res.stdout


def test_skills_list_recommended_json_is_ranked_best_first(runner):
    res = runner.invoke(cli, ["skills", "list", "--recommended", "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    assert items[0]["name"] == "json.transform"
    ranks = [s["recommended"] for s in items]
    assert all(r is not None for r in ranks) and ranks == sorted(ranks)
    expected = {s.name for s in default_registry().all() if s.recommended is not None}
    assert {s["name"] for s in items} == expected
    assert len(items) < len(default_registry().all())  # some skills are not recommended


def test_skills_list_json_describes_all_skills(runner):
    res = runner.invoke(cli, ["skills", "list", "--json"])
    assert res.exit_code == 0, res.output
    names = [s["name"] for s in json.loads(res.stdout)]
    assert sorted(names) == sorted(s.name for s in default_registry().all())


# --- runs against a live API ------------------------------------------------------------------------------


@pytest.fixture
def api_url(live_api):
    return live_api


def test_submit_follow_quickstart_succeeds_and_lists_every_step(api_url, tenant, worker, runner):
    _, key = tenant
    res = runner.invoke(cli, ["runs", "submit", str(QUICKSTART), "--follow", "--url", api_url, "--api-key", key])
    assert res.exit_code == 0, res.output + worker.tail()
    for step in json.loads(QUICKSTART.read_text())["steps"]:
        assert step["id"] in res.stdout, step["id"]
    assert "run succeeded" in res.stdout
    assert res.stdout.count("✓") == 5


def test_submit_follow_json_then_show_and_list(api_url, tenant, worker, runner):
    _, key = tenant
    res = runner.invoke(cli, ["runs", "submit", str(QUICKSTART), "--follow", "--json", "--url", api_url,
                              "--api-key", key])
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)  # --json: stdout is exactly one JSON document
    assert run["status"] == "succeeded"

    shown = runner.invoke(cli, ["runs", "show", run["id"], "--json", "--url", api_url, "--api-key", key])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    assert body["id"] == run["id"] and [s["status"] for s in body["steps"]] == ["succeeded"] * 5

    listed = runner.invoke(cli, ["runs", "list", "--json", "--url", api_url, "--api-key", key])
    assert listed.exit_code == 0, listed.output
    assert run["id"] in [r["id"] for r in json.loads(listed.stdout)["items"]]


def test_submit_follow_of_a_failing_plan_exits_1_with_code_and_recovery(api_url, tenant, worker, runner,
                                                                        tmp_path):
    _, key = tenant
    plan = tmp_path / "invalid.json"
    plan.write_text(json.dumps(INVALID_INPUT_PLAN))
    res = runner.invoke(cli, ["runs", "submit", str(plan), "--follow", "--url", api_url, "--api-key", key])
    assert res.exit_code == 1, res.output
    assert "JSON_SCHEMA_MISMATCH" in res.stdout
    assert "suggested recovery" in res.stdout
    assert "run failed" in res.stdout


def test_submit_without_follow_prints_the_run_id(api_url, tenant, worker, runner):
    _, key = tenant
    res = runner.invoke(cli, ["runs", "submit", str(QUICKSTART), "--url", api_url, "--api-key", key])
    assert res.exit_code == 0, res.output
    words = res.stdout.split()
    assert words[0] == "run" and uuid.UUID(words[1]) and words[2] in ("queued", "running", "succeeded")


def test_submit_of_a_missing_file_fails_in_one_line(runner, tmp_path):
    line = _one_error_line(runner.invoke(cli, ["runs", "submit", str(tmp_path / "missing.json"),
                                               "--api-key", "aos_x_y"]), "NOT_FOUND")
    assert "missing.json" in line


def test_submit_of_malformed_json_fails_in_one_line(runner, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": [')
    line = _one_error_line(runner.invoke(cli, ["runs", "submit", str(bad), "--api-key", "aos_x_y"]),
                           "BODY_MALFORMED")
    assert "bad.json" in line and "line 1" in line


def test_submit_to_an_api_that_is_not_running_is_service_unavailable(runner):
    line = _one_error_line(runner.invoke(cli, ["runs", "submit", str(QUICKSTART), "--url", "http://127.0.0.1:1",
                                               "--api-key", "aos_x_y"]), "SERVICE_UNAVAILABLE")
    assert "cannot reach the API at http://127.0.0.1:1: start it with `aos dev` or `aos api`" in line


def test_submit_with_a_bad_api_key_is_auth_invalid(api_url, runner):
    _one_error_line(runner.invoke(cli, ["runs", "submit", str(QUICKSTART), "--url", api_url,
                                        "--api-key", "aos_nothere_secret"]), "AUTH_INVALID")


# --- help --------------------------------------------------------------------------------------------------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _command_paths(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


ALL_COMMANDS = list(_command_paths(cli))


@pytest.mark.parametrize(("path", "cmd"), ALL_COMMANDS, ids=[" ".join(p) or "aos" for p, _ in ALL_COMMANDS])
def test_every_command_has_help_with_a_description(path, cmd):
    assert (cmd.help or "").strip(), f"`aos {' '.join(path)}` has no description"
    res = CliRunner().invoke(cli, [*path, "--help"], prog_name="aos")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"Usage: {' '.join(('aos', *path))} ")
    # compared without whitespace: click wraps help text, and may break a line after a hyphen
    first_line = "".join(cmd.help.strip().splitlines()[0].split())
    assert first_line in "".join(res.stdout.split())


def test_the_command_tree_has_the_documented_commands():
    paths = {" ".join(p) for p, _ in ALL_COMMANDS}
    assert {"db upgrade", "db check", "tenants create", "keys create", "keys revoke", "runs submit",
            "runs show", "skills list", "docs generate", "dev", "quickstart", "worker", "beat", "api",
            "init", "simulate", "runs list", "runs cancel", "runs resume", "runs follow", "runs step",
            "workflows save", "workflows list", "workflows show", "workflows run", "agents create", "agents list",
            "agents show", "errors list", "errors show"} <= paths


def test_tenants_limits_shows_and_changes_a_tenants_quotas(runner, aos_env):
    import json as _json

    name = f"lim-{uuid.uuid4().hex[:8]}"
    assert runner.invoke(cli, ["tenants", "create", name]).exit_code == 0
    res = runner.invoke(cli, ["tenants", "limits", name, "--daily-runs", "7", "--key-rpm", "120",
                              "--daily-budget-usd", "2.5"])
    assert res.exit_code == 0, res.output
    assert "daily_runs" in res.stdout and "7" in res.stdout and "used 0" in res.stdout
    view = _json.loads(runner.invoke(cli, ["tenants", "limits", name, "--json"]).stdout)
    assert view["limits"]["daily_runs"] == 7 and view["own"]["key_requests_per_minute"] == 120
    assert view["limits"]["daily_budget_usd"] == 2.5 and view["usage"]["requests"] == 0
    res = runner.invoke(cli, ["tenants", "limits", name, "--daily-runs", "none", "--json"])
    assert _json.loads(res.stdout)["limits"]["daily_runs"] is None
    res = runner.invoke(cli, ["tenants", "limits", name, "--daily-runs", "many"])
    assert res.exit_code != 0 and "number or `none`" in res.output
    res = runner.invoke(cli, ["tenants", "limits", "no-such-tenant"])
    assert res.exit_code == 1 and "NOT_FOUND" in res.stderr
