# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ASSETS := node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css

.PHONY: run test setup lint typecheck bench-signin clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(ASSETS): package.json
	npm install --no-audit --no-fund --silent
	touch $@

setup: $(STAMP) $(ASSETS)
	$(BIN)/contactpoint db upgrade

# Set up, migrate the SQLite default, load demo data and serve on :5000.
run: setup
	$(BIN)/contactpoint demo load
	@echo "Serving on http://localhost:5000 (Ctrl+C stops it)"
	$(BIN)/contactpoint run --host 127.0.0.1 --port 5000

# Set up with the test extras and run the whole suite (SQLite and PostgreSQL).
test: $(TEST_STAMP) $(ASSETS)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases bench
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases bench

bench-signin: $(STAMP)
	$(BIN)/python bench/signin.py

clean:
	rm -rf $(VENV) node_modules
