"""The deployment and operations files: alert rules and Prometheus config pass promtool (and the alerts'
unit tests), the Grafana dashboard queries only metrics AOS exports and covers all of them, every alert
has its runbook section, and docker-compose/Procfile describe the processes the issue asks for."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from aos import metrics
from tests.ops.conftest import ROOT

PROM = ROOT / "ops" / "prometheus"
RULES = PROM / "rules" / "aos.rules.yml"
DASHBOARDS = ROOT / "ops" / "grafana" / "dashboards"
RUNBOOK = ROOT / "docs" / "operations.md"


def _run(*args: str, cwd=None) -> str:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd)
    assert res.returncode == 0, f"{' '.join(args)}:\n{res.stdout}{res.stderr}"
    return res.stdout + res.stderr


def test_alert_rules_pass_promtool_check(promtool):
    out = _run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in out


def test_alert_rules_fire_when_they_should_promtool_unit_tests(promtool):
    out = _run(promtool, "test", "rules", "aos.rules.test.yml", cwd=PROM / "rules")
    assert "SUCCESS" in out


def test_prometheus_config_is_valid_and_loads_the_rules(promtool, tmp_path):
    # The config names the rules where the compose file mounts them; point it at the repository copy.
    config = (PROM / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/*.rules.yml" in config
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/rules/*.rules.yml", str(PROM / "rules" / "*.rules.yml")))
    out = _run(promtool, "check", "config", str(local))
    assert "SUCCESS: 1 rule files found" in out, out
    jobs = {j["job_name"] for j in yaml.safe_load(config)["scrape_configs"]}
    assert {"aos-api", "aos-worker"} <= jobs


def test_every_alert_has_a_runbook_section():
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.M)}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert len(rules) >= 6
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in headings, f"{rule['alert']}: docs/operations.md has no section #{anchor}"
        assert rule["alert"] in RUNBOOK.read_text(), f"{rule['alert']} is not explained in the runbook"


def _exported_names() -> dict[str, set[str]]:
    """Family name -> the sample names Prometheus stores for it, for every metric in aos.metrics."""
    from prometheus_client.metrics import MetricWrapperBase

    names: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(obj._type, [""])
            names[obj._name] = {obj._name + s for s in suffixes}
    for name in metrics.SCRAPE_GAUGES:
        names[name] = {name}
    return names


def _dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"]
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                exprs.append(target["expr"])
    assert exprs, "no dashboard queries"
    return exprs


def test_dashboard_queries_only_metrics_that_exist_and_covers_them_all():
    exported = _exported_names()
    sample_names = set().union(*exported.values())
    used: set[str] = set()
    for expr in _dashboard_exprs():
        for name in re.findall(r"\baos_[a-z0-9_]+", expr):
            assert name in sample_names, f"dashboard queries {name!r}, which aos.metrics does not export"
            used.add(name)
    unused = [family for family, samples in exported.items() if not samples & used]
    assert not unused, f"metrics missing from the dashboard: {unused}"


def test_alert_rules_query_only_metrics_that_exist():
    sample_names = set().union(*_exported_names().values())
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        for name in re.findall(r"\baos_[a-z0-9_]+", rule["expr"]):
            assert name in sample_names, f"{rule['alert']} queries {name!r}, which aos.metrics does not export"


def test_grafana_provisioning_matches_the_compose_mounts():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ds = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    dash = json.loads((DASHBOARDS / "aos-overview.json").read_text())
    # the datasource is a template variable (any Prometheus can be picked), defaulting to the provisioned one
    [var] = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert var["query"] == "prometheus" and var["current"]["value"] == uid
    for expr_panel in dash["panels"]:
        if expr_panel.get("targets"):
            assert expr_panel["datasource"] == {"type": "prometheus", "uid": f"${{{var['name']}}}"}
            for target in expr_panel["targets"]:
                assert target["datasource"]["uid"] == f"${{{var['name']}}}"
    provider = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/aos.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{path}:ro" in mounts
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./ops/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def test_compose_has_every_process_and_a_broker_that_never_evicts():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "api", "worker", "beat", "flower", "prometheus", "grafana"} <= set(services)
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_cmd and "--appendonly yes" in redis_cmd
    assert services["worker"]["environment"]["AOS_WORKER_METRICS_PORT"] == "9808"
    assert services["flower"]["command"][:2] == ["aos", "flower"]


def test_procfile_runs_web_worker_beat_and_flower():
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(lines) == {"web", "worker", "beat", "flower"}
    assert "aos api" in lines["web"]
    assert "aos worker" in lines["worker"] and "AOS_WORKER_METRICS_PORT" in lines["worker"]
    assert "aos beat" in lines["beat"] and "aos flower" in lines["flower"]


def test_make_test_installs_promtool_first():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\bpromtool\b", makefile, flags=re.M)
    assert "apt-get install" in makefile and "prometheus" in makefile


def test_the_procfile_api_port_agrees_with_aos_init_under_foreman_and_honcho():
    """foreman and honcho give the first process PORT=5000; `aos init` writes AOS_URL on port 8000. The web line
    must not follow PORT, or `aos runs list` cannot reach the API the Procfile started."""
    from urllib.parse import urlsplit

    from aos.cli.init import init
    from aos.cli.processes import api
    from aos.config import API_PORT, DEFAULT_API_URL

    web = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())["web"]
    for env, port in (({"PORT": "5000"}, API_PORT), ({"PORT": "5000", "AOS_API_PORT": "8123"}, 8123)):
        expanded = subprocess.run(["sh", "-c", f"echo {web}"], capture_output=True, text=True, env=env).stdout
        assert f"--bind 0.0.0.0:{port} " in expanded, expanded
    init_url = next(p.default for p in init.params if p.name == "api_url")
    api_bind = next(p.default for p in api.params if p.name == "bind")
    assert urlsplit(init_url).port == urlsplit(DEFAULT_API_URL).port == int(api_bind.rsplit(":", 1)[1]) == API_PORT
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    assert f"0.0.0.0:{API_PORT}" in compose["command"] and f"{API_PORT}:{API_PORT}" in compose["ports"]


def _dockerfile() -> list[tuple[str, str]]:
    lines, joined = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not joined:
            continue
        joined += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if joined.strip():
                word, _, rest = joined.strip().partition(" ")
                lines.append((word.upper(), rest))
            joined = ""
    return lines


def test_the_image_runs_as_an_unprivileged_user_with_a_writable_data_dir():
    instructions = _dockerfile()
    users = [i for i, (word, _) in enumerate(instructions) if word == "USER"]
    assert users, "the image runs as root"
    last_user, user = users[-1], instructions[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    assert all(word != "RUN" for word, _ in instructions[last_user:]), "a RUN after USER runs as that user"
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    data_dir = re.search(r"AOS_DATA_DIR=(\S+)", env).group(1)
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert f"chown {user}:{user} {data_dir}" in run or f"chown {user} {data_dir}" in run
    assert "pip install" in run and "useradd" in run


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, as far as these patterns need: a pattern matches the path or a parent
    of it; `**/` matches at any depth."""
    from fnmatch import fnmatch

    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        if pat.startswith("**/"):
            if any(fnmatch(part, pat[3:]) for part in parts):
                return True
        elif any(fnmatch(prefix, pat) for prefix in prefixes):
            return True
    return False


