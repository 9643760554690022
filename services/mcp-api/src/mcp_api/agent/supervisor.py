"""The supervisor: every tool call the model proposes gets allow, deny (with the reason the model is
told) or ask (a human decides) from the tenant's SupervisorPolicy.

Rules, in order: unknown tool -> deny; tool not in allowed_tools -> deny; any path argument that is
absolute, contains '..', matches denied_paths or misses allowed_paths -> deny; write_file content over
max_write_bytes -> deny; run_command: a command_deny match -> deny, command_allow set and no match ->
deny, timeout over max_command_timeout_s -> deny, a command_ask match -> ask; tool in ask_tools -> ask;
otherwise allow. The sandbox enforces its own limits underneath whatever this decides.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from .config import SupervisorPolicy

PATH_ARGS = ("path", "source", "destination", "cwd")


@dataclass(frozen=True)
class Decision:
    kind: Literal["allow", "deny", "ask"]
    reason: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {"decision": self.kind, "reason": self.reason, "rule": self.rule}


ALLOW = Decision("allow", "allowed by policy", "default")


class Supervisor:
    def __init__(self, policy: SupervisorPolicy, known_tools: set[str]) -> None:
        self.policy = policy
        self.known_tools = known_tools
        self._deny = [re.compile(p) for p in policy.command_deny]
        self._allow = [re.compile(p) for p in policy.command_allow]
        self._ask = [re.compile(p) for p in policy.command_ask]

    def check(self, tool: str, args: dict[str, Any]) -> Decision:
        policy = self.policy
        if tool not in self.known_tools:
            return Decision(
                "deny",
                f"unknown tool '{tool}'; available: {', '.join(sorted(self.known_tools))}",
                "unknown_tool",
            )
        if tool not in policy.allowed_tools:
            return Decision("deny", f"the policy does not allow the tool '{tool}'", "allowed_tools")
        for name in PATH_ARGS:
            value = args.get(name)
            if isinstance(value, str):
                refused = self._check_path(value)
                if refused:
                    return refused
        if tool == "write_file" and len(str(args.get("content", "")).encode()) > policy.max_write_bytes:
            return Decision(
                "deny",
                f"content exceeds the policy limit of {policy.max_write_bytes} bytes",
                "max_write_bytes",
            )
        if tool == "run_command":
            decided = self._check_command(args)
            if decided is not None:
                return decided
        if tool in policy.ask_tools:
            return Decision("ask", f"the policy requires a human approval for '{tool}'", "ask_tools")
        return ALLOW

    def _check_path(self, path: str) -> Decision | None:
        normalized = path.replace("\\", "/")
        parts = [p for p in normalized.split("/") if p not in ("", ".")]
        if normalized.startswith("/") or normalized.startswith("~") or ".." in parts:
            return Decision(
                "deny",
                f"path '{path}' is outside the workspace; use paths relative to its root",
                "path_escape",
            )
        rel = "/".join(parts) or "."
        for pattern in self.policy.denied_paths:
            if fnmatch.fnmatch(rel, pattern):
                return Decision(
                    "deny", f"path '{path}' matches the denied pattern '{pattern}'", "denied_paths"
                )
        if rel != "." and not any(fnmatch.fnmatch(rel, p) for p in self.policy.allowed_paths):
            return Decision("deny", f"path '{path}' is not under an allowed pattern", "allowed_paths")
        return None

    def _check_command(self, args: dict[str, Any]) -> Decision | None:
        argv = args.get("command")
        line = args.get("shell") or (
            shlex.join(argv) if isinstance(argv, list) and all(isinstance(a, str) for a in argv) else ""
        )
        for pattern in self._deny:
            if pattern.search(line):
                return Decision(
                    "deny", f"the command matches the denied pattern {pattern.pattern!r}", "command_deny"
                )
        if self._allow and not any(p.search(line) for p in self._allow):
            return Decision("deny", "the command matches no allowed pattern", "command_allow")
        timeout = args.get("timeout_s")
        if isinstance(timeout, int | float) and timeout > self.policy.max_command_timeout_s:
            return Decision(
                "deny",
                f"timeout_s exceeds the policy maximum of {self.policy.max_command_timeout_s}s",
                "max_command_timeout_s",
            )
        for pattern in self._ask:
            if pattern.search(line):
                return Decision(
                    "ask",
                    f"the command matches {pattern.pattern!r}, which needs a human approval",
                    "command_ask",
                )
        return None
