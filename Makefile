# justchat — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MEMBERS := shared gateway chat-service presence-service dashboard-service
SRC_DIRS := $(addsuffix /src,$(MEMBERS))
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast test-deploy system-packages check fmt bench compose-up compose-config requirements clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.txt
	@# The workspace members run from their src/ folders (an editable install with no build step).
	printf '%s\n' $(addprefix $(CURDIR)/,$(SRC_DIRS)) > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/justchat-workspace.pth"
	touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies

run: $(STAMP) ## start the whole system (private Redis/PostgreSQL unless REDIS_URL/DATABASE_URL are set)
	$(BIN)/python -m justchat.stack

test: $(STAMP) ## run every test against real Redis and PostgreSQL (configured, else private)
	$(BIN)/python -m pytest -m "not deploy" $(PYTEST_ARGS)

test-fast: $(STAMP) ## the tests not marked slow
	$(BIN)/python -m pytest -m "not slow and not deploy" $(PYTEST_ARGS)

test-deploy: $(STAMP) system-packages ## nginx (deploy/nginx.conf) in front of the stack; compose file check
	$(BIN)/python -m pytest -m deploy $(PYTEST_ARGS)

SYSTEM_PACKAGES := nginx docker-compose
system-packages: ## install the Debian packages test-deploy needs (as root, with apt-get)
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	    command -v $$p >/dev/null || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    else echo "test-deploy needs:$$missing (install them, e.g. with apt-get)"; exit 1; fi; \
	fi

check: $(STAMP) ## lint, format check and strict type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(SRC_DIRS)

fmt: $(STAMP) ## format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## load the stack: fanout, rooms, connect, idle (ARGS="fanout --members 500"; --help)
	$(BIN)/python -m bench $(ARGS)

compose-config: ## validate docker-compose.yml
	docker-compose -f docker-compose.yml config --quiet

compose-up: ## run the production-like topology with docker compose
	docker compose up --build

requirements: ## re-pin requirements.txt from the pyproject files (needs uv)
	uv lock
	uv export --all-packages --all-groups --no-emit-workspace --no-editable --format requirements-txt -o requirements.txt

# `make run`'s folder. Only what the stack puts there is removed (the variable may name any folder),
# including a PostgreSQL cluster kept under /tmp/justchat-pg behind a symlink (when run as root);
# a folder whose stack still runs (its stack.pid is locked) is refused.
RUN_DIR = $(or $(JUSTCHAT_RUN_DIR),.run)
RUN_LOCKED = import fcntl, sys; fcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX | fcntl.LOCK_NB)
clean: ## remove the virtualenv and the private servers' data (in JUSTCHAT_RUN_DIR, default .run)
	@if [ -f "$(RUN_DIR)/stack.pid" ] && ! $(PYTHON) -c '$(RUN_LOCKED)' "$(RUN_DIR)/stack.pid" 2>/dev/null; then \
	    echo "$(RUN_DIR) belongs to a running stack (pid $$(cat "$(RUN_DIR)/stack.pid")): stop it first" \
	        "(make clean cleans JUSTCHAT_RUN_DIR, default .run)"; exit 1; fi
	@pgdata="$(RUN_DIR)/postgres/pgdata"; if [ -L "$$pgdata" ]; then \
	    target="$$(readlink "$$pgdata")"; case "$$target" in /tmp/justchat-pg/*) rm -rf "$$target";; esac; fi
	rm -rf "$(RUN_DIR)/redis" "$(RUN_DIR)/postgres" "$(RUN_DIR)/jwt-secret" "$(RUN_DIR)/stack.pid"
	@rmdir "$(RUN_DIR)" 2>/dev/null || true
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
