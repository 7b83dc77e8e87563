# make test: what CI runs. It installs everything it needs itself (Debian packages when run as
# root on a machine that lacks them, Python packages into .venv), then lints, type-checks and tests.
# make demo: the operator's main job against the lab.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := sip-tester openssh-client
# pytest-xdist workers for `make test`: one per core of CI's 2-core machine (tests/conftest.py gives
# each worker loopback addresses of its own).
TEST_WORKERS ?= 2

.PHONY: test demo deps debian-deps lint typecheck unit integration bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

debian-deps:
	@missing=""; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (install them as root: apt-get install -y$$missing)" >&2; exit 1; \
	  fi; \
	fi

deps: debian-deps $(VENV)/.installed

lint: deps
	$(BIN)/ruff check remediate tests bench library action_plugins doc_fragments roles
	$(BIN)/ruff format --check remediate tests bench library action_plugins doc_fragments roles
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --offline -q playbooks roles

typecheck: deps
	$(BIN)/mypy --strict remediate

test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS)

unit: deps
	$(BIN)/pytest tests/unit

integration: deps
	$(BIN)/pytest tests/integration

demo: deps
	PATH="$(CURDIR)/$(BIN):$$PATH" ./examples/demo.sh

bench: deps
	$(BIN)/python bench/parse_logs.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .lab bench/out
