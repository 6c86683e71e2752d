"""The package as an operator installs it: `pip install .` (what the Dockerfile does) gives an `aos` that
migrates an empty database and runs a plan, with no source tree beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from aos.db.migrate import current_revision, head_revision
from tests.ops.conftest import ROOT

# What a clean checkout holds; the build must not depend on anything a developer's tree has besides.
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     ".ruff_cache", ".aos-data")


def _run(args: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert res.returncode == 0, f"{' '.join(args)} exited {res.returncode}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree, installed into a new virtualenv; its `bin/` directory.

    The wheel is installed with --no-deps and the venv sees the test venv's site-packages for the
    dependencies (a .pth line: only a path, so the test venv's editable `aos` finder is not loaded):
    the package under test is the wheel's, nothing is fetched."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
          str(src)], timeout=300)
    [wheel] = (tmp / "dist").glob("aos-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
          "--no-index", str(wheel)], timeout=300)
    site = _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                timeout=30).stdout.strip()
    (Path(site) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.rmtree(src)  # nothing may be read from the source tree after the install
    return venv / "bin"


def test_the_wheel_ships_the_migrations(installed):
    out = _run([str(installed / "python"), "-c",
                "import aos, aos.db.migrate as m; print(aos.__file__); print(m.MIGRATIONS); print(m.head_revision())"],
               timeout=60, cwd=installed).stdout.split()
    pkg, migrations, head = out
    assert pkg.startswith(str(installed.parent)), f"aos imported from {pkg}, not from the installed wheel"
    assert migrations.startswith(str(installed.parent)) and (Path(migrations) / "versions").is_dir()
    assert head == head_revision()


def test_the_wheel_ships_the_console(installed):
    """The console's templates and assets are package data: its sign-in page renders from the installed wheel."""
    script = ("import os; os.environ.setdefault('AOS_SECRET_KEY', 'x'); "
              "from aos.web.app import create_app; c = create_app(publisher=object()).test_client(); "
              "r = c.get('/console/sign-in'); print(r.status_code, 'id=\"credential\"' in r.get_data(as_text=True)); "
              "import re; a = re.findall('/console/assets/[^\"]+', r.get_data(as_text=True)); "
              "print(len(a), all(c.get(u).status_code == 200 for u in a))")
    out = _run([str(installed / "python"), "-c", script], timeout=120, cwd=installed).stdout.split()
    assert out == ["200", "True", "2", "True"], out


def test_installed_aos_migrates_an_empty_database_and_runs_a_plan(installed, servers, aos_env, tmp_path):
    name = f"aos_wheel_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    url = servers.database_url(name)
    env = {**os.environ, **aos_env, "AOS_DATABASE_URL": url, "AOS_DATA_DIR": str(tmp_path / "data"),
           "AOS_STEP_QUEUE": f"aos.steps.wheel.{uuid.uuid4().hex[:8]}", "AOS_QUICKSTART_NO_WIZARD": "1",
           "COLUMNS": "120"}
    try:
        assert current_revision(url) is None
        upgraded = _run([str(installed / "aos"), "db", "upgrade"], timeout=120, env=env, cwd=tmp_path)
        assert "Traceback" not in upgraded.stdout + upgraded.stderr
        assert current_revision(url) == head_revision()

        # quickstart with the URLs set: the installed worker, beat and API run the demo plan on this database
        ran = _run([str(installed / "aos"), "quickstart", "--data-dir", str(tmp_path / "data"), "--timeout", "120"],
                   timeout=240, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert "run succeeded" in ran.stdout, ran.stdout
    finally:
        servers.drop_database(name)
