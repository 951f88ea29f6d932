# infergraph: everything a newcomer needs is `make demo` and `make test`.
# Every target installs what it needs itself (uv, both virtualenvs, nginx for the load benchmark,
# Debian's prometheus for the scaling-query test, Debian's rclone for the Seldon v2 settings tests).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# A Python 3.12 interpreter: PATH first, then pyenv's, then the system's.
PY312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { command -v "$$p" || echo "$$p"; } && break; done)
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON := $(PY312)
export UV_LINK_MODE := copy
# Every virtualenv gets its bytecode compiled once, at install (30 s for the main one here). A
# shell with PYTHONDONTWRITEBYTECODE set, as this machine's is, otherwise compiles torch,
# transformers and torchvision from source in every process that imports them: 16 s instead of
# 7 s to import the ViT and DETR classes, paid by each server a test starts.
export UV_COMPILE_BYTECODE := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
RUN := $(UV) run --frozen --no-sync
RUN_SELDON := UV_PROJECT_ENVIRONMENT=.venv-seldon $(UV) run --frozen --no-sync --no-default-groups --group seldon-dev --extra seldon

.PHONY: help install demo test test-fast lint unit seldon-test render crd bench-runtimes bench-hops bench-loadtester bench-loadtester-truth wrk \
	bench-peers bench-coldstart bench-gpu bench-gpu-smoke bench-planner bench-planner-controlled timing-test planner-gpu-profiles bench-kserve-hops engine-test images image-test bench-images image-tools clean \
	perf-analyzer prometheus rclone

help:
	@echo "make demo    serve the cascade locally (random weights), find its knee, price it, plan it, render it"
	@echo "make test    lint, then every test (MLServer, graphs, renderers, load tester, Seldon v1)"
	@echo "make test-fast    the tests that start no server (a few minutes)"
	@echo "make bench-runtimes | bench-hops | bench-coldstart | bench-loadtester | bench-loadtester-truth | bench-peers | bench-planner | bench-planner-controlled | bench-kserve-hops    benchmarks -> bench-results/*.json"
	@echo "make bench-gpu | bench-gpu-smoke    the prepared GPU run (a lent GPU) | the same on the CPU, tiny checkpoints"
	@echo "make render  regenerate k8s/rendered/, k8s/crds/ and the chart's generated files"
	@echo "make engine-test    every shipped graph through the Seldon v2, Seldon v1 and KServe engine models"
	@echo "make images | image-test | bench-images    build the images with buildah, run them, measure them"

$(UV):
	@test -n "$(PY312)" || { echo "error: Python 3.12 not found (python3.12, pyenv or /usr/bin)"; exit 1; }
	$(PY312) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: $(UV) pyproject.toml uv.lock async_load_tester/pyproject.toml
	$(UV) sync --frozen --extra mlserver --extra operator --extra planner
	@touch $@

.venv-seldon/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=.venv-seldon $(UV) sync --frozen --extra seldon --no-default-groups --group seldon-dev
	@touch $@

# The KServe SDK (a test client) pins protobuf < 7, so it gets a virtualenv of its own.
.venv-kserve/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=.venv-kserve $(UV) sync --frozen --no-default-groups --group kserve-client
	@touch $@

install: .venv/.synced .venv-seldon/.synced .venv-kserve/.synced

demo: .venv/.synced
	$(RUN) infergraph demo

