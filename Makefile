# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNS ?= runs

.PHONY: test demo lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exact pins from constraints.txt; torch comes from this machine's local files (about 2 minutes).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[train,export,cpu,test]'
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

demo: $(STAMP)
	$(BIN)/abrl train --config configs/cpu-small.yaml --method abrl --out $(RUNS)/demo-abrl --force
	@echo "run directory: $(RUNS)/demo-abrl (card.json, metrics.jsonl, model.safetensors)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
