"""Cost of one JSON log line: the access line ("http request") through `event()`, before/after.

    uv run python bench/log_line.py                 # reference = HEAD's logs.py/redaction.py
    uv run python bench/log_line.py --ref <commit> --lines 20000 --rounds 7

The reference implementation (logs.py and redaction.py at `--ref`, read with `git show`) and the
working tree's are loaded side by side and timed interleaved (A B A B …), each writing through a
file handler built by its own `make_handler` (RotatingFileHandler, as `configure_logging(file=…)`),
inside a bound request context and an active span, with two registered secrets (as mcp-api has).
Reports µs per line (median and best over rounds) for the access line and for a foreign record
(`log.info("…%s", arg)`, not through `event()`), then checks that both write byte-identical lines
with the clock frozen, including lines carrying secrets, nested values and an exception.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from agent_runner.observability import context
from agent_runner.observability import logs as new_logs
from agent_runner.observability import redaction as new_redaction
from opentelemetry.sdk.trace import TracerProvider

ROOT = Path(__file__).resolve().parent.parent
OBS = "services/agent-runner/src/agent_runner/observability"
SECRETS = ("dev-api-key-0123456789abcdef", "tenant-hash-key-fedcba9876543210")
FIELDS = {
    "http_method": "POST", "path": "/mcp", "status": 200, "duration_ms": 12.345, "outcome": "ok",
    "mcp_trace_id": None, "era": "legacy", "protocol_version": "2025-11-25", "mcp_outcome": "ok",
    "op": "files/read", "tool_outcome": "ok", "error_code": None, "tool_ms": 3.217,
}  # fmt: skip


def load_reference(rev: str) -> types.SimpleNamespace:
    """logs.py and redaction.py at `rev` as a package of their own, sharing the live `context`."""
    package = types.ModuleType("_ref_obs")
    package.__path__ = []
    sys.modules["_ref_obs"] = package
    modules = {}
    for name in ("redaction", "logs"):
        source = subprocess.run(
            ["git", "show", f"{rev}:{OBS}/{name}.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        source = source.replace("from . import context", "from agent_runner.observability import context")
        spec = importlib.util.spec_from_loader(f"_ref_obs.{name}", loader=None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(source, f"<{rev}:{name}.py>", "exec"), module.__dict__)  # noqa: S102
        modules[name] = module
    return types.SimpleNamespace(**modules)


def make_logger(impl: types.SimpleNamespace, file: Path | None) -> tuple[logging.Logger, logging.Logger]:
    """An `mcp_api.access` logger propagating to a root with `impl`'s handler (unregistered loggers,
    so both implementations log under the same names); `file` None: the stdout handler."""
    root = logging.RootLogger(logging.INFO)
    root.addHandler(impl.logs.make_handler("mcp-api", "json", file=file))
    parent = logging.Logger("mcp_api")
    parent.parent = root
    access = logging.Logger("mcp_api.access")
    access.parent = parent
    foreign = logging.Logger("httpx")
    foreign.parent = root
    return access, foreign


def run_access(impl: types.SimpleNamespace, log: logging.Logger, n: int) -> float:
    event, info = impl.logs.event, logging.INFO
    start = time.perf_counter()
    for _ in range(n):
        event(log, info, "http request", **FIELDS)
    return (time.perf_counter() - start) / n * 1e6


def run_foreign(impl: types.SimpleNamespace, log: logging.Logger, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        log.info("HTTP Request: %s %s %s", "POST", "http://runner/files/read", '"HTTP/1.1 200 OK"')
    return (time.perf_counter() - start) / n * 1e6


def sample(log: logging.Logger, foreign: logging.Logger, impl: types.SimpleNamespace) -> None:
    """Lines whose output must not change: the access line, secrets, nesting, an exception, a
    foreign record with extras, a non-str message, a dict message, a bad format string."""
    event, logs = impl.logs.event, impl.logs
    event(log, logging.INFO, "http request", **FIELDS)
    event(log, logging.INFO, "http request", **{**FIELDS, "error_code": "not_found", "status": 404})
    event(log, logging.WARNING, "tool call", token="t0k3n-value", password="", input_tokens=42,  # noqa: S106
          arguments={"content": "sk-" + "a" * 40, "n": 3}, detail="Authorization: Bearer abcdefgh1234",
          nested={"headers": {"Cookie": "c=1"}, "list": ["sk-ant-" + "b" * 20, 1, None, True, 2.5]},
          registered=f"x {SECRETS[0]} y", blob=b"password=hunter22", tup=("a", "pwd=x"))  # fmt: skip
    event(log, logging.INFO, "short", v="ok", w="0123456789abcd", x="0123456789abcde", y="a b", z="")
    try:
        raise RuntimeError("provider rejected sk-ant-" + "c" * 30)
    except RuntimeError:
        log.exception("call failed with %s", "postgresql://app:hunter2@db/x")
        foreign.warning("foreign", exc_info=True, extra={"token": "abc", "note": "key sa_AbCdEfGhIjKl_Zz9-_Zz9"})
    foreign.info("stack", stack_info=True)
    foreign.info({"dict": "message", "api_key": "k"})
    foreign.info(12345)
    foreign.info("bad %d format", "x")
    with context.bind(tool="evil sk-" + "d" * 30, request_id=None):
        event(log, logging.INFO, "evil tool", trace_id="explicit", span_id="explicit-span")
    logs.event(log, logging.DEBUG, "not enabled", x=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--handler", choices=("file", "stdout"), default="file",
        help="file: make_handler(file=...) (RotatingFileHandler); stdout: the default handler (containers), "
        "sys.stdout redirected to a file",
    )  # fmt: skip
    args = parser.parse_args()

    old = load_reference(args.ref)
    new = types.SimpleNamespace(logs=new_logs, redaction=new_redaction)
    for impl in (old, new):
        impl.redaction.register_secret(*SECRETS)
    tracer = TracerProvider().get_tracer("bench")
    tmp = Path(tempfile.mkdtemp(prefix="log_line-"))
    stdout = args.handler == "stdout"
    loggers = {name: make_logger(impl, None if stdout else tmp / f"{name}.log") for name, impl in (("before", old), ("after", new))}
    real_stdout = sys.stdout
    if stdout:
        sys.stdout = (tmp / "stdout.log").open("w", encoding="utf-8")
    impls = {"before": old, "after": new}

    with (
        context.bind(request_id="0f8e5b2c9d7a4e31b6c05a9f3e2d1c47", tenant=context.hash_tenant("acme"),
                     mcp_method="tools/call", tool="read_file"),
        tracer.start_as_current_span("POST /mcp"),
    ):  # fmt: skip
        for name in impls:  # warm up
            run_access(impls[name], loggers[name][0], 2000)
            run_foreign(impls[name], loggers[name][1], 500)
        access: dict[str, list[float]] = {"before": [], "after": []}
        foreign: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for name in impls:
                access[name].append(run_access(impls[name], loggers[name][0], args.lines))
                foreign[name].append(run_foreign(impls[name], loggers[name][1], args.lines // 4))

        # Identical output with the clock frozen.
        real_time = logging.time
        logging.time = types.SimpleNamespace(time=lambda: 1767225600.123456, time_ns=lambda: 1767225600123456000)
        try:
            outputs = {}
            for name in impls:
                path = tmp / f"{name}-sample.log"
                if stdout:
                    sys.stdout = path.open("w", encoding="utf-8")
                access_log, foreign_log = make_logger(impls[name], None if stdout else path)
                sample(access_log, foreign_log, impls[name])
                for handler in access_log.parent.parent.handlers:
                    handler.close()
                if stdout:
                    sys.stdout.close()
                outputs[name] = path.read_bytes()
        finally:
            logging.time = real_time
            sys.stdout = real_stdout

    print(f"{args.handler} handler, {args.lines} lines x {args.rounds} rounds, interleaved; µs per line (median / best)")
    for label, data in (("access line via event()", access), ("foreign record (httpx-like)", foreign)):
        b, a = statistics.median(data["before"]), statistics.median(data["after"])
        print(
            f"  {label:28} before {b:6.2f} / {min(data['before']):6.2f}   after {a:6.2f} / "
            f"{min(data['after']):6.2f}   ratio {b / a:4.2f}x"
        )
    same = outputs["before"] == outputs["after"]
    lines = outputs["after"].decode().splitlines()
    print(f"  sample output: {len(lines)} lines, byte-identical: {same}")
    print("  " + lines[0])
    if not same:
        for b_line, a_line in zip(outputs["before"].decode().splitlines(), lines, strict=False):
            if b_line != a_line:
                print(f"  before: {b_line}\n  after:  {a_line}")
        sys.exit(1)


if __name__ == "__main__":
    main()
