"""docs/skills.md, followed as written: its module and pyproject.toml are built into a wheel, installed next
to AOS, and the skill is listed by `aos skills list`, accepted in a plan, and runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "skills.md"


def _block(lang: str, first_line: str) -> str:
    for body in re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S):
        if body.startswith(first_line):
            return body
    raise AssertionError(f"docs/skills.md has no {lang} block starting with {first_line!r}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The documented package, built and installed into a directory of its own (on PYTHONPATH below)."""
    tmp = tmp_path_factory.mktemp("acme")
    pkg = tmp / "acme-skills"
    pkg.mkdir()
    (pkg / "acme_skills.py").write_text(_block("python", "# acme_skills.py"))
    (pkg / "pyproject.toml").write_text(_block("toml", "# pyproject.toml"))
    target = tmp / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(pkg)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return target


def _aos(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "aos", *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_documented_skill_is_listed_once_installed(site):
    res = _aos(site, "skills", "list")
    assert res.returncode == 0, res.stderr
    [row] = [line for line in res.stdout.splitlines() if line.startswith("acme.greet@1 ")]
    assert "Greet someone by name" in row and "pure" in row
    described = {s["ref"]: s for s in json.loads(_aos(site, "skills", "list", "--json").stdout)}
    assert described["acme.greet@1"]["summary"] == "Greet someone by name"


def test_the_documented_plan_validates_and_the_skill_runs(site):
    plan = json.loads(re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)[-1])
    probe = (
        "import json, sys\n"
        "from aos.config import load_settings\n"
        "from aos.plan import parse_plan\n"
        "from aos.runtime.invoke import invoke_skill\n"
        "from aos.skills.base import SkillContext\n"
        "from aos.skills.registry import default_registry\n"
        "reg = default_registry()\n"
        f"plan = parse_plan(json.loads({json.dumps(json.dumps(plan))}), reg)\n"
        "ctx = SkillContext(run_id='r', step_id='greet', attempt=1, tenant_id='t', settings=load_settings({}))\n"
        "ok, _ = invoke_skill(reg.resolve(plan.steps[0].skill), plan.steps[0].args, ctx)\n"
        "bad, _ = invoke_skill(reg.resolve('acme.greet'), {'name': ' '}, ctx)\n"
        "print(json.dumps([ok.output, bad.error.code]))\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == [{"greeting": "Hello, Ada!"}, "SKILL_ARGS_INVALID"]
