"""Connect an agent CLI to this workspace's swarm: its MCP server entry and a section of instructions.

    python lib/swarm.py setup claude|codex|gemini [--root DIR] [--dry-run] [--remove] [--check]

What each CLI gets (paths relative to the workspace root):

- claude: ``.mcp.json`` ``mcpServers.swarm``; the rule ``mcp__swarm`` in ``permissions.allow`` of
  ``.claude/settings.json`` (without it, ``claude -p`` denies every call of the server's tools);
  a section in ``CLAUDE.md``.
- codex: a ``[mcp_servers.swarm]`` table in ``.codex/config.toml`` with its tools approved (Codex
  reads a project's file only once the project is trusted); a section in ``AGENTS.md``.
- gemini: ``.gemini/settings.json`` ``mcpServers.swarm`` (``trust: true``: its calls need no
  confirmation); a section in ``GEMINI.md``.

What a person wrote stays as it was: JSON files are merged key by key (only the keys above are
ours), the TOML table and the Markdown section sit between marker lines and only what is
between them is replaced or removed. A file that does not parse is refused with one error line
and left untouched. Running it again changes nothing; every change is shown as a diff first.
``--check`` starts the configured server and says whether it answers.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .cli import EXIT_CHECK_FAILED, EXIT_OK, module_argv, parser, print_json, run
from .config import resolve_root
from .errors import ParseError, ValidationError

__all__ = ["CLIS", "Change", "plan", "apply", "check", "main"]

NAME = "swarm"  # the server's name in every CLI's configuration; Claude Code's tools become mcp__swarm__*
PERMISSION = f"mcp__{NAME}"
_UNCHANGED = "fix it by hand; it was not changed"
_MD_BEGIN = "<!-- swarm:begin (written by `python lib/swarm.py setup`; what is between these lines is replaced) -->"
_MD_END = "<!-- swarm:end -->"
_TOML_BEGIN = "# swarm:begin (written by `python lib/swarm.py setup codex`; what is between these lines is replaced)"
_TOML_END = "# swarm:end"

INSTRUCTIONS = """\
## Working in the swarm

Several agents share this repository's tasks through the `swarm` MCP server. Work like this:

1. Call `claim` (the next ready task, or one by `task_id`). Its reply holds the task text and the
   working directory: make every change there.
2. Before editing files the task does not list, `reserve` them; if another agent holds them, do
   something else or wait. `release` what you no longer need.
3. When the task is finished call `done` with a one-line summary. If it cannot be done call
   `failed` with the reason; if you are blocked or need an answer call `waiting`
   (`need_help: true` sends your question to the planner).
4. Then `claim` the next task. Read your `inbox` between tasks and answer with `send_message`;
   `status` shows the swarm. `add_task` records follow-up work instead of doing it unasked.

