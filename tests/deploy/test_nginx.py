"""deploy/nginx/secure-agent.conf with the real Debian nginx.

- the streaming-safety directives are there (buffering/cache off on /mcp, long timeouts, HTTP/1.1
  keepalive upstream, forwarded headers, TLS, limit_req/limit_conn), and client_max_body_size equals
  the server's own body limit (Settings.max_request_bytes);
- `nginx -t` accepts the file, included in an http block exactly as Debian's nginx.conf includes
  conf.d/*.conf (only listen ports, upstream port, certificate and log paths are rewritten, to a temp
  prefix and a self-signed certificate made here);
- end to end: nginx with this file in front of a real `secure-agent serve` on loopback: an MCP
  tools/list over https through it works (Host and X-Forwarded-* reach the server, which only
  accepts the public host name), plain http is redirected, oversized bodies get 413 from nginx, and an
  agent_run's SSE progress events arrive while the run is still going (not buffered until the end);
  the same config with buffering forced on holds them back, so the check can tell the difference;
  X-Forwarded-Proto is believed by the server (HSTS appears through the proxy, not directly).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploy_helpers import REPO
from mcp_api.settings import Settings

CONF = REPO / "deploy/nginx/secure-agent.conf"
HOST = "mcp.example.com"
MIB = 1024 * 1024


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


NGINX = nginx_binary()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx missing: `make system-deps` installs Debian's nginx")


def directives(text: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{re.escape(name)}\s+([^;]*);", text, re.M)]


def location_block(text: str, prefix: str) -> str:
    start = text.index(f"location {prefix} {{")
    return text[start : text.index("}", start)]


def test_streaming_directives() -> None:
    text = CONF.read_text()
    mcp = location_block(text, "/mcp")
    for needed in ("proxy_buffering off", "proxy_cache off", "proxy_request_buffering off", "gzip off",
                   "proxy_pass http://secure_agent"):  # fmt: skip
        assert needed in mcp, needed
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = directives(mcp, name)
        assert int(value.rstrip("s")) >= 3600
    assert directives(text, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directives(text, "proxy_set_header")
    assert re.search(r"upstream secure_agent \{[^}]*keepalive \d+;", text)
    headers = {h.split()[0]: h.split(None, 1)[1] for h in directives(text, "proxy_set_header")}
    assert headers["Host"] == "$host"
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert "X-Forwarded-Host" in headers and "X-Real-IP" in headers
    assert any("ssl" in v.split() for v in directives(text, "listen"))
    assert directives(text, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert directives(text, "limit_req_zone") and directives(text, "limit_conn_zone")
    assert directives(text, "limit_req") and directives(text, "limit_conn")


def test_body_limit_matches_the_server() -> None:
    (value,) = directives(CONF.read_text(), "client_max_body_size")
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    limit = int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)
    assert limit == Settings.model_fields["max_request_bytes"].default


# ---- running nginx ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localized(text: str, root: Path, *, tls_port: int, http_port: int, upstream_port: int) -> str:
    """The shipped file with only host-specific parts moved into the temp prefix. Each rewrite must hit."""
    cert, key = root / "cert.pem", root / "key.pem"
    rewrites = [
        (r"^\s*listen \[::\]:(80|443)[^;]*;\n", "", 2),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;", 1),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        (r"server 127\.0\.0\.1:8080 ", f"server 127.0.0.1:{upstream_port} ", 1),
        (r"ssl_certificate /etc/letsencrypt/\S+;", f"ssl_certificate {cert};", 1),
        (r"ssl_certificate_key /etc/letsencrypt/\S+;", f"ssl_certificate_key {key};", 1),
        (r"access_log /var/log/nginx/\S+;", f"access_log {root}/access.log;", 1),
        (r"error_log /var/log/nginx/(\S+) (\w+);", rf"error_log {root}/error.log \2;", 1),
    ]
    for pattern, replacement, count in rewrites:
        text, n = re.subn(pattern, replacement, text, flags=re.M)
        assert n == count, f"{pattern!r} matched {n}x, expected {count}: the test needs updating"
    return text


def main_conf(root: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf does (an http block including conf.d/*.conf), in a temp prefix."""
    temp = "\n".join(f"    {d}_temp_path {root}/{d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must reach the 0700 pytest dirs
    return f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {root}/access.log;
{temp}
    include {root}/conf.d/*.conf;
}}
"""


def self_signed(root: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


def prepare(root: Path, upstream_port: int, *, site: str | None = None) -> tuple[int, int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conf.d").mkdir(exist_ok=True)
    self_signed(root)
    tls_port, http_port = free_port(), free_port()
    text = localized(site or CONF.read_text(), root, tls_port=tls_port, http_port=http_port, upstream_port=upstream_port)
    (root / "conf.d/secure-agent.conf").write_text(text)
    (root / "nginx.conf").write_text(main_conf(root))
    return tls_port, http_port


def nginx_cmd(root: Path, *extra: str) -> list[str]:
    return [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log"), *extra]


@needs_nginx
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    prepare(tmp_path / "nginx", free_port())
    result = subprocess.run(nginx_cmd(tmp_path / "nginx", "-t"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


class Nginx:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            nginx_cmd(root, "-g", "daemon off;"), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(root / "stderr.log", "wb"), start_new_session=True,
        )  # fmt: skip

    def wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited: {(self.root / 'stderr.log').read_text()}{(self.root / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("nginx did not listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: master and workers exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator:
    started: list[Nginx] = []

    def start(upstream_port: int, name: str = "nginx", site: str | None = None) -> tuple[Nginx, int, int]:
        root = tmp_path / name
        tls_port, http_port = prepare(root, upstream_port, site=site)
        proxy = Nginx(root)
        started.append(proxy)
        proxy.wait_listening(tls_port)
        return proxy, tls_port, http_port

    yield start
    for proxy in started:
        proxy.stop()


class Server:
    """`secure-agent serve` (python -m mcp_api serve) on loopback, only accepting the public host name.
    No https public_url: it would turn HSTS on for every response, and HSTS is how the test sees that the
    server believed the proxy's X-Forwarded-Proto."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        from mcp_helpers import TEST_KEY

        self.port = free_port()
        self.key = TEST_KEY
        self.log = root / "server.log"
        root.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_api", "serve"], cwd=root, stdin=subprocess.DEVNULL,
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**clean, "PYTHONUNBUFFERED": "1", "SECURE_AGENT_PORT": str(self.port),
                 "SECURE_AGENT_DATA_DIR": str(root / "data"), "SECURE_AGENT_DEV_API_KEY": TEST_KEY,
                 "SECURE_AGENT_ALLOWED_HOSTS": json.dumps([HOST, f"{HOST}:*"]),
                 "SECURE_AGENT_ALLOWED_ORIGINS": json.dumps([f"https://{HOST}"]),
                 "SECURE_AGENT_TRUSTED_PROXIES": json.dumps(["127.0.0.1/32"]), **env},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"server did not become healthy: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(env: dict[str, str] | None = None) -> Server:
        server = Server(tmp_path / "server", env or {})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def mcp_headers(key: str, method: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json",
            "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25",
            "host": HOST}  # fmt: skip


def events(response: httpx.Response) -> Iterator[tuple[float, dict]]:
    """(arrival time, JSON-RPC message) for each SSE data line, as the bytes come in."""
    for line in response.iter_lines():
        if line.startswith("data:") and line[5:].strip():
            yield time.monotonic(), json.loads(line[5:])


@needs_nginx
@pytest.mark.integration
def test_mcp_through_nginx(start_server, start_nginx) -> None:
    from model_servers import ScriptedModel, Step, agent_env

    model = ScriptedModel().start()
    try:
        server = start_server(agent_env(model))
        proxy, tls_port, http_port = start_nginx(server.port)
        base = f"https://127.0.0.1:{tls_port}"
        with httpx.Client(base_url=base, verify=False, timeout=30) as client:  # noqa: S501 - self-signed, loopback
            # tools/list, JSON-RPC over TLS through the proxy; the server accepts only Host mcp.example.com.
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            response = client.post("/mcp", json=body, headers=mcp_headers(server.key, "tools/list"))
            assert response.status_code == 200, response.text
            text = response.text
            message = json.loads(text) if response.headers["content-type"].startswith("application/json") else \
                [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")][-1]
            names = {tool["name"] for tool in message["result"]["tools"]}
            assert {"read_file", "run_command", "agent_run"} <= names
            assert "nginx/" not in response.headers.get("server", "")  # server_tokens off

            # Probes pass through; /metrics stays private.
            assert client.get("/health", headers={"host": HOST}).status_code == 200
            assert client.get("/metrics", headers={"host": HOST}).status_code == 404

            # Over the body limit: nginx refuses, the server never sees it.
            big = b"x" * (Settings.model_fields["max_request_bytes"].default + 1)
            refused = client.post("/mcp", content=big, headers=mcp_headers(server.key, "tools/list"))
            assert refused.status_code == 413

            # SSE streaming: an agent run whose second model turn takes 2 s. Its progress event for the
            # first step must arrive while the run is still going, well before the final result.
            model.push(Step.tools(("list_directory", {"path": "."})), lambda _: (time.sleep(2.0), Step.answer("done"))[1])
            gap = _progress_gap(client, server.key)
            assert gap >= 1.0, f"progress arrived only {gap:.2f}s before the result: the proxy buffers SSE"

        # X-Forwarded-Proto reached the server from its trusted proxy: it knows the client used https and
        # sends HSTS, which it does not on its own plain-http port.
        assert "max-age=" in response.headers.get("strict-transport-security", "")
        direct = httpx.post(f"http://127.0.0.1:{server.port}/mcp", json=body, headers=mcp_headers(server.key, "tools/list"))
        assert direct.status_code == 200 and "strict-transport-security" not in direct.headers
        # Plain http: redirected to https, nothing served.
        redirect = httpx.get(f"http://127.0.0.1:{http_port}/mcp", headers={"host": HOST})
        assert redirect.status_code == 308 and redirect.headers["location"] == f"https://{HOST}/mcp"

        # Negative control: the same file with buffering forced on (and the server's X-Accel-Buffering
        # ignored) holds the progress back, so the check above does detect buffering.
        buffered = CONF.read_text().replace("proxy_buffering off;", "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;")  # fmt: skip
        _, buffered_port, _ = start_nginx(server.port, name="nginx-buffered", site=buffered)
        model.push(Step.tools(("list_directory", {"path": "."})), lambda _: (time.sleep(2.0), Step.answer("done"))[1])
        with httpx.Client(base_url=f"https://127.0.0.1:{buffered_port}", verify=False, timeout=30) as client:  # noqa: S501
            assert _progress_gap(client, server.key) < 0.5
    finally:
        model.stop()


def _progress_gap(client: httpx.Client, key: str) -> float:
    """Seconds between the first progress notification and the final result of an agent_run."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "agent_run", "arguments": {"prompt": "look around", "max_steps": 4},
                       "_meta": {"progressToken": "p1"}}}  # fmt: skip
    headers = mcp_headers(key, "tools/call") | {"accept": "text/event-stream, application/json"}
    progress_at = result_at = None
    with client.stream("POST", "/mcp", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for at, message in events(response):
            if message.get("method") == "notifications/progress" and progress_at is None:
                progress_at = at
            if message.get("id") == 7:
                assert "result" in message and not message["result"].get("isError"), message
                result_at = at
    assert progress_at is not None, "no progress notification arrived"
    assert result_at is not None
    return result_at - progress_at
