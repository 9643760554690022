"""Record the example conversations against a real secure-agent server and a scripted model.

    uv run python examples/conversations/record.py              # re-record all into examples/conversations/
    uv run python examples/conversations/record.py --only investigate-log --out /tmp/x

What is real: the server (`python -m mcp_api serve`, as `make run` starts it), its MCP tool calls over
HTTP (2026-07-28), the supervisor's decisions, the sandboxed commands and every tool result. What is
scripted: the model. An OpenAI-compatible server (services/mcp-api/tests/model_servers.py) answers
each model request with the next step of the scenario below, so the runs are reproducible without
an LLM. Each scenario writes <name>.json (every request and response, the stored transcript) and
<name>.md (the same, for reading).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "tests" / "docs"), str(REPO / "services" / "mcp-api" / "tests")]

import docs_helpers as h  # noqa: E402
from model_servers import ScriptedModel, Step, agent_env  # noqa: E402

CALC = '''def average(values):
    """Arithmetic mean of a non-empty list of numbers."""
    return sum(values) // len(values)
'''
TEST_CALC = """import unittest

from calc import average


class AverageTest(unittest.TestCase):
    def test_whole(self):
        self.assertEqual(average([2, 4]), 3)

    def test_fraction(self):
        self.assertEqual(average([1, 2]), 1.5)


if __name__ == "__main__":
    unittest.main()
"""
INVENTORY = '''def calc_total(items):
    """Sum of price * quantity over (price, quantity) pairs."""
    return sum(price * qty for price, qty in items)
'''
REPORT = """from inventory import calc_total

ORDER = [(2.5, 4), (10.0, 1)]

if __name__ == "__main__":
    print(f"order total: {calc_total(ORDER):.2f}")
