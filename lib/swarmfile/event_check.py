"""Check a whole event log in bounded memory: every entry parses, and an appended line joins the list.

Doctor's view of ``events.yaml`` and its archives. ``scan_log`` reads the log forwards a block
of ``BLOCK_BYTES`` at a time, so memory stays at a few MB. Lines as writers append them (one
flow mapping of plain words, numbers and quoted printable ASCII) are checked by their shape
(see ``_SHAPE``), many lines per C call, so the scan costs about two reads of the file; any
other block is parsed by the YAML parser, about ``BATCH_BYTES`` at a time. A log whose entries
are not a plain column-0 list (indented under ``events:``, a top-level key among them) is parsed
whole by the YAML parser, as every reader does; such a log is also one ``append_problem`` reports.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

from .errors import ValidationError
from .fileio import kept_end
from .yaml_log import (Irregular, append_layout, batches_forward, is_entry, layout, lines_forward, open_log,
                       parse_batch, read_all, read_at)

__all__ = ["scan_log", "append_problem", "BATCH_BYTES"]

PathLike = Union[str, "os.PathLike[str]"]

BATCH_BYTES = 64 * 1024  # entries parsed at once: the parser's nodes for them are most of the peak memory
BLOCK_BYTES = 256 * 1024  # read at once by the shape check (its copies are most of the peak memory)

# The shape of a line: letters become "a", digits "9", every other byte stays. Two lines of the
# same shape parse alike when the shape passes _SHAPE: a plain scalar that starts with a letter
# is a string, bool or null whatever its letters, one of digits only is an int whatever its
# digits, and quoted text is any printable ASCII. (A date-like or float-like plain scalar, whose
# parse depends on its digits, has another shape and goes to the parser.)
_TO_SHAPE = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                            b"a" * 52 + b"9" * 10)
_PLAIN = rb"(?:a[a9_./-]*|9+)"
_SCALAR = rb"(?:" + _PLAIN + rb"|'(?:[\x20-\x26\x28-\x7e]|'')*')"
_FLAT = (rb"(?:" + _SCALAR + rb"|\[(?:" + _SCALAR + rb"(?:, " + _SCALAR + rb")*)?\]|\{(?:" + _PLAIN + rb": "
         + _SCALAR + rb"(?:, " + _PLAIN + rb": " + _SCALAR + rb")*)?\})")
_SHAPE = re.compile(rb"- \{(?:" + _PLAIN + rb": " + _FLAT + rb"(?:, " + _PLAIN + rb": " + _FLAT + rb")*)?\}[ \t]*\r?")
_KNOWN_SHAPES_MAX = 65536  # shapes remembered as checked (a log of free text has a shape per line)


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
            return _scan_entries(fd, path, body, end)
        except Irregular:  # not a plain list: the parser makes sense of it or names what is wrong
            return len(read_all(fd, path, size))
    finally:
        os.close(fd)


def _scan_entries(fd: int, path: Path, start: int, end: int) -> int:
    """The number of entries in [start, end), each checked by its shape or parsed; errors as parse_batch's."""
    count, pos, known = 0, start, set()
    last = b""  # the one shape, with its newline, of the block before when it had only one
    while pos < end:
        block = read_at(fd, min(BLOCK_BYTES, end - pos), pos)
        cut = block.rfind(b"\n") + 1 if pos + len(block) < end else len(block)
        if cut == 0:  # one line longer than a block: the parser takes it
            cut = len(block)
        shaped = block[:cut].translate(_TO_SHAPE)
        if last and len(shaped) % len(last) == 0 and shaped == last * (len(shaped) // len(last)):
            count += len(shaped) // len(last)  # a run of one checked shape (a flood of one kind of event)
            pos += cut
            continue
        lines = shaped.split(b"\n")
        shapes = set(lines)
        shapes.discard(b"")
        if all(shape in known or _SHAPE.fullmatch(shape) for shape in shapes):
            if len(known) > _KNOWN_SHAPES_MAX:
                known.clear()
            known.update(shapes)
            blanks = lines.count(b"") if b"\n\n" in shaped or shaped[:1] == b"\n" else 1 if shaped[-1:] == b"\n" else 0
            count += len(lines) - blanks  # every line that is not blank is an entry
            pos += cut
            last = next(iter(shapes)) + b"\n" if len(shapes) == 1 else b""
            continue
        # Not all as writers append them: parse this block, up to the next entry (a block-style
        # entry's fields may run on past it).
        stop = pos + cut
        for offset, line in lines_forward(fd, stop, end):
            if is_entry(line):
                break
            stop = offset + len(line)
        count += sum(len(parse_batch(fd, path, batch)) for batch in batches_forward(fd, pos, stop, BATCH_BYTES))
        pos = stop
    return count


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
