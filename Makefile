# The hub's make targets. `make demo` and `make test` are the two README commands.
PY ?= .venv/bin/python
VENV_STAMP = .venv/.installed

.PHONY: install demo test test-cluster cluster-up cluster-down lint typecheck bench bench-dispatch bench-confirms bench-settles bench-reconcile profile chaos chaos-short converge schemas-check worker clean

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(VENV_STAMP)

install: $(VENV_STAMP)

demo: $(VENV_STAMP)
	.venv/bin/hub demo

# Three test processes (pytest-xdist), tests handed out as processes free up: most tests wait on RabbitMQ, Redis,
# PostgreSQL or a subprocess, and each has its own queue, key and schema prefix.
test: $(VENV_STAMP)
	.venv/bin/pytest -n 3 --dist worksteal

# A private 3-node RabbitMQ cluster, Redis with 3 sentinels and PostgreSQL (chaos/cluster.py); cluster-up prints the
# HUB_* to use.
cluster-up: $(VENV_STAMP)
	$(PY) -m chaos.cluster up

cluster-down: $(VENV_STAMP)
	$(PY) -m chaos.cluster down

# Boots its own cluster (a few minutes): a node and the Redis primary killed under load, nothing lost.
test-cluster: $(VENV_STAMP)
	.venv/bin/pytest -m cluster tests/test_cluster.py

lint: typecheck
	.venv/bin/ruff check hub actors connectors observability simulators tests bench chaos
	.venv/bin/lint-imports

typecheck: $(VENV_STAMP)
	.venv/bin/mypy

schemas-check: $(VENV_STAMP)
	.venv/bin/hub schemas check

worker: $(VENV_STAMP)
	.venv/bin/hub worker

bench: $(VENV_STAMP)
	$(PY) -m bench.run

bench-dispatch: $(VENV_STAMP)
	$(PY) -m bench.dispatch

# The fan-out's topic publishes, one confirming channel per process against one per thread (about a minute); the
# suite runs a short version (tests/test_confirms_bench.py).
bench-confirms: $(VENV_STAMP)
	$(PY) -m bench.confirms

# The ingress's settle held for the next request's round trip against one of its own (about ten minutes); the suite
# runs a short version (tests/test_settles_bench.py).
bench-settles: $(VENV_STAMP)
	$(PY) -m bench.settles

# Reconciliation at 10k and 100k projects with 1% drift per class (a few minutes): time, pages, CPU, peak RSS,
# precision and recall; the suite runs the quick version (tests/test_reconcile_bench.py).
bench-reconcile: $(VENV_STAMP)
	$(PY) -m bench.reconcile

profile: $(VENV_STAMP)
	$(PY) -m bench.profile

# The fault suite (docs/reliability.md): private servers on their own ports, 10,000 events per scenario (hours),
# then the failovers on a private cluster; fails when either missed a target, after both ran.
chaos: $(VENV_STAMP)
	$(PY) -m chaos --events 10000 --rate 6; single=$$?; \
	$(PY) -m chaos.cluster run --events 10000 --rate 20; cluster=$$?; \
	exit $$(( single || cluster ))

# Its short version: every scenario of tests/test_chaos.py (the ones marked chaos too) and of tests/test_cluster.py.
chaos-short: $(VENV_STAMP)
	.venv/bin/pytest -m "" tests/test_chaos.py tests/test_cluster.py

# The convergence property at length: 50 delivery orders per scenario, drawn at random (tests/test_convergence.py).
converge: $(VENV_STAMP)
	.venv/bin/pytest -n 3 --dist worksteal tests/test_convergence.py --convergence-examples=50 --timeout=7200

clean:
	rm -rf .venv build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
