"""The command line of claims.py: ``python lib/claims.py ready`` lists the tasks ready to be claimed.

    python lib/claims.py ready [--root DIR] [--json] [--limit N]

The tasks in the order ``claim_next`` takes them (priority, then oldest first), as a table or as
one JSON document. Leases are shown by ``python lib/swarm.py status``. This module imports only
the ready query and what it needs (not the lease table): a script polling for work pays little
more than the interpreter's start (see tests/benchmarks, the cli group).
"""

from __future__ import annotations

import sys
from itertools import chain, repeat
from json.encoder import encode_basestring
from operator import attrgetter
from typing import Iterator, Optional, Sequence

from .cli import non_negative_int, parser, run, table
from .task_index import path_texts

__all__ = ["main"]


# What comes before each value of a row.
_KEYS = ('{"task_id": ', ', "title": ', ', "priority": ', ', "status": ', ', "created": ', ', "depends_on": ',
         ', "parent": ', ', "path": ')


def _json(found: list, shown: list) -> str:
    """``json.dumps({"ready": [row, ...], "count": len(found)}, ensure_ascii=False)``: ``_json_parts`` joined."""
    return "".join(_json_parts(found, shown))


def _json_parts(found: list, shown: list) -> Iterator[str]:
    """The text of ``_json`` in parts of ``_ROWS`` rows, a column at a time.

    Each column's values are quoted by the function json.dumps quotes strings with, mapped over the
    column (a C loop), and the rows' pieces are joined once: at 10,000 tasks, json.dumps of the rows
    as dicts, or a Python expression per row, costs more than the query (json.dumps quotes every key
    of every row). Written part by part, the text reuses the memory of the part before (a new process
    pays for every page it touches first). The same text byte for byte (tests/test_task_index.py
    compares the two). A status is a str enum, whose text is its value (no Enum.value, a Python-level
    property, nor Enum.__hash__, a Python function).
    """
    yield '{"ready": ['
    for start in range(0, len(shown), _ROWS):
        part = shown[start:start + _ROWS]
        statuses = list(map(_STATUS, part))
        for at in [n for n, status in enumerate(statuses) if status is None] if None in statuses else ():
            statuses[at] = part[at].status_text  # unrecognised: its text as written (null if none)
        columns = (_quoted(list(map(_ID, part))), _quoted(list(map(_TITLE, part))),
                   _quoted(list(map(_PRIORITY_TEXT, part))), _quoted(statuses), _quoted(list(map(_CREATED, part))),
                   map(_ID_LISTS.__getitem__, map(_DEPENDS_ON, part)), _quoted(list(map(_PARENT, part))),
                   _quoted(path_texts(part)))
        rows = zip(*chain.from_iterable(zip(map(repeat, _KEYS), columns)), repeat("}, "))
        text = "".join(chain.from_iterable(rows))
        yield text[:-2] if start + _ROWS >= len(shown) else text  # no ", " after the last row
    yield '], "count": ' + str(len(found)) + "}"


_ROWS = 512
_ID, _TITLE, _STATUS, _PRIORITY_TEXT, _CREATED, _DEPENDS_ON, _PARENT = map(
    attrgetter, ("task_id", "title", "status", "priority_text", "created", "depends_on", "parent"))


def _quoted(values: list) -> list[str]:
    """Each value as JSON: a string quoted, None as null (one C loop when there is no None)."""
    if None not in values:
        return list(map(encode_basestring, values))
    if values.count(None) == len(values):  # a field most tasks leave out (parent)
        return ["null"] * len(values)
    return ["null" if value is None else encode_basestring(value) for value in values]


class _IdLists(dict):
    """A tuple of ids -> its JSON list, made once per distinct tuple (most tasks: the empty one)."""

    def __missing__(self, ids: tuple) -> str:
        text = self[ids] = "[" + ", ".join(map(encode_basestring, ids)) + "]"
        return text


_ID_LISTS = _IdLists()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser("claims.py", "Task leases: list the tasks ready to be claimed (leases: python lib/swarm.py status).")
    sub = p.add_subparsers(dest="command", required=True)
    ready = sub.add_parser("ready", help="the tasks ready to be claimed, in claim order")
    ready.add_argument("--limit", type=non_negative_int, default=0, metavar="N", help="at most N tasks (0: all)")
    args = p.parse_args(argv)

    def body() -> int:
        from .ready_query import ready_tasks

        found = ready_tasks(root=args.root)
        shown = found[:args.limit] if args.limit else found
        if args.json:
            # One line, not print_json's indented document: 10,000 tasks indented by the pure-Python
            # encoder would cost more than the whole query.
            sys.stdout.writelines(_json_parts(found, shown))
            sys.stdout.write("\n")
            return 0
        if not found:
            print("no task is ready")
            return 0
        print(table(["task", "priority", "title"], [(t.task_id, t.priority_text or "medium", t.title[:70])
                                                    for t in shown]))
        if len(shown) < len(found):
            print(f"... and {len(found) - len(shown)} more")
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
