"""What every module's command line shares: common flags, one-line errors, exit codes.

Exit codes: 0 ok, 1 a check that was asked for failed, 2 bad usage or bad input.
Errors are one line on stderr: ``error: FILE:LINE: what went wrong (what to do)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional, Sequence

from errors import SwarmError

__all__ = ["EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_BAD_INPUT", "parser", "run", "print_json", "fail"]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def parser(prog: str, description: str, *, root: bool = True, json_flag: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with the common ``--root`` and ``--json`` flags."""
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed the pipe: not an error worth a trace
        return EXIT_OK


def print_json(document: Any) -> None:
    """Print one JSON document (times and paths as strings)."""
    json.dump(document, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


