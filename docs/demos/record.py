"""Record the terminal demos in docs/demos/ as asciinema v2 casts, from real runs through a pty.

    uv run python docs/demos/record.py                 # all demos (make demos)
    uv run python docs/demos/record.py --only client   # one; --out DIR to write elsewhere

Every byte of command output in a cast is what the real process wrote to its terminal; only the
typing of each command line is synthesized (a prompt and the characters, before the command runs).
Pauses longer than a second are shortened to one. Demos:

- serve:  `uv run --frozen secure-agent serve` (what `make run` runs) on an empty data dir: the
          dev key and the ready-to-paste client configs, then Ctrl-C.
- client: the MCP Inspector CLI (pinned in tools/node) lists the tools and calls read_file.
- agent:  agent_run with a supervisor policy that asks before delete_file; the run pauses, and
          agent_approve resumes it. The model is the scripted test server (no LLM needed).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "tests" / "docs"), str(REPO / "services" / "mcp-api" / "tests")]

import docs_helpers as h  # noqa: E402
from model_servers import ScriptedModel, Step, agent_env  # noqa: E402

WIDTH, HEIGHT = 110, 32
MAX_GAP_S = 1.0
TYPE_DELAY_S = 0.02


class Cast:
    def __init__(self, title: str) -> None:
        self.title = title
        self.events: list[list] = []
        self.t = 0.0

    def out(self, text: str, delay: float = 0.0) -> None:
        self.t += delay
        self.events.append([round(self.t, 3), "o", text])

    def type(self, command: str) -> None:
        self.out("\x1b[1;32m$\x1b[0m ", 0.4)
        for ch in command:
            self.out(ch, TYPE_DELAY_S)
        self.out("\r\n", 0.2)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, until: str | None = None,
            linger_s: float = 1.0, interrupt: bool = False, timeout: float = 120) -> str:  # fmt: skip
        """Run argv on a pty and record its output; with `until`, stop (SIGINT if `interrupt`) once
        the pattern has appeared and `linger_s` passed. Returns the output."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color",
                                "COLUMNS": str(WIDTH), "LINES": str(HEIGHT)}, cwd=cwd, start_new_session=True)  # fmt: skip
        os.close(slave)
        captured, last, seen_at = "", time.monotonic(), None
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    now = time.monotonic()
                    text = data.decode(errors="replace")
                    self.out(text, min(now - last, MAX_GAP_S))
                    last = now
                    captured += text
                elif proc.poll() is not None:
                    break
                if until and seen_at is None and re.search(until, captured):
                    seen_at = time.monotonic()
                if seen_at is not None and time.monotonic() - seen_at > linger_s:
                    if interrupt and proc.poll() is None:
                        self.out("^C", 0.3)
                        os.killpg(proc.pid, signal.SIGINT)
                        interrupt, until, seen_at = False, None, None  # read the shutdown output to EOF
                        continue
                    break
            else:
                raise RuntimeError(f"{argv[:3]} did not finish in {timeout}s; output:\n{captured[-2000:]}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
            os.close(master)
        return captured

    def write(self, path: Path) -> None:
        header = {"version": 2, "width": WIDTH, "height": HEIGHT, "timestamp": int(time.time()),
                  "title": self.title, "env": {"SHELL": "/bin/bash", "TERM": "xterm-256color"}}  # fmt: skip
        lines = [json.dumps(header)] + [json.dumps(e, ensure_ascii=False) for e in self.events]
        path.write_text("\n".join(lines) + "\n")


def shell(command: str) -> list[str]:
    return ["bash", "--noprofile", "--norc", "-c", command]


def demo_serve(out: Path) -> None:
    cast = Cast("secure-agent: first start (uv run secure-agent serve, what make run runs)")
    with tempfile.TemporaryDirectory(prefix="sa-demo-") as tmp:
        port = 8080 if _port_free(8080) else h.free_port()
        command = (f"SECURE_AGENT_DATA_DIR={tmp}/data SECURE_AGENT_PORT={port} SECURE_AGENT_LOGGING__FORMAT=text "
                   "uv run --frozen secure-agent serve")  # fmt: skip
        env = h.hermetic_env()
        env["PATH"] = f"{REPO / '.tools/uv/bin'}:{env['PATH']}"  # where `make` bootstraps uv
        cast.type(command)
        cast.run(
            shell(command), env, REPO, until=r"Application startup complete", linger_s=2.5, interrupt=True
        )
    cast.write(out / "serve.cast")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_env(home: Path) -> dict[str, str]:
    if not (h.NODE_MODULES_BIN / "mcp-inspector").exists():
        raise SystemExit("the Node tools are missing: make node-tools")
    home.mkdir(parents=True, exist_ok=True)
    env = h.hermetic_env(HOME=str(home), MCP_CATALOG_PATH=str(home / "catalog.json"), NO_COLOR="1")
    env["PATH"] = f"{h.NODE_MODULES_BIN}:{h.NODE_BIN}:{env['PATH']}"
    return env


def demo_client(out: Path) -> None:
    cast = Cast("secure-agent: the MCP Inspector CLI lists the tools and calls read_file")
    with tempfile.TemporaryDirectory(prefix="sa-demo-") as tmp:
        work = Path(tmp)
        server = h.start_server(work, h.hermetic_env(SECURE_AGENT_DEV_API_KEY=h.FIXED_KEY))
        try:
            ws = work / ".data/workspaces/dev/default"
            ws.mkdir(parents=True, exist_ok=True)
            (ws / "hello.txt").write_text("Hello from a sandboxed workspace!\n")
            env = {**_node_env(work / "home"), "KEY": h.FIXED_KEY}
            url = f"{server.base_url}/mcp"
            inspector = f'mcp-inspector --cli {url} --transport http --header "Authorization: Bearer $KEY"'
            for command in (
                f"{inspector} --method tools/list | jq -r '.tools[] | \"\\(.name): \\(.title)\"'",
                f"{inspector} --method tools/call --tool-name read_file --tool-arg path=hello.txt | jq .structuredContent",
            ):
                cast.type(command)
                cast.run(shell(command), env, work, timeout=120)
        finally:
            server.stop()
    cast.write(out / "client.cast")


def demo_agent(out: Path) -> None:
    cast = Cast("secure-agent: an agent run pauses for approval, agent_approve resumes it")
    model = ScriptedModel().start()
    with tempfile.TemporaryDirectory(prefix="sa-demo-") as tmp:
        work = Path(tmp)
        policy = {"ask_tools": ["delete_file"]}
        env = h.hermetic_env(SECURE_AGENT_DEV_API_KEY=h.FIXED_KEY,
                             **agent_env(model, SECURE_AGENT_AGENT__POLICY=json.dumps(policy)))  # fmt: skip
        server = h.start_server(work, env)
        try:
            ws = work / ".data/workspaces/dev/default"
            (ws / "logs").mkdir(parents=True, exist_ok=True)
            (ws / "logs/app-2026-10.log").write_text("old\n" * 100)
            (ws / "logs/app-2026-11.log").write_text("current\n")
            model.push(
                Step.tools(("list_directory", {"path": "logs"}), text="Let me look at the logs first."),
                Step.tools(("delete_file", {"path": "logs/app-2026-10.log"})),
                Step.answer("Deleted logs/app-2026-10.log (last month's log); kept app-2026-11.log."),
            )
            node = {**_node_env(work / "home"), "KEY": h.FIXED_KEY}
            inspector = f'mcp-inspector --cli {server.base_url}/mcp --transport http --header "Authorization: Bearer $KEY"'
            cast.out(
                f"# supervisor policy of this server: SECURE_AGENT_AGENT__POLICY='{json.dumps(policy)}'\r\n",
                0.2,
            )
            run = (f"{inspector} --method tools/call --tool-name agent_run "
                   "--tool-arg 'prompt=Delete the log file of last month, keep the current one' "
                   "| jq -r '.content[0].text'")  # fmt: skip
            cast.type(run)
            text = cast.run(shell(run), node, work, timeout=120)
            m = re.search(r"conversation_id='(conv_\w+)', token='([\w-]+)'", text)
            if not m:
                raise RuntimeError(f"the run did not pause for approval:\n{text}")
            approve = (f"{inspector} --method tools/call --tool-name agent_approve --tool-arg "
                       f"conversation_id={m.group(1)} token={m.group(2)} decision=approve | jq -r '.content[0].text'")  # fmt: skip
            cast.type(approve)
            cast.run(shell(approve), node, work, timeout=120)
            listing = "ls .data/workspaces/dev/default/logs"
            cast.type(listing)
            cast.run(shell(listing), node, work, timeout=30)
        finally:
            server.stop()
            model.stop()
    cast.write(out / "agent-approval.cast")


DEMOS = {"serve": demo_serve, "client": demo_client, "agent": demo_agent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record docs/demos/*.cast from real runs.")
    parser.add_argument("--only", action="append", choices=sorted(DEMOS))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, demo in DEMOS.items():
        if not args.only or name in args.only:
            demo(args.out)
            print(f"recorded {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
