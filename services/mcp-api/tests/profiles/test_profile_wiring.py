"""AgentProfiles wired into the app: the profile of the calling tenant decides its tools, its command
limits and its agent, and an edit of `config/profiles/*.yaml` applies to the next call, no restart.

Real app (lifespan running the profile poller), real store, real runner processes; the files are
edited on disk and the tests wait for the app's own poll to see them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp
from profile_helpers import POLL_S, profile_settings, write_profile

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, profiles_dir: Path) -> Settings:
    return profile_settings(tmp_path, profiles_dir)


@pytest.fixture
def client(http) -> Mcp:
    return Mcp(http=http, era="modern")


async def applied(app, name: str, predicate) -> None:
    """Wait until the app's own poller has put a spec satisfying `predicate` in force (or reported)."""
    registry = app.state.services.profiles.registry
    for _ in range(200):
        state = registry.state(name)
        if state is not None and predicate(state):
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"profile {name} never reached the expected state: {registry.snapshot()}")


async def tool_names(client: Mcp) -> set[str]:
    message = await client.request("tools/list")
    return {tool["name"] for tool in message["result"]["tools"]}


async def test_allowed_tools_hide_and_refuse_and_follow_file_edits(app, client, profiles_dir, workspace):
    write_profile(profiles_dir, "readers", """
        tenants: [dev]
        allowedTools: [read_file, list_*]
    """)  # fmt: skip
    await applied(app, "readers", lambda s: s.spec is not None)
    assert await tool_names(client) == {"read_file", "list_directory"}
    refused = await client.call("write_file", path="x.txt", content="no")
    assert refused["isError"] is True
    text = refused["content"][0]["text"]
    assert "tool 'write_file' is not allowed" in text and "AgentProfile 'readers'" in text
    assert not (workspace / "x.txt").exists()
    # An allowed tool still works (scopes and the runner are untouched by the gate).
    (workspace / "a.txt").write_text("hello")
    assert (await client.call("read_file", path="a.txt"))["content"][0]["text"] == "hello"

    # Edit the file: the very next call sees the new profile (no restart).
    write_profile(profiles_dir, "readers", """
        tenants: [dev]
        allowedTools: ["*"]
    """)  # fmt: skip
    await applied(app, "readers", lambda s: s.spec is not None and s.spec.allowed_tools == ["*"])
    assert "write_file" in await tool_names(client)
    done = await client.call("write_file", path="x.txt", content="yes")
    assert done.get("isError") is not True, done
    assert (workspace / "x.txt").read_text() == "yes"

    # An invalid edit keeps the last good spec in force, and /diagnostics says why.
    write_profile(profiles_dir, "readers", """
        tenants: [dev]
        allowedTools: [read_file]
        sandbox: {poolSize: -1}
    """)  # fmt: skip
    await applied(app, "readers", lambda s: s.problem is not None)
    assert "write_file" in await tool_names(client)
    assert (await client.call("write_file", path="y.txt", content="still"))["isError"] is not True
    diagnostics = (
        await client.http.get("/diagnostics", headers={"authorization": f"Bearer {TEST_KEY}"})
    ).json()["profiles"]
    (entry,) = [p for p in diagnostics["profiles"] if p["name"] == "readers"]
    assert entry["in_force"] and "spec.sandbox.poolSize" in entry["problem"]
    assert diagnostics["source"] == f"files:{profiles_dir}"


async def test_withheld_read_file_also_withholds_workspace_resources(app, client, profiles_dir, workspace):
    (workspace / "a.txt").write_text("secret")
    uri = "workspace://a.txt"
    read = await client.request("resources/read", {"uri": uri}, name=uri)
    assert read["result"]["contents"][0]["text"] == "secret"  # the control: readable by default
    write_profile(profiles_dir, "nofiles", """
        tenants: [dev]
        allowedTools: [run_command]
    """)  # fmt: skip
    await applied(app, "nofiles", lambda s: s.spec is not None)
    listed = await client.request("resources/list")
    assert not [r for r in listed["result"]["resources"] if r["uri"].startswith("workspace://")]
    refused = await client.request("resources/read", {"uri": uri}, name=uri)
    assert "secret" not in str(refused) and "tool 'read_file' is not allowed" in str(refused)


async def test_another_tenant_keeps_the_default_profile(app, client, profiles_dir):
    write_profile(profiles_dir, "others", """
        tenants: [someone-else]
        allowedTools: [read_file]
    """)  # fmt: skip
    await applied(app, "others", lambda s: s.spec is not None)
    assert {"write_file", "run_command", "agent_run"} <= await tool_names(client)


