# Switchyard: `make demo` starts everything, `make test` runs the suite, `make bench` the benchmarks.
# Each target installs what it needs (system packages when root, the virtualenv, Python packages)
# and finds or starts Postgres and Redis (see scripts/devenv.py).

PYTHON ?= python3
VENV := .venv
SERVICES = eval "$$($(PYTHON) scripts/devenv.py services --print-env)"
# The suite runs in one process: several of its tests measure concurrency and time windows with
# real servers, which two pytest workers on two cores would disturb. It takes a few minutes.
PYTEST_ARGS ?=

.PHONY: bootstrap demo test test-fast bench lint format stop migrate

bootstrap:
	@$(PYTHON) scripts/devenv.py bootstrap

demo:
	@$(PYTHON) scripts/devenv.py demo

test: bootstrap
	@$(SERVICES) && export SWITCHYARD_ENV=test && \
	  $(VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The suite without the browser and slow process tests, for a quick loop while developing.
test-fast: bootstrap
	@$(SERVICES) && export SWITCHYARD_ENV=test && \
	  $(VENV)/bin/python -m pytest -p no:cacheprovider -m "not e2e and not slow" $(PYTEST_ARGS)

bench: bootstrap
	@$(SERVICES) && $(VENV)/bin/python -m bench.run $(BENCH_ARGS)

migrate: bootstrap
	@$(SERVICES) && $(VENV)/bin/python manage.py migrate --noinput

lint: bootstrap
	@$(VENV)/bin/ruff check .

format: bootstrap
	@$(VENV)/bin/ruff format .

stop:
	@$(PYTHON) scripts/devenv.py stop
