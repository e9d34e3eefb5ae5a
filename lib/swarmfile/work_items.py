"""Checklist lines of a task file as claimable work items: claim, complete, release, add, list.

A work item is a checklist line of a task's Markdown; its state lives on that line::

    - [ ] open item
    - [ ] item in progress [IP:executor-2]     <- claimed by executor-2
    - [x] finished item

Every change takes the task file's lock, re-reads the file and rewrites only the item's own
line (``task_store.edit_task``), so two agents never both claim one item and an operator's edits
elsewhere in the file are kept. Each change appends an ``item_claimed``, ``item_completed``,
``item_released`` or ``item_added`` event.

``task`` is a task id (active or completed) or the path of a task file (a ``Path``, or a str
ending in ``.md`` or containing a ``/``). An item is selected by its index (an int, 0-based
among the file's checklist items, as ``tasks.ChecklistItem.index``) or by its exact text
without the ``[IP:...]`` marker. Indices shift when an item is added above: text is stable.

Errors: NotFoundError (no such task or item; lists the closest texts), ValidationError (an
ambiguous text, naming the lines), AlreadyClaimed (another agent holds the item; ``holder``),
NotClaimable (the item is checked or the task finished), ParseError (the file does not parse;
it is not written), LockTimeout.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

from . import task_store
from . import tasks
from .task_document import TaskDocument
from .config import Config, load_config, validate_id
from .errors import AlreadyClaimed, NotClaimable, NotFoundError, SwarmError, ValidationError
from .fileio import atomic_write, read_text, split_lines

__all__ = [
    "claim_item",
    "complete_item",
    "release_item",
    "add_item",
    "list_items",
    "release_items_of",
    "main",
]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]
Selector = Union[int, str]

_IP_TAIL = re.compile(r"[ \t]*\[IP:[^\]\s]*\][ \t]*$")
_ITEM_PREFIX = re.compile(r"([ \t]*[-*+][ \t]+)\[[ xX]\]")
_SECTION_NAME = re.compile(r"[^\s#][^\n\r]{0,79}")
_FINISHED = (tasks.Status.COMPLETED, tasks.Status.CANCELLED)


# ---------------------------------------------------------------------------- finding things


def _locate(task: Any, root: Optional[PathLike]) -> tuple[Config, Path]:
    """The workspace config and the file of ``task`` (an id or a task file path)."""
    if isinstance(task, os.PathLike) or (isinstance(task, str) and (task.endswith(".md") or "/" in task
                                                                     or os.sep in task)):
        path = Path(task)
        if not path.is_absolute() and not path.exists() and root is not None:
            path = load_config(root=root).root / path  # not under the cwd: taken from the workspace root
        return task_store.task_config(path, root=root), path
    if not isinstance(task, str):
        raise ValidationError(f"a task is a task id or a file path, got {type(task).__name__}")
    cfg = load_config(root=root)
    return cfg, task_store.find_task(task, root=cfg.root).path


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _find(document: TaskDocument, selector: Selector) -> tasks.ChecklistItem:
    """The item at index ``selector`` or with exactly that text; never a guess."""
    task = document.task
    items = task.checklist
    if isinstance(selector, int) and not isinstance(selector, bool):
        if 0 <= selector < len(items):
            return items[selector]
        span = f"#0-#{len(items) - 1}" if items else "none"
        raise NotFoundError(f"no checklist item #{selector} in {task.task_id} ({len(items)} items: {span})",
                            path=document.path, task_id=task.task_id)
    if not isinstance(selector, str):
        raise ValidationError(f"an item is an index or a text, got {type(selector).__name__}")
    wanted = _IP_TAIL.sub("", selector).strip()
    found = [item for item in items if item.text == wanted]
    if len(found) == 1:
        return found[0]
    if found:
        lines = ", ".join(str(item.line) for item in found)
        indices = ", ".join(str(item.index) for item in found)
        raise ValidationError(f"checklist item {_show(wanted)} is ambiguous: it is on lines {lines}",
                              path=document.path, line=found[0].line, task_id=task.task_id,
                              hint=f"select it by index: {indices}")
    import difflib

    texts = [item.text for item in items]
    close = difflib.get_close_matches(wanted, texts, n=3, cutoff=0.5) or texts[:3]
    hint = ("closest: " + "; ".join(_show(text) for text in close)) if close else "the task has no checklist"
    raise NotFoundError(f"no checklist item {_show(wanted)} in {task.task_id}", path=document.path,
                        task_id=task.task_id, hint=hint)


def _where(document: TaskDocument, item: tasks.ChecklistItem) -> dict[str, Any]:
    return {"path": document.path, "line": item.line, "task_id": document.task.task_id}


# ---------------------------------------------------------------------------- events


def _event(cfg: Config, kind: str, agent: str, task_id: str, item: tasks.ChecklistItem, **more: Any) -> None:
    from . import events

    try:
        events.append_event(kind, agent, task_id, root=cfg.root, index=item.index, text=item.text, **more)
    except SwarmError as exc:  # the file already changed: raising would invite a second attempt
        log.warning("%s of item #%d in %s was done, but its event was not logged: %s",
                    kind, item.index, task_id, exc)


# ---------------------------------------------------------------------------- actions


def _change(task: Any, selector: Selector, agent: str, root: Optional[PathLike], kind: str,
            decide: Any) -> tasks.ChecklistItem:
    """Find the item under the task's lock, let ``decide`` edit it, log ``kind`` if it changed."""
    validate_id(agent, "agent id")
    cfg, path = _locate(task, root)
    with task_store.edit_task(path, root=cfg.root) as document:
        item = _find(document, selector)
        after = decide(document, item)
        task_id = document.task.task_id
    if after != item:
        _event(cfg, kind, agent, task_id, after)
    return after


