#!/usr/bin/env python3
"""A dual-era MCP tool server on the Python SDK 2.3.x `MCPServer` for the modern e2e stage.

Usage: fixture_server.py PORT [--legacy-stateless] [--request-log FILE]

Serves streamable HTTP on 127.0.0.1:PORT/mcp. Requests carrying `MCP-Protocol-Version:
2026-07-28` (and the per-request `_meta` envelope) take the SDK's stateless 2026-07-28 path;
2025-era traffic takes the `initialize` path (sessions, so the legacy leg of write_file's
elicitation can be answered mid-call; `--legacy-stateless` serves the legacy era without
sessions). `--request-log FILE` appends one JSON line per POSTed JSON-RPC message (id, method,
the MCP-Protocol-Version / Mcp-Method / Mcp-Name / Mcp-Param-Region headers, whether an
Authorization or DPoP header came) to FILE: a test can see whether a request reached the server.

Two groups of tools:

1. The fixtures the conformance suite's 2026-07-28 server scenarios call by name
   (`test_simple_text`, `test_missing_capability`, `test_input_required_result_*`, ...),
   resources under `test://` and the `test_*` prompts. Their behaviour is what those
   scenarios check (see the scenario descriptions in the installed conformance package).
2. Tools named like the shipped policy catalog (policies/catalog.json), so the shipped
   policies can be exercised end to end:
     read_file(path)                      -> "contents of PATH"
     write_file(path, content)            -> asks "Write N bytes to PATH?" by a form
                                             elicitation ({confirm: bool}) through
                                             Annotated[..., Resolve(fn)] -> Elicit(...)
                                             (MRTR input_required on 2026-07-28, a
                                             mid-call elicitation/create on 2025-era),
                                             then "wrote N bytes to PATH"
     query_database(query, region="eu")   -> "rows for QUERY in REGION"; `region` carries
                                             x-mcp-header "Region" (Mcp-Param-Region)
     call_api(endpoint)                   -> "called ENDPOINT"
     execute_command(command)             -> "ran COMMAND"
     fetch_url(url)                       -> "fetched URL"
     add_tool(name="dynamic_tool")        -> registers a tool NAME (it answers "dynamic")
                                             and emits notifications/tools/list_changed to
                                             every subscriptions/listen stream that asked
                                             for toolsListChanged
   and a resource file:///workspace/notes.txt.

`tools/list` results say `cacheScope: "public", ttlMs: 3600000` (the other lists keep the
SDK default private/0), so a proxy that filters lists per caller can be seen rewriting them.
"""

import argparse
import base64
import json
import logging
from typing import Annotated

from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.mcpserver.resolve import Elicit, Resolve
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
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel, Field

log = logging.getLogger("fixture")

# A 1x1 PNG and a 2-sample WAV: the smallest valid payloads of their kind.
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_TINY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# The public/long hint on tools/list is deliberate: see the module docstring.
TOOLS_LIST_HINT = CacheHint(ttl_ms=3_600_000, scope="public")

server = MCPServer(
    name="mcp-pep-e2e-fixture",
    version="1.0.0",
    # A fixed key: requestState stays verifiable for the life of the process (a tampered
    # echo is refused by the SDK's request-state boundary).
    request_state_security=RequestStateSecurity(keys=[b"mcp-pep-e2e-fixture-request-state-key!"]),
    cache_hints={"tools/list": TOOLS_LIST_HINT},
)


def form(message: str, **fields: str) -> ElicitRequest:
    """A form elicitation asking for string fields (all required)."""
    schema = {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in fields.items()},
        "required": list(fields),
    }
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def sampling(text: str, max_tokens: int = 64) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def accepted(responses, key: str) -> dict | None:
    """The content of an accepted elicitation answer under KEY, else None."""
    answer = (responses or {}).get(key)
    if isinstance(answer, ElicitResult) and answer.action == "accept":
        return answer.content or {}
    return None


