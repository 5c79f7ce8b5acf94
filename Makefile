# Tollgate: `make run` serves the gateway and admin; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench setup clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/flask --app wsgi setup

# The scheduler runs beside the server and stops with it.
run: setup
	$(BIN)/flask --app wsgi scheduler run & scheduler=$$!; \
	trap 'kill $$scheduler 2>/dev/null' EXIT INT TERM; \
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# The browser tests drive Debian's Chromium (never a downloaded one); install it where it is missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	else echo "the browser tests need $(CHROMIUM): sudo apt-get install chromium" >&2; exit 1; fi

# The Zapier app's packages, pinned by its lockfile, for its tests (tests/test_zapier.py).
zapier/node_modules: zapier/package-lock.json
	cd zapier && npm ci --no-audit --no-fund
	touch zapier/node_modules

test: $(STAMP) $(CHROMIUM) zapier/node_modules
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app/metering app/proxy app/upstream

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance/tollgate.db
