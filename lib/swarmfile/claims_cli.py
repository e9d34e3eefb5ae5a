"""The command line of claims.py: ``python lib/claims.py ready`` lists the tasks ready to be claimed.

    python lib/claims.py ready [--root DIR] [--json] [--limit N]

The tasks in the order ``claim_next`` takes them (priority, then oldest first), as a table or as
one JSON document. Leases are shown by ``python lib/swarm.py status``. This module imports only
the ready query and what it needs (not the lease table): a script polling for work pays little
more than the interpreter's start (see tests/benchmarks, the cli group).
"""

from __future__ import annotations

import sys
from json.encoder import encode_basestring
from typing import Optional, Sequence

from .cli import non_negative_int, parser, run, table
from .task_index import path_text

__all__ = ["main"]


_ROW = ('{"task_id": %s, "title": %s, "priority": %s, "status": %s, "created": %s, "depends_on": %s, '
        '"parent": %s, "path": %s}')


def _json(found: list, shown: list) -> str:
    """``json.dumps({"ready": [row, ...], "count": len(found)}, ensure_ascii=False)``, a row at a time.

    Each row is one format of its values, each string quoted by the function json.dumps quotes
    strings with: at 10,000 tasks, json.dumps of the rows as dicts costs more than the query (it
    quotes every key of every row, and builds and joins a list of pieces per row). The same text
    byte for byte (tests/test_task_index.py compares the two). A status is a str enum, whose text
    is its value (no Enum.value, a Python-level property, nor Enum.__hash__, a Python function).
    """
    q = encode_basestring
    rows = [_ROW % (q(t.task_id), q(t.title), "null" if t.priority_text is None else q(t.priority_text),
                    q(t.status) if t.status is not None else "null" if t.status_text is None else q(t.status_text),
                    "null" if t.created is None else q(t.created),
                    "[" + ", ".join(map(q, t.depends_on)) + "]", "null" if t.parent is None else q(t.parent),
                    q(path_text(t))) for t in shown]
    return '{"ready": [' + ", ".join(rows) + '], "count": ' + str(len(found)) + "}"


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
            sys.stdout.write(_json(found, shown) + "\n")
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