# --- 1. Conformance fixtures ------------------------------------------------------------


@server.tool(description="Returns one text content block")
def test_simple_text() -> str:
    return "This is a simple text response for testing."


@server.tool(description="Returns one image content block")
def test_image_content() -> list[ImageContent]:
    return [ImageContent(type="image", data=PNG_1PX, mime_type="image/png")]


@server.tool(description="Returns one audio content block")
def test_audio_content() -> list[AudioContent]:
    return [AudioContent(type="audio", data=WAV_TINY, mime_type="audio/wav")]


@server.tool(description="Returns an embedded text resource")
def test_embedded_resource() -> list[EmbeddedResource]:
    return [
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
            ),
        )
    ]


@server.tool(description="Returns text, an image and an embedded resource")
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG_1PX, mime_type="image/png"),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://mixed-content-resource", mime_type="application/json", text='{"test": "data", "value": 123}'
            ),
        ),
    ]


async def _log_three(ctx: Context) -> None:
    for msg in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(msg)  # deprecated logging: delivered only when the request asked (logLevel)


@server.tool(description="Emits three log messages (only to requests that set a log level)")
async def test_tool_with_logging(ctx: Context) -> str:
    await _log_three(ctx)
    return "Tool with logging executed successfully"


@server.tool(description="Emits log messages; a 2026-07-28 request without logLevel must see none")
async def test_logging_tool(ctx: Context) -> str:
    await _log_three(ctx)
    return "logging tool done"


@server.tool(description="Reports progress 0, 50, 100 of 100 on the request's progress token")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        await ctx.report_progress(progress=step, total=100, message=f"step {step} of 100")
    return "progress done"


@server.tool(description="Always fails with isError")
def test_error_handling() -> str:
    raise ToolError("This tool intentionally returns an error for testing")


@server.tool(description="Needs the client's sampling capability: -32021 without it")
async def test_missing_capability(ctx: Context) -> str:
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="test_missing_capability needs the client's sampling capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "sampling declared"


class Answer(BaseModel):
    answer: str = Field(description="Anything")


def ask_anything() -> Elicit[Answer]:
    return Elicit("Say something", Answer)


@server.tool(description="Streams progress, then asks the client by elicitation (never a server->client request)")
async def test_streaming_elicitation(ctx: Context, reply: Annotated[Answer, Resolve(ask_anything)]) -> str:
    return f"you said {reply.answer}"


@server.tool(description="Adds and removes a tool, then announces notifications/tools/list_changed")
async def test_trigger_tool_change(ctx: Context) -> str:
    server.add_tool(lambda: "transient", name="test_transient_tool", description="transient")
    server.remove_tool("test_transient_tool")
    await ctx.notify_tools_changed()
    return "tool list changed"


@server.tool(description="Adds and removes a prompt, then announces notifications/prompts/list_changed")
async def test_trigger_prompt_change(ctx: Context) -> str:
    from mcp.server.mcpserver.prompts.base import Prompt

    server.add_prompt(Prompt.from_function(lambda: "transient", name="test_transient_prompt", description="transient"))
    server.remove_prompt("test_transient_prompt")
    await ctx.notify_prompts_changed()
    return "prompt list changed"


@server.tool(description="MRTR: one form elicitation (user_name)")
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    got = accepted(ctx.input_responses, "user_name")
    if got is not None:
        return f"Hello, {got.get('name', 'stranger')}!"
    return InputRequiredResult(input_requests={"user_name": form("What is your name?", name="string")})


@server.tool(description="MRTR: one sampling request (capital_question)")
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    answer = (ctx.input_responses or {}).get("capital_question")
    if isinstance(answer, CreateMessageResult):
        text = answer.content.text if answer.content.type == "text" else "?"
        return f"Model said: {text}"
    return InputRequiredResult(input_requests={"capital_question": sampling("What is the capital of France?")})


