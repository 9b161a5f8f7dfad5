# The two commands in the README: `make run` starts a server, `make test` runs every check.
# Each makes its own virtualenv (.venv) and installs the project into it on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest jstest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gameserver serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared gameserver clients

pytest: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The JavaScript SDK (clients/web): type-check with TypeScript, check its declarations build, and
# run its tests with Node's runner (the integration tests start the server from $(VENV)).
WEB := clients/web
NODE_STAMP := $(WEB)/node_modules/.installed

$(NODE_STAMP): $(WEB)/package.json $(WEB)/package-lock.json tools/ensure_node.sh
	bash tools/ensure_node.sh
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

jstest: $(STAMP) $(NODE_STAMP)
	cd $(WEB) && npx tsc --noEmit -p .
	cd $(WEB) && out=$$(mktemp -d) && npx tsc -p tsconfig.types.json --outDir $$out && rm -rf $$out
	cd $(WEB) && GAMESERVER_PYTHON=$(abspath $(BIN))/python node --test --test-reporter=spec test/*.test.js

test: lint typecheck pytest jstest

clean:
	rm -rf $(VENV) *.egg-info
