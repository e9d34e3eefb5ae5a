"""An MCP server per agent: the agent claims, finishes and reports its own tasks through tools.

    python lib/mcp_server.py --agent-id claude [--root DIR] [--worktree] [--ttl S]

A stdio server on the official MCP Python SDK (``mcp`` 1.x, its low-level ``Server``: each
tool's schema and its text reply are written here on purpose, and a bad argument is refused
with one sentence instead of a validation dump). One process serves one agent; the agent CLI
starts it (``swarm.py setup claude|codex|gemini`` writes that configuration).

The tools (``TOOLS``): ready, claim, renew, done, failed, waiting, reserve, release,
send_message, inbox, add_task, status. Each reply is plain text for the model to read. A
refusal is a tool error (``isError``) whose one sentence says which task, why, and what to
do; a stale lease gives the lease table's own refusal. The session (agent_session.py) holds
the lease and its fencing token, renews it in the background and records every outcome
through lifecycle.py; the model never sees a token.

Under an executor: an agent CLI the executor (or the tmux bridge) started for a task passes
SWARM_TASK_ID on to its servers; the session then refuses claim, renew, done, failed and
waiting (the executor holds that task and reads the outcome from the agent's output) and
serves the other tools.

Ending: stdin closed (the client went away), SIGINT or SIGTERM (what Claude Code sends at
exit, in that order) close the session: an unfinished task is given back at once for anyone
(``released``), the agent's reservations are released, its worktree retired (kept if it holds
uncommitted work) and the agent marked stopped. Killed outright (SIGKILL), the server leaves a
lease held by a dead process, which the next claim by anyone frees.

Start-up is what the client waits for (Claude Code gives a server about two seconds before it
makes the model wait): the SDK is imported only once the arguments are checked, and the
session registers before the first request is read.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .cli import EXIT_OK, fail, parser, positive_seconds
from .errors import SwarmError

__all__ = ["Param", "Tool", "TOOLS", "INSTRUCTIONS", "Opening", "call", "main"]

log = logging.getLogger("swarmfile")

SERVER_NAME = "swarm"
VERSION = "1"

INSTRUCTIONS = (
    "Tools of the Swarmfile task swarm: several agents share one repository's tasks. Work one task at a "
    "time: claim it, do it in the working directory the claim names, then call done (or failed, or waiting "
    "when blocked). Reserve files before editing files the task did not list; read your inbox now and then.")

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list of strings"}


@dataclass(frozen=True)
class Param:
    """One argument of a tool: its JSON type, what it is for, whether it must be given."""

    type: str  # string, integer, number, boolean, or array (of strings)
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.type == "array":
            out["items"] = {"type": "string"}
        if self.enum:
            out["enum"] = list(self.enum)
        return out


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does (the model reads this), its arguments, the session call."""

    name: str
    description: str
    params: dict[str, Param]
    run: Callable[..., str]  # (session, **arguments) -> the reply text
    annotations: dict[str, bool] = field(default_factory=dict)

    def input_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {k: p.schema() for k, p in self.params.items()},
                "required": [k for k, p in self.params.items() if p.required], "additionalProperties": False}


_TASK_ID = Param("string", "A task id such as TASK-1769952151 (see ready).")

TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("ready", "List the tasks ready to be claimed, highest priority first.",
         {"limit": Param("integer", "How many to list (default 10, at most 20).")},
         lambda s, limit=10: s.ready(limit), {"readOnlyHint": True}),
    Tool("claim", "Claim the next ready task, or the one named by task_id, and start work on it. Returns the task's "
                  "text, its file and the directory to work in. You hold one task at a time.",
         {"task_id": _TASK_ID}, lambda s, task_id=None: s.claim(task_id)),
    Tool("renew", "Check that you still hold your task and extend its lease now. The server renews the lease for "
                  "you while you are connected, so you rarely need this.",
         {}, lambda s: s.renew()),
    Tool("done", "Report your task finished: it is completed (in a worktree, committed and merged) and the next "
                 "task may be claimed.",
         {"summary": Param("string", "One or two sentences on what you did.")},
         lambda s, summary="": s.done(summary)),
    Tool("failed", "Report that your task could not be done: it is retried later (by anyone) or, after the last "
                   "attempt, blocked for a person.",
         {"reason": Param("string", "Why it failed, in one or two sentences.", required=True)},
         lambda s, reason: s.failed(reason)),
    Tool("waiting", "Give your task back for now because you are blocked (waiting for something) or need an answer "
                    "(need_help: the question goes to the planner). It may be claimed again after a rest.",
         {"message": Param("string", "What you are waiting for, or your question.", required=True),
          "need_help": Param("boolean", "true: a question for the planner or a person (default false).")},
         lambda s, message, need_help=False: s.pause(message, need_help)),
    Tool("reserve", "Reserve files before you edit them, so no other agent edits them at the same time. Paths "
                    "or glob patterns relative to the repository; a directory covers everything in it.",
         {"patterns": Param("array", "Paths or globs, e.g. [\"lib/auth.py\", \"tests/**\"].", required=True),
          "exclusive": Param("boolean", "false: others may share the files (default true)."),
          "ttl_seconds": Param("number", "How long to hold them (default: the swarm's setting).")},
         lambda s, patterns, exclusive=True, ttl_seconds=None: s.reserve(patterns, exclusive, ttl_seconds)),
    Tool("release", "Release your file reservations: those with the given patterns, or all of them.",
         {"patterns": Param("array", "Patterns as you reserved them; omit to release everything you hold.")},
         lambda s, patterns=None: s.release(patterns)),
    Tool("send_message", "Send a message to another agent (by id, see status) or to all agents.",
         {"to": Param("string", "An agent id, or \"all\".", required=True),
          "text": Param("string", "The message.", required=True),
          "task_id": Param("string", "The task it is about, if any.")},
         lambda s, to, text, task_id=None: s.send(to, text, task_id)),
    Tool("inbox", "Read your unread messages (questions, answers to your help requests, notes from other agents).",
         {"mark_read": Param("boolean", "false: leave them unread (default true).")},
         lambda s, mark_read=True: s.inbox(mark_read), {"readOnlyHint": False}),
    Tool("add_task", "Add a new task to the swarm's queue (refused when a near-duplicate exists).",
         {"title": Param("string", "A one-line title.", required=True),
          "objective": Param("string", "What should be true when it is done."),
          "priority": Param("string", "critical, high, medium (default) or low.",
                            enum=("critical", "high", "medium", "low")),
          "depends_on": Param("array", "Task ids that must be completed first."),
          "files": Param("array", "Files the task will modify."),
          "criteria": Param("array", "Success criteria, one per item.")},
         lambda s, title, objective="", priority="medium", depends_on=(), files=(), criteria=():
             s.add_task(title, objective, priority, depends_on, files, criteria)),
    Tool("status", "Show your task and lease, the swarm's task counts, the other active agents, your "
                   "reservations and unread messages.",
         {}, lambda s: s.status(), {"readOnlyHint": True}),
]}


def _check(tool: Tool, arguments: Any) -> dict[str, Any]:
    """The arguments if they fit the tool's parameters; otherwise a ValidationError in one sentence."""
    from .errors import ValidationError

    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValidationError(f"{tool.name}: arguments must be an object of named values")
    takes = ", ".join(tool.params) or "no arguments"
    unknown = sorted(set(arguments) - set(tool.params))
    if unknown:
        raise ValidationError(f"{tool.name} has no argument {unknown[0]!r}", hint=f"it takes {takes}")
    checked = {}
    for name, param in tool.params.items():
        value = arguments.get(name)
        if value is None:
            if param.required:
                raise ValidationError(f"{tool.name} needs {name}: {param.description[0].lower()}{param.description[1:]}")
            continue
        if param.type == "array":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, _TYPES[param.type]) and (param.type not in ("integer", "number")
                                                             or not isinstance(value, bool))
        if not ok:
            raise ValidationError(f"{tool.name}: {name} must be {_TYPE_WORDS[param.type]}, got {value!r:.60}")
        if param.enum and value not in param.enum:
            raise ValidationError(f"{tool.name}: {name} must be one of {', '.join(param.enum)}, got {value!r:.60}")
        checked[name] = value
    return checked


def call(opening: "Opening", name: str, arguments: Any) -> tuple[str, bool]:
    """Run one tool call on the session: (reply text, whether it is an error). Never raises."""
    tool = TOOLS.get(name)
    if tool is None:
        return f"there is no tool {name!r} (tools: {', '.join(TOOLS)})", True
    try:
        checked = _check(tool, arguments)
        session = opening.get()
        with session.calls:
            if session.closed:
                return "the swarm session is closed: restart the agent CLI to connect again", True
            return tool.run(session, **checked), False
    except SwarmError as exc:
        return " ".join(str(exc).split("\n")), True
    except OSError as exc:  # a full disk, a permission: what failed and that nothing was recorded
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{name}: {where}{exc.strerror or exc} (free space or fix permissions, then retry)", True
    except Exception as exc:  # a bug: the model gets one line, the log gets the traceback
        log.exception("tool %s failed", name)
        return f"{name} failed inside the swarm server ({type(exc).__name__}: {exc}); see the server's log", True


# ---------------------------------------------------------------------------- serving