@server.tool(description="MRTR: one roots/list request (client_roots)")
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    answer = (ctx.input_responses or {}).get("client_roots")
    if isinstance(answer, ListRootsResult):
        return f"Client exposed {len(answer.roots)} root(s)."
    return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})


CONFIRM_STATE = "fixture-confirm-state"


@server.tool(description="MRTR: requestState must come back unchanged")
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    if "confirm" in (ctx.input_responses or {}) and ctx.request_state == CONFIRM_STATE:
        return "state-ok: confirmation received"
    return InputRequiredResult(
        input_requests={"confirm": form("Please confirm", ok="boolean")}, request_state=CONFIRM_STATE
    )


@server.tool(description="MRTR: elicitation, sampling and roots in one round")
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    wanted = {"user_name", "greeting", "client_roots"}
    if wanted <= set(ctx.input_responses or {}):
        return "All inputs received."
    return InputRequiredResult(
        input_requests={
            "user_name": form("What is your name?", name="string"),
            "greeting": sampling("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        },
        request_state="multiple-inputs",
    )


@server.tool(description="MRTR: three rounds, the state carries the round number")
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
    responses = ctx.input_responses or {}
    first = InputRequiredResult(
        input_requests={"step1": form("Step 1: What is your name?", name="string")},
        request_state=json.dumps({"round": 1}),
    )
    if state.get("round") == 1 and (got := accepted(responses, "step1")) is not None:
        return InputRequiredResult(
            input_requests={"step2": form("Step 2: What is your favorite color?", color="string")},
            request_state=json.dumps({"round": 2, "name": got.get("name")}),
        )
    if state.get("round") == 2 and (got := accepted(responses, "step2")) is not None:
        return f"{state.get('name')} likes {got.get('color')}."
    return first


@server.tool(description="MRTR: a tampered requestState is refused by the SDK's state boundary")
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    if ctx.request_state is None:
        return InputRequiredResult(
            input_requests={"confirm": form("Please confirm", ok="boolean")}, request_state="round-1"
        )
    return f"state-ok: {ctx.request_state}"


@server.tool(description="MRTR: asks only for what the client declared (sampling, elicitation)")
async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
    caps = ctx.client_capabilities
    requests: dict[str, InputRequest] = {}
    if caps is None or caps.sampling is not None:
        requests["sample"] = sampling("Say hello", 50)
    if caps is None or caps.elicitation is not None:
        requests["ask"] = form("What is your name?", name="string")
    return InputRequiredResult(input_requests=requests, request_state="capability-gated")


@server.tool(description="Mirrors `region` into the Mcp-Param-Region header (SEP-2243)")
def test_x_mcp_header(
    region: Annotated[str, Field(description="mirrored header", json_schema_extra={"x-mcp-header": "Region"})],
) -> str:
    return f"region={region}"


# --- 2. Tools named like the shipped policy catalog -------------------------------------


@server.tool(description="Read a file (policy catalog: filesystem/read)")
def read_file(path: str) -> str:
    return f"contents of {path}"


class Confirmation(BaseModel):
    confirm: bool = Field(description="Write the file?")


def confirm_write(path: str, content: str) -> Elicit[Confirmation]:
    return Elicit(f"Write {len(content)} bytes to {path}?", Confirmation)


@server.tool(description="Write a file after the user confirms (policy catalog: filesystem/write)")
def write_file(path: str, content: str, confirmation: Annotated[Confirmation, Resolve(confirm_write)]) -> str:
    if not confirmation.confirm:
        raise ToolError(f"not confirmed: {path} left alone")
    return f"wrote {len(content)} bytes to {path}"


@server.tool(description="Query a database (policy catalog: database/read); region is mirrored to Mcp-Param-Region")
def query_database(
    query: str,
    region: Annotated[
        str, Field(description="data region, mirrored in Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"})
    ] = "eu",
) -> str:
    return f"rows for {query} in {region}"


@server.tool(description="Call an API (policy catalog: api/read)")
def call_api(endpoint: str) -> str:
    return f"called {endpoint}"


@server.tool(description="Run a shell command (policy catalog: shell/execute)")
def execute_command(command: str) -> str:
    return f"ran {command}"


@server.tool(description="Fetch a URL (policy catalog: network/read)")
def fetch_url(url: str) -> str:
    return f"fetched {url}"


@server.tool(description="Register a new tool NAME and announce notifications/tools/list_changed")
async def add_tool(ctx: Context, name: str = "dynamic_tool") -> str:
    if not name.isidentifier():
        raise ToolError(f"not a tool name: {name!r}")
    if name not in {t.name for t in await server.list_tools()}:
        server.add_tool(lambda: "dynamic", name=name, description=f"added by add_tool({name})")
    await ctx.notify_tools_changed()
    return f"added {name}"


# --- Resources and prompts ---------------------------------------------------------------


@server.resource("test://static-text", description="static text")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", description="static binary (PNG)", mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG_1PX)


@server.resource("test://template/{id}/data", description="templated JSON", mime_type="application/json")
def templated(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource("test://watched-resource", description="a resource to watch")
def watched() -> str:
    return "Watched resource content"


@server.resource("file:///workspace/notes.txt", description="a workspace file")
def notes() -> str:
    return "notes: nothing to see"


@server.prompt(description="A prompt without arguments")
def test_simple_prompt() -> list[UserMessage]:
    return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
    return [UserMessage(role="user", content=TextContent(type="text", text=text))]


@server.prompt(description="A prompt embedding a resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    resource = TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")
    return [
        UserMessage(role="user", content=EmbeddedResource(type="resource", resource=resource)),
        UserMessage(role="user", content=TextContent(type="text", text="Please process the embedded resource above.")),
    ]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[UserMessage]:
    return [
        UserMessage(role="user", content=ImageContent(type="image", data=PNG_1PX, mime_type="image/png")),
        UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
    ]


@server.prompt(description="MRTR from prompts/get")
async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
    got = accepted(ctx.input_responses, "user_context")
    if got is not None:
        text = f"Use the following context: {got.get('context', '?')}"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]
    return InputRequiredResult(input_requests={"user_context": form("What context should the prompt use?", context="string")})


@server.completion()
async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
) -> Completion:
    return Completion(values=[], total=0, has_more=False)


