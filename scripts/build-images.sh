#!/usr/bin/env bash
# Builds the two service images with buildah (no Docker engine needed):
#   secure-agent/mcp-api:dev        from services/mcp-api/Dockerfile
#   secure-agent/agent-runner:dev   from services/agent-runner/Dockerfile
# on the base docker.io/library/python:3.12-slim; when that image is not in local storage (it cannot
# be pulled here) the debootstrap stand-in of images/base/build.sh is built first.
#
#   scripts/build-images.sh                  # both (make images)
#   scripts/build-images.sh mcp-api          # one
#   TAG=1.2.3 scripts/build-images.sh        # another tag; NO_CACHE=1 rebuilds every layer
#
# The build context is the repository root (.dockerignore allowlists what the images need). RUN steps
# use the host's network (PyPI) and, when the host has one, its CA bundle mounted read-only over the
# image's (a TLS-inspecting proxy's CA then works; nothing of it ends up in a layer).
# Needs root, buildah (make image-deps); CONTAINERS_CONF defaults to images/containers.conf.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/images/containers.conf}"
TAG="${TAG:-dev}"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/python:3.12-slim}"
UV_VERSION="$(sed -n 's/^UV_VERSION := //p' Makefile)"
CA_BUNDLE="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LOGS="${BUILD_LOG_DIR:-$ROOT/.tools/images/logs}"
mkdir -p "$LOGS"
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(mcp-api agent-runner)

command -v buildah >/dev/null || { echo "buildah is missing: make image-deps" >&2; exit 1; }

if [ "$BASE_IMAGE" = docker.io/library/python:3.12-slim ]; then
    # Up to date: a no-op. A real python:3.12-slim already in storage (no stand-in label) is kept.
    if ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 \
        || [ -n "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "dev.secure-agent.stand-in-base"}}' "$BASE_IMAGE")" ]; then
        images/base/build.sh
    fi
fi

args=(--format docker --network host --build-arg "BASE_IMAGE=$BASE_IMAGE"
      --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
      --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      --build-arg "SOURCE=$(git remote get-url origin 2>/dev/null || echo unknown)")
[ -n "$UV_VERSION" ] && args+=(--build-arg "UV_VERSION=$UV_VERSION")
[ -s "$CA_BUNDLE" ] && args+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
if [ "${NO_CACHE:-0}" = 1 ]; then args+=(--no-cache --layers=false); else args+=(--layers); fi

for service in "${services[@]}"; do
    [ -f "services/$service/Dockerfile" ] || { echo "no services/$service/Dockerfile" >&2; exit 1; }
    start=$SECONDS
    echo "building secure-agent/$service:$TAG"
    buildah bud "${args[@]}" -f "services/$service/Dockerfile" -t "secure-agent/$service:$TAG" . \
        >"$LOGS/build-$service.log" 2>&1 \
        || { tail -40 "$LOGS/build-$service.log" >&2; echo "build of $service failed" >&2; exit 1; }
    echo "built secure-agent/$service:$TAG in $((SECONDS - start)) s"
done
