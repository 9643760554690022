"""templates/tests/test-mcp.yaml: the `helm test` pod's own script, run unchanged against a real mcp-api
(`secure-agent serve` on a loopback port) with the key file the pod would mount: it passes with the
right key (health + tools/list) and fails with a wrong one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chart_helpers import ROOT, one, render_case

pytestmark = pytest.mark.integration
KEY = "sa_charttests01_" + "k" * 40  # api_keys.KEY_RE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("mcp-api")
    port = _free_port()
    env = {**os.environ, "SECURE_AGENT_DEV_API_KEY": KEY, "SECURE_AGENT_DATA_DIR": str(data),
           "SECURE_AGENT_PORT": str(port), "SECURE_AGENT_PROFILES__DIRECTORY": "null", "SECURE_AGENT_LOG_LEVEL": "WARNING"}  # fmt: skip
    exe = Path(sys.executable).with_name("secure-agent")
    log = data / "server.log"
    proc = subprocess.Popen(
        [str(exe), "serve"], env=env, cwd=data, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"mcp-api did not start: {log.read_text()[-2000:] if proc.poll() is not None else 'timeout'}"
                    )
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run_pod_script(base: str, key: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    pod = one(render_case("default"), "Pod", "test")
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["python3", "-c"]
    env_names = {e["name"] for e in container["env"]}
    assert env_names == {"MCP_BASE_URL", "MCP_API_KEY_FILE"}
    key_file = tmp_path / "api-key"
    key_file.write_text(key)
    env = {**os.environ, "MCP_BASE_URL": base, "MCP_API_KEY_FILE": str(key_file)}
    return subprocess.run(
        [sys.executable, "-c", container["command"][2]], env=env, capture_output=True, text=True, timeout=60
    )


def test_pod_script_passes_against_a_real_server(server: str, tmp_path: Path) -> None:
    result = _run_pod_script(server, KEY, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "health ok" in result.stdout
    assert "tools:" in result.stdout and "read_file" in result.stdout


def test_pod_script_fails_with_a_wrong_key(server: str, tmp_path: Path) -> None:
    result = _run_pod_script(server, "sa_wrongwrong12_" + "x" * 40, tmp_path)
    assert result.returncode != 0
    assert "401" in result.stderr


def test_pod_reads_the_key_from_the_release_secret() -> None:
    docs = render_case("default")
    pod = one(docs, "Pod", "test")
    (vol,) = pod["spec"]["volumes"]
    assert vol["secret"]["secretName"] == one(docs, "Secret")["metadata"]["name"]
    assert vol["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert (
        pod["spec"]["containers"][0]["env"][0]["value"]
        == "http://sa-secure-agent-mcp-api.secure-agent.svc:8080"
    )
    assert ROOT.is_dir()
