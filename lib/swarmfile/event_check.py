"""Check a whole event log in bounded memory: every entry parses, and an appended line joins the list.

Doctor's view of ``events.yaml`` and its archives. ``scan_log`` reads the log forwards and parses
its entries a batch of about ``BATCH_BYTES`` at a time, so memory stays at a few MB and time
grows with the log as ``events.py tail`` over the whole file does. A log whose entries are not a
plain column-0 list (indented under ``events:``, a top-level key among them) is parsed whole by
the YAML parser, as every reader does; such a log is also one ``append_problem`` reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .errors import ValidationError
from .fileio import kept_end
from .yaml_log import Irregular, append_layout, batches_forward, layout, open_log, parse_batch, read_all

__all__ = ["scan_log", "append_problem", "BATCH_BYTES"]

PathLike = Union[str, "os.PathLike[str]"]

BATCH_BYTES = 64 * 1024  # entries parsed at once: the parser's nodes for them are most of the peak memory


def scan_log(path: PathLike) -> int:
    """Parse every entry of the log at ``path``; the number of events (0 when it is missing).

    Raises ParseError/ValidationError with the file and line of the first entry that does not
    parse or is not a mapping. A torn last line is left out (doctor reports it on its own).
    """
    path = Path(path)
    fd = open_log(path)
    if fd is None:
        return 0
    try:
        size = os.fstat(fd).st_size
        end = kept_end(fd, size)
        kind, body, _ = layout(fd, end)
        if kind == "empty":
            return 0
        if kind not in ("mapping", "list"):
            return len(read_all(fd, path, size))  # the parser names what is wrong, with its line
        try:
            return sum(len(parse_batch(fd, path, batch)) for batch in batches_forward(fd, body, end, BATCH_BYTES))
        except Irregular:  # not a plain list: the parser makes sense of it or names what is wrong
            return len(read_all(fd, path, size))
    finally:
        os.close(fd)


def append_problem(path: PathLike) -> Optional[ValidationError]:
    """Why a line appended to the log at ``path`` would not join its list (the error an append
    raises, with the line), or None when appends work. Reads only."""
    path = Path(path)
    try:
        fd = open_log(path, symlink="appends refuse to write through it")
    except ValidationError as exc:
        return exc
    if fd is None:
        return None
    try:
        append_layout(fd, path, os.fstat(fd).st_size)
        return None
    except ValidationError as exc:
        return exc
    finally:
        os.close(fd)
