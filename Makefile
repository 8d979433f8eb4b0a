# TailLab: `make run` opens the dashboard, `make test` runs every test (browser tests included).
# The venv is rebuilt only when a requirements file or pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.taillab-installed
PORT ?= 8501

.PHONY: setup run test test-fast browser bench bench-history clean

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	@echo ">> creating $(VENV) and installing (first time: a few minutes) ..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-data.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m engine.cli dashboard --port $(PORT)

# Debian's Chromium for the Playwright browser tests (never `playwright install`: no internet).
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ; }

test: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not browser and not slow"

bench: setup
	$(PY) -m benchmarks.train_overhead

# the store with 2000 runs / 10 M metric rows: Runs-page query and curves timings (docs/store.md)
bench-history: setup
	flock /tmp/taillab-bench.lock $(PY) -m benchmarks.history --runs 2000

clean:
	rm -rf $(VENV) .pytest_cache
