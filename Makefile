# Two commands do all the set-up on a fresh machine (Python >= 3.11 on PATH as python3):
#   make up    installs what is needed and starts the embedded default (llmscope up)
#   make test  installs what is needed and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests drive Debian's Chromium (never a downloaded build); CI runs as root.
CHROMIUM ?= /usr/bin/chromium

.PHONY: up test test-crash bench install clean

$(STAMP): pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" -e "./sdk[test]"
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/llmscope up $(ARGS)

$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "the browser tests need Chromium at $(CHROMIUM): sudo apt-get install -y chromium" >&2; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q $(ARGS)

test-crash: $(STAMP)
	$(BIN)/python -m pytest -q -m crash $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest_bench.py $(ARGS)

clean:
	rm -rf $(VENV) .llmscope .pytest_cache