class Opening:
    """The session, opened in a thread while the server already answers ``initialize``.

    A client gives a server about two seconds to start; registering the agent need not be
    among them. A session that cannot open (a bad root, a heartbeat file that does not
    parse) answers every tool call with its error, where a server that exits would just
    be left out of the agent's tools without a word.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        import threading

        self.session: Any = None
        self.error: Optional[SwarmError] = None
        self.opened = threading.Event()
        self._make = make
        threading.Thread(target=self._open, name="open-session", daemon=True).start()

    def _open(self) -> None:
        try:
            session = self._make()
            session.open()
            self.session = session
        except SwarmError as exc:
            self.error = exc
        except Exception as exc:  # a bug: the tools say so; the traceback goes to the log
            log.exception("the swarm session could not open")
            self.error = SwarmError(f"{type(exc).__name__}: {exc}", hint="see the swarm server's log")
        finally:
            self.opened.set()

    def get(self, timeout: float = 120.0) -> Any:
        if not self.opened.wait(timeout):
            raise SwarmError(f"the swarm session did not open within {timeout:g} s", hint="retry shortly")
        if self.error is not None:
            raise SwarmError(f"the swarm server cannot work here: {self.error}")
        return self.session

    def close(self, reason: str) -> None:
        self.opened.wait(30)
        if self.session is not None:
            self.session.close(reason)


def _import_sdk() -> None:
    """Import the SDK parts a stdio server uses, without the package ``__init__``s.

    ``mcp/__init__.py`` imports the client (httpx ...) and ``mcp/server/__init__.py`` FastMCP
    (starlette, uvicorn, auth): about half the start-up, for nothing a low-level stdio server
    needs. Empty package modules in their place let ``mcp.types`` and ``mcp.server.lowlevel``
    load alone; if this SDK version needs more, the stubs go and it is imported as usual.
    """
    import importlib.util
    import types

    if "mcp" not in sys.modules:
        for name in ("mcp", "mcp.server"):
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.submodule_search_locations:
                break
            stub = types.ModuleType(name)
            stub.__path__, stub.__spec__, stub.__file__ = list(spec.submodule_search_locations), spec, spec.origin
            sys.modules[name] = stub
    try:
        import mcp.server.lowlevel.server  # noqa: F401
        import mcp.server.stdio  # noqa: F401
        import mcp.types  # noqa: F401
    except (ImportError, AttributeError):
        for name in [n for n in sys.modules if n == "mcp" or n.startswith("mcp.")]:
            del sys.modules[name]
        import mcp.server.lowlevel.server  # noqa: F401
        import mcp.server.stdio  # noqa: F401


def _protocol_stdout() -> Any:
    """The protocol's own copy of stdout; fd 1 then points at stderr, so a stray print is no corrupt message."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


async def _serve(opening: Opening, out: Any) -> None:
    from io import TextIOWrapper

    import anyio
    import mcp.types as types
    from mcp.server.lowlevel.server import Server
    from mcp.server.stdio import stdio_server

    server: Server = Server(SERVER_NAME, version=VERSION, instructions=INSTRUCTIONS)
    listed = [types.Tool(name=t.name, description=t.description, inputSchema=t.input_schema(),
                         annotations=types.ToolAnnotations(**t.annotations) if t.annotations else None)
              for t in TOOLS.values()]

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return listed

    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        text, is_error = await anyio.to_thread.run_sync(call, opening, name, arguments)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=is_error)

    stdout = anyio.wrap_file(TextIOWrapper(out, encoding="utf-8", write_through=True))
    async with stdio_server(stdout=stdout) as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _on_signal(state: dict[str, Any]) -> Callable[[int, Any], None]:
    def handler(signum: int, _frame: Any) -> None:
        if state["closing"]:
            return  # the main thread is closing the session already; let it finish
        state["closing"] = True
        if state["opening"] is not None:  # None: stopped while still importing, nothing to give back
            state["opening"].close(f"mcp server stopped by {signal.Signals(signum).name}")
        os._exit(EXIT_OK)  # the stdin reader thread may sit in a read that never returns

    return handler


def main(argv: Optional[Sequence[str]] = None) -> int:
    # The workspace is checked when the session opens, not here: a server that exits on start is
    # left out of the agent's tools without a word; one that runs says what is wrong on every call.
    p = parser("mcp_server.py", "Serve one agent's swarm tools over MCP (stdio).", json_flag=False,
               needs_workspace=lambda args: False)
    p.add_argument("--agent-id", default=os.environ.get("SWARM_AGENT_ID"),
                   help="this agent's id (default $SWARM_AGENT_ID); taken with a suffix -2, -3 ... "
                        "while another live process uses it")
    p.add_argument("--worktree", action="store_true", help="work on each task in its own git worktree")
    p.add_argument("--ttl", type=positive_seconds, metavar="S", help="lease TTL in seconds (renewed while connected)")
    args = p.parse_args(argv)
    if not args.agent_id:
        return fail("mcp_server.py needs --agent-id ID (or SWARM_AGENT_ID in the environment)")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="swarm mcp: %(message)s")
    state: dict[str, Any] = {"closing": False, "opening": None}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal(state))
    out = _protocol_stdout()
    _import_sdk()

    def make() -> Any:
        from .agent_session import AgentSession

        return AgentSession(args.agent_id, root=args.root, ttl=args.ttl, use_worktree=args.worktree,
                            driven_task=os.environ.get("SWARM_TASK_ID") or None)

    opening = state["opening"] = Opening(make)
    try:
        import anyio

        anyio.run(_serve, opening, out)
    except Exception as exc:  # the transport broke (a closed pipe): close the session all the same
        log.warning("the MCP connection ended: %s", exc)
    finally:
        state["closing"] = True
        opening.close("mcp client disconnected")
    return EXIT_OK
