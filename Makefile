# The README's two commands: `make serve` and `make test`. Both create or reuse .venv, install
# what the project needs and build the C++ core incrementally (nothing is rebuilt when nothing
# changed), then serve the bundled model_repository/ or run the whole test suite.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Build inputs of the compiled part (python/ is used in place by the editable install).
CORE_INPUTS := CMakeLists.txt pyproject.toml $(wildcard csrc/*) $(wildcard protos/*)
# CPU wheel of PyTorch available to this project's machines; an unpinned torch pulls GBs.
TORCH_PIN := torch==2.13.0

HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.PHONY: serve test install models clean

serve: install models
	$(VENV)/bin/tritonlite-server --model-repository model_repository \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(VENV)/.built

models: install
	$(PY) model_repository/generate.py --if-missing

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Dependencies (build, runtime, test, torch) from pyproject.toml, reinstalled when it changes.
$(VENV)/.deps: pyproject.toml | $(PY)
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
		print('\n'.join(p['build-system']['requires'] + p['project']['dependencies'] \
		+ p['project']['optional-dependencies']['test']))" > $(VENV)/requirements.txt
	$(PIP) install -r $(VENV)/requirements.txt ninja '$(TORCH_PIN)'
	touch $@

# Editable install with a persistent build dir (build/): an incremental CMake build.
$(VENV)/.built: $(VENV)/.deps $(CORE_INPUTS)
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

clean:
	rm -rf build $(VENV)