def test_the_build_context_leaves_out_the_venv_git_caches_and_secrets():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for rel in (".venv/bin/python", ".git/HEAD", "aos/__pycache__/config.cpython-311.pyc", "aos.env",
                ".pytest_cache/v/x", "build/lib/aos/x.py", "aos.egg-info/PKG-INFO", ".aos-data/postgres/x"):
        assert _ignored(rel, patterns), f"{rel} would be sent to the image build"
    for rel in ("aos/cli/main.py", "migrations/versions/0001_initial_schema.py", "aos/migrations", "pyproject.toml",
                "README.md", "config/aos.env.example", "aos/web/static/redoc/redoc.standalone.js"):
        assert not _ignored(rel, patterns), f"{rel} is needed by the image and ignored"
def test_compose_reads_every_secret_from_its_env_file_with_no_default():
    """No placeholder secret ships in the compose file: each comes from .env, and compose refuses to start
    (the `:?` form) while one is missing; .env.example lists them, empty, and .env is never committed."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text and ":-admin" not in text
    compose = yaml.safe_load(text)
    services, env = compose["services"], compose["x-aos-env"]
    required = {"POSTGRES_PASSWORD", "AOS_SECRET_KEY", "AOS_GOLDEN_SECRET", "GRAFANA_ADMIN_PASSWORD",
                "FLOWER_BASIC_AUTH"}
    for name in required:
        assert f"${{{name}:?" in text, name
    assert "${POSTGRES_PASSWORD:?" in env["AOS_DATABASE_URL"] and ":aos@" not in env["AOS_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    example = {line.split("=", 1)[0]: line.split("=", 1)[1]
               for line in (ROOT / ".env.example").read_text().splitlines() if line and not line.startswith("#")}
    assert set(example) == required and all(v == "" for v in example.values())
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    ops = (ROOT / "docs" / "operations.md").read_text()
    assert "Secrets for docker compose" in ops and "token_hex(32)" in ops


def test_the_procfile_keeps_flower_on_loopback_unless_told():
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert "0.0.0.0" not in lines["flower"] and "${FLOWER_ADDRESS:-127.0.0.1}" in lines["flower"]
