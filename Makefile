# Every target bootstraps .venv from the lock file on a machine with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced

.PHONY: venv test lint demo bench package-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --all-extras --quiet
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/bounded demo

bench: $(STAMP)
	$(BIN)/python -m bench

# Build the sdist and wheel, check them, install the wheel as a user would (.ci/run runs it).
package-check: $(STAMP)
	.ci/package-check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
