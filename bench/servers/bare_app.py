"""(a) The ceiling: a bare FastAPI endpoint that parses a JSON-RPC tools/call and reads a 4 KiB file.

    BENCH_FILE=/path/to/file uvicorn bare_app:app --app-dir bench/servers
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

FILE = os.environ["BENCH_FILE"]
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/mcp")
async def mcp(request: Request) -> Response:
    message = json.loads(await request.body())
    if message.get("method") != "tools/call" or message["params"]["name"] != "read_file":
        return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": -32601, "message": "no"}})
    with open(FILE, encoding="utf-8") as f:  # noqa: ASYNC230 - a 4 KiB page-cache read, like the obvious server
        text = f.read()
    result = {"content": [{"type": "text", "text": text}], "isError": False}
    return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})
