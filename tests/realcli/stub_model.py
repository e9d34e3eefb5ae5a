"""A stub model server for the real agent CLIs: scripted replies, every request recorded.

One ``StubModel`` serves, on 127.0.0.1 (a free TCP port) and on a unix socket (for the
network-namespace bridge in ``sandbox.py``):

- the Anthropic Messages API (``POST /v1/messages``, streaming SSE or one JSON reply, plus
  ``/v1/messages/count_tokens``) for Claude Code;
- the OpenAI Responses API (``POST /v1/responses``, streaming SSE) for Codex;
- the Gemini API (``POST /v1beta/models/M:streamGenerateContent?alt=sse``, ``:generateContent``,
  ``:countTokens``) for Gemini CLI (``GOOGLE_GEMINI_BASE_URL``);
- an HTTP(S) proxy that refuses every ``CONNECT`` and every absolute-URL request to any host
  but itself, and records it in ``refused``: point ``HTTPS_PROXY``/``HTTP_PROXY`` at
  ``proxy_url`` and any attempt of a CLI to reach the internet shows up there.

A script is a list of steps, one per model turn of the agent's main conversation::

    stub.play([Step(tools=[ToolUse("Read", {"file_path": "/abs/task.md"})]),
               Step(tools=[ToolUse("Write", lambda req: {"file_path": ..., "content": "hi"})]),
               Step(text="[DONE] TASK-1")])
    stub.play([Fail(401)])          # or Fail(400), Fail(529), Hang()

The step played is chosen by the conversation itself (how many assistant turns it already
holds), so a CLI's retry of a request gets the same step again. Requests that offer no tools
(title and topic generation, quota probes, ...) are auxiliary: they get a short neutral reply
and never advance or consume the script. A ``ToolUse`` input may be a callable of the
``Request`` (e.g. to put a file under the working directory named in the system prompt,
``request.workdir``). A string input makes a freeform tool call: Codex 0.17x offers the model
one such tool, ``exec`` (JavaScript calling ``tools.exec_command`` or ``tools.apply_patch``),
in an ``additional_tools`` input item. Point Codex at the stub with a provider whose
``base_url`` is ``base_url + "/v1"`` and ``wire_api = "responses"`` (``sandbox.py`` writes it).
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union
from urllib.parse import urlsplit

__all__ = ["StubModel", "Step", "ToolUse", "Fail", "Hang", "Request", "Refused"]


@dataclass(frozen=True)
class ToolUse:
    """One tool call in a step: the CLI's tool name and its input (or a function of the request)."""

    name: str
    input: Union[dict, str, Callable[["Request"], Union[dict, str]]]  # a str: a freeform (custom) tool

    def resolve(self, request: "Request") -> Union[dict, str]:
        given = self.input(request) if callable(self.input) else self.input
        return given if isinstance(given, str) else dict(given)


@dataclass(frozen=True)
class Step:
    """One model turn: text (markers go here) and then tool calls; no tool calls ends the run."""

    text: str = ""
    tools: Sequence[ToolUse] = ()


@dataclass(frozen=True)
class Fail:
    """Answer the turn with an HTTP error the way the real API does (400, 401, 429, 500, 529)."""

    status: int
    message: str = ""


@dataclass(frozen=True)
class Hang:
    """Never answer the turn (the connection stays open until the stub closes)."""


Action = Union[Step, Fail, Hang]

_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_DEFAULT_MESSAGES = {400: "stub: the request was refused as invalid", 401: "invalid x-api-key",
                     429: "stub: rate limited", 500: "stub: internal error", 529: "Overloaded"}


