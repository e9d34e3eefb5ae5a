"""Reading text files: a file's UTF-8 text, and text as lines that keep their endings.

Apart from fileio.py (which re-exports both) because reading needs neither locks nor YAML: the
ready query (``python lib/claims.py ready``, a task file parsed) starts without importing
portalocker or PyYAML, which cost more than the query.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

from .errors import ParseError

__all__ = ["read_text", "split_lines"]

PathLike = Union[str, "os.PathLike[str]"]


def split_lines(text: str) -> list[str]:
    """``text`` as lines that keep their own endings (the last may have none): joined, the same text."""
    return _LINE.findall(text)


_LINE = re.compile(r"[^\n]*\n|[^\n]+")


def _line_of_byte(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


def read_text(path: PathLike) -> str:
    """The UTF-8 text of ``path``; ParseError with the line of the first invalid byte."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"is not valid UTF-8 (byte {exc.start})", path=Path(path), line=_line_of_byte(data, exc.start),
            hint="fix or restore the file; it was not changed",
        ) from None
