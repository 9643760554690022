"""The docs check: every command and snippet in README.md and the guides (docs/, examples/, k8s/, deploy/:
every *.md below them) is validated against the code.

What each rule compares with (nothing is hard-coded that the code already knows):

- fenced ``json`` / ``yaml`` / ``toml`` blocks must parse;
- shell blocks (``sh``, ``bash``, ``shell``, ``console``): every command's program must be a known tool
  or an existing repo file; ``make X`` targets must exist (``make -n X``); ``secure-agent ...``
  subcommands and options must exist in the click CLI (``mcp_api.cli.main``); ``npx pkg@version``
  must be the version pinned in tools/node/package.json; ``claude mcp ...`` must be a real subcommand;
  SECURE_AGENT_* assignments in one block must build a valid ``Settings``;
- every ``SECURE_AGENT_*`` name (prose included) must be a field of the settings model (nested with
  ``__``; ``SECURE_AGENT_X__*`` must name a nested model);
- every ``http://localhost:8080/...`` / ``127.0.0.1:8080`` URL must be a route of ``create_app``;
- relative Markdown links (and their #anchors, GitHub-style) and backticked repo paths
  (``services/...``, ``charts/...``, ``skaffold.yaml``) must exist.
  A section whose heading contains "(planned)", "not done yet" or "not in the repo" documents artifacts that are not in the repo yet:
  paths and make targets there are not required to exist yet (everything else is still checked).

Files are found by glob, so docs added later are checked too.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL_PORT = 8080
PLANNED_MARK = "(planned)"
# Headings that announce artifacts which do not exist yet (their paths are exempt from the existence checks).
PLANNED_HEADINGS = (PLANNED_MARK, "not done yet", "not in the repo")

# Programs a reader may be told to run that the repo does not ship. Anything else must be a repo file.
KNOWN_PROGRAMS = frozenset(
    """
    cd export unset echo printf cat less head tail grep sed awk wc sort uniq tee xargs find ls cp mv rm mkdir
    rmdir touch chmod chown ln du df date sleep kill test true false set source env diff cmp sha256sum
    gzip gunzip zstd tar rsync scp ssh install base64 openssl curl wget jq yq watch time nc ss
    sudo apt apt-get systemctl journalctl crontab logrotate
    sqlite3 psql pg_dump pg_dumpall pg_restore pg_basebackup createdb dropdb redis-cli
    docker podman buildah kubectl helm kind minikube skaffold eksctl aws gcloud az nginx certbot
    git python python3 uv pip node npm npx claude code cursor secure-agent make pytest promtool gunicorn uvicorn
    asciinema bash sh
    """.split()
)
TOP_LEVEL_DIRS = (
    "services/", "docs/", "charts/", "scripts/", "k8s/", "deploy/", "config/", "examples/", "tests/",
    "policies/", "dashboards/", "alerts/", "runbooks/", "bench/", "tools/",
)  # fmt: skip
# Files at the top of the repo that docs name bare, in backticks (other bare names may be a user's files).
ROOT_FILES = frozenset(
    {
        "Makefile",
        "skaffold.yaml",
        "docker-compose.yml",
        "mcp_config.json",
        "pyproject.toml",
        "uv.lock",
        "SECURITY.md",
        "README.md",
        ".dockerignore",
    }
)
# Guides live here; a new .md file in any of them is checked without touching this list.
DOC_FOLDERS = ("docs", "examples", "k8s", "deploy")
SHELL_LANGS = {"sh", "bash", "shell", "console", "zsh"}
SKIP_LANGS = {"", "text", "txt", "mermaid", "plain", "powershell", "ps1", "bat", "cmd", "nginx", "ini",
              "dockerfile", "diff", "http", "python", "py", "sql", "log"}  # fmt: skip


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.message}"


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the first content line
    text: str
    planned: bool


def doc_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "SECURITY.md"]
    for folder in DOC_FOLDERS:
        files += sorted((REPO / folder).glob("**/*.md"))
    return [f for f in files if f.is_file()]


def planned_lines(lines: list[str]) -> set[int]:
    """1-based line numbers inside sections whose heading says (planned)."""
    planned: set[int] = set()
    level_open: int | None = None
    in_fence = False
    for i, line in enumerate(lines, 1):
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
        heading = None if in_fence else re.match(r"^(#{1,6})\s", line)
        if heading:
            level = len(heading.group(1))
            if level_open is not None and level <= level_open:
                level_open = None
            if any(m in line.lower() for m in PLANNED_HEADINGS) and level_open is None:
                level_open = level
        if level_open is not None:
            planned.add(i)
    return planned


def code_blocks(lines: list[str], planned: set[int]) -> list[Block]:
    blocks = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
        blocks.append(Block(lang, start + 1, "\n".join(body), (start + 1) in planned))
        i = j + 1
    return blocks


def prose_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Lines outside fenced blocks (1-based numbers)."""
    out, in_fence, fence = [], False, ""
    for i, line in enumerate(lines, 1):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if m and (not in_fence or line.strip().startswith(fence)):
            in_fence, fence = (not in_fence), m.group(1)
            continue
        if not in_fence:
            out.append((i, line))
    return out