def claim_item(task: Any, item: Selector, agent: str, *, root: Optional[PathLike] = None) -> tasks.ChecklistItem:
    """Mark an open item as in progress by ``agent`` (``[IP:agent]``); returns the item after.

    Claiming an item ``agent`` already holds changes nothing. AlreadyClaimed if another agent
    holds it; NotClaimable if it is checked or the task is completed or cancelled.
    """
    def decide(document: TaskDocument, found: tasks.ChecklistItem) -> tasks.ChecklistItem:
        task_ = document.task
        if task_.status in _FINISHED:
            raise NotClaimable(f"task {task_.task_id} is {task_.status.value}: its items cannot be claimed",
                               **_where(document, found))
        if found.checked:
            raise NotClaimable(f"item #{found.index} {_show(found.text)} is already done",
                               **_where(document, found), hint="pick an open item")
        if found.agent is not None and found.agent != agent:
            raise AlreadyClaimed(f"item #{found.index} {_show(found.text)} is claimed by {found.agent}",
                                 **_where(document, found), holder=found.agent, hint="pick another item")
        return document.set_checklist_item(found.index, agent=agent)

    return _change(task, item, agent, root, "item_claimed", decide)


def _holder_check(document: TaskDocument, found: tasks.ChecklistItem, agent: str, verb: str) -> None:
    if found.agent is not None and found.agent != agent:
        raise AlreadyClaimed(f"item #{found.index} {_show(found.text)} is held by {found.agent}: "
                             f"only {found.agent} may {verb} it", **_where(document, found), holder=found.agent,
                             hint=f"ask {found.agent}, or release its items if it is gone")


def complete_item(task: Any, item: Selector, agent: str, *, root: Optional[PathLike] = None) -> tasks.ChecklistItem:
    """Check an item (``[x]``) and remove its ``[IP:...]`` marker; returns the item after.

    Allowed for the holder, or for any agent when nobody holds the item; an item already
    done changes nothing. AlreadyClaimed (naming the holder) for anyone else.
    """
    def decide(document: TaskDocument, found: tasks.ChecklistItem) -> tasks.ChecklistItem:
        _holder_check(document, found, agent, "complete")
        return document.set_checklist_item(found.index, checked=True, agent=None)

    return _change(task, item, agent, root, "item_completed", decide)


def release_item(task: Any, item: Selector, agent: str, *, root: Optional[PathLike] = None) -> tasks.ChecklistItem:
    """Remove ``agent``'s ``[IP:...]`` marker from an item; returns the item after.

    An item nobody holds is left as it is. AlreadyClaimed (naming the holder) if another
    agent holds it.
    """
    def decide(document: TaskDocument, found: tasks.ChecklistItem) -> tasks.ChecklistItem:
        _holder_check(document, found, agent, "release")
        return document.set_checklist_item(found.index, agent=None)

    return _change(task, item, agent, root, "item_released", decide)