async def test_sandbox_limits_of_the_profile_reach_the_runner_and_follow_edits(
    app, client, profiles_dir, workspace
):
    # max_output_bytes is enforced by the runner alone: seeing it cut proves the runner got the limits.
    write_profile(profiles_dir, "small", """
        tenants: [dev]
        sandbox:
          limits: {max_output_bytes: 1024, max_timeout_s: 5, timeout_s: 5}
    """)  # fmt: skip
    await applied(app, "small", lambda s: s.spec is not None)
    big = ["python3", "-c", "print('x' * 5000)"]
    cut = (await client.call("run_command", command=big))["structuredContent"]["result"]
    assert cut["stdout_truncated"] is True and len(cut["stdout"]) < 2048 and "output" in cut["limits_hit"]
    over = await client.call("run_command", command=["true"], timeout_s=6)
    assert over["isError"] is True
    assert "timeout_s must be > 0 and <= 5, got 6" in over["content"][0]["text"]
    backend = app.state.services.runners
    first_pid = (await backend.status()).detail["alive"]["dev/default"]

    write_profile(profiles_dir, "small", """
        tenants: [dev]
        sandbox:
          limits: {max_output_bytes: 65536, max_timeout_s: 60}
    """)  # fmt: skip
    await applied(
        app, "small", lambda s: s.spec is not None and s.spec.sandbox.limits.max_output_bytes == 65536
    )
    whole = (await client.call("run_command", command=big))["structuredContent"]["result"]
    assert whole["stdout_truncated"] is False and whole["stdout"].strip() == "x" * 5000
    ok = await client.call("run_command", command=["true"], timeout_s=6)
    assert ok.get("isError") is not True, ok
    # The runner was restarted with the new policy (its workspace files stayed).
    assert (await backend.status()).detail["alive"]["dev/default"] != first_pid


async def test_runner_quota_of_the_profile(app, client, profiles_dir):
    write_profile(profiles_dir, "one", """
        tenants: [dev]
        quotas: {maxRunners: 1}
    """)  # fmt: skip
    await applied(app, "one", lambda s: s.spec is not None)
    assert (await client.call("list_directory", path=".", workspace="a")).get("isError") is not True
    refused = await client.call("list_directory", path=".", workspace="b")
    assert (
        refused["isError"] and "already has 1 active workspaces (the limit)" in refused["content"][0]["text"]
    )
    write_profile(profiles_dir, "one", """
        tenants: [dev]
        quotas: {maxRunners: 2}
    """)  # fmt: skip
    await applied(app, "one", lambda s: s.spec is not None and s.spec.quotas.max_runners == 2)
    assert (await client.call("list_directory", path=".", workspace="b")).get("isError") is not True


async def test_limits_that_do_not_fit_the_replica_are_refused_with_the_field(tmp_path, profiles_dir):
    from mcp_api.profiles.service import ProfileService

    settings = Settings(data_dir=tmp_path / "d", sandbox={"max_timeout_s": 100, "timeout_s": 30})
    service = ProfileService(settings)
    # Valid on its own (default max_timeout_s is 600), not over this replica's max_timeout_s of 100.
    result = service.registry.apply("p", {"tenants": ["t"], "sandbox": {"limits": {"timeout_s": 200}}})
    assert not result.valid and result.message.startswith("spec.sandbox.limits")
    assert "exceeds max_timeout_s" in result.message
    assert service.for_tenant("t").sandbox.timeout_s == 30  # nothing of it took effect
    # Fields the profile does not write keep the replica's settings.
    assert service.registry.apply("p", {"tenants": ["t"], "sandbox": {"limits": {"timeout_s": 50}}}).valid
    sandbox = service.for_tenant("t").sandbox
    assert (sandbox.timeout_s, sandbox.max_timeout_s) == (50, 100)


# -- the SecureAgent: supervisor policy, model roles and budgets from the profile ------------------


@pytest.fixture
def model():
    from model_servers import ScriptedModel

    server = ScriptedModel().start()
    yield server
    server.stop()


@pytest.fixture
def agent_settings(tmp_path: Path, profiles_dir: Path, model) -> Settings:
    import json

    from model_servers import agent_env

    env = agent_env(model)
    return Settings(
        data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"idle_timeout_s": 60},
        profiles={"directory": str(profiles_dir), "poll_interval_s": POLL_S},
        agent={"providers": json.loads(env["SECURE_AGENT_AGENT__PROVIDERS"]),
               "roles": json.loads(env["SECURE_AGENT_AGENT__ROLES"])},
    )  # fmt: skip


