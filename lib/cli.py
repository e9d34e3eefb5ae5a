"""What every module's command line shares: common flags, one-line errors, exit codes.

Exit codes: 0 ok, 1 a check that was asked for failed, 2 bad usage or bad input.
Errors are one line on stderr: ``error: FILE:LINE: what went wrong (what to do)``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from errors import SwarmError

if TYPE_CHECKING:
    import argparse

__all__ = ["EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_BAD_INPUT", "parser", "run", "print_json", "fail", "table",
           "duration"]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def parser(prog: str, description: str, *, root: bool = True, json_flag: bool = True) -> "argparse.ArgumentParser":
    """An ArgumentParser with the common ``--root`` and ``--json`` flags."""
    import argparse  # here, not at the top: modules import cli for its helpers too

    p = argparse.ArgumentParser(prog=prog, description=description)
    if root:
        p.add_argument("--root", metavar="DIR", help="workspace root (default: $SWARM_ROOT or the current directory)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    return p


def fail(message: Any) -> int:
    """Print ``error: message`` as one line on stderr and return exit code 2."""
    text = " ".join(str(message).split("\n"))
    print(f"error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(body: Callable[[], Optional[int]]) -> int:
    """Call ``body`` and turn Swarmfile errors and Ctrl-C into one-line errors and exit codes."""
    try:
        return body() or EXIT_OK
    except SwarmError as exc:
        return fail(exc)
    except OSError as exc:  # a full disk, a permission: one line naming the file, like any bad input
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc} (nothing was changed; free space or fix permissions, then retry)")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed the pipe: not an error worth a trace
        return EXIT_OK


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
