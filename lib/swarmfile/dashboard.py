"""The live dashboard of a workspace: agents, tasks, leases, reservations, merge queue, events.

``collect(root, now)`` gathers one snapshot as plain data, ``render(snapshot, width, height)``
lays it out as lines and ``build_frame`` does both; none of them writes anything. A file that
does not parse shows its error (file:line) in place of its panel, and the other panels still
show. The terminal loop draws every frame over the last one on the alternate screen (cursor
home, each line followed by clear-to-end-of-line, then clear-below), so nothing flickers; keys
are read in cbreak mode. ``q`` or Ctrl-C quits; the terminal is restored on every way out,
SIGTERM and SIGHUP included. As a command::

    python lib/dashboard.py [--root DIR] [--interval S]     live, until q
    python lib/dashboard.py --once [--width W --height H]   one plain frame (no escape codes)
    python lib/dashboard.py --json                          one snapshot as JSON
"""

from __future__ import annotations

from . import task_store
import os
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Optional, Union

from . import cli
from .cli import duration, table
from .clock import format_ts, parse_ts, utc_now
from .config import load_config, resolve_root
from .errors import SwarmError

__all__ = ["PANELS", "collect", "render", "build_frame", "paint", "main"]

PathLike = Union[str, "os.PathLike[str]"]

PANELS = ("agents", "tasks", "leases", "reservations", "merge_queue", "events")
_EVENTS = 20  # events fetched when the frame has no height to fill
_READ_ERRORS = (SwarmError, OSError, ValueError)  # what one unreadable file may raise
# Terminal control characters in a title or an event would move the cursor or recolour the
# screen: every cell is shown with them replaced.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_STATUS_ORDER = ("in_progress", "claimed", "pending", "needs_attention", "blocked", "failed",
                 "completed", "cancelled")
_CLEAR_LINE, _CLEAR_BELOW, _HOME = "\x1b[K", "\x1b[J", "\x1b[H"
_ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, normal screen back


# ---------------------------------------------------------------------------- collect


def _plain(value: Any) -> Any:
    """``value`` with YAML's datetimes as stored-time strings, so a snapshot is plain JSON."""
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(exc: BaseException, root: Path) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, SwarmError):
        text = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
    else:
        text = str(exc)
    return text.replace(f"{root}{os.sep}", "")  # paths inside the workspace, relative: the frame is narrow


def _agents(cfg: Any, now: datetime, limit: int) -> list[dict]:
    from .agent_discovery import read_agents

    cache: dict = {}  # one liveness probe per pid
    rows = []
    for agent in read_agents(root=cfg.root):
        reason = agent.inactive_reason(now, cfg.heartbeat_timeout, cache=cache)
        rows.append({"agent_id": agent.agent_id, "role": agent.role, "status": agent.status,
                     "current_action": agent.current_action, "current_task": agent.current_task,
                     "active": reason is None, "inactive_reason": reason,
                     "seconds_since_seen": agent.seconds_since_seen(now)})
    return rows


def _leases(cfg: Any, now: datetime, limit: int) -> list[dict]:
    from .claims import LeaseState, list_leases

    return [{"task_id": lease.task_id, "agent_id": lease.agent_id, "token": lease.token,
             "expires_at": lease.expires_at, "seconds_left": lease.seconds_left(now),
             "acknowledged": lease.acknowledged_at is not None, "stale": lease.free_reason(now)}
            for lease in list_leases(root=cfg.root) if lease.state is LeaseState.HELD]


def _reservations(cfg: Any, now: datetime, limit: int) -> list[dict]:
    from .reservations import list_reservations

    return [{"id": r.id, "agent_id": r.agent_id, "mode": r.mode, "task_id": r.task_id,
             "patterns": list(r.patterns), "expires_at": r.expires_at,
             "seconds_left": (parse_ts(r.expires_at) - now).total_seconds(), "stale": r.free_reason(now)}
            for r in list_reservations(root=cfg.root, now=now, include_expired=True)]


def _merge_queue(cfg: Any, now: datetime, limit: int) -> list[dict]:
    from .merge_queue import pending

    return [{"id": e.id, "task_id": e.task_id, "agent_id": e.agent_id, "branch": e.branch, "at": e.at}
            for e in pending(root=cfg.root)]


