# AgentPay: `make run` starts the local stack, `make test` runs the whole suite. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck cfn-lint pytest bench bench-compare security-probe clean install browser openapi sdk-ts fuzz \
	chaos package-sdks package cold-start

# The dashboard's browser tests drive Debian's chromium (Playwright's own download is not used).
CHROMIUM ?= /usr/bin/chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml sdk/python/pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]' -e sdk/python
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/agentpay dev

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared devtools functions deploy

cfn-lint: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
		echo "chromium not installed: the browser tests will say so"

pytest: $(STAMP) browser
	$(PY) -m pytest
	$(PY) -m pytest sdk/python/tests

# The TypeScript SDK's own unit tests (node's test runner); its integration tests run from pytest (tests/sdk).
sdk/typescript/node_modules: sdk/typescript/package-lock.json
	cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error
	touch sdk/typescript/node_modules

sdk-ts: sdk/typescript/node_modules
	cd sdk/typescript && npm test

# The SDKs as users install them, into $(PACKAGE_DIR): the Python wheel and sdist and the npm tarball, all named
# agentpay-spend (`pip install agentpay` and `npm install agentpay` are other people's packages).
PACKAGE_DIR ?= dist
package-sdks: $(STAMP) sdk/typescript/node_modules
	rm -f $(PACKAGE_DIR)/agentpay_spend-* $(PACKAGE_DIR)/agentpay-spend-*
	$(PY) -m build --outdir $(PACKAGE_DIR) sdk/python >/dev/null
	cd sdk/typescript && npm pack --loglevel=warn --pack-destination $(abspath $(PACKAGE_DIR)) >/dev/null
	@ls $(PACKAGE_DIR)/agentpay_spend-* $(PACKAGE_DIR)/agentpay-spend-*

test: lint typecheck cfn-lint sdk-ts pytest

# The artifact template.yaml deploys, in build/lambda: functions/, shared/ and the runtime dependencies, compiled by
# Python 3.12 (Lambda's). For this machine's processor by default; `make package PLATFORM=arm64` for the deployed
# (Graviton) functions. Needs only python3 and a Python 3.12 (`pyenv install 3.12`); dependencies are reinstalled only
# when requirements.txt changes.
PLATFORM ?=
package:
	$(PYTHON) -m deploy.package $(if $(PLATFORM),--platform $(PLATFORM))

openapi: $(STAMP)
	$(PY) -m devtools.openapi

# A longer contract fuzz than the one in `make test` (which tries about 15 inputs per operation).
fuzz: $(STAMP)
	AGENTPAY_FUZZ_EXAMPLES=500 $(PY) -m pytest tests/fuzz -q

# Fault injection under load for minutes (a short version runs in `make test`); writes .agentpay/chaos.json.
chaos: $(STAMP)
	$(PY) -m tests.chaos.scenario --long

bench: $(STAMP)
	$(PY) bench/run.py

# Each handler's import time from build/lambda in fresh Python 3.12s, against a bare `import fastapi` (bench/cold_start.py).
cold-start: $(STAMP)
	$(PY) bench/cold_start.py

# Throughput of two commits back to back on one stack: make bench-compare A=HEAD~1 B=HEAD
bench-compare: $(STAMP)
	$(PY) bench/compare.py $(or $(A),HEAD~1) $(or $(B),HEAD)

# The penetration test's findings replayed against two commits' servers: make security-probe A=0b4779e B=HEAD
security-probe: $(STAMP)
	$(PY) bench/security_probe.py $(or $(A),HEAD) $(B)

clean:
	rm -rf $(VENV) .agentpay .pytest_cache .mypy_cache .ruff_cache build