Do not edit task files under `tasks/` or anything under `.swarm/` by hand: the tools do that.
The server renews your lease while you work; you never handle lease tokens.
"""


@dataclass(frozen=True)
class Change:
    """One file as it is (None: absent) and as setup would leave it (None: removed)."""

    path: Path
    old: Optional[str]
    new: Optional[str]

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self, *, root: Path) -> str:
        name = self.path.relative_to(root).as_posix() if self.path.is_relative_to(root) else str(self.path)
        lines = difflib.unified_diff((self.old or "").splitlines(keepends=True), (self.new or "").splitlines(keepends=True),
                                     f"a/{name}" if self.old is not None else "/dev/null",
                                     f"b/{name}" if self.new is not None else "/dev/null")
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# ---------------------------------------------------------------------------- JSON files


def _load_json(path: Path, text: Optional[str]) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"does not parse as JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno,
                         hint=_UNCHANGED) from None
    if not isinstance(data, dict):
        raise ValidationError(f"must hold a JSON object, not {type(data).__name__}", path=path, line=1, hint=_UNCHANGED)
    return data


def _object(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise ValidationError(f"'{key}' must be a JSON object, not {type(value).__name__}", path=path, hint=_UNCHANGED)
    return value


def _dump_json(data: dict[str, Any], old: Optional[str], path: Path) -> Optional[str]:
    """The new text: ``old`` itself when nothing changed (no reformatting), None when nothing is left."""
    if old is not None and data == _load_json(path, old):
        return old
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n" if data else None


def _server_json(entry: dict[str, Any]) -> Callable[[Path, Optional[str], bool], Optional[str]]:
    def edit(path: Path, old: Optional[str], remove: bool) -> Optional[str]:
        data = _load_json(path, old)
        servers = _object(data, "mcpServers", path)
        if remove:
            servers.pop(NAME, None)
            if not servers:
                del data["mcpServers"]
        else:
            servers[NAME] = entry
        return _dump_json(data, old, path)
    return edit


def _claude_permission(path: Path, old: Optional[str], remove: bool) -> Optional[str]:
    data = _load_json(path, old)
    permissions = _object(data, "permissions", path)
    allow = permissions.setdefault("allow", [])
    if not isinstance(allow, list):
        raise ValidationError("'permissions.allow' must be a JSON list", path=path, hint=_UNCHANGED)
    if remove:
        allow[:] = [rule for rule in allow if rule != PERMISSION]
    elif PERMISSION not in allow:
        allow.append(PERMISSION)
    if not allow:
        del permissions["allow"]
    if not permissions:
        del data["permissions"]
    return _dump_json(data, old, path)


# ---------------------------------------------------------------------------- marked sections


def _split_section(path: Path, text: str, begin: str, end: str) -> tuple[str, Optional[str], str]:
    """(before, the section with its markers or None, after); refuses unbalanced markers."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == end]
    if not starts and not ends:
        return text, None, ""
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        line = (starts or ends)[0] + 1
        raise ParseError("the swarm section's marker lines are unbalanced (one begin line, then one end line)",
                         path=path, line=line, hint=_UNCHANGED)
    first, last = starts[0], ends[0]
    return "".join(lines[:first]), "".join(lines[first:last + 1]), "".join(lines[last + 1:])


def _with_section(path: Path, old: Optional[str], section: Optional[str], begin: str, end: str) -> Optional[str]:
    """``old`` with the marked section replaced by ``section`` (None: removed), or appended."""
    before, current, after = _split_section(path, old or "", begin, end)
    if section is None:
        if current is None:
            return old
        text = before.rstrip("\n") + "\n" if before.strip() else ""
        if after.strip():
            text += ("\n" if text else "") + after.lstrip("\n")
        return text or None
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if current is not None:
        return before + block + after
    if not before.strip():
        return block
    return before.rstrip("\n") + "\n\n" + block


def _instructions(path: Path, old: Optional[str], remove: bool) -> Optional[str]:
    return _with_section(path, old, None if remove else INSTRUCTIONS, _MD_BEGIN, _MD_END)


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string with \\uXXXX escapes is a valid TOML basic string


def _codex_toml(entry: dict[str, Any]) -> Callable[[Path, Optional[str], bool], Optional[str]]:
    import tomllib

    def parse(path: Path, text: str) -> dict[str, Any]:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"\(at line (\d+)", str(exc))
            raise ParseError(f"does not parse as TOML: {str(exc).split(' (at line')[0]}", path=path,
                             line=int(found.group(1)) if found else None, hint=_UNCHANGED) from None

    def edit(path: Path, old: Optional[str], remove: bool) -> Optional[str]:
        parse(path, old or "")
        before, _, after = _split_section(path, old or "", _TOML_BEGIN, _TOML_END)
        if not remove and NAME in parse(path, before + after).get("mcp_servers", {}):
            raise ValidationError(f"[mcp_servers.{NAME}] is already defined outside the swarm section", path=path,
                                  hint="remove or rename that table by hand, then run setup again; it was not changed")
        # Without the approval mode, codex exec refuses every call ("requires approval, but approval
        # policy is never"); the swarm's tools change nothing but the swarm's own files.
        table = "\n".join([f"[mcp_servers.{NAME}]", f"command = {_toml_string(entry['command'])}",
                           "args = [" + ", ".join(map(_toml_string, entry["args"])) + "]",
                           'default_tools_approval_mode = "approve"'])
        new = _with_section(path, old, None if remove else table, _TOML_BEGIN, _TOML_END)
        if new is not None and not remove and parse(path, new).get("mcp_servers", {}).get(NAME, {}).get("args") != entry["args"]:
            raise ValidationError("the swarm table would not read back as written", path=path, hint=_UNCHANGED)
        return new
    return edit