@dataclass
class Request:
    """One request the stub received, as a test asserts on it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON
    api: str = ""  # "anthropic", "responses", or "" for anything else
    auxiliary: bool = False  # offered no tools: not a turn of the main conversation

    @property
    def system_text(self) -> str:
        """All system / instructions text of the request, joined."""
        body = self.body if isinstance(self.body, dict) else {}
        parts = [body.get("instructions") or ""]
        system = body.get("system")
        if isinstance(system, str):
            parts.append(system)
        elif isinstance(system, list):
            parts += [b.get("text", "") for b in system if isinstance(b, dict)]
        for item in body.get("input") or []:
            if isinstance(item, dict) and item.get("role") in ("developer", "system"):
                parts.append(_text_of(item.get("content")))
        return "\n".join(parts)

    @property
    def user_text(self) -> str:
        """All user-message text of the request (the prompt, tool results), joined."""
        body = self.body if isinstance(self.body, dict) else {}
        items = body.get("messages") or body.get("input") or body.get("contents") or []
        out = []
        for item in items:
            if not isinstance(item, dict):
                continue
            if item.get("role") == "user" and "parts" in item:  # Gemini: text and function responses
                out += [json.dumps(p["functionResponse"]) if "functionResponse" in p else str(p.get("text", ""))
                        for p in item["parts"] if isinstance(p, dict)]
            elif item.get("role") == "user":
                out.append(_text_of(item.get("content")))
            elif item.get("type") in ("function_call_output", "custom_tool_call_output"):
                out.append(_text_of(item.get("output")))
        return "\n".join(out)

    @property
    def tool_names(self) -> list[str]:
        body = self.body if isinstance(self.body, dict) else {}
        return [t.get("name") or t.get("type", "") for t in body.get("tools") or [] if isinstance(t, dict)]

    @property
    def workdir(self) -> Optional[str]:
        """The working directory the CLI told the model about, if any."""
        found = re.search(r"(?:Primary working directory:|<cwd>|Workspace Directories:\*\*\s*- )\s*([^\s<]+)",
                          "\n".join(_strings(self.body)))
        return found.group(1) if found else None


def _strings(value: Any) -> list[str]:
    """Every string inside a parsed JSON value, depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if "text" in block:
                    out.append(str(block["text"]))
                elif "content" in block:  # an Anthropic tool_result
                    out.append(_text_of(block["content"]))
        return "\n".join(out)
    return ""


@dataclass(frozen=True)
class Refused:
    """An attempt to reach another host through the proxy."""

    method: str
    target: str


@dataclass
class _State:
    script: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    counter: int = 0


