"""Both Dockerfiles build with buildah, every step for real, on the python:3.12-slim stand-in; the images
carry what they must (non-root user, OCI labels, health check, volumes) and nothing they must not
(uv, pip, compilers, the sources, anything writable outside the volumes and the sticky temp dirs)."""

from __future__ import annotations

import re
import subprocess

import pytest
from images_helpers import ROOT, SERVICES, inspect_image, needs_engine, podman

# The first test to use `images` pays for the session build (every step, ~1-3 min here).
pytestmark = [needs_engine, pytest.mark.integration, pytest.mark.timeout(900)]

OCI_LABELS = ("title", "description", "version", "revision", "created", "source", "licenses", "base.name")
VOLUMES = {"mcp-api": "/data", "agent-runner": "/workspace"}
# World-writable in every Debian-based image (sticky bit); read-only under --read-only.
STICKY_TMP = {"/tmp", "/var/tmp", "/run/lock", "/var/lock"}


def test_stand_in_base_has_python_where_the_real_image_has_it(images):
    out = podman(
        "run", "--rm", "--read-only", images.base, "/bin/sh", "-c",
        "readlink -f /usr/local/bin/python3; readlink -f /usr/local/bin/python; "
        "/usr/local/bin/python3 -c 'import sys, ssl, sqlite3, venv; print(sys.version_info[:2] >= (3, 11))'",
    ).stdout.split()  # fmt: skip
    assert out[1] == out[0] and out[2] == "True", out
    labels = inspect_image(images.base)["Config"].get("Labels") or {}
    if labels.get("dev.secure-agent.stand-in-base"):  # not the real python:3.12-slim
        assert out[0].startswith("/usr/bin/python3."), "Debian's interpreter, symlinked into /usr/local/bin"


@pytest.mark.parametrize("service", SERVICES)
def test_every_dockerfile_step_ran(images, service):
    """No layer from a cache: each step of the Dockerfile appears in the log and was executed."""
    if not images.seconds:
        pytest.skip("IMAGE_TESTS_REUSE_TAG: images built earlier, maybe from cached layers")
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    log = images.logs[service]
    instructions = [
        line.split()[0].upper()
        for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    steps = re.findall(r"STEP (\d+)/(\d+): (\w+)", log)
    # Global ARGs (before the first FROM) are not build steps.
    first_from = instructions.index("FROM")
    assert [s[2] for s in steps] == instructions[first_from:], (steps, instructions)
    assert "Using cache" not in log
    assert f"COMMIT secure-agent/{service}:" in log
    # The dependency layers really installed from uv.lock (and the workspace packages as wheels).
    assert re.search(r"Installed \d+ packages", log)
    assert "Built agent-runner @ file:///src/services/agent-runner" in log


@pytest.mark.parametrize("service", SERVICES)
def test_image_config(images, service):
    image = inspect_image(images.tags[service])
    config = image["Config"]
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    for key in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # The commit the build saw (HEAD may have moved on since): a commit of this repository.
    revision = labels["org.opencontainers.image.revision"]
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True
        )
        assert known.returncode == 0, revision
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert image["Healthcheck"]["Test"][0] == "CMD" and image["Healthcheck"]["Retries"] == 3
    assert VOLUMES[service] in config["Volumes"]
    assert any(v.startswith("PATH=/opt/venv/bin:") for v in config["Env"])


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_holds_only_the_venv(images, service):
    script = (
        "for t in uv pip pip3 gcc cc c++ make ld; do command -v $t && echo FOUND $t; done; "
        "test -e /opt/uv && echo FOUND /opt/uv; test -e /src && echo FOUND /src; "
        "python3 -c 'import sys; print(sys.prefix)'; "
        "find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -writable -print 2>/dev/null; true"
    )
    out = podman(
        "run", "--rm", "--user", "10001:10001", "--entrypoint", "/bin/sh", images.tags[service], "-c", script,
    ).stdout.split()  # fmt: skip
    assert "FOUND" not in out, out
    assert out[0] == "/opt/venv"
    writable = set(out[1:])
    assert writable - STICKY_TMP == {VOLUMES[service]}, writable
    # The installed packages: mcp-api has both, the runner image only the runner.
    probe = (
        "import importlib.util as u; print(bool(u.find_spec('mcp_api')), bool(u.find_spec('agent_runner')))"
    )
    found = podman("run", "--rm", "--entrypoint", "python3", images.tags[service], "-c", probe).stdout.split()
    assert found == (["True", "True"] if service == "mcp-api" else ["False", "True"])
