# infergraph: everything a newcomer needs is `make demo` and `make test`.
# Every target installs what it needs itself (uv, both virtualenvs, nginx for the load benchmark).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# A Python 3.12 interpreter: PATH first, then pyenv's, then the system's.
PY312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { command -v "$$p" || echo "$$p"; } && break; done)
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON := $(PY312)
export UV_LINK_MODE := copy
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
RUN := $(UV) run --frozen --no-sync
RUN_SELDON := UV_PROJECT_ENVIRONMENT=.venv-seldon $(UV) run --frozen --no-sync --no-default-groups --group seldon-dev --extra seldon

.PHONY: help install demo test lint unit seldon-test render crd bench-runtimes bench-hops bench-kserve-hops bench-loadtester clean

help:
	@echo "make demo    serve the cascade graph locally (offline weights), load it, print latency and cost"
	@echo "make test    lint, then every test (MLServer, graphs, renderers, load tester, Seldon v1)"
	@echo "make bench-runtimes | bench-hops | bench-kserve-hops | bench-loadtester    benchmarks -> bench-results/*.json"
	@echo "make render  regenerate k8s/rendered/ and k8s/crds/ from k8s/graphs/"

$(UV):
	@test -n "$(PY312)" || { echo "error: Python 3.12 not found (python3.12, pyenv or /usr/bin)"; exit 1; }
	$(PY312) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: $(UV) pyproject.toml uv.lock async_load_tester/pyproject.toml
	$(UV) sync --frozen --extra mlserver
	@touch $@

.venv-seldon/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=.venv-seldon $(UV) sync --frozen --extra seldon --no-default-groups --group seldon-dev
	@touch $@

install: .venv/.synced .venv-seldon/.synced

demo: .venv/.synced
	$(RUN) infergraph demo

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .

unit: .venv/.synced
	$(RUN) python -m pytest -q --ignore=tests/seldon

seldon-test: .venv-seldon/.synced
	$(RUN_SELDON) python -m pytest -q tests/seldon

test: lint unit seldon-test

render: .venv/.synced
	$(RUN) infergraph crd --out k8s/crds/infergraph.io_inferencegraphs.yaml
	$(RUN) infergraph render --all --out k8s/rendered --storage-uri s3://REPLACE-WITH-YOUR-BUCKET/infergraph

bench-runtimes: .venv/.synced
	$(RUN) python benchmarks/bench_runtimes.py

bench-hops: .venv/.synced
	$(RUN) python benchmarks/bench_hops.py

bench-kserve-hops: .venv/.synced
	$(RUN) python benchmarks/bench_kserve_hops.py

bench-loadtester: .venv/.synced
	$(RUN) python async_load_tester/bench/bench_loadtester.py

clean:
	rm -rf .venv .venv-seldon $(TOOLS) .pytest_cache .ruff_cache