class StubModel:
    """The stub server; a context manager. ``play`` sets the script, ``requests`` and ``refused``
    are what was received, ``base_url`` (``http://127.0.0.1:PORT``) what to point a CLI at."""

    def __init__(self, socket_path: Optional[os.PathLike] = None) -> None:
        self._state = _State()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._tcp = _TCPServer(("127.0.0.1", 0), _Handler)
        self._tcp.stub = self
        self.port: int = self._tcp.server_address[1]
        self.socket_path: Optional[Path] = Path(socket_path) if socket_path else None
        self._unix: Optional[_UnixServer] = None
        if self.socket_path is not None:
            self._unix = _UnixServer(str(self.socket_path), _Handler)
            self._unix.stub = self
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ public

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_url(self) -> str:
        return self.base_url

    def start(self) -> "StubModel":
        for server in filter(None, (self._tcp, self._unix)):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self._closing.set()  # releases every Hang
        for server in filter(None, (self._tcp, self._unix)):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> "StubModel":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def play(self, script: Sequence[Action]) -> None:
        """Replace the script and forget what was received (one script per test)."""
        with self._lock:
            self._state = _State(script=list(script))

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    @property
    def turns(self) -> list[Request]:
        """The requests of the main conversation (not auxiliary ones), in order."""
        return [r for r in self.requests if r.api and not r.auxiliary]

    @property
    def refused(self) -> list[Refused]:
        with self._lock:
            return list(self._state.refused)

    # ------------------------------------------------------------------ internals

    def _record(self, request: Request) -> None:
        with self._lock:
            self._state.requests.append(request)

    def _refuse(self, method: str, target: str) -> None:
        with self._lock:
            self._state.refused.append(Refused(method, target))

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._state.counter += 1
            return f"{prefix}_stub{self._state.counter:04d}"

    def _action(self, turn: int) -> Action:
        with self._lock:
            script = self._state.script
        if turn < len(script):
            return script[turn]
        return Step(text="The stub script has no step for this turn.")

    def _is_own(self, host: str) -> bool:
        return host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubModel


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    stub: StubModel

    def get_request(self):  # BaseHTTPRequestHandler wants a (host, port) client address
        conn, _ = super().get_request()
        return conn, ("unix", 0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:  # the test output stays quiet
        pass

    @property
    def stub(self) -> StubModel:
        return self.server.stub

    # ------------------------------------------------------------------ proxy side

    def do_CONNECT(self) -> None:
        self.stub._refuse("CONNECT", self.path)
        self._send(403, {"error": "stub proxy: no connection beyond this machine"})
        self.close_connection = True

    def _foreign(self) -> bool:
        """An absolute-URL (proxy) request for another host: refuse and record it."""
        if not self.path.startswith(("http://", "https://")):
            return False
        parts = urlsplit(self.path)
        if self.stub._is_own(parts.netloc):
            self.path = parts.path + (f"?{parts.query}" if parts.query else "")
            return False
        self.stub._refuse(self.command, self.path)
        self._send(403, {"error": "stub proxy: no connection beyond this machine"})
        return True

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        if self._foreign():
            return
        self.stub._record(Request("GET", self.path, dict(self.headers), None))
        path = urlsplit(self.path).path
        if path.rstrip("/").endswith("/models"):
            self._send(200, {"data": [], "models": [], "has_more": False, "object": "list"})
        else:
            self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": f"stub: no {path}"}})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self._foreign():
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = urlsplit(self.path).path
        request = Request("POST", self.path, dict(self.headers), body)
        if path.endswith("/messages/count_tokens"):
            self.stub._record(request)
            self._send(200, {"input_tokens": 100})
        elif path.endswith("/messages"):
            self._anthropic(request)
        elif path.endswith("/responses"):
            self._responses(request)
        elif ":countTokens" in path:
            self.stub._record(request)
            self._send(200, {"totalTokens": 100})
        elif ":streamGenerateContent" in path or ":generateContent" in path:
            self._gemini(request, stream=":stream" in path)
        else:
            self.stub._record(request)
            self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": f"stub: no {path}"}})

    # ------------------------------------------------------------------ Anthropic Messages

    def _anthropic(self, request: Request) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        request.api = "anthropic"
        request.auxiliary = not body.get("tools")
        self.stub._record(request)
        model = body.get("model", "stub-model")
        if request.auxiliary:
            action: Action = Step(text=_auxiliary_text(request))
        else:
            turn = sum(1 for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "assistant")
            action = self.stub._action(turn)
        if isinstance(action, Hang):
            self._hang()
            return
        if isinstance(action, Fail):
            kind = _ANTHROPIC_ERRORS.get(action.status, "api_error")
            message = action.message or _DEFAULT_MESSAGES.get(action.status, "stub error")
            self._send(action.status, {"type": "error", "error": {"type": kind, "message": message},
                                       "request_id": self.stub._next_id("req")},
                       headers={"request-id": self.stub._next_id("req"), "x-should-retry": "false"})
            return
        blocks: list[dict] = []
        if action.text:
            blocks.append({"type": "text", "text": action.text})
        for tool in action.tools:
            blocks.append({"type": "tool_use", "id": self.stub._next_id("toolu"), "name": tool.name,
                           "input": tool.resolve(request)})
        stop = "tool_use" if action.tools else "end_turn"
        message = {"id": self.stub._next_id("msg"), "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0}}
        if not body.get("stream"):
            message.update(content=blocks, stop_reason=stop, usage={**message["usage"], "output_tokens": 20})
            self._send(200, message)
            return
        events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": message})]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events += [("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
                       ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
                       ("content_block_stop", {"type": "content_block_stop", "index": index})]
        events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 20}}),
                   ("message_stop", {"type": "message_stop"})]
        self._stream(events)

    # ------------------------------------------------------------------ OpenAI Responses

    def _responses(self, request: Request) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        request.api = "responses"
        # Codex 0.17x offers its tools in an ``additional_tools`` input item, not in ``tools``.
        request.auxiliary = not body.get("tools") and not any(
            isinstance(i, dict) and i.get("type") == "additional_tools" for i in body.get("input") or [])
        self.stub._record(request)
        if request.auxiliary:
            action: Action = Step(text=_auxiliary_text(request))
        else:
            action = self.stub._action(_responses_turns(body.get("input") or []))
        if isinstance(action, Hang):
            self._hang()
            return
        if isinstance(action, Fail):
            message = action.message or _DEFAULT_MESSAGES.get(action.status, "stub error")
            code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(action.status)
            self._send(action.status, {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                                 "code": code}})
            return
        response_id = self.stub._next_id("resp")
        output: list[dict] = []
        if action.text:
            output.append({"type": "message", "id": self.stub._next_id("msg"), "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": action.text, "annotations": []}]})
        for tool in action.tools:
            given = tool.resolve(request)
            if isinstance(given, str):  # a freeform tool (Codex's ``exec`` takes JavaScript source)
                output.append({"type": "custom_tool_call", "id": self.stub._next_id("ctc"),
                               "call_id": self.stub._next_id("call"), "name": tool.name, "input": given,
                               "status": "completed"})
            else:
                output.append({"type": "function_call", "id": self.stub._next_id("fc"),
                               "call_id": self.stub._next_id("call"), "name": tool.name,
                               "arguments": json.dumps(given), "status": "completed"})
        head = {"id": response_id, "object": "response", "status": "in_progress", "model": body.get("model", "stub"),
                "output": []}
        events: list[tuple[str, dict]] = [("response.created", {"type": "response.created", "response": head})]
        for index, item in enumerate(output):
            events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": index,
                                                          "item": {**item, "status": "in_progress"}}))
            if item["type"] == "message":
                events.append(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                                              "output_index": index, "content_index": 0,
                                                              "delta": item["content"][0]["text"]}))
            events.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": index,
                                                         "item": item}))
        usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120}
        events.append(("response.completed", {"type": "response.completed",
                                              "response": {**head, "status": "completed", "output": output,
                                                           "usage": usage}}))
        self._stream(events)

    # ------------------------------------------------------------------ Gemini generateContent

    def _gemini(self, request: Request, stream: bool) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        request.api = "gemini"
        request.auxiliary = not body.get("tools")
        self.stub._record(request)
        if request.auxiliary:
            config = body.get("generationConfig") or {}
            if config.get("responseMimeType") == "application/json":
                # Gemini CLI's side calls want JSON: its model router (a complexity score), its
                # next-speaker check; one object answers them all.
                action: Action = Step(text=json.dumps({"reasoning": "stub", "next_speaker": "user",
                                                       "model_choice": "flash", "complexity_score": 10,
                                                       "complexity_reasoning": "stub"}))
            else:
                action = Step(text=_auxiliary_text(request))
        else:
            turn = sum(1 for c in body.get("contents") or [] if isinstance(c, dict) and c.get("role") == "model")
            action = self.stub._action(turn)
        if isinstance(action, Hang):
            self._hang()
            return
        if isinstance(action, Fail):
            status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}.get(
                action.status, "UNAVAILABLE")
            message = action.message or _DEFAULT_MESSAGES.get(action.status, "stub error")
            self._send(action.status, {"error": {"code": action.status, "message": message, "status": status}})
            return
        parts: list[dict] = []
        if action.text:
            parts.append({"text": action.text})
        for tool in action.tools:
            parts.append({"functionCall": {"name": tool.name, "args": tool.resolve(request)}})
        chunk = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
                 "modelVersion": body.get("model", "stub")}
        if not stream:
            self._send(200, chunk)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            self.wfile.flush()
        except OSError:
            pass

    # ------------------------------------------------------------------ wire

    def _send(self, status: int, payload: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, events: list[tuple[str, dict]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for name, data in events:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
        except OSError:
            pass  # the CLI went away mid-stream; nothing to tell it

    def _hang(self) -> None:
        self.stub._closing.wait()
        self.close_connection = True


def _responses_turns(items: list) -> int:
    """How many model turns a Responses API input holds: runs of assistant messages and tool
    calls (one turn may hold text and several calls), each ended by the tool outputs."""
    turns, in_turn = 0, False
    for item in items:
        if not isinstance(item, dict):
            continue
        produced = item.get("role") == "assistant" or item.get("type") in ("function_call", "custom_tool_call")
        if produced and not in_turn:
            turns += 1
        in_turn = produced
    return turns


def _auxiliary_text(request: Request) -> str:
    """A neutral answer to a side request; JSON when the CLI plainly asks for JSON."""
    text = request.system_text + request.user_text
    if "isNewTopic" in text:
        return json.dumps({"isNewTopic": False, "title": None})
    if "json" in text.lower():
        return json.dumps({"title": "Stub task"})
    return "Stub task"
