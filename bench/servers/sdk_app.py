"""(b) What a user gets by writing the obvious server: the plain `mcp` SDK, stateless Streamable HTTP,
JSON responses, one `async def` tool that reads the same 4 KiB file.

    BENCH_FILE=/path/to/file uvicorn sdk_app:app --app-dir bench/servers
"""

from __future__ import annotations

import os

from mcp.server import MCPServer
from starlette.responses import JSONResponse
from starlette.routing import Route

FILE = os.environ["BENCH_FILE"]
mcp = MCPServer("bench-sdk", log_level="WARNING")  # no log line per request: kind to (b)


@mcp.tool()
async def read_file(path: str) -> str:
    """Read the benchmark file."""
    with open(FILE, encoding="utf-8") as f:  # noqa: ASYNC230 - a 4 KiB page-cache read, like the obvious server
        return f.read()


async def health(request):
    return JSONResponse({"status": "ok"})


app = mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True)
app.router.routes.append(Route("/health", health))
