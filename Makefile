# secure-agent: `make run` serves the embedded default, `make test` runs every test.
# Targets bootstrap what they need (uv, Python deps, Node 22 tools) on a fresh Debian/Ubuntu machine.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := $(CURDIR)/.tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/uv/bin/uv)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
PYTEST_ARGS ?=

.PHONY: help bootstrap uv sync node-tools system-deps run test test-fast lint manifest doctor clean observability-assets bench bench-deps

help:
	@echo "make run      serve MCP at http://127.0.0.1:8080/mcp (embedded default)"
	@echo "make test     the whole test suite with coverage (what CI runs)"
	@echo "make doctor   check this machine's sandbox features"
	@echo "make manifest regenerate mcp_config.json"
	@echo "make lint     ruff"
	@echo "make bench    secure-agent vs bare FastAPI vs plain mcp SDK (≤ ~10 min; BENCH_QUICK=1 ~3 min)"

$(TOOLS)/uv/bin/uv:
	@command -v $(PYTHON) >/dev/null || { sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && $$sudo_cmd apt-get install -y python3 python3-venv; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && $$sudo_cmd apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

uv: $(if $(shell command -v uv 2>/dev/null),,$(TOOLS)/uv/bin/uv)

sync: uv
	$(UV) sync --frozen

bootstrap: sync

node-tools:
	bash scripts/install-node-tools.sh

# Debian's prometheus package: promtool (rule checks and unit tests) and the server the end-to-end
# metrics test scrapes with. Installed only when promtool is missing; the system service the package
# enables (port 9090 on all interfaces) is stopped and disabled again: the tests run their own on loopback.
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends prometheus && \
		{ ! command -v systemctl >/dev/null || $$sudo_cmd systemctl disable --now prometheus >/dev/null 2>&1 || true; }; }
	@# redis-server: the rate-limit tests start their own on a free loopback port (the packaged service is disabled).
	@command -v redis-server >/dev/null || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends redis-server && \
		{ ! command -v systemctl >/dev/null || $$sudo_cmd systemctl disable --now redis-server >/dev/null 2>&1 || true; }; }
	@# postgresql: the store and cluster tests start their own server from /usr/lib/postgresql/*/bin in a temp
	@# dir on a free loopback port (the packaged cluster service is stopped and disabled).
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends postgresql && \
		{ ! command -v systemctl >/dev/null || $$sudo_cmd systemctl disable --now postgresql >/dev/null 2>&1 || true; }; }

# Regenerate dashboards/*.json, alerts/secure-agent.rules.yml, alerts/tests/ and runbooks/ from their sources.
observability-assets: bootstrap
	$(UV) run --frozen python dashboards/generate.py
	$(UV) run --frozen python alerts/generate.py

run: bootstrap
	$(UV) run --frozen secure-agent serve

doctor: bootstrap
	$(UV) run --frozen secure-agent doctor

manifest: bootstrap
	$(UV) run --frozen secure-agent manifest -o mcp_config.json

test: bootstrap node-tools system-deps bench-deps
	rm -f .coverage .coverage.*
	$(UV) run --frozen pytest -p no:cacheprovider --cov --cov-report=term --cov-fail-under=80 $(PYTEST_ARGS)

test-fast: bootstrap
	$(UV) run --frozen pytest -q -m "not node" $(PYTEST_ARGS)

lint: bootstrap
	$(UV) run --frozen ruff check services

# wrk (the load generator of `make bench`) from Debian, only when missing.
bench-deps:
	@command -v wrk >/dev/null || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends wrk; }

# Writes bench/results/mcp_bench.{json,md}. BENCH_ARGS: extra options of bench/mcp_bench.py.
BENCH_ARGS ?=
bench: bootstrap bench-deps
	$(UV) run --frozen python bench/mcp_bench.py $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .coverage .coverage.* htmlcov
