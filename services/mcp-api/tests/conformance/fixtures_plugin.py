"""Test-only plugin: the fixtures the official MCP conformance harness calls.

Never shipped and never enabled by default. The server loads it only when a test lists this file
in ``SECURE_AGENT_PLUGINS`` (a JSON list of file paths or module names); see README.md beside it.

``register(ctx)`` adds to ``ctx.mcp`` (the ``mcp.server.MCPServer``) the tools, resources, prompts
and handlers that ``@modelcontextprotocol/conformance`` (0.1.16 ``--suite all`` and the 0.2.x
``--requirements 2026-07-28`` set) expects, and lets unauthenticated requests through as the
``conformance`` tenant, because the harness sends no Authorization header.

What each fixture must do was read from the harness's scenario sources
(``src/scenarios/server/*.ts``). The 2026-07-28 fixtures answer with ``InputRequiredResult``
(multi-round-trip); the legacy sampling/elicitation fixtures send a server-to-client request,
which needs a back-channel (see README.md: not available with ``stateless_http=True``).
"""

import asyncio
import base64
import json
import logging
from typing import Annotated, Any

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

logger = logging.getLogger("secure_agent.tests.conformance_fixtures")

#: Tenant and scopes the anonymous (header-less) harness requests run as (names from
#: mcp_api.auth.scopes). Least privilege: the harness lists tools and calls the fixtures below; the
#: 0.2.x header-validation scenarios also call the first listed tool (read_file) without arguments.
ANONYMOUS_TENANT = "conformance"
ANONYMOUS_SCOPES = ["files:read"]

# A 1x1 PNG and a minimal WAV header (the harness checks type and mimeType, not the pixels).
PNG_1X1_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV_B64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

#: Tool inputSchema with the JSON Schema 2020-12 keywords scenario json-schema-2020-12 asserts are
#: preserved verbatim by tools/list.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class _ElicitedUser(BaseModel):
    """Schema of the test_elicitation request (the harness answers username + email)."""

    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


