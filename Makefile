# The two commands in the README: `make run` starts a server, `make test` runs every check.
# Each makes its own virtualenv (.venv) and installs the project into it on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest jstest browsertest webkittest bench clean

# the mypyc-compiled modules (shared/_compiled.py) are rebuilt when their source changes
$(STAMP): pyproject.toml setup.py shared/_compiled.py shared/wire.py shared/wsframe.py shared/state.py shared/delta_v3.py shared/messages.py gameserver/limits.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gameserver serve --guest-tokens $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared gameserver clients

pytest: $(STAMP)
	bash tools/ensure_redis.sh
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

# The demo in headless Chromium and Firefox (system packages, installed when missing), each
# against a real server with bots; screenshots in $(WEB)/test/artifacts/.
browsertest: $(STAMP) $(NODE_STAMP)
	bash tools/ensure_browsers.sh
	cd $(WEB) && GAMESERVER_PYTHON=$(abspath $(BIN))/python node --test --test-concurrency=1 --test-reporter=spec test/browser/demo.test.js test/browser/resume.test.js test/browser/dashboard.test.js test/browser/field.test.js

# WebKit (WebKitGTK's MiniBrowser under Xvfb) is not part of `make test`: it needs
# `apt-get install webkit2gtk-driver xvfb`, and skips with a reason when they are missing.
webkittest: $(STAMP) $(NODE_STAMP)
	cd $(WEB) && GAMESERVER_PYTHON=$(abspath $(BIN))/python node --test --test-reporter=spec test/browser/webkit.test.js

test: lint typecheck pytest jstest browsertest

clean:
	rm -rf $(VENV) *.egg-info
