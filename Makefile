# Burt's Books live. `make demo` runs a local cluster; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-ha demo-cluster bench-cluster test test-compose deps-docker lint load drill drills load-scaling bench-load test-unit test-integration test-e2e deps deps-browser screenshots venv bench-fanout bench-toggle bench-seed bench-seed-deps clean

# The virtualenv is rebuilt whenever pyproject.toml changes.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint,load]'
	touch $@

# Debian packages (installed with apt-get when missing and running as root).
deps:
	scripts/ensure-system-deps.sh redis-server nginx

# Headless Chromium and its driver for tests/e2e (Debian's; nothing is downloaded at run time).
deps-browser:
	scripts/ensure-system-deps.sh chromium chromedriver

# A Docker engine (started privately by the test when none runs), Debian's docker-compose
# 1.29, and mmdebstrap for stand-in base images where no registry answers (tests/compose).
deps-docker:
	scripts/ensure-system-deps.sh dockerd docker-compose mmdebstrap iptables ip

# `make demo BOOKS=2000 [COPIES=5]` serves a generated catalog of that many books
demo: deps venv
	$(BIN)/python -m service up --instances $${BB_DEMO_INSTANCES:-3}$(if $(BOOKS), --books $(BOOKS))$(if $(COPIES), --copies $(COPIES))

# the same with Redis under Sentinel: a primary, two replicas and three sentinels
demo-ha: deps venv
	$(BIN)/python -m service up --instances $${BB_DEMO_INSTANCES:-3} --redis-ha

# the same on a Redis Cluster: SHARDS shards (default 3), each a primary and a replica
demo-cluster: deps venv
	$(BIN)/python -m service up --instances $${BB_DEMO_INSTANCES:-3} --redis-cluster$(if $(SHARDS), --redis-shards $(SHARDS))$(if $(BOOKS), --books $(BOOKS))

test: venv lint deps deps-browser deps-docker
	$(BIN)/pytest -q

# docker-compose.yml built and run on a real Docker engine (part of `make test`)
test-compose: deps-docker venv
	$(BIN)/pytest -q tests/compose

# Style (ruff), types (mypy --strict on service/), the direction of imports between the
# parts of service/ (import-linter, pyproject.toml) and no cycle or oversized module.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_layout.py

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-integration: deps venv
	$(BIN)/pytest -q tests/integration

test-e2e: deps deps-browser venv
	$(BIN)/pytest -q tests/e2e

# The README's docs/screenshots/*.png, from a real cluster in headless Chromium.
screenshots: deps deps-browser venv
	$(BIN)/python scripts/screenshots.py

bench-fanout: deps venv
	$(BIN)/python bench/fanout.py $(ARGS)

# Redis CPU per change on one Redis and on a 3-shard cluster with PUBLISH and SPUBLISH,
# what that predicts as shards are added, and fan-out p99 cluster vs single.
bench-cluster: deps venv
	$(BIN)/python bench/cluster.py $(ARGS)

# One instance, 2,000 sockets, one client toggling a book as fast as it can: frames per
# socket per second and /readyz latency, with BB_PUSH_INTERVAL_S 0 (baseline) and 0.05.
bench-toggle: deps venv
	$(BIN)/python bench/toggle.py $(ARGS)

# Load test of the running `make demo` cluster, with a verdict (service/load/).
load: venv
	$(BIN)/python -m service load $(ARGS)

# The runbook's exercises under load, judged (service/drills/), against the running
# `make demo` cluster: `make drill NAME=kill-node [ARGS=...]`, or every drill.
drill: venv
	@test -n "$(NAME)" || { echo "usage: make drill NAME=<drill> (see deploy/RUNBOOK.md)"; exit 2; }
	$(BIN)/python -m service drill $(NAME) $(ARGS)

drills: venv
	$(BIN)/python -m service drill all $(ARGS)

# Cart throughput and delivery lag against 1, 2, 3 instances: docs/load-scaling.png.
load-scaling: deps venv
	$(BIN)/python bench/load.py scaling $(ARGS)

# The largest load that still passes (3 instances, 2,000 books), and cart POSTs/s
# through nginx against a bare handler (wrk).
bench-load: deps venv
	scripts/ensure-system-deps.sh wrk
	$(BIN)/python bench/load.py capacity $(ARGS)

# The chapter's siege benchmark (tweets per second): blocking, async, cached, bare.
bench-seed-deps:
	scripts/ensure-system-deps.sh redis-server siege

bench-seed: bench-seed-deps venv
	$(BIN)/python bench/seed.py $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache *.egg-info