# mypy checks all of src/infergraph: strictly the graph, serving and components.base modules
# (and the others pyproject.toml's [tool.mypy] names), with mypy's defaults elsewhere; then,
# strictly, the load tester (its own configuration, in async_load_tester/pyproject.toml). The two
# tools/ checks keep every function in src/ and async_load_tester/src/ within 60 lines and the
# imports free of cycles.
lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint --failure-threshold style images/Dockerfile
	$(RUN) actionlint .github/workflows/*.yml
	$(RUN) mypy
	cd async_load_tester && $(abspath $(UV)) run --frozen --no-sync mypy
	$(RUN) python tools/check_function_length.py
	$(RUN) python tools/check_import_cycles.py

# Tests run in parallel processes (pytest-xdist), a test file to a process so that a file's
# shared servers start once. Most of a test's time is spent waiting on the servers it starts,
# so three processes keep two cores busy; TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

unit: .venv/.synced .venv-kserve/.synced perf-analyzer prometheus rclone
	$(RUN) python -m pytest -q --ignore=tests/seldon -m "not sweep and not timing" $(XDIST)

# The tier to run while editing: no server processes, no checkpoints built (`slow` deselected).
test-fast: .venv/.synced
	$(RUN) python -m pytest -q --ignore=tests/seldon -m "not slow and not sweep and not timing" $(XDIST)

# Debian's prometheus, for tests/test_prometheus_queries.py (every rendered scaling query asked
# of a real Prometheus). Where apt cannot install it, that test skips and says why.
prometheus:
	@command -v prometheus >/dev/null || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
		|| echo "prometheus not installed: tests/test_prometheus_queries.py will be skipped"

# Debian's rclone, for the copy Seldon v2's agent makes of a Model folder from the operator's
# settings server (tests/test_model_settings_served.py, tests/test_operator.py). Where apt
# cannot install it, those tests skip and say why.
rclone:
	@command -v rclone >/dev/null || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone; } \
		|| echo "rclone not installed: the Seldon v2 settings copy tests will be skipped"

# Every shipped graph on every engine against the local run (make test runs the named cases).
engine-test: .venv/.synced .venv-seldon/.synced
	$(RUN) python -m pytest -q -m sweep tests/test_engine_seldon_v2.py tests/test_engine_kserve.py
	$(RUN_SELDON) python -m pytest -q -m sweep tests/seldon

# The v1 proof also needs .venv: its local reference (`infergraph serve`) and protocol-v2 units
# (MLServer) run from there, since MLServer and seldon-core cannot share one environment.
seldon-test: .venv/.synced .venv-seldon/.synced
	$(RUN_SELDON) python -m pytest -q -m "not sweep" tests/seldon $(XDIST)

test: lint unit seldon-test

# perf_analyzer, Triton's load generator, for tests/test_protocol_perf_analyzer.py and by hand
# (docs/protocols.md). PyPI's `perf-analyzer` is a placeholder; tritonclient's manylinux wheels
# bundle the real binary up to 2.60.0, and 2.51.0 is the newest whose binary runs on glibc 2.36
# (Debian 12): 2.52.0 and later need GLIBC_2.38 and GLIBCXX_3.4.32. It links libb64.so.0d (the
# Debian package libb64-0d) and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12: loaded at start,
# no GPU used over HTTP or gRPC). All of it goes under .tools/perf_analyzer; nothing is installed
# system-wide. .tools/bin/perf_analyzer is a wrapper that finds the two libraries.
PERF_ANALYZER := $(TOOLS)/bin/perf_analyzer
PA_DIR := $(TOOLS)/perf_analyzer
PA_WHEELS := tritonclient==2.51.0 nvidia-cuda-runtime-cu12==12.6.77
PA_SHA256 := c485bb0123bdf310f90bc8b03d3489b28df2ffed55b30c7eee0b795b48113d52  tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl
PA_SHA256_CUDART := a84d15d5e1da416dd4774cb42edf5e954a3e60cc945698dc1d5be02321c44dc8  nvidia_cuda_runtime_cu12-12.6.77-py3-none-manylinux2014_x86_64.whl
PA_EXTRACT := import sys, zipfile; whl, member, out = sys.argv[1:]; \
	open(out, "wb").write(zipfile.ZipFile(whl).read(member))

perf-analyzer: $(UV)
	@if [ "$$(uname -sm)" != "Linux x86_64" ]; then \
		echo "perf_analyzer: only Linux x86_64 binaries exist; its test will be skipped"; \
	elif [ ! -x $(PERF_ANALYZER) ]; then $(MAKE) --no-print-directory $(PERF_ANALYZER); fi

$(PERF_ANALYZER):
	rm -rf $(PA_DIR) && mkdir -p $(PA_DIR)/bin $(PA_DIR)/lib $(PA_DIR)/download
	$(TOOLS)/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--platform manylinux1_x86_64 --platform manylinux2014_x86_64 --python-version 3.12 \
		-d $(PA_DIR)/download $(PA_WHEELS)
	cd $(PA_DIR)/download && printf '%s\n' '$(PA_SHA256)' '$(PA_SHA256_CUDART)' | sha256sum --check --quiet
	$(TOOLS)/bin/python -c '$(PA_EXTRACT)' $(PA_DIR)/download/tritonclient-*.whl \
		tritonclient-2.51.0.data/data/bin/perf_analyzer $(PA_DIR)/bin/perf_analyzer
	$(TOOLS)/bin/python -c '$(PA_EXTRACT)' $(PA_DIR)/download/nvidia_cuda_runtime_cu12-*.whl \
		nvidia/cuda_runtime/lib/libcudart.so.12 $(PA_DIR)/lib/libcudart.so.12
	cd $(PA_DIR)/download && { apt-get download libb64-0d 2>/dev/null \
		|| { apt-get update -qq && apt-get download libb64-0d; }; } \
		&& dpkg-deb -x libb64-0d_*.deb deb && cp deb/usr/lib/x86_64-linux-gnu/libb64.so.0d ../lib/
	rm -rf $(PA_DIR)/download && chmod +x $(PA_DIR)/bin/perf_analyzer
	printf '#!/bin/sh\nhere="$$(cd "$$(dirname "$$0")/../perf_analyzer" && pwd)"\nLD_LIBRARY_PATH="$$here/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" exec "$$here/bin/perf_analyzer" "$$@"\n' > $@.tmp
	chmod +x $@.tmp && $@.tmp --version && mv $@.tmp $@

render: .venv/.synced
	$(RUN) python tools/chart.py
	$(RUN) infergraph crd --out k8s/crds/infergraph.io_inferencegraphs.yaml
	$(RUN) infergraph render --all --out k8s/rendered --storage-uri s3://REPLACE-WITH-YOUR-BUCKET/infergraph

bench-runtimes: .venv/.synced
	$(RUN) python benchmarks/bench_runtimes.py

bench-hops: .venv/.synced
	$(RUN) python benchmarks/bench_hops.py

# Peers (infinity-emb, Ray Serve, KServe, PyTriton) get virtualenvs of their own under .bench-venvs/.
bench-peers: .venv/.synced
	$(RUN) python benchmarks/bench_peers.py

# Per family: mlserver start to ready, weights in the page cache, and the runtime image's pull size.
# COLDSTART_FLAGS="--starts 1 --families text-embedding" narrows it.
bench-coldstart: .venv/.synced
	$(RUN) python benchmarks/bench_coldstart.py $(COLDSTART_FLAGS)

# On a GPU machine with this virtualenv: SigLIP so400m and ViT-B/16, bf16, direct and served
# (benchmarks/gpu_run.sh, at most 10 minutes) -> bench-results/gpu.json. A lent machine, which
# has no registry, runs the script itself with python3 and the wheels of benchmarks/gpu_wheels.py
# (docs/benchmarks.md). bench-gpu-smoke: the same script on the CPU, tiny checkpoints, 1-2 minutes.
bench-gpu: .venv/.synced
	PYTHON=.venv/bin/python benchmarks/gpu_run.sh

bench-gpu-smoke: .venv/.synced
	PYTHON=.venv/bin/python benchmarks/gpu_run.sh --smoke --out bench-results/gpu-smoke.json

bench-kserve-hops: .venv/.synced
	$(RUN) python benchmarks/bench_kserve_hops.py

# wrk (Debian) is one of the tools the ground-truth part compares; installed when missing.
wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } || \
		{ echo "bench-loadtester needs wrk: apt-get install -y wrk"; exit 1; }

bench-loadtester: .venv/.synced wrk
	$(RUN) python async_load_tester/bench/bench_loadtester.py

# The ground-truth part alone (a few minutes): bench-results/loadtester-truth.json.
# TRUTH_FLAGS=--quick makes it a smoke run of seconds.
bench-loadtester-truth: .venv/.synced wrk
	$(RUN) python async_load_tester/bench/bench_loadtester.py --truth-only $(TRUTH_FLAGS)

bench-planner: .venv/.synced
	$(RUN) python benchmarks/bench_planner.py

# The simulator against controlled service times alone (about 35 minutes on the 2-core VM);
# planner.json keeps the other parts' rows.
bench-planner-controlled: .venv/.synced
	$(RUN) python benchmarks/bench_planner.py --parts controlled --reuse bench-results/planner.json

# The simulator against the real MicroBatcher's own latencies (tests/test_planner_controlled_sim.py):
# a check of batch forming and queueing on wall-clock time, so it needs a machine nothing else
# loads; make test's parallel processes push the batcher's loop lag past its 5 % / 10 % goals.
timing-test: .venv/.synced
	$(RUN) python -m pytest -q -m timing tests/test_planner_controlled_sim.py

# On a GPU machine: the full-size cascade and video nodes profiled there, for bench-planner's
# cost part (bench-results/profiles/). The GPU stands for GPU_CLASS of the price catalog.
GPU_CLASS ?= p5.48xlarge-per-gpu
GPU_PROFILE_FLAGS := --offline --offline-scale full --repeats 20 --hardware-class $(GPU_CLASS)
planner-gpu-profiles: .venv/.synced
	$(RUN) infergraph profile k8s/graphs/cascade.yaml $(GPU_PROFILE_FLAGS) --max-batch 64 \
		--out bench-results/profiles/cascade-gpu-profile.json $(PROFILE_FLAGS)
	$(RUN) infergraph profile k8s/graphs/video.yaml $(GPU_PROFILE_FLAGS) --max-batch 32 \
		--out bench-results/profiles/video-gpu-profile.json $(PROFILE_FLAGS)

# Images: buildah (daemonless, no Docker) and debootstrap for the local stand-in base images when
# no image registry can be reached (images/README.md). Root and apt-get: Debian/Ubuntu.
IMAGE_TOOLS := buildah debootstrap
# Base images: from their registries where reachable, else local stand-ins (images/local-bases.sh).
LOCAL_BASES ?= $(shell curl -sS -m 10 -o /dev/null https://registry-1.docker.io/v2/ 2>/dev/null \
	|| echo --local-bases)
IMAGES_RUN := PYTHONPATH=. $(RUN) python

image-tools:
	@command -v buildah >/dev/null && command -v debootstrap >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(IMAGE_TOOLS); }

images: image-tools .venv/.synced
	$(IMAGES_RUN) images/build.py $(LOCAL_BASES) $(TARGETS)
	$(IMAGES_RUN) images/bench_images.py

image-test: image-tools .venv/.synced
	$(IMAGES_RUN) images/image_test.py $(TARGETS)

bench-images: image-tools .venv/.synced
	$(IMAGES_RUN) images/bench_images.py

clean:
	rm -rf .venv .venv-seldon .venv-kserve $(TOOLS) .pytest_cache .ruff_cache