def _events(cfg: Any, now: datetime, limit: int) -> list[dict]:
    from .events import tail

    return [_plain(event) for event in tail(limit, root=cfg.root)]


def _tasks(cfg: Any, leases: list[dict], errors: list) -> tuple[list[dict], int, Any]:
    """The open tasks (those in tasks/active) with their progress, how many are completed, the board view.

    On a task board (board_sync.board_view) a checkout that did not publish it shows the board's
    tasks instead, and every checkout a task's status as the board knows it.
    """
    from . import tasks as taskmod
    from . import task_graph
    from .task_index import path_text

    view = None
    if cfg.settings.get("task_board") is True:
        from .board_sync import board_view
        from .claims import list_leases

        view = board_view(cfg, list_leases(root=cfg.root, errors=errors), errors)
    holders = {lease["task_id"]: lease["agent_id"] for lease in leases if not lease["stale"]}
    if view is not None and not view.here:
        return _board_rows(view, holders), sum(s == taskmod.Status.COMPLETED.value for s in view.status.values()), view
    # Through the task index: the first frame in a new process parses only the files changed since
    # it was written (a row's fields are all in its summary: no file is read for them).
    active, completed = task_store.list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=errors)
    root_prefix = os.path.join(cfg.root, "")
    moved = view.moved if view is not None else {}
    done_meanwhile = {task_id for task_id, status in moved.items() if status == taskmod.Status.COMPLETED.value}

    finished = {t.task_id for t in active + completed if task_store.is_finished(t, cfg)} | done_meanwhile
    children = task_graph.family(active + completed).children  # fields and epic tables alike
    rows = []
    for task in sorted(active, key=taskmod.ready_order_key):
        if task.task_id in done_meanwhile:
            continue  # completed by its lease: the planner's next mirror moves the file
        subs = sorted(children.get(task.task_id, ()))
        claimed_by = task.claimed_by
        who = holders.get(task.task_id) or (claimed_by if claimed_by and claimed_by.lower() != "none" else None) \
            or task.assigned_to
        status = task.status.value if task.status else None
        if task.task_id in moved:
            status = moved[task.task_id] if taskmod.Status.parse(moved[task.task_id]) else status
        rows.append({
            "task_id": task.task_id, "title": task.title,
            "status": status, "status_text": task.status_text,
            "priority": task.priority.value if task.priority else task.priority_text,
            "checklist_done": task.checklist_counts[0], "checklist_total": task.checklist_counts[1],
            "subtasks_done": sum(s in finished for s in subs),
            "subtasks_total": len(subs), "parent": task.parent, "agent": who,
            "path": path[len(root_prefix):] if (path := path_text(task)).startswith(root_prefix) else path,
        })
    return rows, len(completed) + len(done_meanwhile - {t.task_id for t in completed}), view


def _board_rows(view: Any, holders: dict[str, str]) -> list[dict]:
    """The open tasks of a task board published elsewhere, in ready order (no checklists: "-")."""
    from . import tasks as taskmod
    from . import task_graph

    made = {entry.task_id: entry.task(None) for entry in view.entries}
    children = task_graph.family(list(made.values())).children
    done = taskmod.Status.COMPLETED.value
    rows = []
    for task in sorted(made.values(), key=taskmod.ready_order_key):
        status = view.status[task.task_id]
        if status == done:
            continue
        subs = sorted(children.get(task.task_id, ()))
        rows.append({
            "task_id": task.task_id, "title": task.title,
            "status": status if taskmod.Status.parse(status) else None, "status_text": status,
            "priority": task.priority.value if task.priority else task.priority_text,
            "checklist_done": 0, "checklist_total": 0,
            "subtasks_done": sum(view.status.get(s) == done for s in subs), "subtasks_total": len(subs),
            "parent": task.parent, "agent": holders.get(task.task_id), "path": None,
        })
    return rows


