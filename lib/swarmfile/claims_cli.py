"""The command line of claims.py: ``python lib/claims.py ready`` lists the tasks ready to be claimed.

    python lib/claims.py ready [--root DIR] [--json] [--limit N]

The tasks in the order ``claim_next`` takes them (priority, then oldest first), as a table or as
one JSON document. Leases are shown by ``python lib/swarm.py status``. This module imports only
the ready query and what it needs (not the lease table): a script polling for work pays little
more than the interpreter's start (see tests/benchmarks, the cli group).
"""

from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

from .cli import non_negative_int, parser, run, table
from .task_index import path_text
from .tasks import Status

__all__ = ["main"]


_STATUS_TEXT = {status: status.value for status in Status}  # Enum.value is a Python-level property: 10,000 calls


def _rows(found: list) -> list[dict]:
    # One comprehension, no call per task but path_text: at 10,000 tasks the rows cost as much as the query.
    # depends_on stays a tuple: json writes it as the same list.
    return [{"task_id": t.task_id, "title": t.title, "priority": t.priority_text,
             "status": _STATUS_TEXT.get(t.status, t.status_text), "created": t.created, "depends_on": t.depends_on,
             "parent": t.parent, "path": path_text(t)} for t in found]


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
            sys.stdout.write(json.dumps({"ready": _rows(shown), "count": len(found)},
                                        ensure_ascii=False) + "\n")
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