async def test_agent_follows_the_profile_policy_roles_and_budgets(
    agent_settings, profiles_dir, model, workspace
):
    import httpx
    from mcp_api.app import create_app
    from model_servers import Step, run_agent

    write_profile(profiles_dir, "careful", """
        tenants: [dev]
        policy: {allowed_tools: [read_file]}
        models:
          roles: {reviewer: {provider: scripted, model: profile-model}}
        quotas: {agentMaxSteps: 2}
    """)  # fmt: skip
    app = create_app(agent_settings)
    async with app.router.lifespan_context(app):
        await applied(app, "careful", lambda s: s.spec is not None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost:8080", timeout=30
        ) as http:
            client = Mcp(http=http, era="modern")
            model.push(Step.tools(("write_file", {"path": "x.txt", "content": "hi"})), Step.answer("done"))
            result = await run_agent(client, prompt="write x.txt", role="reviewer")
            # The profile's role picked the model; its policy offered only read_file and refused the write.
            assert model.requests[0]["model"] == "profile-model"
            assert [t["function"]["name"] for t in model.requests[0]["tools"]] == ["read_file"]
            assert result["actions"][0]["tool"] == "write_file" and result["actions"][0]["decision"] == "deny"
            assert not (workspace / "x.txt").exists()
            # The profile's step budget (2, where the settings allow 20).
            model.push(*[Step.tools(("read_file", {"path": "nothing.txt"}))] * 3)
            result = await run_agent(client, prompt="loop")
            assert result["status"] == "limit" and "max_steps=2" in result["error"], result

            # Edited profile: the next run has the settings' policy and budget again.
            write_profile(profiles_dir, "careful", "tenants: [dev]")
            await applied(app, "careful", lambda s: "policy" not in s.spec.model_fields_set)
            model.push(Step.tools(("write_file", {"path": "x.txt", "content": "hi"})), Step.answer("done"))
            result = await run_agent(client, prompt="write x.txt")
            assert result["status"] == "completed" and result["actions"][0]["decision"] == "allow", result
            assert (workspace / "x.txt").read_text() == "hi"


# -- cluster mode: AgentProfile custom resources of the namespace, watched by the app -------------


async def test_cluster_mode_follows_agentprofile_resources(tmp_path):
    import httpx
    from mcp_api.app import create_app
    from profiles.test_profile_watch import NS, cluster, conditions, create, eventually, get, patch, profile

    async with cluster() as (emulator, api_client):
        emulator.resources["v1/pods"] = {}
        emulator.resources["v1/secrets"] = {}
        await create(api_client, profile("locked", {"tenants": ["dev"], "allowedTools": ["read_file"]}))
        settings = Settings(
            data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"backend": "kubernetes"},
            kubernetes={"api_url": api_client.configuration.host, "namespace": "runners", "warm_pool_size": 0},
            profiles={"namespace": NS},
        )  # fmt: skip
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as http:
                client = Mcp(http=http, era="modern")
                # Listed before the first request: the lifespan waited for the initial list.
                assert await tool_names(client) == {"read_file"}
                refused = await client.call("run_command", command=["true"])
                assert refused["isError"] and "AgentProfile 'locked'" in refused["content"][0]["text"]

                await patch(
                    api_client, "locked", {"metadata": {"generation": 2}, "spec": {"allowedTools": ["*"]}}
                )
                await eventually(lambda: _has(client, "run_command"))

                # Invalid: the CR's status says so and the last good spec (generation 2) stays in force.
                bad = {"allowedTools": ["read_file"], "sandbox": {"poolSize": -1}}
                await patch(api_client, "locked", {"metadata": {"generation": 3}, "spec": bad})

                async def reported():
                    cond = conditions(await get(api_client, "locked"))
                    return (
                        cond["Invalid"]["status"] == "True"
                        and cond["Ready"]["reason"] == "LastGoodSpecInForce"
                    )

                await eventually(reported)
                assert "run_command" in await tool_names(client)
                assert app.state.services.profiles.source == f"kubernetes:{NS}"
        # The lifespan stopped the watch thread.
        assert app.state.services.profiles.watcher is None


async def _has(client: Mcp, tool: str) -> bool:
    return tool in await tool_names(client)