def collect(*, root: Optional[PathLike] = None, now: Any = None, events: int = _EVENTS) -> dict[str, Any]:
    """One snapshot of the workspace as plain (JSON-ready) data.

    Keys: ``root``, ``now``, one list per name in PANELS, ``completed_count`` and ``errors``
    (panel name, or ``config``, to the error lines that stand in for what could not be read).
    """
    moment = utc_now() if now is None else parse_ts(now)
    snapshot: dict[str, Any] = {"root": str(resolve_root(root=root)), "now": format_ts(moment),
                                **{name: [] for name in PANELS}, "completed_count": 0, "errors": {},
                                "tasks_from": "markdown", "board_publisher": None}
    errors: dict[str, list[str]] = snapshot["errors"]
    try:
        cfg = load_config(root=root)
    except _READ_ERRORS as exc:  # a broken swarm.yaml: every path may be wrong, so show nothing else
        errors["config"] = [_describe(exc, resolve_root(root=root))]
        return snapshot
    gatherers: dict[str, Callable[[Any, datetime, int], list[dict]]] = {
        "agents": _agents, "leases": _leases, "reservations": _reservations,
        "merge_queue": _merge_queue, "events": _events}
    for name, gather in gatherers.items():
        try:
            snapshot[name] = gather(cfg, moment, events)
        except _READ_ERRORS as exc:
            errors[name] = [_describe(exc, cfg.root)]
    task_errors: list = []
    try:
        snapshot["tasks"], snapshot["completed_count"], view = _tasks(cfg, snapshot["leases"], task_errors)
        if view is not None:
            snapshot["tasks_from"] = "markdown" if view.here else "board"
            snapshot["board_publisher"] = view.publisher
    except _READ_ERRORS as exc:
        task_errors.append(exc)
    if task_errors:
        errors["tasks"] = [_describe(exc, cfg.root) for exc in task_errors]
    return snapshot


# ---------------------------------------------------------------------------- render