class _Sep1034Defaults(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active",
        description="User status",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    verified: bool = Field(default=True, description="Verification status")


class _Sep1330Enums(BaseModel):
    """SEP-1330: the five enum schema shapes."""

    untitledSingle: str = Field(  # noqa: N815 - wire names the harness checks
        description="Simple enum without titles",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    titledSingle: str = Field(  # noqa: N815
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        },
    )
    untitledMulti: list[str] = Field(  # noqa: N815
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(  # noqa: N815
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            }
        },
    )
    legacyEnum: str = Field(  # noqa: N815
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


def _elicit_name(message: str = "What is your name?") -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=NAME_SCHEMA))


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def _register_tools(mcp: MCPServer) -> None:  # noqa: C901 - one flat list of fixtures reads best
    # --- content types -------------------------------------------------------------------------
    @mcp.tool()
    async def test_simple_text() -> str:
        """Returns one text content block."""
        return "This is a simple text response for testing."

    @mcp.tool()
    async def test_image_content() -> list[ImageContent]:
        """Returns one image content block (PNG)."""
        return [ImageContent(type="image", data=PNG_1X1_B64, mime_type="image/png")]

    @mcp.tool()
    async def test_audio_content() -> list[AudioContent]:
        """Returns one audio content block (WAV)."""
        return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]

    @mcp.tool()
    async def test_embedded_resource() -> list[EmbeddedResource]:
        """Returns one embedded text resource."""
        return [
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://embedded-resource",
                    mime_type="text/plain",
                    text="This is an embedded resource content.",
                ),
            )
        ]

    @mcp.tool()
    async def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Returns text, image and embedded resource blocks."""
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG_1X1_B64, mime_type="image/png"),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text='{"test": "data", "value": 123}',
                ),
            ),
        ]

    @mcp.tool()
    async def test_error_handling() -> str:
        """Always fails: the result must carry isError=true and a message."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    # --- notifications during a call -----------------------------------------------------------
    @mcp.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three info log notifications while running."""
        for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.log("info", message)
            await asyncio.sleep(0.05)
        return "Tool with logging executed successfully"

    @mcp.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50, 100 of 100 for the request's progressToken."""
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta
        return str(meta.get("progress_token", 0) if meta else 0)

    @mcp.tool()
    async def test_reconnection(ctx: Context) -> str:
        """SEP-1699: closes the POST SSE stream mid-call (a no-op without an event store)."""
        await ctx.log("info", "Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        await ctx.log("info", "After reconnect")
        return "Reconnection test completed"

    # --- server-to-client requests (legacy revisions: need a back-channel) ----------------------
    @mcp.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's LLM (sampling/createMessage) and echoes the answer."""
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if result.content.type == "text" else "<non-text>"
        return f"LLM response: {text}"

    @mcp.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user (elicitation/create) for username and email."""
        result = await ctx.elicit(message=message, schema=_ElicitedUser)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"User response: action={result.action}, content={content}"

    @mcp.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """SEP-1034: elicitation whose schema has defaults for every primitive type."""
        result = await ctx.elicit(message="Please provide user information", schema=_Sep1034Defaults)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation result: action={result.action}, content={content}"

    @mcp.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """SEP-1330: elicitation with the enum schema variants."""
        result = await ctx.elicit(
            message="Please select values using different enum schema types", schema=_Sep1330Enums
        )
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation completed: action={result.action}, content={content}"

    @mcp.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Needs the client's sampling capability; without it, a JSON-RPC error (-32021)."""
        caps = ctx.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool requires the client 'sampling' capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "Client declared sampling capability; proceeding."

    @mcp.tool()
    async def test_x_mcp_header(
        region: Annotated[
            str,
            Field(
                description="Mirrored into the Mcp-Param-Region header",
                json_schema_extra={"x-mcp-header": "Region"},
            ),
        ] = "<none>",
    ) -> str:
        """SEP-2243: a parameter mirrored into an Mcp-Param-* header, which the server validates."""
        return f"region={region}"

    # --- schemas -------------------------------------------------------------------------------
    @mcp.tool(name="json_schema_2020_12_tool")
    async def json_schema_2020_12_tool() -> str:
        """Its inputSchema carries JSON Schema 2020-12 keywords ($schema, $defs, if/then/else...)."""
        return "json_schema_2020_12_tool"

    # MCPServer derives inputSchema from the signature and has no public override: set it directly.
    tool = mcp._tool_manager.get_tool("json_schema_2020_12_tool")  # noqa: SLF001
    assert tool is not None
    tool.parameters = JSON_SCHEMA_2020_12

    # --- 2026-07-28 multi-round-trip (InputRequiredResult, SEP-2322) ----------------------------
    @mcp.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """Round 1 asks for a name; the retry with inputResponses greets it."""
        answers = ctx.input_responses or {}
        if "user_name" in answers:
            answer = answers["user_name"]
            name = (
                answer.content.get("name", "stranger")
                if isinstance(answer, ElicitResult) and answer.content
                else "?"
            )
            return f"Hello, {name}!"
        return InputRequiredResult(input_requests={"user_name": _elicit_name()})

    @mcp.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """Round 1 asks the client's LLM; the retry echoes the answer."""
        answers = ctx.input_responses or {}
        if "capital_question" in answers:
            answer = answers["capital_question"]
            ok = isinstance(answer, CreateMessageResult) and answer.content.type == "text"
            return f"Model said: {answer.content.text if ok else '?'}"
        return InputRequiredResult(
            input_requests={"capital_question": _sample("What is the capital of France?", 100)}
        )

    @mcp.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """Round 1 asks for the client's roots; the retry counts them."""
        answers = ctx.input_responses or {}
        if "client_roots" in answers:
            answer = answers["client_roots"]
            return (
                f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."
            )
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @mcp.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """requestState must round-trip unchanged (the SDK seals it)."""
        if "confirm" in (ctx.input_responses or {}) and ctx.request_state == "request-state-nonce":
            return "state-ok: confirmation received"
        confirm = ElicitRequest(
            params=ElicitRequestFormParams(message="Please confirm", requested_schema=CONFIRM_SCHEMA)
        )
        return InputRequiredResult(input_requests={"confirm": confirm}, request_state="request-state-nonce")

    @mcp.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """Elicitation, sampling and roots requested in one round."""
        if {"user_name", "greeting", "client_roots"} <= (ctx.input_responses or {}).keys():
            return "All inputs received."
        return InputRequiredResult(
            input_requests={
                "user_name": _elicit_name(),
                "greeting": _sample("Generate a greeting", 50),
                "client_roots": ListRootsRequest(),
            },
            request_state="multiple-inputs",
        )

    @mcp.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Three rounds with an evolving requestState."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        answers = ctx.input_responses or {}
        if state.get("round") == 1 and "step1" in answers:
            step1 = answers["step1"]
            name = step1.content.get("name") if isinstance(step1, ElicitResult) and step1.content else None
            color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
            return InputRequiredResult(
                input_requests={
                    "step2": ElicitRequest(
                        params=ElicitRequestFormParams(
                            message="Step 2: What is your favorite color?", requested_schema=color
                        )
                    )
                },
                request_state=json.dumps({"round": 2, "name": name}),
            )
        if state.get("round") == 2 and "step2" in answers:
            step2 = answers["step2"]
            color_value = (
                step2.content.get("color") if isinstance(step2, ElicitResult) and step2.content else None
            )
            return f"{state.get('name')} likes {color_value}."
        # Round 0, or a missing / out-of-order answer: (re)start.
        return InputRequiredResult(
            input_requests={"step1": _elicit_name("Step 1: What is your name?")},
            request_state=json.dumps({"round": 1}),
        )

    @mcp.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """The SDK's request-state boundary must reject a tampered requestState echo."""
        if ctx.request_state is None:
            confirm = ElicitRequest(
                params=ElicitRequestFormParams(message="Please confirm", requested_schema=CONFIRM_SCHEMA)
            )
            return InputRequiredResult(input_requests={"confirm": confirm}, request_state="round-1")
        return f"state-ok: {ctx.request_state}"

    @mcp.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        """inputRequests only use methods the client declared."""
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = _sample("Say hello", 50)
        if caps is None or caps.elicitation is not None:
            requests["ask"] = _elicit_name()
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")

    # --- list-changed notifications (subscriptions/listen, SEP-2575) ---------------------------
    async def _dynamic() -> str:
        """Registered and removed by the change triggers."""
        return "dynamic"

    @mcp.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Mutates the tool list and announces it."""
        mcp.add_tool(_dynamic, name="test_dynamic_tool")
        mcp.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return "tool list changed"

    @mcp.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Mutates the prompt list and announces it."""
        mcp.add_prompt(Prompt.from_function(_dynamic, name="test_dynamic_prompt", description="dynamic"))
        mcp.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return "prompt list changed"


def _register_resources(mcp: MCPServer) -> None:
    @mcp.resource("test://static-text", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource."""
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (PNG)."""
        return base64.b64decode(PNG_1X1_B64)

    @mcp.resource("test://template/{id}/data", mime_type="application/json")
    def template_data(id: str) -> str:  # noqa: A002 - the template variable is named id
        """A resource template with parameter substitution."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource", mime_type="text/plain")
    def watched() -> str:
        """A resource clients can subscribe to."""
        return "Watched resource content"

    @mcp.resource("test://embedded-resource", mime_type="text/plain")
    def embedded() -> str:
        """The resource test_embedded_resource embeds."""
        return "This is an embedded resource content."


def _register_prompts(mcp: MCPServer) -> None:
    @mcp.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """A prompt without arguments."""
        return [
            UserMessage(
                role="user", content=TextContent(type="text", text="This is a simple prompt for testing.")
            )
        ]

    @mcp.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt with two required arguments."""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 - wire name
        """A prompt that embeds the resource it is given."""
        return [
            UserMessage(
                role="user",
                content=EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(
                        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                    ),
                ),
            ),
            UserMessage(
                role="user",
                content=TextContent(type="text", text="Please process the embedded resource above."),
            ),
        ]

    @mcp.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt with an image."""
        return [
            UserMessage(
                role="user", content=ImageContent(type="image", data=PNG_1X1_B64, mime_type="image/png")
            ),
            UserMessage(
                role="user", content=TextContent(type="text", text="Please analyze the image above.")
            ),
        ]

    @mcp.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """prompts/get answered with InputRequiredResult first (SEP-2322 on a non-tool request)."""
        answers = ctx.input_responses or {}
        if "user_context" in answers:
            answer = answers["user_context"]
            text = (
                answer.content.get("context", "?")
                if isinstance(answer, ElicitResult) and answer.content
                else "?"
            )
            return [
                UserMessage(
                    role="user", content=TextContent(type="text", text=f"Use the following context: {text}")
                )
            ]
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        return InputRequiredResult(
            input_requests={
                "user_context": ElicitRequest(
                    params=ElicitRequestFormParams(
                        message="What context should the prompt use?", requested_schema=schema
                    )
                )
            }
        )


def _register_handlers(mcp: MCPServer) -> None:
    """logging/setLevel, resources/(un)subscribe and completion/complete, unless the server has them.

    Registering a handler also advertises the matching capability (logging, resources.subscribe,
    completions), which the harness checks.
    """
    lowlevel = mcp._lowlevel_server  # noqa: SLF001 - MCPServer has no public API for these yet
    existing = lowlevel._request_handlers  # noqa: SLF001
    subscriptions: set[str] = set()

    async def set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
        logger.info("conformance: log level set to %s", params.level)
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    if "logging/setLevel" not in existing:
        lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    if "resources/subscribe" not in existing:
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    if "completion/complete" not in existing:

        @mcp.completion()
        async def complete(
            ref: PromptReference | ResourceTemplateReference,
            argument: CompletionArgument,
            context: CompletionContext | None,
        ) -> Completion:
            return Completion(values=[], total=0, has_more=False)


def register(ctx: Any) -> None:
    """Plugin entry point (``mcp_api.plugins.PluginContext``)."""
    logger.warning(
        "conformance fixtures plugin enabled: anonymous requests run as tenant %r", ANONYMOUS_TENANT
    )
    ctx.allow_anonymous(ANONYMOUS_TENANT, ANONYMOUS_SCOPES)
    mcp: MCPServer = ctx.mcp
    _register_tools(mcp)
    _register_resources(mcp)
    _register_prompts(mcp)
    _register_handlers(mcp)
