"""What every module's command line shares: common flags, one-line errors, exit codes.

Exit codes: 0 ok, 1 a check that was asked for failed, 2 bad usage or bad input.
Errors are one line on stderr: ``error: FILE:LINE: what went wrong (what to do)``.

Global options (``--root``, ``--json`` and any a module adds with ``add_global``) are accepted
on either side of a command: ``parser`` copies them into every sub-command's parser. Before a
command runs, its ``--root`` must be a workspace (see ``require_workspace``): only
``swarm.py init`` creates one. Numeric options use the types below, so ``--ttl -1`` is refused.
Times are shown in UTC (``show_time``), as they are stored.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .errors import NotFoundError, SwarmError, ValidationError

if TYPE_CHECKING:
    import argparse

__all__ = ["EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_BAD_INPUT", "parser", "run", "print_json", "fail", "table",
           "duration", "positive_seconds", "non_negative_seconds", "positive_int", "non_negative_int", "at_least",
           "require_workspace", "no_command_line", "show_time"]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def parser(prog: str, description: str, *, root: bool = True, json_flag: bool = True,
           needs_workspace: Optional[Callable[[Any], bool]] = None) -> "argparse.ArgumentParser":
    """An ArgumentParser with the common ``--root`` and ``--json`` flags, accepted on either side of a command.

    ``add_global(...)`` adds another such flag. With ``--root``, parsing refuses a root that is
    not a workspace (exit 2) unless ``needs_workspace(args)`` says the command does without one.
    """
    p = _parser_class()(prog=prog, description=description)
    p.needs_workspace = needs_workspace or (lambda args: True)
    if root:
        p.add_global("--root", metavar="DIR", help="workspace root (default: $SWARM_ROOT or the current directory)")
    if json_flag:
        p.add_global("--json", action="store_true", help="print one JSON document instead of a table")
    return p


@functools.lru_cache(maxsize=None)
def _parser_class() -> type:
    import argparse  # here, not at the top: modules import cli for its helpers too

    class SwarmParser(argparse.ArgumentParser):
        """An ArgumentParser whose global options also work after the command."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._globals: list[tuple[tuple, dict]] = []
            self._commands: list[argparse.ArgumentParser] = []
            self.needs_workspace: Optional[Callable[[Any], bool]] = None

        def add_global(self, *names: str, **kwargs: Any) -> Any:
            """An option of the whole program, accepted before the command and after it."""
            self._globals.append((names, kwargs))
            for command in self._commands:
                _copy_global(command, names, kwargs)
            return self.add_argument(*names, **kwargs)

        def add_subparsers(self, **kwargs: Any) -> Any:
            action = super().add_subparsers(**kwargs)
            add_parser = action.add_parser

            def add_command(name: str, **options: Any) -> argparse.ArgumentParser:
                command = add_parser(name, **options)
                self._commands.append(command)
                for names, spec in self._globals:
                    _copy_global(command, names, spec)
                return command

            action.add_parser = add_command
            return action

        def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
            parsed = super().parse_args(args, namespace)
            check = self.needs_workspace
            if check is not None and hasattr(parsed, "root") and check(parsed):
                try:
                    require_workspace(root=parsed.root)
                except SwarmError as exc:
                    raise SystemExit(fail(exc)) from None
            return parsed

    def _copy_global(command: argparse.ArgumentParser, names: tuple, spec: dict) -> None:
        if any(name in command._option_string_actions for name in names):
            return  # the command defines its own meaning of the flag
        # SUPPRESS: when the flag is not given after the command, the value given before it stays.
        command.add_argument(*names, **{**spec, "default": argparse.SUPPRESS})

    return SwarmParser


# ---------------------------------------------------------------------------- workspaces

_INIT_HINT = "create one with: python lib/swarm.py init --root DIR"


