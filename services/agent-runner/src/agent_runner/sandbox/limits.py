"""Resource limits (rlimits) of a command process, inherited by everything it starts.

- RLIMIT_DATA, not RLIMIT_AS: address-space limits break runtimes that reserve large virtual
  ranges up front (Node, the JVM, Go) while DATA counts what is actually allocated.
- RLIMIT_CPU: soft limit at `cpu_seconds` (SIGXCPU, which a process may catch), hard limit one
  second later (SIGKILL, which it may not).
- RLIMIT_NPROC counts every task (threads included) of the real uid, host-wide, not the
  command's own: the limit is `max_processes` on top of what that uid already runs, counted at
  start. It is not enforced at all for uid 0, which is why uid 0 commands need a pids cgroup.
- RLIMIT_CORE = 0: a crashing command must not write its memory to the workspace.

Nothing here can raise a limit above the runner's own hard limit (no CAP_SYS_RESOURCE is
assumed), so each value is clamped to it.
"""

from __future__ import annotations

import os
import resource
from typing import Any

Limit = tuple[int, int, int]  # (resource, soft, hard)


def rlimits(policy: dict[str, Any], existing_tasks: int = 0) -> list[Limit]:
    cpu = int(policy["cpu_seconds"])
    nproc = int(policy["max_processes"]) + existing_tasks
    return [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_DATA, int(policy["memory_bytes"]), int(policy["memory_bytes"])),
        (resource.RLIMIT_FSIZE, int(policy["file_size_bytes"]), int(policy["file_size_bytes"])),
        (resource.RLIMIT_NOFILE, int(policy["max_open_files"]), int(policy["max_open_files"])),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    ]


def clamp(limits: list[Limit]) -> list[Limit]:
    """Each limit lowered to what this process may set (computed before fork: no work after it)."""
    out = []
    for res, soft, hard in limits:
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
        out.append((res, min(soft, hard), hard))
    return out


def apply(limits: list[Limit]) -> None:
    for res, soft, hard in limits:
        resource.setrlimit(res, (soft, hard))


def count_tasks(uid: int) -> int:
    """Tasks (threads count: RLIMIT_NPROC counts them) whose real uid is `uid`, right now.

    The owner of /proc/PID is the effective uid of a dumpable process; a task switching uids
    while we look is counted either way, which errs on the side of a slightly larger limit.
    """
    count = 0
    try:
        entries = os.scandir("/proc")
    except OSError:
        return 0
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    status = f.read()
            except OSError:
                continue
            real_uid = threads = None
            for line in status.splitlines():
                if line.startswith(b"Uid:"):
                    real_uid = int(line.split()[1])
                elif line.startswith(b"Threads:"):
                    threads = int(line.split()[1])
            if real_uid == uid:
                count += threads or 1
    return count
