"""Streamable HTTP at /mcp: both protocol eras, JSON or SSE as the client's Accept asks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from mcp.server import MCPServer
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from ..settings import Settings

SESSION_HEADER = b"mcp-session-id"
# Upper bound of remembered legacy sessions (stateful mode only); the SDK caps live sessions itself.
MAX_TRACKED_SESSIONS = 10_000


class McpTransport:
    """ASGI app for /mcp. Two SDK session managers share one server: an SSE one (default, needed for
    progress and log notifications) and a JSON one for clients whose Accept names only application/json."""

    def __init__(self, mcp: MCPServer, settings: Settings) -> None:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.allowed_hosts),
            allowed_origins=list(settings.allowed_origins),
        )
        # Stateless: no per-process session dict, so any worker or replica answers any request.
        self.stateless = settings.legacy_sessions == "stateless"
        self.managers: list[StreamableHTTPSessionManager] = []
        for json_response in (False, True):
            mcp.streamable_http_app(
                streamable_http_path="/mcp",
                json_response=json_response,
                stateless_http=self.stateless,
                transport_security=security,
                max_request_body_size=settings.max_request_bytes,
                host=settings.host,
            )
            self.managers.append(mcp.session_manager)
        self.sse, self.json = self.managers
        self._sessions: OrderedDict[bytes, StreamableHTTPSessionManager] = OrderedDict()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # Mounted apps' lifespans do not run under FastAPI, so the managers' task groups start here.
        async with AsyncExitStack() as stack:
            for manager in self.managers:
                await stack.enter_async_context(manager.run())
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = next((v for k, v in scope["headers"] if k == SESSION_HEADER), None)
        if session_id is not None and session_id in self._sessions:
            # A stateful session lives in the manager that created it, whatever this request's Accept.
            await self._sessions[session_id].asgi_app(scope, receive, send)
            return
        manager = self.sse
        if scope.get("method") == "POST":
            has_json, has_sse = check_accept_headers(Request(scope))
            if has_json and not has_sse:
                manager = self.json
        if self.stateless:
            await manager.asgi_app(scope, receive, send)
        else:
            await manager.asgi_app(scope, receive, self._remember_session(manager, send))

    def _remember_session(self, manager: StreamableHTTPSessionManager, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == SESSION_HEADER and value not in self._sessions:
                        self._sessions[value] = manager
                        while len(self._sessions) > MAX_TRACKED_SESSIONS:
                            self._sessions.popitem(last=False)
            await send(message)

        return wrapped