"""
APP_LOG = "".join(
    f"2026-11-26T09:{m:02d}:{s:02d}Z {level} {msg}\n"
    for m, s, level, msg in [
        (0, 1, "INFO", "api started, version 4.2.0"),
        (0, 5, "INFO", "connected to db-primary:5432 (pool 10)"),
        (12, 40, "WARN", "slow query 1840 ms: SELECT * FROM orders WHERE customer_id = $1"),
        (
            13,
            2,
            "ERROR",
            "db pool exhausted: 10/10 connections busy, waited 5000 ms (request /orders/export)",
        ),
        (13, 2, "ERROR", "request /orders/export failed: TimeoutError acquiring connection"),
        (13, 9, "INFO", "GET /health 200"),
        (
            13,
            15,
            "ERROR",
            "db pool exhausted: 10/10 connections busy, waited 5000 ms (request /orders/export)",
        ),
        (13, 16, "WARN", "retrying /orders/export (attempt 2)"),
        (14, 0, "INFO", "export job finished in 61 s"),
    ]
)


@dataclass
class Scenario:
    name: str
    title: str
    prompt: str
    files: dict[str, str]
    steps: list[Step]
    policy: dict[str, Any] = field(default_factory=dict)
    approvals: list[str] = field(default_factory=list)  # decision for each pause, in order
    workspace: str = "default"


SCENARIOS = [
    Scenario(
        name="fix-failing-test",
        title="Fix a failing test in a sample repository",
        prompt="The unit tests of this repository fail. Find out why and fix the code, not the tests.",
        files={"calc.py": CALC, "test_calc.py": TEST_CALC},
        steps=[
            Step.tools(
                ("run_command", {"command": ["python3", "-B", "-m", "unittest", "-v"]}),
                text="Let me run the tests first.",
            ),
            Step.tools(("read_file", {"path": "calc.py"})),
            Step.tools(
                (
                    "edit_file",
                    {
                        "path": "calc.py",
                        "edits": [
                            {
                                "old_text": "return sum(values) // len(values)",
                                "new_text": "return sum(values) / len(values)",
                            }
                        ],
                    },
                ),
                text="`//` is floor division, so average([1, 2]) is 1, not 1.5. Using true division.",
            ),
            Step.tools(("run_command", {"command": ["python3", "-B", "-m", "unittest", "-v"]})),
            Step.answer(
                "Fixed: `average` used floor division (`//`), which truncates 1.5 to 1. It now uses `/`; "
                "both tests pass."
            ),
        ],  # fmt: skip
    ),
    Scenario(
        name="refactor-with-approval",
        title="Refactor with approval: every edit waits for a human",
        prompt="Rename calc_total to order_total everywhere and check that report.py still runs.",
        files={"inventory.py": INVENTORY, "report.py": REPORT},
        policy={"ask_tools": ["edit_file"]},
        approvals=["approve", "approve"],
        steps=[
            Step.tools(("grep", {"pattern": "calc_total", "path": "."})),
            Step.tools(
                (
                    "edit_file",
                    {
                        "path": "inventory.py",
                        "edits": [
                            {"old_text": "def calc_total(items):", "new_text": "def order_total(items):"}
                        ],
                    },
                )
            ),
            Step.tools(
                (
                    "edit_file",
                    {
                        "path": "report.py",
                        "edits": [
                            {
                                "old_text": "from inventory import calc_total",
                                "new_text": "from inventory import order_total",
                            },
                            {"old_text": "{calc_total(ORDER):.2f}", "new_text": "{order_total(ORDER):.2f}"},
                        ],
                    },
                )
            ),
            Step.tools(("run_command", {"command": ["python3", "-B", "report.py"]})),
            Step.answer(
                "Renamed calc_total to order_total in inventory.py (definition) and report.py (import and "
                "call); report.py still prints the order total, 20.00."
            ),
        ],  # fmt: skip
    ),
    Scenario(
        name="investigate-log",
        title="Investigate a log file",
        prompt="app.log is from this morning's incident. What went wrong, and when?",
        files={"app.log": APP_LOG},
        steps=[
            Step.tools(("grep", {"pattern": "ERROR|WARN", "path": "app.log"})),
            Step.tools(
                (
                    "run_command",
                    {"shell": "grep -c ERROR app.log; grep -o 'request /[a-z/]*' app.log | sort | uniq -c"},
                )
            ),
            Step.answer(
                "Between 09:12:40 and 09:14:00 the /orders/export request exhausted the database pool "
                "(10/10 connections busy; 3 ERROR lines, all from /orders/export) after a slow, unindexed "
                "query on orders.customer_id (1840 ms). Export finished on retry after 61 s. Next steps: "
                "index orders.customer_id and give the export its own, smaller pool."
            ),
        ],  # fmt: skip
    ),
]


def record(scenario: Scenario, work: Path) -> dict[str, Any]:
    model = ScriptedModel().start()
    extra = {"SECURE_AGENT_AGENT__POLICY": json.dumps(scenario.policy)} if scenario.policy else {}
    env = h.hermetic_env(SECURE_AGENT_DEV_API_KEY=h.FIXED_KEY, **agent_env(model, **extra))
    work.mkdir(parents=True, exist_ok=True)
    server = h.start_server(work, env)
    exchanges: list[dict[str, Any]] = []

    def call(tool: str, **arguments: Any) -> dict[str, Any]:
        result = h.mcp_call(server.base_url, h.FIXED_KEY, tool, **arguments)
        exchanges.append({"tool": tool, "arguments": arguments, "isError": result.get("isError", False),
                          "text": "\n".join(c.get("text", "") for c in result.get("content", [])),
                          "structuredContent": result.get("structuredContent")})  # fmt: skip
        return result

    try:
        for path, content in scenario.files.items():
            call("write_file", path=path, content=content)
        model.push(*scenario.steps)
        result = call("agent_run", prompt=scenario.prompt)["structuredContent"]
        for decision in scenario.approvals:
            assert result["status"] == "awaiting_approval", result
            result = call("agent_approve", conversation_id=result["conversation_id"],
                          token=result["approval"]["token"], decision=decision)["structuredContent"]  # fmt: skip
        assert result["status"] == "completed", result
        saved = call("conversation_get", conversation_id=result["conversation_id"])["structuredContent"]
        after = {p: call("read_file", path=p)["structuredContent"] for p in scenario.files}
    finally:
        server.stop()
        model.stop()
    rec = {
        "scenario": scenario.name,
        "title": scenario.title,
        "recorded_with": {
            "server": "secure-agent (python -m mcp_api serve), MCP 2026-07-28 over HTTP",
            "model": "scripted OpenAI-compatible server (examples/conversations/record.py)",
            "policy": scenario.policy or "default supervisor policy",
        },
        "exchanges": exchanges,
        "transcript": saved["transcript"],
        "files_after": {p: r.get("content", r.get("text")) for p, r in after.items()},
        "model_requests": len(model.requests),
    }
    # The scratch dir is different on every run: show it as <work> (it appears in tracebacks).
    return json.loads(json.dumps(rec).replace(str(work.resolve()), "<work>"))


def render_md(rec: dict[str, Any]) -> str:
    out = [f"# {rec['title']}", "",
           f"Recorded by `examples/conversations/record.py`: a real secure-agent server, a scripted model "
           f"({rec['model_requests']} model calls). Raw data: [{rec['scenario']}.json]({rec['scenario']}.json).", ""]  # fmt: skip
    if isinstance(rec["recorded_with"]["policy"], dict):
        out += [f"Supervisor policy: `{json.dumps(rec['recorded_with']['policy'])}`", ""]
    out += ["## MCP calls made by the client", ""]
    for i, ex in enumerate(rec["exchanges"], 1):
        args = {
            k: (v if not isinstance(v, str) or len(v) < 80 else v[:77] + "...")
            for k, v in ex["arguments"].items()
        }
        text = "(the transcript is below)" if ex["tool"] == "conversation_get" else ex["text"].strip()[:3000]
        out += [f"### {i}. `{ex['tool']}`{' (error)' if ex['isError'] else ''}", "", "```text",
                json.dumps(args, indent=2), "```", "", "```text", text, "```", ""]  # fmt: skip
    out += ["## Stored transcript (`conversation_get`)", ""]
    for m in rec["transcript"]:
        body = m.get("content") or ""
        if m.get("tool_calls"):
            body += ("\n" if body else "") + "\n".join(
                f"→ {c.get('name')}({json.dumps(c.get('arguments'))})" for c in m["tool_calls"]
            )
        out += [f"**{m['role']}**", "", "```text", str(body).strip()[:2000], "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the example conversations.")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--work", type=Path, help="scratch dir for the servers' data (default: a temp dir)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sa-record-") as tmp:
        for scenario in SCENARIOS:
            if args.only and scenario.name not in args.only:
                continue
            rec = record(scenario, (args.work or Path(tmp)) / scenario.name)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{scenario.name}.json").write_text(
                json.dumps(rec, indent=2, ensure_ascii=False) + "\n"
            )
            (args.out / f"{scenario.name}.md").write_text(render_md(rec))
            print(
                f"recorded {scenario.name}: {len(rec['exchanges'])} MCP calls, {rec['model_requests']} model calls"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
