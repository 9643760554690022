"""The one source of every confinement setting a command runs under.

`SandboxPolicy` is what an operator (through an AgentProfile) or a test chooses. Everything that
confines a command is derived from it: the Landlock ruleset, the seccomp filter (and the pod's
seccomp profile), the rlimits, the namespaces and mounts, the cgroup limits, the environment and
the output caps. Nothing in the sandbox hard-codes a limit that is not a field here.

The fork server that applies the policy deliberately does not import pydantic (it forks once per
command, and a smaller process forks faster), so the policy crosses that boundary as the plain
dict from `to_wire()`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KiB = 1 << 10
MiB = 1 << 20

# The uid/gid that commands run as when the runner is root: "nobody" owns nothing on a usual
# host, so a command holding it can reach only what is open to everyone (and Landlock narrows
# that further). Files it creates in the workspace are stored as the workspace owner through an
# idmapped mount, so the workspace never has to be chowned.
NOBODY = 65534

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Read and execute: where shells, interpreters and their libraries live.
DEFAULT_EXEC_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
# Read only, never execute. /proc is needed by ps, Python, Node and most runtimes; inside a PID
# namespace it is a fresh instance that shows only the command's own processes.
DEFAULT_READ_ONLY_PATHS = ("/etc", "/proc", "/sys/devices/system/cpu")
# Read and write (the devices every shell script assumes).
DEFAULT_DEVICE_PATHS = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Carved out of the read-only trees above: credentials and host keys. Most are unreadable by
# DAC for the sandbox uid anyway; Landlock makes that hold even where the command keeps uid 0.
DEFAULT_DENIED_PATHS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/krb5.keytab",
    "/etc/secure-agent",
)
# Replaced by an empty tmpfs inside the command's mount namespace: they hold other users' files
# and, above all, pathname Unix sockets (X11, D-Bus, docker.sock) that Landlock cannot guard,
# since connect() on a socket file is not a filesystem access it controls (ABI <= 7).
DEFAULT_MASKED_PATHS = ("/tmp", "/var/tmp", "/run")  # noqa: S108  # nosec B108 - hidden from commands, not used

# Names a caller may add to a command's environment. Everything else is refused: the runner's
# own environment never reaches a command, and PATH, HOME and TMPDIR are the sandbox's.
DEFAULT_ENV_ALLOWLIST = frozenset(
    {
        "CI",
        "COLUMNS",
        "LINES",
        "TERM",
        "TZ",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "NO_COLOR",
        "FORCE_COLOR",
        "DEBUG",
        "PAGER",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "PYTHONWARNINGS",
        "PYTEST_ADDOPTS",
        "NODE_ENV",
        "NODE_OPTIONS",
        "NPM_CONFIG_CACHE",
        "RUST_BACKTRACE",
        "RUST_LOG",
        "CARGO_TERM_COLOR",
        "GOFLAGS",
        "GOCACHE",
        "GOPATH",
        "JAVA_TOOL_OPTIONS",
    }
)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The sandbox sets these itself; a caller may not override them even if an operator lists them.
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "PWD", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"})


def _default_base_env() -> dict[str, str]:
    return {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}


class SandboxPolicy(BaseModel):
    """Every limit and permission of one workspace's commands."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: Path = Field(description="The workspace directory: the only tree a command can write.")
    tmp_dir: Path = Field(
        description="The command's private temporary directory (TMPDIR); created if missing."
    )

    allow_network: bool = Field(
        False, description="Allow TCP/UDP (AF_INET/AF_INET6): no network namespace, no Landlock TCP rule."
    )
    allow_unix_sockets: bool | Literal["auto"] = Field(
        "auto",
        description="Allow socket(AF_UNIX). 'auto': only where a mount namespace masks the host's "
        "socket files; without one, a same-uid command could reach D-Bus or X11 through them.",
    )

    timeout_s: float = Field(30.0, gt=0, description="Default wall-clock limit of one command.")
    max_timeout_s: float = Field(600.0, gt=0, description="Largest timeout a caller may ask for.")
    cpu_seconds: int = Field(
        60, ge=1, description="RLIMIT_CPU per process: SIGXCPU, then SIGKILL a second later."
    )
    memory_bytes: int = Field(
        512 * MiB,
        ge=16 * MiB,
        description="RLIMIT_DATA per process and, where a memory cgroup is available, the whole command tree.",
    )
    file_size_bytes: int = Field(
        256 * MiB, ge=1, description="RLIMIT_FSIZE: largest file a command may write."
    )
    max_open_files: int = Field(256, ge=16, description="RLIMIT_NOFILE.")
    max_processes: int = Field(
        64,
        ge=4,
        description="pids cgroup limit of the command tree, and RLIMIT_NPROC over the sandbox uid's tasks.",
    )
    cpu_quota: float = Field(1.0, gt=0, description="CPU cores the command tree may use (cgroup cpu quota).")

    max_output_bytes: int = Field(
        1 * MiB, ge=1 * KiB, description="Kept per stream (stdout, stderr); the rest is cut."
    )
    output_kill_bytes: int = Field(
        64 * MiB,
        ge=1 * KiB,
        description="Bytes read from one stream before the command is killed: past the kept cap, output "
        "is read and discarded (memory stays bounded) until this much has gone by.",
    )
    max_argv_bytes: int = Field(128 * KiB, ge=1 * KiB, description="Largest argv (or shell string).")
    max_env_bytes: int = Field(32 * KiB, ge=1 * KiB, description="Largest set of caller-added variables.")
    max_stdin_bytes: int = Field(8 * MiB, ge=0, description="Largest stdin a caller may send.")

    env_allowlist: frozenset[str] = Field(
        DEFAULT_ENV_ALLOWLIST, description="Names a caller may add to the environment."
    )
    base_env: dict[str, str] = Field(
        default_factory=_default_base_env,
        description="Environment every command starts from (HOME and TMPDIR are always the sandbox's).",
    )

    exec_paths: tuple[str, ...] = Field(DEFAULT_EXEC_PATHS, description="Readable and executable trees.")
    read_only_paths: tuple[str, ...] = Field(
        DEFAULT_READ_ONLY_PATHS, description="Readable, never executable."
    )
    device_paths: tuple[str, ...] = Field(
        DEFAULT_DEVICE_PATHS, description="Device files a command may read and write."
    )
    denied_paths: tuple[str, ...] = Field(
        DEFAULT_DENIED_PATHS, description="Carved out of every tree above, whatever their file modes."
    )
    masked_paths: tuple[str, ...] = Field(
        DEFAULT_MASKED_PATHS,
        description="Hidden behind an empty tmpfs where a mount namespace is available ('/run' stays "
        "visible when the network is allowed: DNS configuration often lives there).",
    )

    drop_to_uid: int | None = Field(NOBODY, ge=1, description="uid commands run as when the runner is root.")
    drop_to_gid: int | None = Field(NOBODY, ge=1, description="gid commands run as when the runner is root.")
    use_namespaces: bool | Literal["auto"] = Field(
        "auto", description="net/pid/mount/ipc/uts namespaces, noexec and idmapped workspace mounts."
    )
    use_cgroups: bool | Literal["auto"] = Field("auto", description="Per-command memory/pids/cpu cgroups.")
    allow_unconfined: bool = Field(
        False,
        description="DANGEROUS operator override: run commands even where neither (Landlock and seccomp) "
        "nor namespaces are available. Only rlimits and timeouts then stand between a command and the host.",
    )

    @field_validator("workspace")
    @classmethod
    def _real_workspace(cls, value: Path) -> Path:
        # Landlock rules, mounts and the cwd check all work on the canonical path: a symlinked
        # workspace path would otherwise name one directory to the checks and another to the kernel.
        if not value.is_absolute():
            raise ValueError(f"workspace must be an absolute path, got {str(value)!r}")
        real = Path(os.path.realpath(value))
        if not real.is_dir():
            raise ValueError(f"workspace {str(value)!r} is not an existing directory")
        return real

    @field_validator("tmp_dir")
    @classmethod
    def _real_tmp(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"tmp_dir must be an absolute path, got {str(value)!r}")
        real = Path(os.path.realpath(value))
        if not real.parent.is_dir():
            raise ValueError(f"the parent of tmp_dir {str(value)!r} does not exist")
        return real

    @field_validator("exec_paths", "read_only_paths", "device_paths", "denied_paths", "masked_paths")
    @classmethod
    def _absolute_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/") or "\x00" in path:
                raise ValueError(f"{path!r} is not an absolute path")
        return value

    @field_validator("env_allowlist")
    @classmethod
    def _env_names(cls, value: frozenset[str]) -> frozenset[str]:
        bad = sorted(n for n in value if not ENV_NAME.match(n))
        if bad:
            raise ValueError(f"invalid environment variable names in env_allowlist: {bad}")
        return value

    @field_validator("base_env")
    @classmethod
    def _base_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not ENV_NAME.match(name) or "\x00" in val:
                raise ValueError(f"invalid base_env entry {name!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SandboxPolicy:
        if self.timeout_s > self.max_timeout_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) exceeds max_timeout_s ({self.max_timeout_s})")
        if self.output_kill_bytes < self.max_output_bytes:
            raise ValueError("output_kill_bytes must be at least max_output_bytes")
        ws, tmp = self.workspace, self.tmp_dir
        if tmp == ws or ws.is_relative_to(tmp):
            raise ValueError("tmp_dir must not be the workspace or contain it")
        if (self.drop_to_uid is None) != (self.drop_to_gid is None):
            raise ValueError("drop_to_uid and drop_to_gid must be set together")
        return self

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The complete environment of a command: base, then caller additions, then the sandbox's own."""
        env = dict(self.base_env)
        env.setdefault("PATH", DEFAULT_PATH)
        if extra:
            env.update(extra)
        env["HOME"] = str(self.workspace)
        env["TMPDIR"] = str(self.tmp_dir)
        return env

    def cache_key(self) -> str:
        """A string that is equal for equal policies (the model holds a dict, so it is not
        hashable, and a frozenset's JSON order varies: both are normalized here)."""
        return json.dumps(self.to_wire(), sort_keys=True)

    def to_wire(self) -> dict[str, Any]:
        """The policy as plain JSON data for the fork server."""
        data = self.model_dump(mode="json")
        data["env_allowlist"] = sorted(self.env_allowlist)
        return data
