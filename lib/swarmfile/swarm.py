"""The operator's command line: set up a workspace, add tasks, see what the swarm is doing.

    python lib/swarm.py init [--root DIR]
    python lib/swarm.py new-task "Fix the login bug" --priority high [--depends-on TASK-1]
    python lib/swarm.py status [--json] [--panes]
    python lib/swarm.py demo [--root DIR] [--backend redis|URL]   (--backend: on two simulated hosts)
    python lib/swarm.py watch | doctor [--fix] | up --agents N | down
    python lib/swarm.py setup claude|codex|gemini [--dry-run] [--remove] [--check]

``watch``, ``doctor``, ``up``, ``down`` and ``setup`` are served by dashboard.py, doctor.py,
tmux_bridge.py and agent_setup.py (``up`` starts the agents' panes and the loop that hands them
tasks, ``down`` stops both); every subcommand takes ``--root`` and ``--json``.
"""

from __future__ import annotations

from . import task_store
import importlib
import sys
from typing import Any, Optional, Sequence

from .cli import EXIT_CHECK_FAILED, EXIT_OK, duration, print_json, run, show_time, table
from .config import load_config, resolve_root
from .errors import ValidationError
from .workspace import init_workspace, new_task

__all__ = ["init_workspace", "new_task", "collect_status", "main"]

# Subcommands served by other modules: name -> (module, argv prefix).
_FORWARDED = {
    "watch": ("dashboard", []),
    "doctor": ("doctor", []),
    "up": ("tmux_bridge", ["up"]),
    "down": ("tmux_bridge", ["down"]),
    "setup": ("agent_setup", []),
}

def collect_status(*, root: Optional[str] = None, events_count: int = 10) -> dict[str, Any]:
    """Agents, tasks by status, leases and the newest events, as one document.

    The tasks are this checkout's Markdown (``tasks_from: markdown``), except on a task board
    (Redis, ``task_board: true``) in a checkout other than the one that published it: there they
    are the board's published tasks (``tasks_from: board``). On a board both show a task's status
    as the board knows it, so every host agrees: the Markdown's, or the lease's when the lease
    moved on since the Markdown showed it (until the planner's next mirror writes it into the
    file; ``markdown_status`` then says what the file still shows). While nothing is published
    (``board_publisher: None``) it is the checkout's Markdown as it is.
    """
    from . import agent_discovery
    from . import claims
    from . import events
    from .stores import lease_table

    cfg = load_config(root=root)
    now = lease_table(cfg).now()  # the Redis server's clock on Redis: expiries as every host judges them
    agents = []
    for info in agent_discovery.read_agents(root=cfg.root):
        reason = info.inactive_reason(now, cfg.heartbeat_timeout)
        agents.append({"agent_id": info.agent_id, "role": info.role, "status": info.status,
                       "current_task": info.current_task, "active": reason is None, "why_inactive": reason})
    errors: list = []
    every = claims.list_leases(root=cfg.root, errors=errors)
    held = [lease for lease in every if lease.state is claims.LeaseState.HELD]
    leases = [{"task_id": lease.task_id, "agent_id": lease.agent_id, "token": lease.token,
               "expires_in_seconds": round(lease.seconds_left(now), 1), "free": lease.free_reason(now)}
              for lease in held]
    holders = {lease.task_id: lease.agent_id for lease in held}
    on_board = cfg.settings.get("task_board") is True
    view = None
    if on_board:
        from .board_sync import board_view

        view = board_view(cfg, every, errors)
    from_board = view is not None and not view.here
    if from_board:
        by_status, cycles = _board_tasks(cfg, view, holders)
        twice: dict = {}
    else:
        moved = view.moved if view is not None else {}
        by_status, twice, cycles = _markdown_tasks(cfg, holders, moved, errors)
    return {
        "root": str(cfg.root),
        "agents": agents,
        "task_board": on_board,
        "tasks_from": "board" if from_board else "markdown",
        "board_publisher": view.publisher if view is not None else None,
        "tasks": {status: items for status, items in sorted(by_status.items())},
        "task_counts": {status: len(items) for status, items in sorted(by_status.items())},
        "unreadable_tasks": [str(e) for e in errors],
        "duplicate_ids": {task_id: [str(p) for p in paths] for task_id, paths in twice.items()},
        "dependency_cycles": cycles,
        "leases": leases,
        "events": events.tail(events_count, root=cfg.root),
    }


