"""Helpers of the image tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "images" / "containers.conf"
TEST_TAG = "imagetest"
SERVICES = ("mcp-api", "agent-runner")
MISSING = [tool for tool in ("podman", "buildah") if shutil.which(tool) is None]
needs_engine = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed (make image-deps installs them)"
)


# conmon writes an `oom` marker into its working directory when a container is OOM-killed (the
# memory-limit test does that on purpose): run the engine from a scratch directory, not the checkout.
ENGINE_CWD = tempfile.mkdtemp(prefix="secure-agent-engine-cwd-")
atexit.register(shutil.rmtree, ENGINE_CWD, True)


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout, input=input,
        cwd=ENGINE_CWD,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str) -> str:
    return f"sa-imagetest-{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class BuiltImages:
    tags: dict[str, str]  # service -> image reference
    logs: dict[str, str]  # service -> build output
    seconds: dict[str, float]
    base: str


def inspect_image(ref: str) -> dict:
    return json.loads(podman("image", "inspect", ref).stdout)[0]


def wait_http(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = 60.0, name: str | None = None
):
    """GET url until it answers; returns (status, body). Fails early when the container exits."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            last = exc
        if name is not None:
            state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
            if state not in ("running", "created", "configured", ""):
                logs = podman("logs", name, check=False)
                raise AssertionError(
                    f"container {name} is {state}:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                )
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")