# ------------------------------------------------------------------------------------------ code model


@functools.cache
def cli_root():
    from mcp_api.cli.main import main

    return main


@functools.cache
def make_target_exists(target: str) -> bool:
    r = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 or "No rule to make target" not in r.stderr


@functools.cache
def node_pins() -> dict[str, str]:
    data = json.loads((REPO / "tools/node/package.json").read_text())
    return dict(data["dependencies"])


@functools.cache
def app_routes() -> tuple[str, ...]:
    """Paths served by create_app, OAuth metadata included (built with OAuth on and off)."""
    from mcp_api.app import create_app
    from mcp_api.settings import Settings

    paths: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for extra in ({}, {"oauth": {"issuer": "https://auth.example.com/", "jwks_url": "https://auth.example.com/jwks"},
                           "public_url": "https://mcp.example.com"}):  # fmt: skip
            app = create_app(Settings(data_dir=Path(tmp), **extra))

            def walk(routes):
                for route in routes:
                    if getattr(route, "path", None):
                        paths.add(route.path)
                    inner = getattr(getattr(route, "original_router", None), "routes", None)
                    if inner:
                        walk(inner)

            walk(app.routes)
    return tuple(sorted(paths))


def route_exists(path: str) -> bool:
    path = path.split("?")[0].split("#")[0].rstrip("/") or "/"
    if path == "/":
        return True
    for route in app_routes():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route)) + "$"
        if re.match(pattern, path):
            return True
    return False


@functools.cache
def env_names_in_code() -> frozenset[str]:
    """SECURE_AGENT_* names the code reads outside the settings model (e.g. gunicorn.conf.py's WORKERS)."""
    names: set[str] = set()
    for root in ("services", "scripts"):
        for f in (REPO / root).rglob("*"):
            if (
                f.is_file()
                and f.suffix in (".py", ".sh", "")
                and "tests" not in f.parts
                and f.stat().st_size < 1_000_000
            ):
                try:
                    names |= set(
                        re.findall(r"[\"']?(SECURE_AGENT_[A-Z0-9_]+)[\"']", f.read_text(errors="ignore"))
                    )
                except OSError:
                    pass
    return frozenset(names)


def env_var_problem(name: str) -> str | None:
    """None if SECURE_AGENT_<name> is a settings field (walking nested models with __), or a name the
    code reads directly."""
    from pydantic import BaseModel

    if name in env_names_in_code():
        return None

    from mcp_api.settings import Settings

    rest = name[len("SECURE_AGENT_") :]
    wildcard = rest.endswith("*")
    rest = rest.rstrip("*")
    if not rest:
        return None
    model: type[BaseModel] | None = Settings
    parts = rest.split("__")
    for idx, part in enumerate(parts):
        if part == "" and idx == len(parts) - 1 and wildcard:
            return None  # SECURE_AGENT_SANDBOX__*: the model exists
        if model is None:
            return None  # below a dict field: any key is valid
        fields = {k.lower(): v for k, v in model.model_fields.items()}
        field = fields.get(part.lower())
        if field is None:
            if wildcard and idx == len(parts) - 1 and any(k.startswith(part.lower()) for k in fields):
                return None
            return f"{name}: no settings field {part.lower()!r} in {model.__name__}"
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if idx < len(parts) - 1 and nested is None and not _is_dict(annotation):
            return f"{name}: {part.lower()!r} is not a nested model (no '__' below it)"
        model = nested
    return None


def _is_dict(annotation) -> bool:
    return getattr(annotation, "__origin__", None) is dict or annotation is dict


