"""``python lib/worktrees.py``: the command line of the worktrees and of the merge queue.

    python lib/worktrees.py list | create TASK AGENT | remove NAME | cleanup
    python lib/worktrees.py enqueue NAME | merge [--all | NAME] | queue

A module of its own above both: worktrees.py (a worktree per task) and merge_queue.py (merging
finished branches one at a time, which builds on worktrees) never import each other's command line.
"""

from __future__ import annotations

from typing import Any, Optional

from . import merge_queue
from .cli import print_json, run, table
from .config import load_config
from .worktrees import cleanup_stale, create, list_worktrees, remove

__all__ = ["main"]


def _build_parser():
    from .cli import parser

    p = parser("worktrees.py", "A git worktree per task, and the merge queue that brings task branches back.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("list", help="list recorded worktrees")
    c = sub.add_parser("create", help="create a worktree for TASK worked on by AGENT")
    c.add_argument("task")
    c.add_argument("agent")
    c.add_argument("--base", help="branch to cut from (default: worktrees.base_branch or the current branch)")
    r = sub.add_parser("remove", help="remove a worktree's directory (its branch is kept)")
    r.add_argument("name")
    r.add_argument("--force", action="store_true", help="even if the task's lease is live or work is uncommitted")
    sub.add_parser("cleanup", help="clean up worktrees whose lease is gone; unmerged branches are kept")
    e = sub.add_parser("enqueue", help="queue a worktree (by name) or a branch for merging")
    e.add_argument("name")
    e.add_argument("--task", help="task id (needed for a branch without a worktree record)")
    e.add_argument("--agent", help="agent id (same)")
    m = sub.add_parser("merge", help="merge the queue (--all), or one worktree or branch now")
    m.add_argument("name", nargs="?")
    m.add_argument("--all", action="store_true", help="merge every pending queue entry in order")
    m.add_argument("--task")
    m.add_argument("--agent")
    sub.add_parser("queue", help="list pending merge queue entries")
    return p


def _run(args: Any) -> int:
    root = load_config(root=args.root).root
    if args.command == "list":
        found = list_worktrees(root=root)
        if args.json:
            print_json([dict(wt.to_dict(), name=wt.name, exists=wt.exists) for wt in found])
        elif found:
            print(table(["NAME", "TASK", "AGENT", "BASE", "BRANCH", "DIR"],
                        [[wt.name, wt.task_id, wt.agent_id, wt.base, wt.branch, "yes" if wt.exists else "removed"]
                         for wt in found]))
        else:
            print("no worktrees")
    elif args.command == "create":
        wt = create(args.task, args.agent, root=root, base=args.base)
        print_json(dict(wt.to_dict(), name=wt.name)) if args.json else print(wt.path)
    elif args.command == "remove":
        wt = remove(args.name, args.force, root=root)
        print_json(dict(wt.to_dict(), name=wt.name)) if args.json else print(f"removed {wt.path} (branch {wt.branch} kept)")
    elif args.command == "cleanup":
        done = cleanup_stale(root=root)
        if args.json:
            print_json([c.to_dict() for c in done])
        for c in [] if args.json else done:
            print(f"{c.action:12} {c.name}: {c.reason}")
    elif args.command in ("enqueue", "merge", "queue"):
        return merge_queue.cli_command(args, root=root)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))