def _markdown_tasks(cfg: Any, holders: dict[str, str], moved: dict[str, str],
                    errors: list) -> tuple[dict, dict, list]:
    """This checkout's task files by status, the ids two files use, the dependency cycles.

    ``moved``: the status of each task whose lease moved on since its file showed it (on a task board).
    """
    from . import task_graph
    from .task_index import path_text

    by_status: dict[str, list[dict]] = {}
    listing = task_store.indexed_listing(cfg, errors)  # a status in a new process parses only what changed
    twice = task_graph.duplicate_ids(listing)
    open_tasks = []
    for task in listing:
        # The folder decides: RALF left files in completed/ whose Status line still says pending.
        if task_store.is_finished(task, cfg):
            key = "completed"
        else:
            key = task.status.value if task.status else f"unknown ({task.status_text})"
            open_tasks.append(task)
        done, items = task.checklist_counts
        entry = {"task_id": task.task_id, "title": task.title, "priority": task.priority_text,
                 "items": f"{done}/{items}", "path": path_text(task), "holder": holders.get(task.task_id)}
        if task.task_id in moved and key != "completed" and moved[task.task_id] != key:
            entry["markdown_status"], key = key, moved[task.task_id]
        if task.task_id in twice:
            entry["duplicate_id"] = len(twice[task.task_id])
        by_status.setdefault(key, []).append(entry)
    return by_status, twice, task_graph.find_cycles(open_tasks)


def _board_tasks(cfg: Any, view: Any, holders: dict[str, str]) -> tuple[dict, list]:
    """The task board's tasks by the status it knows them, and their dependency cycles.

    ``items`` is "-" (the board lists no checklists); ``path`` is this host's copy of the task's
    text when one was run here (task_board.copy_path), ``operator_path`` its file in the publisher's checkout.
    """
    from . import task_graph
    from . import tasks as taskmod
    from .task_board import copy_path

    by_status: dict[str, list[dict]] = {}
    open_tasks = []
    for entry in view.entries:
        status = view.status[entry.task_id]
        key = status if taskmod.Status.parse(status) is not None else f"unknown ({status})"
        copy = copy_path(cfg.runtime_dir, entry.task_id)
        by_status.setdefault(key, []).append({
            "task_id": entry.task_id, "title": entry.title, "priority": entry.priority or None, "items": "-",
            "path": str(copy) if copy.exists() else None, "operator_path": entry.path,
            "holder": holders.get(entry.task_id)})
        if status != taskmod.Status.COMPLETED.value:
            open_tasks.append(entry.task(None))
    return by_status, task_graph.find_cycles(open_tasks)


def _print_status(doc: dict[str, Any]) -> None:
    print(f"workspace {doc['root']}")
    active = [a for a in doc["agents"] if a["active"]]
    print(f"\nagents: {len(active)} active of {len(doc['agents'])}")
    if doc["agents"]:
        print(table(["AGENT", "ROLE", "STATUS", "TASK", "ACTIVE"],
                    [[a["agent_id"], a["role"] or "-", a["status"] or "-", a["current_task"] or "-",
                      "yes" if a["active"] else f"no: {a['why_inactive']}"] for a in doc["agents"]]))
    counts = ", ".join(f"{n} {status}" for status, n in doc["task_counts"].items()) or "none"
    if doc["tasks_from"] == "board":
        print(f"\ntasks on the task board published by {doc['board_publisher']}: {counts}")
    elif doc.get("task_board") and doc["board_publisher"] is None:
        print(f"\ntasks in this checkout's Markdown (nothing on the task board yet: start the planner on the "
              f"operator checkout): {counts}")
    elif doc.get("task_board"):
        print(f"\ntasks in this checkout's Markdown, which the task board is published from: {counts}")
    else:
        print(f"\ntasks: {counts}")
    for status, items in doc["tasks"].items():
        if status == "completed":
            continue
        for item in items:
            flag = f"  [DUPLICATE ID: {item['duplicate_id']} files]" if item.get("duplicate_id") else ""
            held = f"  [{item['holder']}]" if item.get("holder") else ""
            if item.get("markdown_status"):
                held += f"  (file: {item['markdown_status']} until the planner's next round)"
            print(f"  {status:<12} {item['task_id']:<28} {item['priority'] or '-':<8} {item['items']:>5}  "
                  f"{item['title'][:60]}{held}{flag}")
    for error in doc["unreadable_tasks"]:
        print(f"  unreadable   {error}")
    for task_id, paths in doc["duplicate_ids"].items():
        print(f"  duplicate id {task_id}: {', '.join(paths)} (neither runs: rename one or delete the stale copy)")
    for cycle in doc["dependency_cycles"]:
        print(f"  dependency cycle: {' -> '.join(cycle)} (never ready: fix a Depends On line)")
    print(f"\nleases: {len(doc['leases'])} held")
    if doc["leases"]:
        print(table(["TASK", "HOLDER", "TOKEN", "EXPIRES"],
                    [[l["task_id"], l["agent_id"], l["token"],
                      f"free: {l['free']}" if l["free"] else f"in {duration(l['expires_in_seconds'])}"]
                     for l in doc["leases"]]))
    print(f"\nlast {len(doc['events'])} events (times in UTC):")
    for event in doc["events"]:
        extra = {k: v for k, v in event.items() if k not in ("timestamp", "type", "agent", "task_id")}
        summary = " ".join(f"{k}={v}" for k, v in list(extra.items())[:4])
        print(f"  {show_time(event.get('timestamp')):<20} {event.get('type', ''):<12} "
              f"{event.get('agent', ''):<14} {event.get('task_id') or '-':<24} {summary[:60]}")


