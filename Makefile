# Two commands for a fresh machine with Python 3.11+ and make:
#   make quickstart   — virtualenv, install, run a demo plan on the embedded default
#   make test         — virtualenv with test dependencies, then the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: quickstart test lint venv bench bench-api wrk clean docs promtool browser systemd-analyze determinism

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/aos quickstart

test: $(STAMP) promtool browser systemd-analyze
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# promtool (Debian package `prometheus`) checks the metrics exposition and the alert rules in tests/ops; the
# same package's server scrapes a real API and worker there (tests/ops/test_alerts_scraped.py), and
# Alertmanager with amtool (`prometheus-alertmanager`) checks ops/alertmanager (tests/ops/test_alertmanager.py).
# Installed when missing if we are root with apt-get; otherwise tests/ops fail and say how to install it.
promtool:
	@{ command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool and amtool (apt-get install prometheus prometheus-alertmanager)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager >/dev/null; } || \
	      echo "warning: could not install promtool; tests/ops will fail" >&2; \
	  else echo "warning: promtool missing and cannot apt-get install prometheus (not root); tests/ops will fail" >&2; \
	  fi; }

# Headless Debian chromium and its driver: tests/web/test_docs_ui.py and test_console_browser.py render the API docs
# pages and the console in a real browser and check that they request nothing off the machine. Installed like promtool.
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (apt-get)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } || \
	      echo "warning: could not install chromium; tests/web/test_docs_ui.py will fail" >&2; \
	  else echo "warning: chromium missing and cannot apt-get install it (not root); tests/web/test_docs_ui.py will fail" >&2; \
	  fi; }

# systemd-analyze (Debian package `systemd`) verifies the units in ops/systemd (tests/ops/test_systemd.py).
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing systemd-analyze (apt-get install systemd)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends systemd >/dev/null; } || \
	      echo "warning: could not install systemd-analyze; tests/ops/test_systemd.py skips its verify" >&2; \
	  else echo "warning: systemd-analyze missing and cannot apt-get install it (not root); the units go unverified" >&2; \
	  fi; }

# ruff; import-linter keeps the layers (.importlinter: imports point down, no circles); mypy on aos/
lint: $(STAMP)
	$(BIN)/ruff check aos tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.steps

# bench.api loads the API with wrk (Debian package `wrk`): a load generator that costs the two cores little, so the
# figure measures the server; without it the bench falls back to Python threads and says so (a floor, not the figure).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing wrk (apt-get install wrk)"; \
	    { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq wrk >/dev/null 2>&1; }; } || echo "warning: could not install wrk" >&2; \
	  else echo "warning: wrk missing and cannot apt-get install it (not root)" >&2; fi; }

bench-api: $(STAMP) wrk
	$(BIN)/python -m bench.api --repeat 3 --dispatch

determinism: $(STAMP)
	$(BIN)/python -m bench.determinism --iterations $(or $(ITERATIONS),200) --workers $(or $(WORKERS),2)

docs: $(STAMP)
	$(BIN)/aos docs generate

clean:
	rm -rf $(VENV) .pytest_cache