def list_items(task: Any, *, root: Optional[PathLike] = None) -> list[tasks.ChecklistItem]:
    """The checklist items of a task, in file order."""
    _, path = _locate(task, root)
    return list(task_store.load_task(path).checklist)


def release_items_of(agent_id: str, *, root: Optional[PathLike] = None,
                     by: Optional[str] = None) -> list[tuple[str, tasks.ChecklistItem]]:
    """Remove every ``[IP:agent_id]`` marker from the active tasks (the agent is gone).

    Returns (task id, item after) for each released item; each gets an ``item_released``
    event by ``by`` (default ``agent_id``) with ``holder: agent_id``. A task file that does
    not parse is skipped and logged: it is never written.
    """
    validate_id(agent_id, "agent id")
    actor = validate_id(by, "agent id") if by is not None else agent_id
    cfg = load_config(root=root)
    skipped: list = []
    released: list[tuple[str, tasks.ChecklistItem]] = []
    for task in task_store.list_tasks(root=cfg.root, errors=skipped):
        if not any(item.agent == agent_id for item in task.checklist):
            continue
        try:
            with task_store.edit_task(task.path, root=cfg.root) as document:
                held = [item.index for item in document.task.checklist if item.agent == agent_id]
                for index in held:
                    document.set_checklist_item(index, agent=None)
                task_id = document.task.task_id
                after = [document.task.checklist[index] for index in held]
        except NotFoundError:
            continue  # moved to completed/ or deleted since the listing
        except SwarmError as exc:  # e.g. an operator broke the file in the meantime
            skipped.append(exc)
            continue
        for item in after:
            _event(cfg, "item_released", actor, task_id, item, holder=agent_id)
            released.append((task_id, item))
    for exc in skipped:
        log.warning("could not release items of %s: %s", agent_id, exc)
    return released


# ---------------------------------------------------------------------------- adding