def require_workspace(*, root: Any = None) -> Path:
    """The resolved root if it is an initialised workspace, else NotFoundError/ValidationError saying why.

    Initialised means the directory holds ``swarm.yaml``, one of the shared files at its
    configured path (``heartbeat.yaml``, ``events.yaml``, ``agent-state.yaml``, ``chat-log.yaml``)
    or the task folder (``tasks/active/``): what ``swarm.py init`` writes, what a RALF tree has
    (pointed at by swarm.yaml or not), and what an operator writing tasks by hand makes.
    """
    from .config import load_config, resolve_root

    path = resolve_root(root=root)
    if path.exists() and not path.is_dir():
        raise ValidationError("workspace root is a file, not a directory", path=path,
                              hint="give --root the directory that holds heartbeat.yaml and events.yaml")
    if not path.is_dir():
        raise NotFoundError("workspace root does not exist", path=path, hint=_INIT_HINT)
    if (path / "swarm.yaml").is_file():
        return path  # configured: its own paths say where the files are (read errors come later)
    cfg = load_config(root=path)
    shared = (cfg.heartbeat_file, cfg.events_file, cfg.state_file, cfg.chat_file)
    if not (any(f.is_file() for f in shared) or cfg.tasks_active.is_dir()):
        raise NotFoundError("is not a Swarmfile workspace (no swarm.yaml, heartbeat.yaml, events.yaml, "
                            "agent-state.yaml, chat-log.yaml or tasks/active/)", path=path, hint=_INIT_HINT)
    return path


def no_command_line(module: str, instead: str, argv: Optional[Sequence[str]] = None) -> int:
    """What ``python lib/<module>`` does for a module loops import but nobody runs: say so.

    ``--help`` is answered (exit 0, on stdout); anything else is bad usage (exit 2).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--help"], ["-h"]):
        print(f"usage: {module} has no command line of its own; {instead}")
        return 0
    return fail(f"{module} has no command line of its own; {instead}")


# ---------------------------------------------------------------------------- numeric options


def _number(text: str, kind: type, minimum: float, what: str) -> Any:
    import argparse

    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    value = _number(text, float, 0, "a number of seconds > 0")
    if value == 0:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def non_negative_seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    return _number(text, float, 0, "a number of seconds >= 0")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _number(text, int, 1, "a whole number >= 1")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _number(text, int, 0, "a whole number >= 0")


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""
    return lambda text: _number(text, int, minimum, f"a whole number >= {minimum}")


def fail(message: Any) -> int:
    """Print ``error: message`` as one line on stderr and return exit code 2."""
    text = " ".join(str(message).split("\n"))
    print(f"error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(body: Callable[[], Optional[int]]) -> int:
    """Call ``body`` and turn Swarmfile errors and Ctrl-C into one-line errors and exit codes."""
    try:
        code = body() or EXIT_OK
        sys.stdout.flush()  # inside the try: a reader that is gone shows up here, not at exit
        return code
    except BrokenPipeError:  # `... | head` closed the pipe: it has what it wanted, not an error
        _mute_stdout()
        return EXIT_OK
    except SwarmError as exc:
        return fail(exc)
    except OSError as exc:  # a full disk, a permission: one line naming the file, like any bad input
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc} (nothing was changed; free space or fix permissions, then retry)")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _mute_stdout() -> None:
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that flush from
    # printing "Exception ignored ... BrokenPipeError".
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to flush
        pass


def show_time(value: Any) -> str:
    """A stored time for people: UTC, seconds precision, with its ``Z`` (``2026-02-03 16:43:34Z``).

    Every view shows times in UTC whatever zone they were stored in, so two times side by side
    compare; a value that is not a time is shown as it is.
    """
    from .clock import parse_ts
    if value is None or value == "":
        return "-"
    try:
        return parse_ts(value).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return str(value)


def print_json(document: Any) -> None:
    """Print one JSON document (times and paths as strings)."""
    import json

    json.dump(document, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as left-aligned columns under their headers (no trailing spaces)."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *text_rows)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [list(headers), *text_rows])


def duration(seconds: float) -> str:
    """``42s``, ``5m12s``, ``3h04m``, ``2d03h``; negative durations get a leading ``-``."""
    if seconds < 0:
        return "-" + duration(-seconds)
    total = int(seconds)
    if total < 3600:
        return f"{total}s" if total < 60 else f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def module_argv(module: str) -> list[str]:
    """How a new process runs one of Swarmfile's command lines (the planner, an executor, the MCP server ...).

    In a checkout it is ``lib/<module>.py`` (what operators run too); from an installed package,
    where there is no lib/, it is ``python -m swarmfile <module>``.
    """
    script = Path(__file__).resolve().parent.parent / f"{module}.py"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "swarmfile", module]
