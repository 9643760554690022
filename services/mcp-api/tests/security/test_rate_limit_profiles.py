"""The per-tenant cap on tool calls in flight comes from the tenant's AgentProfile
(`quotas.maxInflightToolCalls`), else `rate_limits.max_inflight_tool_calls_per_tenant`, and follows
edits of the profile file at the next call. Real app (lifespan polling config/profiles), real runner:
the calls held in flight are `run_command`s that wait for a file the test creates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp_api.profiles.effective import resolve
from mcp_api.profiles.model import AgentProfileSpec
from mcp_api.security.config import RateLimitSettings
from mcp_api.security.rate_limit import RateLimiter
from mcp_api.settings import Settings
from mcp_helpers import Mcp
from profile_helpers import POLL_S, profile_settings, write_profile

pytestmark = pytest.mark.anyio
SETTING = 3
WAIT = ["sh", "-c", "while [ ! -e release ]; do sleep 0.02; done"]


@pytest.fixture
def settings(tmp_path: Path, profiles_dir: Path) -> Settings:
    return profile_settings(
        tmp_path, profiles_dir, rate_limits={"max_inflight_tool_calls_per_tenant": SETTING}
    )


async def cap_becomes(app, want: int) -> None:
    """Wait for the app's own profile poll: the limiter's cap for the tenant is then `want`."""
    limiter = app.state.services.limiter
    for _ in range(200):
        if limiter.inflight_cap("dev") == want:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"in-flight cap never became {want}: {limiter.inflight_cap('dev')}")


async def holds_exactly(app, client: Mcp, workspace: Path, cap: int) -> None:
    """`cap` slow calls run at once; one more is refused naming the cap; then all finish."""
    limiter = app.state.services.limiter
    (workspace / "release").unlink(missing_ok=True)
    holders = [
        asyncio.create_task(client.call("run_command", command=WAIT, timeout_s=30)) for _ in range(cap)
    ]
    try:
        for _ in range(1500):
            if limiter._inflight.get("dev", 0) == cap or any(t.done() for t in holders):
                break
            await asyncio.sleep(0.01)
        assert limiter._inflight.get("dev") == cap, [t.result() for t in holders if t.done()]
        refused = await client.call("run_command", command=["true"])
        assert refused["isError"], refused
        assert (
            f"too many tool calls in flight for this tenant (at most {cap} at once)"
            in refused["content"][0]["text"]
        )
    finally:
        (workspace / "release").write_text("")
        results = await asyncio.gather(*holders)
    assert all(r.get("isError") is not True for r in results), results
    assert "dev" not in limiter._inflight


async def test_the_profiles_in_flight_cap_applies_and_follows_edits(app, http, profiles_dir, workspace):
    client = Mcp(http=http, era="modern")
    write_profile(profiles_dir, "capped", """
        tenants: [dev]
        quotas: {maxInflightToolCalls: 1}
    """)  # fmt: skip
    await cap_becomes(app, 1)
    await holds_exactly(app, client, workspace, 1)

    write_profile(profiles_dir, "capped", """
        tenants: [dev]
        quotas: {maxInflightToolCalls: 2}
    """)  # fmt: skip
    await cap_becomes(app, 2)
    await holds_exactly(app, client, workspace, 2)

    # The profile no longer writes the quota: the replica's setting applies again.
    write_profile(profiles_dir, "capped", """
        tenants: [dev]
        quotas: {maxRunners: 4}
    """)  # fmt: skip
    await cap_becomes(app, SETTING)
    await holds_exactly(app, client, workspace, SETTING)
    # Another tenant's profile does not change this tenant's cap.
    write_profile(profiles_dir, "others", """
        tenants: [someone-else]
        quotas: {maxInflightToolCalls: 1}
    """)  # fmt: skip
    for _ in range(200):
        if app.state.services.profiles.registry.state("others") is not None:
            break
        await asyncio.sleep(POLL_S)
    assert app.state.services.limiter.inflight_cap("dev") == SETTING
    assert app.state.services.limiter.inflight_cap("someone-else") == 1


def test_resolution_profile_quota_else_setting(tmp_path):
    settings = Settings(data_dir=tmp_path, rate_limits={"max_inflight_tool_calls_per_tenant": 7})
    written = AgentProfileSpec.model_validate({"quotas": {"maxInflightToolCalls": 0}})
    assert resolve(settings, "p", 1, written, "t").max_inflight_tool_calls == 0  # 0: no cap, as written
    other_quota = AgentProfileSpec.model_validate({"quotas": {"maxRunners": 2}})
    assert resolve(settings, "p", 1, other_quota, "t").max_inflight_tool_calls == 7
    assert resolve(settings, "p", 1, AgentProfileSpec(), "t").max_inflight_tool_calls == 7


async def test_limiter_uses_the_cap_function_and_falls_back_to_the_setting():
    caps = {"a": 1}

    def cap_for(tenant: str) -> int:
        return caps[tenant]  # KeyError for "b": the setting applies

    limiter = RateLimiter(RateLimitSettings(max_inflight_tool_calls_per_tenant=2), inflight_cap_for=cap_for)
    async with limiter.tool_call_slot("a"):
        with pytest.raises(Exception, match="at most 1 at once"):
            async with limiter.tool_call_slot("a"):
                pass
        caps["a"] = 0  # no cap now
        async with limiter.tool_call_slot("a"), limiter.tool_call_slot("a"):
            pass
    async with limiter.tool_call_slot("b"), limiter.tool_call_slot("b"):
        with pytest.raises(Exception, match="at most 2 at once"):
            async with limiter.tool_call_slot("b"):
                pass
    assert limiter._inflight == {}