class RequestLog:
    """ASGI wrapper: one JSON line per POST (JSON-RPC id and method, the MCP headers, and
    `"authorization"`/`"dpop": "present"` when those came) to a file, so a test can tell whether
    a request reached this server (a proxy must not forward what it refuses, nor the caller's
    credentials). The body is buffered and replayed to the app unchanged."""

    HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "mcp-param-region")
    CREDENTIALS = ("authorization", "dpop")

    def __init__(self, app, path: str) -> None:
        self.app, self.path = app, path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        items = parsed if isinstance(parsed, list) else [parsed]
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with open(self.path, "a") as f:
            for item in items:
                item = item if isinstance(item, dict) else {}
                entry = {"id": item.get("id"), "method": item.get("method"), "batch": isinstance(parsed, list)}
                entry.update({h: headers[h] for h in self.HEADERS if h in headers})
                # Credentials: only whether they came (a proxy must not pass them upstream).
                entry.update({h: "present" for h in self.CREDENTIALS if h in headers})
                f.write(json.dumps(entry) + "\n")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--legacy-stateless", action="store_true", help="serve the 2025 era without sessions")
    parser.add_argument("--request-log", metavar="FILE", help="append one JSON line per POSTed message to FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1", stateless_http=args.legacy_stateless)
    if args.request_log:
        app = RequestLog(app, args.request_log)
    log.info("fixture server on http://127.0.0.1:%d/mcp", args.port)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