def _parser() -> Any:
    from .cli import non_negative_int, parser, positive_int, positive_seconds

    p = parser("swarm.py", "Swarmfile operator commands.",
               needs_workspace=lambda args: args.command not in (None, "init", "demo"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("init", help="create a workspace's files (never overwrites)")
    t = sub.add_parser("new-task", help="write a task file from the template")
    t.add_argument("title")
    t.add_argument("--priority", default="medium", help="critical, high, medium, low, or a number")
    t.add_argument("--depends-on", action="append", default=[], metavar="TASK", help="a task that must be completed first")
    t.add_argument("--objective", default="", help="the Objective section")
    t.add_argument("--criterion", action="append", default=[], metavar="TEXT", help="a success criterion (repeatable)")
    t.add_argument("--file", action="append", default=[], metavar="PATH", help="a file to modify (repeatable)")
    t.add_argument("--id", dest="task_id", help="task id (default: TASK-<unix time>)")
    t.add_argument("--force", action="store_true", help="write it even if a near-duplicate exists")
    s = sub.add_parser("status", help="agents, tasks, leases and recent events")
    s.add_argument("-n", "--events", type=non_negative_int, default=10, help="how many recent events to show")
    s.add_argument("--panes", action="store_true", help="add each tmux pane's last lines")
    s.add_argument("--lines", type=positive_int, default=20, help="lines per pane with --panes")
    s.add_argument("--cluster", help="tmux cluster for --panes")
    d = sub.add_parser("demo", help="run a planner and three executors on sample tasks")
    d.add_argument("--executors", type=positive_int, default=3, help="how many executors (default 3)")
    d.add_argument("--timeout", type=positive_seconds, default=55, help="give up after this many seconds")
    d.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    d.add_argument("--backend", metavar="redis|URL",
                   help="run on two simulated hosts sharing Redis: 'redis' starts a private redis-server, "
                        "a URL (redis://127.0.0.1:6379/0) uses that one")
    for name in _FORWARDED:
        sub.add_parser(name, add_help=False, help=f"see: python lib/swarm.py {name} --help")
    return p


def _command_index(argv: list[str]) -> Optional[int]:
    """Where the command word is: the first word that is not an option or the value of ``--root``."""
    skip = False
    for index, token in enumerate(argv):
        if skip:
            skip = False
        elif token == "--root":
            skip = True
        elif token == "--" or not token.startswith("-"):
            return None if token == "--" else index
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    at = _command_index(argv)
    if at is not None and argv[at] in _FORWARDED:
        module_name, prefix = _FORWARDED[argv[at]]
        rest = argv[:at] + argv[at + 1:]  # the served module takes the global options on either side
        module = importlib.import_module(f"{__package__}.{module_name}")
        return module.main(prefix + rest)
    args = _parser().parse_args(argv)

    def body() -> int:
        if args.command is None:
            _parser().print_help()
            return EXIT_OK
        if args.command == "init":
            created = init_workspace(root=args.root)
            if args.json:
                print_json({"root": str(resolve_root(root=args.root)), "created": [str(p) for p in created]})
            else:
                print(f"workspace {resolve_root(root=args.root)}: " +
                      (f"created {', '.join(str(p.name) for p in created)}" if created else "already set up"))
            return EXIT_OK
        if args.command == "new-task":
            cfg = load_config(root=args.root)
            if cfg.settings.get("task_board") is True:  # only the checkout that publishes the board adds tasks
                from .board_sync import check_new_tasks_publish

                check_new_tasks_publish(cfg)
            path = new_task(args.title, root=args.root, priority=args.priority, depends_on=args.depends_on,
                            objective=args.objective, criteria=args.criterion, files=args.file,
                            task_id=args.task_id, force=args.force)
            if args.json:
                print_json({"path": str(path)})
            else:
                print(path)
            return EXIT_OK
        if args.command == "status":
            doc = collect_status(root=args.root, events_count=args.events)
            if args.panes:
                from . import tmux_bridge

                doc["panes"] = tmux_bridge.pane_status(cluster=args.cluster, lines=args.lines, root=args.root)
            if args.json:
                print_json(doc)
            else:
                _print_status(doc)
                if args.panes:
                    print()
                    print(tmux_bridge.render_pane_status(doc["panes"]))
            return EXIT_OK
        if args.command == "demo":
            from . import demo

            if args.backend is not None:
                if args.backend != "redis" and not args.backend.startswith(("redis://", "rediss://", "unix://")):
                    raise ValidationError(f"--backend {args.backend!r} is neither 'redis' nor a Redis URL",
                                          hint="use --backend redis, or --backend redis://host:6379/0")
                if args.root is not None:
                    raise ValidationError("--root and --backend do not go together: the demo on two hosts makes "
                                          "its own clones in a temp folder")
                ok = demo.run_demo_on_hosts(backend=args.backend, executors=args.executors,
                                            timeout=max(args.timeout, 90), keep=args.keep, as_json=args.json)
            else:
                ok = demo.run_demo(root=args.root, executors=args.executors, timeout=args.timeout, keep=args.keep,
                                   as_json=args.json)
            return EXIT_OK if ok else EXIT_CHECK_FAILED
        raise ValidationError(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses first

    return run(body)
