# pouch: `make run` sets up what is missing and runs the daemon; `make test` runs the suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
IMAGE := build/busybox.tar
PAUSE_IMAGE := build/pause.tar
# Workers of the suite (pytest-xdist); PYTEST_ARGS="-n 0" runs it serially.
PYTEST_WORKERS ?= 3
PYTEST_ARGS ?=
POUCHD_ARGS ?=

.PHONY: install install-test run test lint unit image bench clean

install:
	deploy/install.sh

install-test:
	deploy/install.sh --test

run: install
	exec $(VENV)/bin/pouchd $(POUCHD_ARGS)

image: install $(IMAGE) $(PAUSE_IMAGE)

$(IMAGE):
	mkdir -p build
	$(PY) -m pouch.tests.images $(IMAGE)

# The CRI's default sandbox image (pouchd --sandbox-image): `docker load -i build/pause.tar`.
$(PAUSE_IMAGE):
	mkdir -p build
	$(PY) -m pouch.tests.images $(PAUSE_IMAGE) --pause --tag pouch/pause:latest

lint: install-test
	mkdir -p build/typecheck && ln -sfn ../.. build/typecheck/pouch
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy -p pouch.actors -p pouch.broker -p pouch.gateway -p pouch.proto \
		-p pouch.tests -p pouch.bench

test: install-test lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# By hand only, never from the test suite; each benchmark builds its own busybox image.
bench: install-test
	$(PY) -m pouch.bench.run_rm
	$(PY) -m pouch.bench.broker_rtt
	$(PY) -m pouch.bench.recovery
	$(PY) -m pouch.bench.memory
	$(PY) -m pouch.bench.idle_cpu
	$(PY) -m pouch.bench.pull
	$(PY) -m pouch.bench.list_size

clean:
	rm -rf build .mypy_cache .ruff_cache proto/containerd proto/gogoproto