def _one_line(value: Any, what: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not text or "\n" in text or "\r" in text:
        raise ValidationError(f"{what} must be one non-empty line, got {str(value)[:60]!r}")
    return text


def _placement(task: tasks.Task, lines: list[str], section: str, text: str) -> tuple[int, list[str]]:
    """Where the new item goes (index into ``lines``) and the lines to insert there."""
    found = task.section(section)
    if found is None:
        blank = [""] if lines and lines[-1].strip() else []
        return len(lines), blank + [f"## {section}", "", f"- [ ] {text}"]
    own = [item for item in task.checklist if found.line < item.line <= found.end]
    if own:
        # Same bullet and indent as the last item of the section, directly below it.
        prefix = _ITEM_PREFIX.match(lines[own[-1].line - 1])
        return own[-1].line, [f"{prefix.group(1) if prefix else '- '}[ ] {text}"]
    body = [n for n in range(found.line + 1, found.end + 1) if lines[n - 1].strip()]
    if body:
        at, block = body[-1], ["", f"- [ ] {text}"]
    elif found.line < len(lines) and not lines[found.line].strip():
        at, block = found.line + 1, [f"- [ ] {text}"]
    else:
        at, block = found.line, ["", f"- [ ] {text}"]
    if at < len(lines) and lines[at].strip():
        block.append("")  # keep the next heading apart from the list
    return at, block


def add_item(task: Any, text: str, section: str = "Success Criteria", *, root: Optional[PathLike] = None,
             agent: str = "operator") -> tasks.ChecklistItem:
    """Add an open item ``- [ ] text`` at the end of ``section``'s checklist; returns it.

    A missing section is created at the end of the file. ValidationError if an item with
    this text exists (text selection would become ambiguous) or the text would not read
    back as a plain open item (e.g. it ends in an ``[IP:...]`` marker).
    """
    text = _one_line(text, "an item")
    section = _one_line(section, "a section name")
    if not _SECTION_NAME.fullmatch(section):
        raise ValidationError(f"invalid section name {section!r}", hint="up to 80 characters, not starting with '#'")
    validate_id(agent, "agent id")
    cfg, path = _locate(task, root)
    # The lock edit_task takes: TaskDocument has no public way to insert a line.
    with task_store.task_file_lock(path, cfg):
        try:
            original = read_text(path)
        except FileNotFoundError:
            raise NotFoundError("task file does not exist", path=path) from None
        current = TaskDocument(original, path).task
        same = [item for item in current.checklist if item.text == text]
        if same:
            raise ValidationError(f"item {_show(text)} already exists", path=path, line=same[0].line,
                                  task_id=current.task_id, hint="word it differently")
        lines = split_lines(original)
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        at, block = _placement(current, lines, section, text)
        lines[at:at] = [entry + newline for entry in block]
        updated = "".join(lines)
        line_no = at + len(block) - (1 if block[-1] == "" else 0)
        after = tasks.parse_task(updated, path)
        added = next((item for item in after.checklist if item.line == line_no), None)
        if added is None or added.text != text or added.checked or added.agent is not None:
            raise ValidationError(f"{_show(text)} would not read back as an open checklist item", path=path,
                                  line=line_no, hint="remove any [IP:...] marker or Markdown that changes the line")
        atomic_write(path, updated)
    _event(cfg, "item_added", agent, after.task_id, added, section=section)
    return added


# ---------------------------------------------------------------------------- command line


def _state(item: tasks.ChecklistItem) -> str:
    if item.agent is not None:
        return f"done [IP:{item.agent}]" if item.checked else f"IP:{item.agent}"
    return "done" if item.checked else "open"


def _build_parser() -> Any:
    from .cli import parser

    # The workspace is checked with the task (cli.task_workspace in _run).
    top = parser("work_items.py", "Claim, complete, release, add and list the checklist items of a task.",
                 needs_workspace=lambda args: False)
    top.epilog = ("TASK is a task id or a task file path; ITEM is an index (0-based, see 'list') or the "
                  "item's exact text. Exit 1 when another agent holds the item or it is done.")
    sub = top.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the items of a task")
    listing.add_argument("task", metavar="TASK")
    for name, what in (("claim", "mark an item in progress by an agent"),
                       ("complete", "check an item (the holder, or anyone if unclaimed)"),
                       ("release", "remove the holder's in-progress marker")):
        action = sub.add_parser(name, help=what)
        action.add_argument("task", metavar="TASK")
        action.add_argument("item", metavar="ITEM")
        action.add_argument("--agent", required=True, help="agent id")
    add = sub.add_parser("add", help="add an open item to a section")
    add.add_argument("task", metavar="TASK")
    add.add_argument("text", metavar="TEXT")
    add.add_argument("--section", default="Success Criteria", help="section (default: Success Criteria)")
    add.add_argument("--agent", default="operator", help="who adds it, for the event (default: operator)")
    return top


def _run(args: Any) -> int:
    from .cli import print_json, table

    args.root = task_store.task_workspace(args.task, root=args.root)
    if args.command == "list":
        items = list_items(args.task, root=args.root)
        if args.json:
            print_json([item.to_dict() for item in items])
        elif not items:
            print("no checklist items")
        else:
            print(table(["#", "LINE", "STATE", "TEXT", "SECTION"],
                        [[i.index, i.line, _state(i), i.text, i.section or ""] for i in items]))
        return 0
    if args.command == "add":
        item = add_item(args.task, args.text, args.section, root=args.root, agent=args.agent)
    else:
        selector: Selector = int(args.item) if re.fullmatch(r"[0-9]+", args.item) else args.item
        act = {"claim": claim_item, "complete": complete_item, "release": release_item}[args.command]
        item = act(args.task, selector, args.agent, root=args.root)
    if args.json:
        print_json(item.to_dict())
    else:
        print(f"#{item.index} line {item.line}: {_state(item)}: {item.text}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``work_items.py list|claim|complete|release|add ...``; exit 0 ok, 1 held or done, 2 bad input."""
    from .cli import EXIT_CHECK_FAILED, fail, run

    args = _build_parser().parse_args(argv)

    def body() -> int:
        try:
            return _run(args)
        except (AlreadyClaimed, NotClaimable) as exc:
            fail(exc)
            return EXIT_CHECK_FAILED

    return run(body)
