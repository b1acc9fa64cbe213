# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNS ?= runs

# A second, small environment with exactly the runtime extra (no torch, no onnx) proves the
# Predictor and `abrl predict` work in a production image; pytest comes along, and the test
# models are built by the main environment's interpreter (ABRL_FIXTURE_PYTHON, tests/card_model.py).
RT_VENV := .venv-runtime
RT_STAMP := $(RT_VENV)/.installed

.PHONY: test test-runtime demo lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exact pins from constraints.txt; torch comes from this machine's local files (about 2 minutes).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[train,export,runtime,serve,bench,test,cluster]'
	touch $@

$(RT_VENV)/bin/python:
	$(PYTHON) -m venv $(RT_VENV)

$(RT_STAMP): pyproject.toml constraints.txt | $(RT_VENV)/bin/python
	$(RT_VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[runtime]' pytest
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -q -m "not slow"
	$(MAKE) test-runtime

test-runtime: $(RT_STAMP) $(STAMP)
	$(RT_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit(', '.join(m for m in ('torch', 'onnx') if u.find_spec(m)) + ' in $(RT_VENV): make clean' if any(u.find_spec(m) for m in ('torch', 'onnx')) else 0)"
	ABRL_EXPECT_NO_TORCH=1 ABRL_FIXTURE_PYTHON=$(abspath $(BIN)/python) $(RT_VENV)/bin/pytest -q -p no:cacheprovider tests/predictor tests/core

# The main job on the embedded digits: train ABRL and the fine-tune baseline, export verified ONNX
# files, then bench both at batch 64 on every backend that can run here, with the verdict on the
# paper's 15% latency claim (ABRL vs fine-tune); last, the fastest deployment variant of the ABRL
# model on this machine within 0.5 top-1 points (abrl optimize), shipped as model.deploy.onnx.
demo: $(STAMP)
	$(BIN)/abrl train --config configs/cpu-small.yaml --method abrl --out $(RUNS)/demo-abrl --force
	$(BIN)/abrl train --config configs/cpu-small.yaml --method finetune --out $(RUNS)/demo-finetune --force
	$(BIN)/abrl export $(RUNS)/demo-abrl --force
	$(BIN)/abrl export $(RUNS)/demo-abrl --precision int8 --force
	$(BIN)/abrl export $(RUNS)/demo-finetune --force
	$(BIN)/abrl bench $(RUNS)/demo-abrl --baseline $(RUNS)/demo-finetune --batch 64 --force \
		--report $(RUNS)/demo-bench.json --markdown $(RUNS)/demo-bench.md --plot $(RUNS)/demo-bench.png
	$(BIN)/abrl optimize $(RUNS)/demo-abrl --force

clean:
	rm -rf $(VENV) $(RT_VENV) .pytest_cache .ruff_cache
