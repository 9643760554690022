"""Profile secure-agent (one uvicorn worker) under wrk load with py-spy; saves a flame graph (SVG) and
the raw collapsed stacks under bench/results/.

    uv run python bench/profile_secure.py [--era legacy] [--concurrency 16] [--seconds 10] [--name before]

Needs py-spy (`uv tool run py-spy` is used when it is not on PATH) and ptrace rights over the server
(root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--era", default="legacy")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--name", default="profile")
    parser.add_argument("--out", type=Path, default=mb.HERE / "results" / "profiles")
    args = parser.parse_args()
    pyspy = [shutil.which("py-spy")] if shutil.which("py-spy") else [os.environ.get("UV") or "uv", "tool", "run", "py-spy"]
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sa-prof-", dir="/tmp"))
    root.chmod(0o755)
    server = mb.Server("secure", "uvicorn1", root, root / "unused")
    server.start()
    try:
        arguments = mb.prepare_secure(server, mb.file_content())["read_file"]
        mb.wrk_point(server, args.era, arguments, args.concurrency, 2, root)
        stem = args.out / f"secure-{args.era}-c{args.concurrency}-{args.name}"
        load = threading.Thread(target=mb.wrk_point, args=(server, args.era, arguments, args.concurrency,
                                                           args.seconds + 2, root))
        load.start()
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
            subprocess.run([*pyspy, "record", "-p", str(server.proc.pid), "-d", str(args.seconds // 2),
                            "-r", "200", "--subprocesses", "-f", fmt, "-o", f"{stem}.{suffix}", *([] if os.environ.get("PYSPY_BLOCKING") else ["--nonblocking"])], check=True)
        load.join()
        print(f"wrote {stem}.svg and {stem}.txt")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
