"""The command line of claims.py: ``python lib/claims.py ready`` lists the tasks ready to be claimed.

    python lib/claims.py ready [--root DIR] [--json] [--limit N]

The tasks in the order ``claim_next`` takes them (priority, then oldest first), as a table or as
one JSON document. Leases are shown by ``python lib/swarm.py status``. This module imports only
the ready query and what it needs (not the lease table): a script polling for work pays little
more than the interpreter's start (see tests/benchmarks, the cli group).
"""

from __future__ import annotations

import sys
from itertools import compress, repeat
from operator import is_
from typing import Iterator, Optional, Sequence

from .cli import non_negative_int, parser, run, table
from .task_index import columns, path_columns

__all__ = ["main"]


def _json(found: list, shown: list) -> str:
    """``json.dumps({"ready": [row, ...], "count": len(found)}, ensure_ascii=False)``: ``_json_parts`` joined."""
    return "".join(_json_parts(found, shown))


def _json_parts(found: list, shown: list) -> Iterator[str]:
    """The text of ``_json`` in parts of ``_ROWS`` rows, a column at a time.

    At 10,000 tasks, json.dumps of the rows as dicts, or a Python expression per row, costs more
    than the query (json.dumps quotes every key of every row). Here each row is the same pieces,
    the texts between the values (keys, quotes) and the values: a part is one join of a list
    filled a column at a time (``_joined``). Most columns need no escape at all, and their values
    go into the text as they are (``_bodies``); a column of nulls only (most tasks have no parent)
    is written into the texts between. Written part by part, the text reuses the memory of the
    part before (a new process pays for every page it touches first). The same text byte for byte
    (tests/test_task_index.py compares the two). A status is a str enum, whose text is its value
    (``str.__str__``: no Enum.value, a Python-level property, nor Enum.__str__, its name).
    """
    yield '{"ready": ['
    for start in range(0, len(shown), _ROWS):
        part = shown[start:start + _ROWS]
        ids, titles, priorities, statuses, created, depends_on, parents = columns(part, _FIELDS)
        if None in statuses:  # unrecognised: its text as written (null if none)
            statuses = [t.status_text if s is None else str.__str__(s) for s, t in zip(statuses, part)]
        else:
            statuses = list(map(str.__str__, statuses))  # the enum's value, as a str
        folders, names = path_columns(part)
        prefixes = _Prefixes()
        strings = {"task_id": ids, "title": titles, "priority": priorities, "status": statuses, "created": created,
                   "parent": parents}
        row: list = []
        nulls = False  # a null among other values: written as _NULL in quotes, replaced below
        for key in _KEYS:
            row.append(", " if row else "{")
            if key == "depends_on":  # a list of ids, as JSON
                row += ['"depends_on": ', list(map(_ID_LISTS.__getitem__, depends_on))]
            elif key == "path":
                row += ['"path": "', list(map(prefixes.__getitem__, folders)), _bodies(names), '"']  # never null
            else:
                values = strings[key]
                missing = 0 if all(values) else values.count(None)
                if missing == len(part):
                    row.append(f'"{key}": null')
                    continue
                nulls = nulls or missing > 0
                row += [f'"{key}": "', _bodies(values, missing), '"']
        text = _joined(row + ["}, "], len(part))
        if nulls:
            text = text.replace(_NULL_TEXT, "null")
        yield text if start + _ROWS < len(shown) else text[:-2]  # no ", " after the last row
    yield '], "count": ' + str(len(found)) + "}"


_ROWS = 512
_KEYS = ("task_id", "title", "priority", "status", "created", "depends_on", "parent", "path")
_NULL = "\x01"  # a control character: escaped in every value, so only a null is ever written as it
_NULL_TEXT = '"' + _NULL + '"'
# Every byte to itself but those of the characters a JSON string escapes (control characters, '"' and
# '\\': in UTF-8 these bytes stand for these characters only).
_UNESCAPED = bytes(255 if byte < 32 or byte in b'"\\' else byte for byte in range(256))
_FIELDS = ("task_id", "title", "priority_text", "status", "created", "depends_on", "parent")


def _joined(row: list, count: int) -> str:
    """``count`` rows joined, each the items of ``row`` in turn: a text (the same in every row) or a
    list of ``count`` texts (one per row). One join of a list filled a column at a time, by slices."""
    items: list = []
    for item in row:
        if type(item) is str and items and type(items[-1]) is str:
            items[-1] += item
        else:
            items.append(item)
    width = len(items)
    pieces = [""] * (width * count)
    for at, item in enumerate(items):
        pieces[at::width] = [item] * count if type(item) is str else item
    return "".join(pieces)


def _bodies(values: list, nulls: int = 0) -> list[str]:
    """Each value as the text between the quotes of its JSON string; None (``nulls`` of them) as ``_NULL``."""
    texts = [value or "" for value in values] if nulls else values
    # Whether any value needs an escape, in one tight C loop over the column's bytes (translate gives
    # back the very same bytes when no byte changed): escaping the column to find out reads every
    # character twice (json's encoder), and most columns need no escape.
    joined = "".join(texts).encode("utf-8", "surrogatepass")
    if joined.translate(_UNESCAPED) is joined:
        bodies = texts
    else:
        # Here, not at the top: json's import compiles six regular expressions, and most lists need none.
        from json.encoder import encode_basestring

        bodies = [quoted[1:-1] for quoted in map(encode_basestring, texts)]
    if nulls:
        for at in compress(range(len(values)), map(is_, values, repeat(None))):
            bodies[at] = _NULL
    return bodies


class _Prefixes(dict):
    """A folder's text, escaped, as it comes before a file name in a path (one per folder)."""

    def __missing__(self, folder: str) -> str:
        text = self[folder] = _bodies([folder])[0]
        return text


class _IdLists(dict):
    """A tuple of ids -> its JSON list, made once per distinct tuple (most tasks: the empty one)."""

    def __missing__(self, ids: tuple) -> str:
        text = self[ids] = "[" + ", ".join(map('"{}"'.format, _bodies(list(ids)))) + "]"
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
