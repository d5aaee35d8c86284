# One task runner. CI (.ci/run) calls `make test` unchanged; the README's two commands are
# `make run` (set up, train if no model exists, serve) and `make test` (set up, check, test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODELS ?= models
MODEL_NAME ?= mnist
# Where ../shared/data/mnist exists (this project's machines: no internet) training uses it, as
# the tests do (loadtest/data.py); elsewhere it is empty and training downloads MNIST the usual
# Keras way. `make test` trains when no model exists (its load test serves one).
MNIST_DIR ?= $(abspath $(wildcard ../shared/data/mnist))
export MNIST_DIR

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
	  | sed -e 's|$$(MODELS)|$(MODELS)|g' -e 's|$$(MODEL_NAME)|$(MODEL_NAME)|g' \
	  | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- setup
$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[serve,train,loadtest,dev]'
	touch $@

.PHONY: setup
setup: $(BIN)/.installed ## Create .venv and install every dependency set (locked)

.PHONY: lock
lock: setup ## Regenerate requirements/constraints.txt from the environment
	{ echo "# Full lock of every dependency set (pip constraints). Regenerate: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v mnist-inference; } > requirements/constraints.txt

# ---------------------------------------------------------------- main job
.PHONY: run
run: model ## Set up, train + export if no model exists yet, then start the service
	$(BIN)/python -m serving --model-repository $(MODELS)

.PHONY: model
model: setup ## Train + export unless $(MODELS)/$(MODEL_NAME) already has a version
	@if ls $(MODELS)/$(MODEL_NAME)/*/metadata.json >/dev/null 2>&1; then \
	  echo "model exists: $$(ls -d $(MODELS)/$(MODEL_NAME)/*/ | sort -V | tail -1) (make train for a new version)"; \
	else $(MAKE) train; fi

.PHONY: train
train: setup ## Train, evaluate and export a new model version into $(MODELS)
	$(BIN)/python -m training --output $(MODELS) --name $(MODEL_NAME)

.PHONY: compare
compare: setup ## Optimizer study (~10 min): full-batch GD, SGD, momentum, Adam -> docs/training.md
	$(BIN)/python -m training.compare --doc docs/training.md --image docs/images/optimizers.png

.PHONY: serve
serve: setup ## Start the service on the latest model version
	$(BIN)/python -m serving --model-repository $(MODELS)

# ---------------------------------------------------------------- checks
.PHONY: test
test: system-packages setup lint typecheck lint-infra pytest loadtest-smoke ## Everything CI runs

# Chromium, promtool, h2load, haproxy, openssl (requirements/debian-packages.txt): installed when
# missing, as root or through passwordless sudo; otherwise one message and a stop, before any test.
.PHONY: system-packages
system-packages: ## Install the Debian packages the tests need (skipped when present)
	bash scripts/system-packages.sh test

.PHONY: lint
lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: format
format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: typecheck
typecheck: setup ## mypy --strict
	$(BIN)/mypy

.PHONY: pytest
pytest: setup ## The test suite (unit, API, end-to-end, training on real MNIST)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: docs
docs: setup ## Regenerate the settings table in docs/configuration.md from serving/settings.py
	$(BIN)/python scripts/settings_table.py

# Committed, not generated at install time: the serving image has no grpcio-tools (the script's
# docstring says why). tests/serving/grpc/test_proto.py fails when the committed code is stale.
.PHONY: grpc-code
grpc-code: setup ## Regenerate serving/grpc/generated/ from serving/grpc/proto/grpc_service.proto
	$(BIN)/python scripts/grpc_code.py

.PHONY: lint-infra
lint-infra: setup ## Dockerfiles, workflows, compose, collector config, deploy manifests
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/lint-infra.sh

# ---------------------------------------------------------------- load and speed
.PHONY: loadtest-smoke
loadtest-smoke: model ## Start the service on loopback ports, run short gated Locust tests (HTTP, gRPC), stop it
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/loadtest-smoke.sh $(MODELS)

.PHONY: loadtest
loadtest: setup ## Gated Locust run against URL=http://host:port (see docs/loadtest.md)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/loadtest.sh "$(URL)"

.PHONY: bench
bench: model ## Benchmark (~20 min, needs wrk, h2load, haproxy): results/<date>.md (cost table, targets), a plot, <date>-overload.md
	bash scripts/system-packages.sh bench
	$(BIN)/python -m benchmarks --models $(MODELS)
	$(BIN)/python -m benchmarks.overload --models $(MODELS)

.PHONY: bench-instructions
bench-instructions: model ## Tracing/metrics cost in instructions per request (~11 min, valgrind)
	$(BIN)/python -m benchmarks.instructions --models $(MODELS)

# ---------------------------------------------------------------- containers
.PHONY: container-smoke
container-smoke: model ## Build Dockerfile.serve, run it, check /readyz and /v1/predict
	@# No Docker engine on these machines: podman builds and runs the image (docs/deploy.md).
	if ! docker info >/dev/null 2>&1; then bash scripts/system-packages.sh container; fi
	bash scripts/container-smoke.sh

.PHONY: clean
clean: ## Remove caches (keeps .venv and models)
	rm -rf .mypy_cache .ruff_cache .pytest_cache runs
