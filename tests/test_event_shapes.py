"""event_check's shape check: a log it passes by the shape of its lines is one the YAML parser passes too.

Every case is scanned twice, with the shape check and with the parser alone, and both must give
the same count or the same error at the same line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swarmfile import event_check
from swarmfile.errors import SwarmError

pytestmark = pytest.mark.timeout(60)

GOOD = "- {timestamp: '2026-02-01T10:00:00Z', type: progress, agent: executor-1, task_id: TASK-7, step: 12}\n"

LINES = [
    # as writers append them
    GOOD,
    "- {type: message, note: 'it''s done, [really] {ok}: #1 & *2 !x'}\n",
    "- {type: merged, files: [lib/a.py, 'b c.md', 12], extra: {k: v, n: 3}}\n",
    "- {}\n", "- {a: b}  \n", "- {a: b}\r\n", "- {x_y.z/w-v: null, t: true, n: 0755, big: 123456789012}\n",
    # plain scalars whose parse depends on their digits or that YAML reads otherwise
    "- {a: 2026-13-45}\n", "- {a: 2026-01-01}\n", "- {a: ._}\n", "- {a: .inf}\n", "- {a: 12abc}\n",
    "- {a: 0x1F}\n", "- {a: -x}\n", "- {a: - x}\n", "- {a: ~}\n", "- {a: 1.5e+3}\n", "- {a: 1_000}\n",
    # structure a writer never makes
    "- {a: b: c}\n", "- {a: b #c}\n", "- {a b: c}\n", "- {a:b}\n", "- {a: [[x]]}\n", "- {a: {b: {c: d}}}\n",
    "- {a: 'unterminated}\n", "- {a: 'x'y}\n", "- {a: 'x' 'y'}\n", "- {a: b\n", "- {a: b}}\n", "- [a, b]\n",
    "- just a string\n", "-  {a: b}\n", "- {a: 'caf\u00e9'}\n", "- {a: 'tab\there'}\n", "- {a: 'bell\x07'}\n",
    "- {a: &x b, c: *x}\n", "- {a: !!int 5}\n", "- {a: !!python/name:os.system x}\n", "- {a: b, a: c}\n",
    # blocks, blanks and comments between entries
    "\n", "# a comment\n", "- timestamp: '2026-02-01T10:00:00Z'\n  type: started\n", "  indented: line\n",
    "other: key\n",
]


def scan(path: Path, *, shapes: bool) -> object:
    """scan_log's answer: the count, or the error's class, line and reason."""
    saved = event_check._SHAPE
    if not shapes:
        event_check._SHAPE = re.compile(rb"(?!)")  # no line passes by its shape: the parser reads all
    try:
        return event_check.scan_log(path)
    except SwarmError as exc:
        return type(exc).__name__, exc.line, exc.reason
    except ValueError as exc:  # the parser's own crash on a date that is not one (fileio does not catch it)
        return type(exc).__name__, str(exc)
    finally:
        event_check._SHAPE = saved


@pytest.mark.parametrize("line", LINES, ids=[repr(line)[:40] for line in LINES])
def test_a_line_passes_by_its_shape_only_when_the_parser_passes_it(tmp_path, line):
    path = tmp_path / "events.yaml"
    path.write_bytes(("events:\n" + GOOD * 3 + line + GOOD * 2).encode("utf-8"))
    assert scan(path, shapes=True) == scan(path, shapes=False)


def test_lines_of_one_shape_parse_alike_across_blocks(tmp_path, monkeypatch):
    """A shape checked in one block is trusted in the next; a bad line far into the log is still found."""
    monkeypatch.setattr(event_check, "BLOCK_BYTES", 4096)
    path = tmp_path / "events.yaml"
    lines = [GOOD.replace("step: 12", f"step: {n}") for n in range(2000)]
    lines[1500] = "- {a: 2026-13-45}\n"  # a date that is not one: the parser refuses it
    path.write_text("events:\n" + "".join(lines))
    assert scan(path, shapes=True) == scan(path, shapes=False)
    lines[1500] = "- timestamp: '2026-02-01T10:00:00Z'\n  type: started\n"  # a block entry across a block edge
    path.write_text("events:\n" + "".join(lines))
    assert scan(path, shapes=True) == scan(path, shapes=False) == 2000


def test_a_line_longer_than_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(event_check, "BLOCK_BYTES", 256)
    path = tmp_path / "events.yaml"
    path.write_text("events:\n" + GOOD + "- {note: '" + "x" * 1000 + "'}\n" + GOOD)
    assert scan(path, shapes=True) == scan(path, shapes=False) == 3
