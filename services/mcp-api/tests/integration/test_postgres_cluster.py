"""Cluster mode on one machine: two `python -m mcp_api serve` processes on one real PostgreSQL
(started from the installed server binaries, tests/store/postgres_server.py), with shared
request-state keys. Legacy and modern clients alternate between them and every call succeeds; an
agent conversation and an input-required round trip continue across them; a key revoked in the
shared store is refused by both."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from integration.conftest import server_factory  # noqa: F401 - the shared live-server fixture
from mcp_helpers import Mcp, parse_rpc
from model_servers import ScriptedModel, Step, agent_env, run_agent
from store.postgres_server import postgres_server  # noqa: F401 - session PostgreSQL fixture

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel().start()
    yield server
    server.stop()


def _cli(env: dict[str, str], *args: str) -> str:
    hermetic = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_api", *args], env={**hermetic, **env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _elicitation_call(client: Mcp, arguments: dict, **extra) -> dict:
    body = client.body("tools/call", {"name": "agent_run", "arguments": arguments, **extra})
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {"form": {}}}
    return body


async def _post(client: Mcp, body: dict) -> dict:
    response = await client.http.post("/mcp", json=body, headers=client.headers("tools/call", "agent_run"))
    assert response.status_code == 200, response.text
    return parse_rpc(response)


async def test_two_processes_on_one_postgresql(server_factory, postgres_server, model, tmp_path):  # noqa: F811
    database_url = await postgres_server.create_database("cluster_" + secrets.token_hex(4))
    shared = {
        "SECURE_AGENT_DATABASE_URL": database_url,
        "SECURE_AGENT_REQUEST_STATE_KEYS": json.dumps([secrets.token_hex(32)]),
        "SECURE_AGENT_AGENT__POLICY": json.dumps({"ask_tools": ["delete_file"]}),
        **agent_env(model),
    }
    # Two replicas with their own data dirs (runner sockets) but one workspace volume, as pods
    # sharing a persistent workspace would have.
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    servers = []
    for name in ("a", "b"):
        data_dir = tmp_path / f"data-{name}"
        data_dir.mkdir()
        (data_dir / "workspaces").symlink_to(workspaces)
        servers.append(server_factory({**shared, "SECURE_AGENT_DATA_DIR": str(data_dir)}))
    a, b = servers
    assert a.process.pid != b.process.pid

    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=60) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=60) as http_b,
    ):
        clients = [
            Mcp(http=http_a, key=a.api_key, era="legacy"),
            Mcp(http=http_b, key=b.api_key, era="modern"),
            Mcp(http=http_a, key=a.api_key, era="modern"),
            Mcp(http=http_b, key=b.api_key, era="legacy"),
        ]
        for client in clients:
            listed = await client.request("tools/list")
            assert {"read_file", "write_file", "agent_run"} <= {t["name"] for t in listed["result"]["tools"]}

        # Files: written through one process, read through the other, in both eras.
        for i, (writer, reader) in enumerate(zip(clients, clients[1:] + clients[:1], strict=True)):
            wrote = await writer.call("write_file", path=f"n{i}.txt", content=f"note {i} via {writer.era}")
            assert not wrote.get("isError"), wrote
            read = await reader.call("read_file", path=f"n{i}.txt")
            assert not read.get("isError") and f"note {i} via {writer.era}" in json.dumps(read), read

        # An agent conversation starts on A (modern) and continues on B (legacy).
        model.push(
            Step.tools(("write_file", {"path": "kiwi.txt", "content": "kiwi"})), Step.answer("noted KIWI")
        )
        started = await run_agent(clients[2], prompt="write the word kiwi to kiwi.txt")
        assert started["status"] == "completed", started
        model.push(Step.answer("you asked me to write kiwi"))
        continued = await run_agent(
            clients[3], prompt="what did I ask before?", conversation_id=started["conversation_id"]
        )
        assert continued["status"] == "completed", continued
        assert continued["conversation_id"] == started["conversation_id"]
        sent = model.requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
        listed = await clients[0].call("conversation_list")
        assert listed["structuredContent"]["conversations"][0]["messages"] == 6

        # Input required: the requestState sealed by A is unsealed by B (shared keys), which resumes the run.
        (workspaces / "dev" / "default" / "old.txt").write_text("x")
        model.push(Step.tools(("delete_file", {"path": "old.txt"})), Step.answer("finished"))
        arguments = {"prompt": "delete old.txt"}
        first = (await _post(clients[2], _elicitation_call(clients[2], arguments)))["result"]
        assert first["resultType"] == "input_required", first
        retry = _elicitation_call(
            clients[1], arguments, inputResponses={"approval": {"action": "accept", "content": {"approve": True}}},
            requestState=first["requestState"],
        )  # fmt: skip
        second = (await _post(clients[1], retry))["result"]
        assert second["structuredContent"]["status"] == "completed", second
        assert not (workspaces / "dev" / "default" / "old.txt").exists()

        # A key made in the shared store works on both; revoked there, both refuse it at once.
        cli_env = {"SECURE_AGENT_DATABASE_URL": database_url, "SECURE_AGENT_DATA_DIR": str(tmp_path / "cli")}
        key = _cli(cli_env, "keys", "create", "--tenant", "acme").strip().splitlines()[-1]
        tenant_clients = [Mcp(http=http_a, key=key, era="modern"), Mcp(http=http_b, key=key, era="legacy")]
        for client in tenant_clients:
            assert (await client.post("tools/list")).status_code == 200
        _cli(cli_env, "keys", "revoke", key.split("_")[1])
        for client in tenant_clients:
            assert (await client.post("tools/list")).status_code == 401
        for client in clients:  # the dev key is untouched
            assert (await client.post("tools/list")).status_code == 200
