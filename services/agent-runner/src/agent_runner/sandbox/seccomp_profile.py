"""Render the sandbox's seccomp rules as an OCI / Kubernetes seccomp profile.

    python -m agent_runner.sandbox.seccomp_profile > policies/seccomp/agent-runner.json

The profile is for the agent-runner *pod* (`seccompProfile: {type: Localhost, localhostProfile:
...}`): it applies to the runner process itself, which listens on TCP, so it leaves AF_INET/AF_INET6
and AF_UNIX open. Each command then gets the runner's own, stricter filter on top (seccomp filters
stack: the strictest answer wins), which refuses those families unless its policy allows them.
`--commands` prints the command filter of the default policy in the same format, for review.

A test regenerates the file and fails when the committed copy differs: edit `seccomp.rules()`,
never the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .seccomp import SyscallRule, rules

ARCHITECTURES = ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64")


def _rule_json(names: list[str], rule: SyscallRule) -> dict:
    entry: dict = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno}
    if rule.arg is not None:
        arg = {"index": rule.arg.index, "value": rule.arg.value, "op": f"SCMP_CMP_{rule.arg.op}"}
        if rule.arg.op == "MASKED_EQ":
            arg["valueTwo"] = rule.arg.value_two
        entry["args"] = [arg]
    return entry


def profile(allow_network: bool = True, allow_unix: bool = True) -> dict:
    """The profile as a dict; rules without argument checks and with the same errno are merged."""
    syscalls: list[dict] = []
    for rule in rules(allow_network=allow_network, allow_unix=allow_unix):
        if (
            rule.arg is None
            and syscalls
            and "args" not in syscalls[-1]
            and syscalls[-1]["errnoRet"] == rule.errno
        ):
            syscalls[-1]["names"].extend(rule.names)
            continue
        syscalls.append(_rule_json(list(rule.names), rule))
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        # Only the native 64-bit ABIs: i386 and x32 syscalls would slip past rules keyed on
        # x86_64 numbers, so they get the runtime's bad-architecture action instead.
        "architectures": list(ARCHITECTURES),
        "syscalls": syscalls,
    }


def render(allow_network: bool = True, allow_unix: bool = True) -> str:
    return json.dumps(profile(allow_network, allow_unix), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent_runner.sandbox.seccomp_profile", description=__doc__
    )
    parser.add_argument(
        "--commands",
        action="store_true",
        help="print the filter commands get under the default policy (no network, AF_UNIX only "
        "where a mount namespace hides host sockets) instead of the pod profile",
    )
    args = parser.parse_args(argv)
    text = render(allow_network=False, allow_unix=True) if args.commands else render()
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
