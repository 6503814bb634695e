# The two commands: `make demo` and `make test`. Everything else is a detail of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: the demo needs the runtime only; the tests add the test extras (browsers' driver,
# datumaro, mlcroissant, scikit-learn... about 1.5 GB) on top.
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Absolute links in exports, Croissant and e-mails follow the port the demo serves on,
# unless SITE_URL is set in the environment.
DEMO_SITE_URL = $${SITE_URL:-http://$(HOST):$(PORT)}
# `make demo` and `make test` are single-machine installs: the secret key and the ledger
# signing key are generated once under VAR_DIR (production sets them; see the README).
export GENERATE_SECRETS ?= true

.PHONY: demo test lint format bench install install-test browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(RUNTIME_STAMP)
install-test: $(STAMP)

## make demo [PORT=8000] [HOST=127.0.0.1]: install the runtime, migrate SQLite, load the demo catalogue, serve it
demo: $(RUNTIME_STAMP)
	$(BIN)/python manage.py migrate --noinput
	SITE_URL=$(DEMO_SITE_URL) $(BIN)/python manage.py demo
	@echo "Serving on http://$(HOST):$(PORT)/  (links in exports and e-mails: $(DEMO_SITE_URL); Ctrl-C to stop)"
	SITE_URL=$(DEMO_SITE_URL) DEBUG=$${DEBUG:-true} $(BIN)/python manage.py runserver $(HOST):$(PORT)

## Headless Chromium for the page tests, from Debian's packages (never a browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Install Debian's chromium package for the browser tests (sudo apt-get install chromium)"; fi; }

## make test: install and run the whole suite (SQLite unless DATABASE_URL says otherwise)
test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache
