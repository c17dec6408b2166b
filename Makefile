# Two commands do all the set-up: `make up` runs the stack, `make test` tests it.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers. make test's tests mostly wait on real processes, so three keep two cores
# busy; the reliability scenarios time fault windows and get two.
TEST_WORKERS ?= 3
RELIABILITY_WORKERS ?= 2
FAULT_WORKERS ?= 3
LONG_WORKERS ?= 4
# uv installs the lock file; bootstrapped with pip when the machine has none.
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export DO_NOT_TRACK := 1

.PHONY: up down status certs plan apply test containers reliability faults long soak bench \
	bench-plan bench-curves lint format clean

$(UV):
	python3 -m pip install --user --quiet "uv==0.13.9"  # the version uv.lock was written with

# --compile-bytecode: once here, instead of in every process that first imports Prefect (make up
# and the tests start many at once on a fresh clone).
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python python3.11 --compile-bytecode
	touch $@

# `make up DB=sqlite`: Prefect's embedded SQLite instead of PostgreSQL from the wheel.
up: $(VENV)/.synced  ## PostgreSQL + server + pool + deployments + worker with its warm launcher
	$(if $(DB),LOCAL_DATABASE=$(DB)) $(PY) -m stack up

down:  ## stop exactly what `make up` started (the database's data stays)
	@if [ -x $(PY) ]; then $(PY) -m stack down; fi

status:
	$(PY) -m stack status

# NAMES: the DNS names and IP addresses the server answers to (localhost and 127.0.0.1 always).
certs: $(VENV)/.synced  ## a private CA and a server certificate in certs/ (git-ignored)
	$(PY) -m stack.certs $(NAMES)

# Against PREFECT_API_URL (and PREFECT_API_AUTH_STRING), like every Prefect client, or the
# server of TARGET, a named target of prefect.yaml (deployments/targets.py): `make plan
# TARGET=prod`. ARGS passes options through, e.g. `make plan ARGS=--json`, `make apply ARGS=--prune`.
plan: $(VENV)/.synced  ## what apply would change: exit 0 none, 2 changes, 1 error
	$(PY) -m deployments plan $(if $(TARGET),--target $(TARGET)) $(ARGS)

apply: $(VENV)/.synced  ## make the server match prefect.yaml (pool, deploy, schemas, automations)
	$(PY) -m deployments apply $(if $(TARGET),--target $(TARGET)) $(ARGS)

# Every test carries the marker of its folder of tests/ (tests/conftest.py); each target below runs
# its own folders (docs/testing.md, held together by tests/integrity/test_layout.py).
# Debian installs the PostgreSQL server binaries off PATH.
PYTEST := PATH="$$PATH:/usr/lib/postgresql/15/bin" $(VENV)/bin/pytest

# tests/conftest.py gives each xdist worker whole units of work, all the tests on one live stack
# or one module, longest first, so each stack starts once.
test: $(VENV)/.synced  ## unit, integrity, end-to-end, browser and compose tests against real processes
	scripts/install-test-tools
	$(PYTEST) -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		-m "not reliability and not containers and not faults"

# docker-compose.yml and the Dockerfile on a real Docker engine with Compose v2: installs the
# engine, starts dockerd (overlay2, else vfs) unless one answers, builds stand-ins for base
# images no registry serves here (scripts/install-docker), then a stack with the docker-pool
# profile and one without: up, runs, checks, down -v. Needs root.
containers: $(VENV)/.synced  ## the compose stack in real containers (CI runs it after make test)
	scripts/install-docker
	$(PYTEST) -m containers tests/containers

# Fault injection (killed, hung and restarted processes, a hung server), the concurrency burst and
# 50 runs at once through 3 workers on PostgreSQL, exactly once; reports in results/. Two xdist
# workers, a file each at a time: the scenarios mostly wait out their fault's window, and a file's
# tests share its stack; each worker starts the live stack once.
reliability: $(VENV)/.synced  ## the long reliability scenarios (CI runs them after make test)
	scripts/install-test-tools
	SOAK_RUNS=50 SOAK_WORKERS=3 $(PYTEST) -n $(RELIABILITY_WORKERS) --dist loadfile \
		-m reliability tests/reliability

# The fault matrix: per cell a stack, a burst of the product's runs, one fault at a seeded random
# moment (the seed is printed; FAULT_SEED=<seed> repeats it), the recovery, the invariants over
# every run, then `make down`, which must leave nothing; tests/faults/matrix.py writes
# docs/reliability.md's table. Every `make up` cell has a state directory (and database) of its
# own, so any xdist worker takes it: most of a cell is waiting out its fault and the recovery. The
# compose cells of a profile share one stack, on one worker (their xdist group). Needs root and
# the Docker engine (scripts/install-docker).
faults: $(VENV)/.synced  ## the fault matrix; writes its table into docs/reliability.md
	scripts/install-test-tools
	scripts/install-docker
	rm -rf results/faults
	$(PYTEST) -n $(FAULT_WORKERS) --dist loadgroup -m faults tests/faults
	$(PY) -m tests.faults.matrix

# Containers, reliability and the fault matrix in one pytest session (what CI runs after make
# test), LONG_WORKERS xdist workers taking whole units of work (tests/conftest.py: a stack's
# tests, a fault cell), longest first. Most of it is waiting out fault windows, so more workers
# than cores share the machine (docs/testing.md has the CPUs' busy share).
long: $(VENV)/.synced  ## make containers, make reliability and make faults in one session
	scripts/install-test-tools
	scripts/install-docker
	rm -rf results/faults
	SOAK_RUNS=50 SOAK_WORKERS=3 $(PYTEST) -n $(LONG_WORKERS) --dist loadscope --no-loadscope-reorder --durations=60 \
		-m "containers or reliability or faults" tests/containers tests/reliability tests/faults
	$(PY) -m tests.faults.matrix

soak: $(VENV)/.synced  ## 300 runs through 2 workers on PostgreSQL
	scripts/install-test-tools
	SOAK_RUNS=300 SOAK_WORKERS=2 PATH="$$PATH:/usr/lib/postgresql/15/bin" \
		$(VENV)/bin/pytest --timeout 2400 tests/reliability/test_exactly_once.py

bench: $(VENV)/.synced  ## Prefect defaults vs tuned (SQLite, PostgreSQL) vs plain Python; results/bench.*
	PATH="$$PATH:/usr/lib/postgresql/15/bin" $(PY) -m bench.run

bench-plan: $(VENV)/.synced  ## plan and a no-op apply with 200 deployments; into docs/performance.md
	PATH="$$PATH:/usr/lib/postgresql/15/bin" $(PY) -m bench.plan_scale 200

bench-curves: $(VENV)/.synced  ## cost by workers, runs at once, deployments, history, retention
	PATH="$$PATH:/usr/lib/postgresql/15/bin" $(PY) -m bench.curves

lint: $(VENV)/.synced  ## ruff; actionlint and zizmor (offline) on .github/workflows
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --quiet .github/workflows

format: $(VENV)/.synced
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: down
	rm -rf .prefect-local .pytest_cache