# ------------------------------------------------------------------------------------------ shell


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(0-based first line, command line): backslash continuations and open quotes are joined."""
    out, buf, first = [], "", 0
    for i, raw in enumerate(text.splitlines()):
        line = raw.rstrip()
        if not buf:
            first = i
            line = re.sub(r"^\s*\$\s+", "", line)  # a "$ " prompt
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if _open_quote(buf):
            buf += "\n"
            continue
        if buf.strip():
            out.append((first, buf))
        buf = ""
    if buf.strip():
        out.append((first, buf))
    return out


def split_commands(line: str) -> list[list[str]]:
    """argv lists of a shell line: $(...) bodies, pipelines and lists become separate commands."""
    commands: list[list[str]] = []
    for inner in re.findall(r"\$\(([^()]*)\)", line):
        commands += split_commands(inner)
    line = re.sub(r"\$\(([^()]*)\)", "SUBST", line)
    line = re.sub(r"<([A-Za-z_][\w .:/-]*)>", lambda m: "PLACEHOLDER_" + re.sub(r"\W", "_", m.group(1)), line)
    line = re.sub(r"(^|\s)(\d*>>?|&>)(&\d+|\s*[^\s&|;]+)", " ", line)  # redirections
    line = re.sub(r"(^|\s)<\s*[^\s&|;]+", " ", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise ValueError(f"cannot parse shell line {line!r}: {exc}") from exc
    current: list[str] = []
    for tok in tokens:
        if tok and set(tok) <= set("|&;()"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        commands.append(current)
    return commands


def check_command(argv: list[str], env: dict[str, str]) -> list[str]:
    """Problems with one command (argv after leading VAR=value assignments are removed)."""
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        name, _, value = argv[0].partition("=")
        env[name] = value
        argv = argv[1:]
    if not argv:
        return []
    prog, args = argv[0], argv[1:]
    if prog in ("sudo", "time", "watch", "exec", "env", "xargs"):
        rest = [a for a in args if not a.startswith("-")] if prog != "env" else args
        return check_command(rest, env) if rest else []
    if prog == "export":
        for a in args:
            if "=" in a:
                env[a.partition("=")[0]] = a.partition("=")[2]
        return []
    if prog == "uv":
        if args[:1] == ["run"]:
            rest = args[1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            return check_command(rest, env)
        return []
    if prog in ("python", "python3"):
        if args[:1] == ["-m"]:
            return (
                []
                if args[1:2] in (["mcp_api"], ["pytest"], ["venv"], ["pip"], ["http.server"])
                else [f"python -m {args[1] if len(args) > 1 else ''}: unknown module"]
            )
        if "-c" in args:
            return []
        script = next((a for a in args if not a.startswith("-")), None)
        return (
            []
            if script is None or "PLACEHOLDER" in script or (REPO / script).exists()
            else [f"python {script}: no such file in the repo"]
        )
    if prog in ("bash", "sh") and args and not args[0].startswith("-"):
        return [] if (REPO / args[0]).exists() else [f"{prog} {args[0]}: no such file in the repo"]
    if prog == "make":
        bad = [t for t in args if not t.startswith("-") and "=" not in t and not make_target_exists(t)]
        return [f"make {t}: no such target in the Makefile" for t in bad]
    if prog == "secure-agent" or prog.endswith("/secure-agent"):
        return check_cli(args)
    if prog == "npx":
        return check_npx(args)
    if prog == "claude":
        return check_claude(args)
    if prog.startswith("./") or "/" in prog:
        path = prog[2:] if prog.startswith("./") else prog
        if path.startswith(("/", "~", "$")):
            return []
        return [] if (REPO / path).exists() else [f"{prog}: no such file in the repo"]
    if prog in KNOWN_PROGRAMS or prog.startswith("PLACEHOLDER"):
        return []
    return [f"{prog}: not a known program and not a file of the repo"]


def check_cli(args: list[str]) -> list[str]:
    import click

    cmd = cli_root()
    path = ["secure-agent"]
    i = 0
    while isinstance(cmd, click.Group):
        if i >= len(args) or args[i] in ("-h", "--help"):
            return []
        sub = cmd.commands.get(args[i])
        if sub is None:
            return [
                f"{' '.join(path)} {args[i]}: no such subcommand (have: {', '.join(sorted(cmd.commands))})"
            ]
        path.append(args[i])
        cmd, i = sub, i + 1
    opts: dict[str, click.Parameter] = {}
    for param in cmd.params:
        for o in [*param.opts, *param.secondary_opts]:
            opts[o] = param
    problems = []
    rest = args[i:]
    j = 0
    while j < len(rest):
        a = rest[j]
        if a.startswith("-") and a not in ("-", "--"):
            name = a.split("=")[0]
            if name in ("-h", "--help"):
                j += 1
                continue
            param = opts.get(name)
            if param is None:
                problems.append(f"{' '.join(path)}: no option {name}")
            elif isinstance(param, click.Option) and not param.is_flag and "=" not in a:
                value = rest[j + 1] if j + 1 < len(rest) else None
                choices = getattr(param.type, "choices", None)
                if value is not None and choices and "PLACEHOLDER" not in value and value not in choices:
                    problems.append(f"{' '.join(path)} {name} {value}: not one of {', '.join(choices)}")
                j += 1
        j += 1
    return problems


def check_npx(args: list[str]) -> list[str]:
    pkg = next((a for a in args if not a.startswith("-")), None)
    if pkg is None:
        return []
    name, _, version = (
        pkg.rpartition("@") if pkg.count("@") > (1 if pkg.startswith("@") else 0) else (pkg, "", "")
    )
    pins = node_pins()
    if name not in pins:
        return [f"npx {pkg}: not one of the pinned Node tools ({', '.join(sorted(pins))})"]
    if version and version != pins[name]:
        return [f"npx {pkg}: tools/node/package.json pins {name}@{pins[name]}"]
    return []


CLAUDE_MCP_SUBCOMMANDS = {"add", "add-json", "add-from-claude-desktop", "get", "list", "remove", "serve",
                          "reset-project-choices", "login", "logout", "help"}  # fmt: skip


def check_claude(args: list[str]) -> list[str]:
    if args[:1] != ["mcp"]:
        return []
    if len(args) < 2 or args[1] not in CLAUDE_MCP_SUBCOMMANDS:
        return [f"claude mcp {args[1] if len(args) > 1 else ''}: not a claude mcp subcommand"]
    if args[1] == "add" and "--transport" in args:
        transport = args[args.index("--transport") + 1]
        if transport not in ("http", "sse", "stdio"):
            return [f"claude mcp add --transport {transport}: not http, sse or stdio"]
    return []


def check_settings_env(env: dict[str, str]) -> str | None:
    """Build Settings from the SECURE_AGENT_* assignments of one block (placeholders skipped)."""
    from mcp_api.settings import Settings

    ours = {k: v for k, v in env.items() if k.startswith("SECURE_AGENT_") and "PLACEHOLDER" not in v
            and "SUBST" not in v and "$" not in v}  # fmt: skip
    if not ours:
        return None
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SECURE_AGENT_")}
    try:
        os.environ.update(ours)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("SECURE_AGENT_DATA_DIR", tmp)
            Settings()
        return None
    except Exception as exc:  # noqa: BLE001 - the message is the finding
        return f"these settings do not validate: {sorted(ours)}: {str(exc).splitlines()[0:3]}"
    finally:
        for k in list(os.environ):
            if k.startswith("SECURE_AGENT_"):
                del os.environ[k]
        os.environ.update(saved)


# ------------------------------------------------------------------------------------------ checks


def github_slug(heading: str) -> str:
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    return _anchors_of(path.read_text())


def _anchors_of(text: str) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text.splitlines()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


ENV_RE = re.compile(r"(?<![A-Za-z0-9_])SECURE_AGENT_[A-Z0-9_]*[A-Z0-9*](?![a-z])")
URL_RE = re.compile(r"https?://(?:localhost|127\.0\.0\.1|\[::1\])(?::(\d+))?(/[^\s\"'`)\]>,;]*)?")
LINK_RE = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
BACKTICK_RE = re.compile(r"`([^`\s]+)`")
# Inline commands in prose: `secure-agent keys revoke <key_id>`, `uv run secure-agent doctor`, `make chart-lint`.
INLINE_CMD_RE = re.compile(r"`((?:uv run (?:--frozen )?)?secure-agent [^`]+|make [a-z][\w -]*)`")
MCP_METHOD_RE = re.compile(
    r"^(tools|resources|prompts|notifications|completion|logging|server|subscriptions)/\w+$"
)


def check_file(path: Path, text: str | None = None) -> list[Problem]:
    """Problems of the doc at `path` (its text may be given, for a doc that is not written to disk)."""
    text = path.read_text() if text is None else text
    lines = text.splitlines()
    planned = planned_lines(lines)
    problems: list[Problem] = []

    def add(line: int, message: str) -> None:
        problems.append(Problem(path, line, message))

    # Names, URLs, links and paths: everywhere (prose and code).
    for n, line in enumerate(lines, 1):
        for name in ENV_RE.findall(line):
            if name in ("SECURE_AGENT_", "SECURE_AGENT_*"):
                continue
            msg = env_var_problem(name)
            if msg:
                add(n, msg)
        for port, url_path in URL_RE.findall(line):
            if (port or "80") == str(LOCAL_PORT) and url_path and not route_exists(url_path):
                add(
                    n,
                    f"http://localhost:{port}{url_path}: the app has no such route ({', '.join(app_routes())})",
                )
        for inline in INLINE_CMD_RE.findall(line):
            try:
                for argv in split_commands(inline):
                    for msg in check_command(argv, {}):
                        if not (n in planned and "no such target" in msg):
                            add(n, msg)
            except ValueError as exc:
                add(n, str(exc))
        if n in planned:
            continue
        for target in LINK_RE.findall(line):
            if re.match(r"^(https?:|mailto:)", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part) if file_part else path
            if file_part and not linked.exists():
                add(n, f"link target {target} does not exist")
            elif anchor and not file_part and anchor not in _anchors_of(text):
                add(n, f"link target {target}: no heading with anchor #{anchor} in this file")
            elif anchor and file_part and linked.suffix == ".md" and anchor not in anchors(linked.resolve()):
                add(n, f"link target {target}: no heading with anchor #{anchor} in {linked.name}")
        for token in BACKTICK_RE.findall(line):
            token = token.rstrip(".,:;")
            if MCP_METHOD_RE.match(token):
                continue
            if token in ROOT_FILES and not (REPO / token).exists():
                add(
                    n,
                    f"`{token}` does not exist in the repo (mark its section {PLANNED_MARK} if it is to come)",
                )
            if (token.startswith(TOP_LEVEL_DIRS) and re.match(r"^[\w.@+/-]+$", token)
                    and not (REPO / token).exists()):  # fmt: skip
                add(
                    n,
                    f"`{token}` does not exist in the repo (mark its section {PLANNED_MARK} if it is to come)",
                )

    for block in code_blocks(lines, planned):
        if block.lang == "json":
            try:
                json.loads(block.text)
            except ValueError as exc:
                add(block.line, f"json block does not parse: {exc}")
        elif block.lang in ("yaml", "yml"):
            try:
                list(yaml.safe_load_all(block.text))
            except yaml.YAMLError as exc:
                add(block.line, f"yaml block does not parse: {str(exc).splitlines()[0]}")
        elif block.lang == "toml":
            try:
                tomllib.loads(block.text)
            except tomllib.TOMLDecodeError as exc:
                add(block.line, f"toml block does not parse: {exc}")
        elif block.lang in SHELL_LANGS:
            env: dict[str, str] = {}
            for offset, logical in logical_lines(block.text):
                if block.lang == "console" and not re.match(r"^\s*\$", block.text.splitlines()[offset]):
                    continue  # console blocks: only "$ " lines are commands, the rest is output
                try:
                    commands = split_commands(logical)
                except ValueError as exc:
                    add(block.line + offset, str(exc))
                    continue
                for argv in commands:
                    for msg in check_command(argv, env):
                        if block.planned and ("no such file in the repo" in msg or "no such target" in msg):
                            continue
                        add(block.line + offset, msg)
            msg = check_settings_env(env)
            if msg:
                add(block.line, msg)
        elif block.lang not in SKIP_LANGS and block.lang not in ("jsonc", "json5", "env", "dotenv"):
            add(
                block.line, f"code block language {block.lang!r} is not checked: use one the docs check knows"
            )
        if block.lang in ("env", "dotenv"):
            env = {}
            for offset, line in enumerate(block.text.splitlines()):
                if line.strip() and not line.lstrip().startswith("#"):
                    if "=" not in line:
                        add(block.line + offset, f"not NAME=value: {line!r}")
                    else:
                        k, _, v = line.partition("=")
                        env[k.strip()] = v.strip().strip("'\"")
            msg = check_settings_env(env)
            if msg:
                add(block.line, msg)
    return problems