# ---------------------------------------------------------------------------- the CLIs


def server_entry(*, root: Path, agent_id: str, worktree: bool) -> dict[str, Any]:
    """The command that starts this workspace's server for ``agent_id`` (absolute paths: any cwd works)."""
    server = module_argv("mcp_server")
    return {"command": server[0],
            "args": [*server[1:], "--agent-id", agent_id, "--root", str(root), *(["--worktree"] if worktree else [])]}


def _targets(cli: str, entry: dict[str, Any]) -> list[tuple[str, Callable[[Path, Optional[str], bool], Optional[str]]]]:
    if cli == "claude":
        return [(".mcp.json", _server_json({"type": "stdio", **entry})),
                (".claude/settings.json", _claude_permission), ("CLAUDE.md", _instructions)]
    if cli == "codex":
        return [(".codex/config.toml", _codex_toml(entry)), ("AGENTS.md", _instructions)]
    return [(".gemini/settings.json", _server_json({**entry, "trust": True})), ("GEMINI.md", _instructions)]


CLIS = ("claude", "codex", "gemini")
_NOTES = {  # measured with the pinned CLIs: an untrusted project's settings and servers are not used
    "claude": "Claude Code applies .claude/settings.json (the mcp__swarm permission) only in a trusted folder: "
              "accept the trust dialog on the first interactive start, or pass --allowedTools mcp__swarm to claude -p.",
    "codex": "Codex reads .codex/config.toml only in a trusted project: trust it when Codex asks, or add "
             '[projects."{root}"] trust_level = "trusted" to ~/.codex/config.toml.',
    "gemini": "Gemini CLI starts a project's MCP servers only in a trusted folder: trust it when Gemini asks, or "
              'add "{root}": "TRUST_FOLDER" to ~/.gemini/trustedFolders.json.',
}


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ParseError("is not UTF-8 text", path=path, hint=_UNCHANGED) from None


def plan(cli: str, *, root: Path, remove: bool = False, agent_id: Optional[str] = None,
         worktree: bool = False) -> list[Change]:
    """What setup would write for ``cli``; raises ParseError/ValidationError before anything is written."""
    if cli not in CLIS:
        raise ValidationError(f"unknown agent CLI {cli!r}", hint=f"use one of {', '.join(CLIS)}")
    from .config import validate_id

    entry = server_entry(root=root, agent_id=validate_id(agent_id or cli, "agent id"), worktree=worktree)
    changes = []
    for rel, edit in _targets(cli, entry):
        path = root / rel
        old = _read(path)
        changes.append(Change(path, old, edit(path, old, remove)))
    return changes


def apply(changes: Sequence[Change], *, root: Path) -> list[Change]:
    """Write (or remove) each changed file atomically; returns the changes made."""
    from .fileio import atomic_write

    done = []
    for change in changes:
        if not change.changed:
            continue
        if change.new is None:
            change.path.unlink()
            if change.path.parent != root:
                try:
                    change.path.parent.rmdir()  # .codex/ or .claude/ left empty
                except OSError:
                    pass  # a person's files are in it
        else:
            change.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(change.path, change.new)
        done.append(change)
    return done


# ---------------------------------------------------------------------------- --check


