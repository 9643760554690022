"""Generate config/env/*.env* from the settings model, so the files can never drift from the code.

    secure-agent env-files [--dir config/env] [--check]
    python -m mcp_api.cli.envfiles [--dir config/env] [--check]

Every field of `mcp_api.settings.Settings` is walked recursively (nested models become `__`), and each
becomes one documented line: its meaning (the field's description), its type and bounds, and its
default. Lines that keep the default are commented out (`# SECURE_AGENT_X=default`); a profile's
own values are active lines. Secrets are never written: they appear commented out with an empty value
and a `[secret]` tag, and a profile that needs one says so (REQUIRED).

`--check` writes nothing and exits 1 when a file differs from what the model generates.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..settings import SECRET_FIELDS, Settings

PREFIX = Settings.model_config.get("env_prefix", "SECURE_AGENT_")
DELIMITER = Settings.model_config.get("env_nested_delimiter", "__")


@dataclass(frozen=True)
class Leaf:
    """One settable variable: a field that is not itself a nested settings model."""

    path: tuple[str, ...]
    info: FieldInfo
    section: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return PREFIX + DELIMITER.join(self.path).upper()

    @property
    def description(self) -> str | None:
        return self.info.description

    @property
    def secret(self) -> bool:
        return (len(self.path) == 1 and self.path[0] in SECRET_FIELDS) or _mentions_secret(self.info.annotation)

    def default(self) -> Any:
        if self.info.default_factory is not None:
            return self.info.default_factory()  # type: ignore[call-arg]
        return None if self.info.default is PydanticUndefined else self.info.default


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _mentions_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_mentions_secret(f.annotation) for f in annotation.model_fields.values())
    return any(_mentions_secret(arg) for arg in typing.get_args(annotation))


def leaves(model: type[BaseModel] = Settings, path: tuple[str, ...] = (), section: str = "") -> list[Leaf]:
    """Every environment variable of `model`, in declaration order (nested models recursively)."""
    found: list[Leaf] = []
    for name, info in model.model_fields.items():
        nested = _nested_model(info.annotation)
        if nested is not None:
            found += leaves(nested, (*path, name), section or name)
        else:
            found.append(Leaf((*path, name), info, section or ""))
    return found


def leaf_by_env(name: str) -> Leaf | None:
    return {leaf.env: leaf for leaf in leaves()}.get(name)


def resolves(name: str) -> bool:
    """Whether `SECURE_AGENT_A__B` names a real settable field, found by walking the model itself."""
    if not name.startswith(PREFIX):
        return False
    model: type[BaseModel] | None = Settings
    parts = name[len(PREFIX) :].lower().split(DELIMITER)
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            return False
        nested = _nested_model(model.model_fields[part].annotation)
        if i == len(parts) - 1:
            return nested is None
        model = nested
    return False


# ---- rendering -------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@,+=%-]*$")


def _jsonable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        raise ValueError("a secret default would be written to an env file")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def format_value(value: Any) -> str:
    """A value as pydantic-settings parses it back: scalars plain, lists/dicts as compact JSON, quoted
    with single quotes when the value holds characters env-file readers treat specially."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str, Path)):
        text = str(value)
    else:
        text = json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
        # Env-file readers disagree on backslashes inside quotes (python-dotenv turns '\\' into '\',
        # compose and systemd keep it): spell a JSON backslash as \u005c, which every reader keeps.
        text = text.replace("\\\\", "\\u005c")
    if _PLAIN.match(text):
        return text
    if "'" in text:
        raise ValueError(f"cannot quote a value holding a single quote: {text!r}")
    return f"'{text}'"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else str(a).lower() for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(parts) + (" (optional)" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"JSON list of {_type_name(args[0]) if args else 'values'}"
    if origin is dict:
        return f"JSON object {{{_type_name(args[0])}: {_type_name(args[1])}}}" if args else "JSON object"
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        return {"str": "string", "int": "integer", "float": "number", "bool": "true | false",
                "Path": "path", "PosixPath": "path", "Any": "any"}.get(annotation.__name__, annotation.__name__)  # fmt: skip
    return str(annotation).replace("typing.", "")


def _bounds(info: FieldInfo) -> str:
    marks = []
    for meta in info.metadata:
        for cls, sign in ((Ge, ">="), (Gt, ">"), (Le, "<="), (Lt, "<")):
            if isinstance(meta, cls):
                marks.append(f"{sign} {getattr(meta, cls.__name__.lower())}")
    return ", ".join(marks)


def _wrap(text: str, width: int = 100, lead: str = "# ") -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(lead) + len(line) + 1 + len(word) > width:
            lines.append(lead + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(lead + line)
    return lines


@dataclass(frozen=True)
class Profile:
    filename: str
    title: str
    intro: str
    values: dict[str, Any] = field(default_factory=dict)  # dotted path -> value (never a secret)
    required_secrets: dict[str, str] = field(default_factory=dict)  # dotted path -> how to make one


_SECTION_TITLES = {
    "": "Server",
    "runner": "Workspace runners",
    "kubernetes": "Kubernetes runner pods (runner.backend=kubernetes)",
    "sandbox": "Command sandbox (run_command limits)",
    "logging": "Logging",
    "tracing": "Tracing (OpenTelemetry)",
    "metrics": "Metrics",
    "oauth": "OAuth 2.1 resource server",
    "rate_limits": "Rate limits",
    "limits": "Request limits and timeouts",
    "retention": "Data retention",
    "privacy": "Privacy (redaction in stored text)",
    "profiles": "Agent profiles (AgentProfile YAML files or custom resources)",
    "agent": "SecureAgent (LLM agent)",
}

_RANDOM_KEY = "e.g. `openssl rand -base64 48`"

PROFILES: tuple[Profile, ...] = (
    Profile(
        "development.env",
        "development",
        "One developer machine (`make run`): loopback only, embedded SQLite store and local runners under "
        "./.data, human-readable logs. Load it with `set -a; . config/env/development.env; set +a`.",
        values={"logging.format": "text", "log_level": "INFO"},
    ),
    Profile(
        "production.env.example",
        "production (one host)",
        "One Linux host behind the nginx proxy of deploy/nginx/secure-agent.conf: the server listens on "
        "loopback, the proxy terminates TLS at https://mcp.example.com, the store is PostgreSQL, runners "
        "are local processes. Copy to /etc/secure-agent/secure-agent.env (mode 0600), replace example.com, "
        "and set the REQUIRED secrets (uncomment them); systemd: EnvironmentFile=.",
        values={
            "host": "127.0.0.1",
            "port": 8080,
            "data_dir": Path("/var/lib/secure-agent"),
            "public_url": "https://mcp.example.com",
            "allowed_hosts": ["mcp.example.com", "mcp.example.com:*"],
            "allowed_origins": ["https://mcp.example.com"],
            "trusted_proxies": ["127.0.0.1/32", "::1/128"],
            "logging.format": "json",
            "runner.backend": "local",
        },
        required_secrets={
            "database_url": "postgresql+asyncpg://secure_agent:<password>@127.0.0.1:5432/secure_agent",
            "logging.tenant_hash_key": f"a random secret, {_RANDOM_KEY}",
            "request_state_keys": f'\'["<random key, {_RANDOM_KEY}>"]\'',
        },
    ),
    Profile(
        "cluster.env.example",
        "cluster (Kubernetes, PostgreSQL, Redis)",
        "mcp-api replicas in Kubernetes (the Helm chart charts/secure-agent sets these for you): runner pods "
        "through the Kubernetes API, a shared PostgreSQL store and Redis for rate limits, stateless legacy "
        "sessions so any replica answers any request. Secrets come from a Kubernetes Secret, never from this "
        "file.",
        values={
            "host": "0.0.0.0",  # nosec B104 - a pod listens on its own network namespace
            "port": 8080,
            "data_dir": Path("/data"),
            "public_url": "https://mcp.example.com",
            "allowed_hosts": ["mcp.example.com", "mcp.example.com:*"],
            "allowed_origins": ["https://mcp.example.com"],
            "trusted_proxies": ["10.0.0.0/8"],
            "legacy_sessions": "stateless",
            "runner.backend": "kubernetes",
            "kubernetes.namespace": "secure-agent-runners",
            "kubernetes.in_cluster": True,
            "kubernetes.seccomp": "Localhost",
            "logging.format": "json",
        },
        required_secrets={
            "database_url": "postgresql+asyncpg://secure_agent:<password>@postgresql:5432/secure_agent",
            "redis_url": "redis://:<password>@redis:6379/0",
            "logging.tenant_hash_key": f"a random secret, {_RANDOM_KEY}; the same on every replica",
            "request_state_keys": f"JSON list of random keys ({_RANDOM_KEY}); the same on every replica",
        },
    ),
)


def render(profile: Profile) -> str:
    all_leaves = leaves()
    known = {leaf.dotted for leaf in all_leaves}
    unknown = (set(profile.values) | set(profile.required_secrets)) - known
    if unknown:
        raise ValueError(f"profile {profile.filename} names unknown settings: {sorted(unknown)}")
    out = [
        f"# secure-agent settings: {profile.title} profile.",
        "# GENERATED from mcp_api.settings.Settings by `secure-agent env-files` (make env-files).",
        "# Do not edit by hand: tests/deploy/test_config_env.py fails when this file drifts from the model.",
        "#",
        *_wrap(profile.intro),
        "#",
        "# Every setting is listed with its meaning, type and default. A commented line shows the default;",
        "# an active line is this profile's value. Lists and objects are JSON. Secrets ([secret]) are never",
        "# written here: set them in a file only the service user can read, or in a secret store.",
    ]
    if profile.required_secrets:
        out.append("# REQUIRED secrets of this profile: "
                   + ", ".join(f"{PREFIX}{DELIMITER.join(p.split('.')).upper()}" for p in profile.required_secrets))  # fmt: skip
    order = {s: i for i, s in reversed(list(enumerate(leaf.section for leaf in all_leaves)))}
    section = None
    for leaf in sorted(all_leaves, key=lambda leaf: order[leaf.section]):  # stable: model order within
        if leaf.section != section:
            section = leaf.section
            out += ["", "#" * 100, f"## {_SECTION_TITLES.get(section) or section.replace('_', ' ').capitalize()}", "#" * 100]
        description = leaf.description or ""
        kind = _type_name(leaf.info.annotation)
        bounds = _bounds(leaf.info)
        out.append("")
        out += _wrap(description)
        default_text = "(unset)" if leaf.secret and leaf.default() in (None, [], {}) else None
        if default_text is None:
            default_text = format_value(leaf.default()) or "(unset)"
        out.append(f"# type: {kind}{f' ({bounds})' if bounds else ''}; default: {default_text}")
        if leaf.secret:
            hint = profile.required_secrets.get(leaf.dotted)
            if hint:
                out.append(f"# [secret] REQUIRED in this profile: {hint}")
            else:
                out.append("# [secret]")
            out.append(f"# {leaf.env}=")
        elif leaf.dotted in profile.values:
            out.append(f"{leaf.env}={format_value(profile.values[leaf.dotted])}")
        else:
            out.append(f"# {leaf.env}={format_value(leaf.default())}")
    return "\n".join(out) + "\n"


def generate(directory: Path) -> dict[Path, str]:
    return {directory / p.filename: render(p) for p in PROFILES}


def run(directory: Path, check: bool) -> list[Path]:
    """Write (or, with check, compare) the files; returns the ones that differ(ed)."""
    differing = []
    for path, text in generate(directory).items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        differing.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return differing


@click.command("env-files")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("config/env"),
    show_default=True, help="Where the files go.",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a file is missing or out of date.")
def env_files(directory: Path, check: bool) -> None:
    """Generate config/env/*.env* (every setting, its default and meaning) from the settings model."""
    differing = run(directory, check)
    for path in differing:
        click.echo(f"{'out of date' if check else 'wrote'}: {path}", err=check)
    if check and differing:
        click.echo("run `secure-agent env-files` (make env-files) to regenerate", err=True)
        sys.exit(1)
    if not differing:
        click.echo(f"{directory}: up to date")


if __name__ == "__main__":
    env_files()