def _cell(value: Any, width: int = 40) -> str:
    text = "-" if value is None or value == "" else _CONTROL.sub("?", " ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def _fit(line: str, width: int) -> str:
    if width <= 0 or len(line) <= width:
        return line
    return line[: width - 1] + "…" if width > 1 else line[:width]


def _columns(rows: list[list[Any]]) -> list[str]:
    """Rows as aligned columns, two spaces apart (no header)."""
    if not rows:
        return []
    return table([""] * len(rows[0]), rows).split("\n")[1:]


def _bar(done: int, total: int, size: int = 5) -> str:
    filled = round(size * done / total) if total else 0
    return f"[{'#' * filled}{'-' * (size - filled)}] {done}/{total}"


def _until(seconds: float, stale: Optional[str]) -> str:
    if stale:
        return f"STALE: {stale}"
    return f"expires in {duration(seconds)}"


def _agent_panel(snap: dict) -> tuple[str, list[str]]:
    rows = snap["agents"]
    live = sum(r["active"] for r in rows)
    cells = []
    for r in rows:
        seen = r["seconds_since_seen"]
        liveness = (f"seen {duration(seen)} ago" if seen is not None else "live") if r["active"] \
            else f"inactive: {r['inactive_reason']}"
        cells.append(["*" if r["active"] else "x", _cell(r["agent_id"]), _cell(r["role"], 12), _cell(r["status"], 12),
                      _cell(r["current_action"], 16), _cell(r["current_task"]), liveness])
    return f"AGENTS  {live} active, {len(rows) - live} inactive", _columns(cells)


def _task_panel(snap: dict) -> tuple[str, list[str]]:
    rows = snap["tasks"]
    rank = {name: n for n, name in enumerate(_STATUS_ORDER)}
    rows = sorted(rows, key=lambda r: rank.get(r["status"] or "", len(rank)))  # stable: ready order within
    counts: dict[str, int] = {}
    for r in rows:
        label = r["status"] or f"?{r['status_text']}"
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{label} {n}" for label, n in counts.items())
    where = f" on the task board of {snap['board_publisher']}" if snap.get("tasks_from") == "board" else ""
    title = f"TASKS{where}  {len(rows)} open" + (f" ({summary})" if summary else "") + \
        f", {snap['completed_count']} completed"
    cells = []
    for r in rows:
        status = r["status"] or f"? {r['status_text']}"
        items = _bar(r["checklist_done"], r["checklist_total"]) if r["checklist_total"] else "-"
        subs = f"sub {r['subtasks_done']}/{r['subtasks_total']}" if r["subtasks_total"] else \
            (f"sub of {r['parent']}" if r["parent"] else "-")
        cells.append([_cell(status, 16), _cell(r["task_id"]), _cell(r["title"], 36), items, _cell(subs),
                      _cell(r["agent"], 24)])
    return title, _columns(cells)


def _lease_panel(snap: dict) -> tuple[str, list[str]]:
    rows = snap["leases"]
    stale = sum(bool(r["stale"]) for r in rows)
    cells = [[_cell(r["task_id"]), _cell(r["agent_id"]), f"token {r['token']}",
              "started" if r["acknowledged"] else "not started", _until(r["seconds_left"], r["stale"])]
             for r in rows]
    return f"LEASES  {len(rows)} held" + (f" ({stale} stale)" if stale else ""), _columns(cells)


def _reservation_panel(snap: dict) -> tuple[str, list[str]]:
    rows = snap["reservations"]
    stale = sum(bool(r["stale"]) for r in rows)
    cells = [[_cell(r["agent_id"]), r["mode"], _cell(r["task_id"]), _cell(", ".join(r["patterns"]), 48),
              _until(r["seconds_left"], r["stale"])] for r in rows]
    return f"RESERVATIONS  {len(rows) - stale} live" + (f", {stale} stale" if stale else ""), _columns(cells)


def _queue_panel(snap: dict) -> tuple[str, list[str]]:
    rows = snap["merge_queue"]
    cells = [[_cell(r["task_id"]), _cell(r["agent_id"]), _cell(r["branch"], 60), f"queued {_cell(r['at'])}"]
             for r in rows]
    return f"MERGE QUEUE  {len(rows)} pending", _columns(cells)


def _event_panel(snap: dict) -> tuple[str, list[str]]:
    cells = []
    for event in snap["events"]:
        stamp = cli.show_time(event.get("timestamp"))  # UTC like the header's clock, whatever zone it was written in
        when = stamp[11:] if stamp[4:5] == "-" else stamp
        rest = " ".join(f"{k}={_cell(v, 30)}" for k, v in event.items()
                        if k not in ("timestamp", "type", "agent", "task_id"))
        cells.append([when, _cell(event.get("type"), 16), _cell(event.get("agent")), _cell(event.get("task_id")),
                      rest])
    return f"EVENTS  last {len(cells)}", _columns(cells)


_RENDERERS = {"agents": _agent_panel, "tasks": _task_panel, "leases": _lease_panel,
              "reservations": _reservation_panel, "merge_queue": _queue_panel, "events": _event_panel}


def _share(needs: list[int], space: int) -> list[int]:
    """Rows each panel gets: all it needs if everything fits, else an even share of ``space``."""
    given = [0] * len(needs)
    while space > 0 and any(g < n for g, n in zip(given, needs)):
        for index, need in enumerate(needs):
            if space > 0 and given[index] < need:
                given[index] += 1
                space -= 1
    return given


def render(snapshot: dict[str, Any], width: int = 0, height: int = 0) -> list[str]:
    """The frame of ``snapshot`` as lines, at most ``width`` characters each and ``height`` lines.

    0 means no limit. Panels that do not fit are cut with a ``… N more`` line; the events
    panel keeps its newest rows.
    """
    lines = [f"swarm watch  {snapshot['root']}  {snapshot['now'][11:19]}Z  (q quits)"]
    errors = snapshot["errors"]
    panels: list[tuple[str, list[str], bool]] = []
    if "config" in errors:
        panels.append(("CONFIG", [f"! {e}" for e in errors["config"]], False))
    else:
        for name in PANELS:
            title, rows = _RENDERERS[name](snapshot)
            panels.append((title, [f"! {e}" for e in errors.get(name, [])] + rows, name == "events"))
    space = height - len(lines) - len(panels) if height > 0 else sum(len(rows) for _, rows, _ in panels)
    for (title, rows, newest_last), given in zip(panels, _share([len(rows) for _, rows, _ in panels], space)):
        lines.append(title)
        rows = [f"  {row}" for row in rows]
        if given < len(rows):
            more = [f"  … {len(rows) - given + 1} {'earlier' if newest_last else 'more'}"] if given else []
            rows = more + rows[len(rows) - given + 1:] if newest_last else rows[:max(given - 1, 0)] + more
        lines.extend(rows)
    if height > 0:
        lines = lines[:height]
    return [_fit(_CONTROL.sub("?", line.rstrip()), width) for line in lines]  # error texts and keys too


def build_frame(*, root: Optional[PathLike], width: int, height: int, now: Any = None) -> list[str]:
    """The dashboard of the workspace at ``root`` as lines that fit ``width`` x ``height`` (0: no limit)."""
    return render(collect(root=root, now=now, events=max(_EVENTS, height)), width, height)


def paint(lines: list[str]) -> str:
    """Escape codes that draw ``lines`` over the previous frame: home, each line, clear the rest."""
    return _HOME + (_CLEAR_LINE + "\r\n").join(lines) + _CLEAR_LINE + _CLEAR_BELOW


# ---------------------------------------------------------------------------- the terminal loop


def _watch(root: Optional[PathLike], interval: float) -> int:
    """Redraw every ``interval`` seconds until q, Ctrl-C, SIGTERM or SIGHUP; returns the exit code."""
    import select
    import shutil
    import signal

    out = sys.stdout
    keys = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    wake_r, wake_w = os.pipe()  # signal handlers write here so select returns at once
    os.set_blocking(wake_w, False)
    stop: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if signum != signal.SIGWINCH:
            stop.append(signum)
        try:
            os.write(wake_w, b"x")
        except BlockingIOError:  # the pipe is full: select wakes anyway
            pass

    handled = [signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH]
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    saved = None
    try:
        if keys is not None:
            import termios
            import tty

            saved = termios.tcgetattr(keys)
            tty.setcbreak(keys)  # keys arrive one at a time, unechoed; Ctrl-C still raises
        out.write(_ENTER)
        last = ""
        while not stop:
            try:  # the terminal itself: $COLUMNS/$LINES (which shutil prefers) go stale on a resize
                size = os.get_terminal_size(out.fileno())
            except (OSError, ValueError):
                size = shutil.get_terminal_size()
            # One column short: a full-width line leaves the cursor in the wrap position, where
            # clearing to end of line would erase the last character.
            frame = paint(build_frame(root=root, width=size.columns - 1, height=size.lines))
            if frame != last:
                out.write(frame)
                out.flush()
                last = frame
            ready = select.select([wake_r] + ([keys] if keys is not None else []), [], [], interval)[0]
            if wake_r in ready:
                os.read(wake_r, 512)
                last = ""  # resized (or stopping): draw the whole frame again
            if keys is not None and keys in ready:
                pressed = os.read(keys, 64)
                if not pressed or b"q" in pressed.lower() or b"\x03" in pressed:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        try:
            out.write(_LEAVE)
            out.flush()
        except OSError:  # the terminal is gone (SIGHUP): nothing left to restore on it
            pass
        if saved is not None:
            import termios

            try:
                termios.tcsetattr(keys, termios.TCSADRAIN, saved)
            except (termios.error, OSError):  # the terminal is gone
                pass
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(wake_r)
        os.close(wake_w)
    return 128 + stop[0] if stop else 0


# ---------------------------------------------------------------------------- CLI


def _positive(text: str) -> float:
    from argparse import ArgumentTypeError

    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value > 3600:
        raise ArgumentTypeError(f"must be between 0 and 3600 seconds, got {text}")
    return value


def main(argv: Optional[list[str]] = None) -> int:
    """Run the dashboard (see the module docstring); returns the exit code."""
    p = cli.parser("dashboard.py", "Live view of a workspace: agents, tasks, leases, reservations, "
                   "merge queue and the newest events. q or Ctrl-C quits.")
    p.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="seconds between redraws (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame without escape codes and exit")
    p.add_argument("--width", type=cli.positive_int, default=None, metavar="N",
                   help="with --once: cut lines to N characters (default: the terminal's, or none)")
    p.add_argument("--height", type=cli.positive_int, default=None, metavar="N",
                   help="with --once: at most N lines (default: the terminal's, or none)")
    args = p.parse_args(argv)

    def body() -> int:
        load_config(root=args.root)  # a broken swarm.yaml is a one-line error before anything is drawn
        if args.json:
            cli.print_json(collect(root=args.root))
            return cli.EXIT_OK
        if args.once:
            import shutil

            tty = sys.stdout.isatty()
            size = shutil.get_terminal_size() if tty else os.terminal_size((0, 0))
            width = size.columns if args.width is None else args.width
            height = size.lines if args.height is None else args.height
            print("\n".join(build_frame(root=args.root, width=width, height=height)))
            return cli.EXIT_OK
        if not sys.stdout.isatty():
            return cli.fail("stdout is not a terminal (use --once or --json for a single frame)")
        return _watch(args.root, args.interval)

    return cli.run(body)
