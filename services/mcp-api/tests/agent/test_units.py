"""Supervisor rules, compaction and role assignment, without HTTP."""

from __future__ import annotations

import pytest
from mcp_api.agent import context
from mcp_api.agent.config import WORKSPACE_TOOLS, AgentSettings, SupervisorPolicy
from mcp_api.agent.loop import AgentConfigError, SecureAgent
from mcp_api.agent.supervisor import Supervisor


def check(tool: str, args: dict, **policy) -> tuple[str, str]:
    decision = Supervisor(SupervisorPolicy(**policy), set(WORKSPACE_TOOLS)).check(tool, args)
    return decision.kind, decision.rule


@pytest.mark.parametrize(
    ("tool", "args", "policy", "expected"),
    [
        ("read_file", {"path": "src/a.py"}, {}, ("allow", "default")),
        ("read_file", {"path": "../x"}, {}, ("deny", "path_escape")),
        ("read_file", {"path": "/etc/passwd"}, {}, ("deny", "path_escape")),
        ("read_file", {"path": "a/../../x"}, {}, ("deny", "path_escape")),
        ("read_file", {"path": "app/.env"}, {}, ("deny", "denied_paths")),
        ("move_file", {"source": "a", "destination": "key.pem"}, {}, ("deny", "denied_paths")),
        ("read_file", {"path": "docs/a.md"}, {"allowed_paths": ["src/**"]}, ("deny", "allowed_paths")),
        ("job_kill", {"job_id": "1"}, {}, ("deny", "unknown_tool")),
        ("delete_file", {"path": "a"}, {"allowed_tools": ["read_file"]}, ("deny", "allowed_tools")),
        (
            "write_file",
            {"path": "a", "content": "x" * 11},
            {"max_write_bytes": 10},
            ("deny", "max_write_bytes"),
        ),
        ("run_command", {"shell": "curl example.com"}, {}, ("deny", "command_deny")),
        ("run_command", {"command": ["wget", "x"]}, {}, ("deny", "command_deny")),
        ("run_command", {"shell": "ls"}, {"command_allow": [r"^pytest\b"]}, ("deny", "command_allow")),
        ("run_command", {"shell": "pytest -q"}, {"command_allow": [r"^pytest\b"]}, ("allow", "default")),
        ("run_command", {"shell": "sleep 1", "timeout_s": 900}, {}, ("deny", "max_command_timeout_s")),
        ("run_command", {"shell": "git push"}, {"command_ask": [r"\bgit push\b"]}, ("ask", "command_ask")),
        ("delete_file", {"path": "a"}, {"ask_tools": ["delete_file"]}, ("ask", "ask_tools")),
    ],
)
def test_supervisor_rules(tool, args, policy, expected):
    assert check(tool, args, **policy) == expected


def test_compaction_drops_oldest_turns_and_keeps_a_note():
    history = []
    for i in range(10):
        history += [
            {"role": "user", "content": f"prompt {i} " + "x" * 4000},
            {"role": "assistant", "content": "ok"},
        ]
    sent = context.for_model(history, context_tokens=4000, max_tool_result_chars=1000)  # ~12,000 chars
    assert sent[0]["note"] == "compaction" and "earlier messages omitted" in sent[0]["content"]
    assert "prompt 0" in sent[0]["content"]
    assert sent[-2]["content"].startswith("prompt 9") and sum(context.size(m) for m in sent[1:]) <= 12_000
    assert context.for_model(history[-2:], context_tokens=4000, max_tool_result_chars=1000) == history[-2:]


def test_long_tool_results_are_cut_and_dangling_calls_repaired():
    history = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "grep", "arguments": "{}"}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "grep", "content": "y" * 5000},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c2", "name": "grep", "arguments": "{}"}],
        },
    ]
    sent = context.for_model(history, context_tokens=32_000, max_tool_result_chars=500)
    assert len(sent[2]["content"]) <= 500 and "characters cut" in sent[2]["content"]
    assert sent[-1]["tool_call_id"] == "c2" and "not executed" in sent[-1]["content"]


def test_roles_and_client_names_pick_the_model(tmp_path):
    settings = AgentSettings(
        providers={"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}, "b": {"kind": "anthropic"}},
        roles={
            "default": {"provider": "a", "model": "small"},
            "coder": {"provider": "b", "model": "big", "params": {"temperature": 0}},
        },
        clients={"claude-code": "coder"},
    )
    agent = SecureAgent(settings, store=None)
    assert agent.resolve(None, None)[1].model == "small"
    assert agent.resolve(None, "claude-code")[1].model == "big"
    assert agent.resolve("coder", "cursor")[2].kind == "anthropic"
    assert agent.resolve("unknown", None)[1].model == "small"
    broken = SecureAgent(AgentSettings(roles={"default": {"provider": "nope", "model": "m"}}), store=None)
    with pytest.raises(AgentConfigError, match="does not define"):
        broken.resolve(None, None)