def _configured(cli: str, root: Path) -> Optional[dict[str, Any]]:
    """The server entry as the CLI's configuration file holds it now, or None."""
    rel = _targets(cli, {"command": "", "args": []})[0][0]
    path = root / rel
    text = _read(path)
    if cli == "codex":
        import tomllib

        before, section, after = _split_section(path, text or "", _TOML_BEGIN, _TOML_END)
        found = tomllib.loads(section or "").get("mcp_servers", {}).get(NAME) if section else None
    else:
        found = _load_json(path, text).get("mcpServers", {}).get(NAME)
    return found if isinstance(found, dict) and found.get("command") else None


def check(cli: str, *, root: Path, timeout: float = 30.0) -> tuple[bool, str]:
    """Start the configured server (as agent ``setup-check``) and ask it for its tools and status."""
    entry = _configured(cli, root)
    if entry is None:
        return False, f"no '{NAME}' MCP server is configured for {cli} here: run python lib/swarm.py setup {cli}"
    args = [str(a) for a in entry.get("args", [])]
    if "--agent-id" in args and args.index("--agent-id") + 1 < len(args):
        args[args.index("--agent-id") + 1] = "setup-check"  # not the agent's own id: its inbox, its heartbeat

    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def ask() -> tuple[bool, str]:
        params = StdioServerParameters(command=str(entry["command"]), args=args, cwd=str(root),
                                       env={**os.environ, **(entry.get("env") or {})})
        started = time.monotonic()
        with open(os.devnull, "w") as quiet, anyio.fail_after(timeout):
            async with stdio_client(params, errlog=quiet) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    answered = time.monotonic() - started
                    tools = (await session.list_tools()).tools
                    status = await session.call_tool("status", {})
        text = status.content[0].text if status.content else ""
        if status.isError:
            return False, f"the {NAME} server for {cli} starts but cannot work here: {text}"
        return True, (f"the {NAME} server for {cli} answers: {len(tools)} tools, initialize took {answered:.1f} s "
                      f"({entry['command']} {' '.join(args[:1])})")

    try:
        return anyio.run(ask)
    except TimeoutError:
        return False, f"the {NAME} server for {cli} did not answer within {timeout:g} s ({entry['command']})"
    except Exception as exc:  # it could not start: a missing interpreter, a crash on start
        return False, f"the {NAME} server for {cli} did not start: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser("swarm.py setup", "Connect an agent CLI to this workspace's swarm (MCP server and instructions).")
    p.add_argument("cli", choices=CLIS, help="the agent CLI to set up")
    p.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    p.add_argument("--remove", action="store_true", help="take the swarm's entries and sections out again")
    p.add_argument("--check", action="store_true", help="start the configured server and say whether it answers")
    p.add_argument("--agent-id", help="the agent id the server registers (default: the CLI's name)")
    p.add_argument("--worktree", action="store_true", help="the agent works on each task in its own git worktree")
    args = p.parse_args(argv)

    def body() -> int:
        root = resolve_root(root=args.root)
        if args.check:
            ok, message = check(args.cli, root=root)
            print_json({"ok": ok, "message": message}) if args.json else print(message)
            return EXIT_OK if ok else EXIT_CHECK_FAILED
        changes = plan(args.cli, root=root, remove=args.remove, agent_id=args.agent_id, worktree=args.worktree)
        made = [c for c in changes if c.changed] if args.dry_run else apply(changes, root=root)
        if args.json:
            print_json({"dry_run": args.dry_run, "changed": [str(c.path) for c in made],
                        "diff": "".join(c.diff(root=root) for c in made)})
            return EXIT_OK
        for change in made:
            sys.stdout.write(change.diff(root=root))
        verb = "would change" if args.dry_run else "changed"
        names = ", ".join(c.path.relative_to(root).as_posix() for c in made)
        print(f"{args.cli}: {verb} {names}" if made else f"{args.cli}: already up to date, nothing to change")
        if made and not args.remove and not args.dry_run:
            note = _NOTES.get(args.cli)
            if note:
                print(note.format(root=root))
            print(f"check it with: python lib/swarm.py setup {args.cli} --check")
        return EXIT_OK

    return run(body)
