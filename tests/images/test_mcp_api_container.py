"""The mcp-api image serves under the hardened runtime flags a deployment uses: read-only root,
uid 10001, a noexec tmpfs /tmp, no capabilities, no-new-privileges. gunicorn (uvicorn workers, the
image's CMD and services/mcp-api/gunicorn.conf.py) answers /health and an authenticated MCP
initialize; every process runs as 10001; the root filesystem refuses writes; the HEALTHCHECK passes."""

from __future__ import annotations

import json
import urllib.request

import pytest
from images_helpers import free_port, needs_engine, podman, unique_name, wait_http

# The first test to use `images` pays for the session build (every step, ~1-3 min here).
pytestmark = [needs_engine, pytest.mark.integration, pytest.mark.timeout(900)]

KEY = "sa_imagetest001_" + "Qm7-xT2_kP9sLw4Rz8Yb5Nc"
HARDENED = [
    "--read-only", "--user", "10001:10001", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m",
    "--cap-drop=ALL", "--security-opt", "no-new-privileges",
]  # fmt: skip


def test_mcp_api_serves_read_only_as_10001(images, containers):
    name = unique_name("mcp-api")
    port = free_port()
    containers.append(name)
    podman(
        "run", "--detach", "--name", name, *HARDENED,
        "--publish", f"127.0.0.1:{port}:8080",
        "--env", f"SECURE_AGENT_DEV_API_KEY={KEY}", "--env", "SECURE_AGENT_WORKERS=2",
        images.tags["mcp-api"],
    )  # fmt: skip
    status, body = wait_http(f"http://127.0.0.1:{port}/health", name=name)
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"

    # gunicorn master + 2 workers, all uid 10001 (real, effective, saved, filesystem) and gid 10001.
    top = podman("top", name, "pid", "user", "group", "args").stdout.splitlines()[1:]
    assert len([line for line in top if "gunicorn" in line]) == 3, top
    status_lines = podman("exec", name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status_lines.splitlines() if ":" in line)
    assert fields["Uid"].split() == ["10001"] * 4
    assert fields["Gid"].split() == ["10001"] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"

    # An authenticated MCP initialize through the whole stack (auth, store on the /data volume).
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "image-test", "version": "1"}},
        }).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                 "Accept": "application/json, text/event-stream"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200
        text = response.read().decode()
    assert '"serverInfo"' in text, text

    # Writable: the /data volume and the tmpfs /tmp, nothing else; /tmp is noexec.
    probe = (
        "import os, errno, subprocess\n"
        "def write(p):\n"
        "    try:\n"
        "        open(p, 'w').close(); return 'ok'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "print(write('/probe'), write('/opt/venv/probe'), write('/etc/probe'), write('/data/probe'), write('/tmp/probe.sh'))\n"
        "os.chmod('/tmp/probe.sh', 0o755)\n"
        "print(subprocess.run(['/bin/sh', '-c', '/tmp/probe.sh']).returncode)\n"
    )
    out = podman("exec", name, "python3", "-c", probe).stdout.split()
    assert out == ["EROFS", "EROFS", "EROFS", "ok", "ok", "126"], out
    assert podman("exec", name, "stat", "-c", "%u:%g %a", "/data").stdout.split() == ["10001:10001", "700"]

    # The image's HEALTHCHECK (python + urllib to /health) passes.
    check = podman("healthcheck", "run", name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
