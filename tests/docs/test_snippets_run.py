"""Every `curl ... http://localhost:8080/...` command in README.md and docs/ is run against a real server
(port substituted; KEY / ADMIN_KEY are the dev key, which has every scope) and must succeed: exit 0, and
no JSON-RPC error or HTTP error status in the answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_check_lib as lib  # noqa: E402
import docs_helpers as h  # noqa: E402

pytestmark = pytest.mark.integration


def curl_commands() -> list[tuple[str, str]]:
    found = []
    for path in lib.doc_files():
        lines = path.read_text().splitlines()
        for block in lib.code_blocks(lines, set()):
            if block.lang not in lib.SHELL_LANGS:
                continue
            for offset, logical in lib.logical_lines(block.text):
                command = logical.split(" #")[0].strip()
                if command.startswith("curl ") and "localhost:8080" in command:
                    found.append((f"{path.relative_to(lib.REPO)}:{block.line + offset}", command))
    return found


def test_the_docs_have_curl_examples() -> None:
    where = {w.split(":")[0] for w, _ in curl_commands()}
    assert {"docs/clients/other-clients.md", "docs/clients/troubleshooting.md", "docs/operations.md"} <= where


def test_every_local_curl_example_works(tmp_path: Path) -> None:
    server = h.start_server(tmp_path, h.hermetic_env(SECURE_AGENT_DEV_API_KEY=h.FIXED_KEY))
    env = h.hermetic_env(KEY=h.FIXED_KEY, ADMIN_KEY=h.FIXED_KEY)
    failures = []
    try:
        for where, command in curl_commands():
            script = command.replace("localhost:8080", f"localhost:{server.port}")
            # -f: an HTTP error status fails the command (unless the example shows headers with -i).
            script = (
                script.replace("curl ", "curl -f ", 1)
                if " -i" not in script and "-si" not in script
                else script
            )
            ran = h.run_bash(script, tmp_path, env, timeout=60)
            out = ran.stdout.strip()
            body = out.split("\n")[-1]
            problem = None
            if ran.returncode != 0:
                problem = f"exit {ran.returncode}: {ran.stderr.strip()[-300:]}"
            else:
                try:
                    data = json.loads(body[body.index("{") :]) if "{" in body else None
                except ValueError:
                    data = None
                if isinstance(data, dict) and "error" in data:
                    problem = f"JSON-RPC error: {data['error']}"
                elif "event: message" in out and '"error"' in out:
                    problem = f"error in SSE answer: {out[-300:]}"
            if problem:
                failures.append(f"{where}: {command[:100]}... -> {problem}")
    finally:
        server.stop()
    assert not failures, "\n".join(failures)


def dry_runs() -> list[tuple[str, str]]:
    """`deploy/*.sh ... --dry-run` lines of the docs: they print the helm command and change nothing."""
    found = []
    for path in lib.doc_files():
        for block in lib.code_blocks(path.read_text().splitlines(), set()):
            if block.lang in lib.SHELL_LANGS:
                for offset, logical in lib.logical_lines(block.text):
                    command = logical.split(" #")[0].strip()
                    if command.startswith("deploy/") and command.endswith("--dry-run"):
                        found.append((f"{path.relative_to(lib.REPO)}:{block.line + offset}", command))
    return found


def test_documented_deploy_dry_runs_work() -> None:
    commands = dry_runs()
    assert any(where.startswith("docs/deployment.md") for where, _ in commands)
    for where, command in commands:
        ran = h.run_bash(command, lib.REPO, h.hermetic_env(), timeout=60)
        assert ran.returncode == 0, f"{where}: {command}\n{ran.stdout}{ran.stderr}"
        assert ran.stdout.startswith("helm upgrade --install secure-agent"), f"{where}: {ran.stdout[:300]}"
