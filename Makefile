# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make demo   create .venv, install the locked dependencies, migrate, seed, serve
#   make test   the same set-up, then lint (ruff, import layers) and the whole suite on SQLite
# A pyenv shim exists for every installed version but fails (loudly) unless that version is
# selected: the probe's errors are not the user's business.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_WORKERS ?= 2

.PHONY: demo test install lint format lock serve browser-deps clean

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required (python3.11, python3.12, ...)."; exit 1; }
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "Migrating the database (db.sqlite3 unless DATABASE_URL is set) ..."
	@$(BIN)/python manage.py migrate --noinput -v0
	@echo "Seeding three use cases with three weeks of history (about a minute) ..."
	@HOST=$(HOST) PORT=$(PORT) $(BIN)/python manage.py seed_demo
	@echo ""
	@echo "Serving on http://$(HOST):$(PORT)/  (API docs: http://$(HOST):$(PORT)/api/docs/)  Ctrl-C stops it."
	LOG_FORMAT=text $(BIN)/python manage.py runserver $(HOST):$(PORT)

serve: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python manage.py makemigrations --check --dry-run
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "NOTE: /usr/bin/chromium is missing: browser tests are SKIPPED (apt-get install chromium to run them)."; fi
	@# The tests start hundreds of processes (gunicorn, Celery, scenarios, benchmarks): compiled
	@# once here, the project's modules are read, not compiled again, by each of them (even
	@# where PYTHONDONTWRITEBYTECODE keeps Python from writing them itself).
	$(BIN)/python -m compileall -q -j 0 reviewapp deployments tests benchmarks >/dev/null
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: install
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 db.sqlite3-wal db.sqlite3-shm
