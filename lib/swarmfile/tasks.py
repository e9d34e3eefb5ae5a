"""The task Markdown model: parse a task file, check it, edit its lines, render a new one.

A task file is what operators edit, so the runtime parses it leniently and edits it surgically::

    # TASK-1769952151: Implement Feature F-005      <- id before the first colon (or **Task ID:**)
    **Priority:** high                               <- header fields: before the first ## heading
    **Status:** pending
    ## Success Criteria
    - [ ] item two [IP:executor-2]                   <- checklist item, in progress by executor-2

This module owns the model and the grammar: ``parse_task``, ``validate_task``, the claim order
(``priority_rank``, ``ready_order_key``). A file that does not parse raises ParseError
(InvalidIdError for a bad id). Editing a file's lines and rendering a new one are
task_document.py's (``TaskDocument``, ``render_task``), on the grammar shared from here.

The files on disk (cached listing, ``find_task``, locked edits, ``new_task_file``,
``move_to_completed``) live in task_store.py, which builds on both.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from enum import Enum
from functools import cached_property, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

from .clock import parse_ts

from .config import validate_id
from .textfile import split_lines
from .errors import InvalidIdError, ParseError, ValidationError

__all__ = [
    "Status", "Priority", "Task", "Section", "ChecklistItem",
    "parse_task", "validate_task", "priority_rank", "ready_order_key", "extract_paths", "parse_id_list",
    "Scanned", "scan_lines", "assemble", "field_key", "FIELD_LINE", "CHECKLIST_LINE", "IP_MARKER",
]

PathLike = Union[str, "os.PathLike[str]"]


class _pattern:
    """A regular expression compiled when first used, then as fast as the compiled one.

    The ready query from the task index parses no file: compiling the parser's expressions at
    import cost a tenth of ``python lib/claims.py ready``'s start. After the first use, the
    compiled expression's methods are this object's own attributes, and its class one without
    ``__getattr__`` (a class with one looks attributes up through a slower hook: the parser
    calls these for every line).
    """

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._source = (pattern, flags)

    def __getattr__(self, name: str) -> Any:
        compiled = re.compile(*self._source)
        for method in ("match", "fullmatch", "search", "finditer", "findall", "sub", "subn", "split"):
            setattr(self, method, getattr(compiled, method))
        self.pattern, self.flags, self.groups = compiled.pattern, compiled.flags, compiled.groups
        self.__class__ = _Compiled
        return getattr(compiled, name)


class _Compiled:
    """A ``_pattern`` once compiled: its attributes are the compiled expression's."""


class Status(str, Enum):
    PENDING = "pending"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    NEEDS_ATTENTION = "needs_attention"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["Status"]:
        """The status named by ``text`` ("COMPLETE", "in progress", "done ✅"...), else None."""
        return _lookup(_STATUS_WORDS, text)


class Priority(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["Priority"]:
        """The level named by ``text`` ("HIGH", "urgent"...), else None (numbers included)."""
        return _lookup(_PRIORITY_WORDS, text)


_S, _P = Status, Priority
_STATUS_WORDS = {
    **dict.fromkeys(["pending", "todo", "to do", "open", "new", "not started", "ready", "queued"], _S.PENDING),
    **dict.fromkeys(["claimed", "assigned"], _S.CLAIMED),
    **dict.fromkeys(["in progress", "inprogress", "wip", "active", "running", "started", "working",
                     "doing", "ongoing"], _S.IN_PROGRESS),
    **dict.fromkeys(["completed", "complete", "done", "finished", "resolved", "succeeded", "success"],
                    _S.COMPLETED),
    **dict.fromkeys(["failed", "failure", "fail", "error", "errored"], _S.FAILED),
    **dict.fromkeys(["blocked", "waiting", "on hold"], _S.BLOCKED),
    **dict.fromkeys(["needs attention", "needsattention", "attention", "needs review", "needs help"],
                    _S.NEEDS_ATTENTION),
    **dict.fromkeys(["cancelled", "canceled", "abandoned", "wontfix", "wont fix", "dropped", "obsolete"],
                    _S.CANCELLED),
}
_PRIORITY_WORDS = {
    **dict.fromkeys(["critical", "urgent", "blocker"], _P.CRITICAL),
    **dict.fromkeys(["high"], _P.HIGH),
    **dict.fromkeys(["medium", "normal", "moderate"], _P.MEDIUM),
    **dict.fromkeys(["low", "minor"], _P.LOW),
}
_RANK = {_P.CRITICAL: 3.0, _P.HIGH: 2.0, _P.MEDIUM: 1.0, _P.LOW: 0.0}
_NOT_WORD = _pattern(r"[^a-z0-9 ]+")


def _lookup(table: Mapping[str, Any], text: Optional[str]) -> Any:
    if not text:
        return None
    # "COMPLETE - NO ACTION NEEDED", "completed ✅", "In-Progress": the leading words decide.
    words = _NOT_WORD.sub("", text.lower().replace("_", " ").replace("-", " ")).split()
    for size in range(min(3, len(words)), 0, -1):
        found = table.get(" ".join(words[:size]))
        if found is not None:
            return found
    return None


def priority_rank(value: Any) -> float:
    """Sort weight of a priority: critical 3 > high 2 > medium 1 > low 0; a number is itself.

    Missing or unrecognised priorities weigh as medium.
    """
    if isinstance(value, Priority):
        return _RANK[value]
    text = str(value).strip() if value is not None else ""
    try:
        return float(text)
    except ValueError:
        level = Priority.parse(text)
        return _RANK[level] if level is not None else _RANK[Priority.MEDIUM]


# ---------------------------------------------------------------------------- the model


# The model's records are not dataclasses: the ready query (``python lib/claims.py ready``) imports
# this module, and importing ``dataclasses`` (which imports ``inspect``) and making the classes cost
# 7% of that command's instructions at 10,000 tasks. The two values are named tuples (immutable,
# compared by value; ``_replace``), and Task a read-only class compared by identity, as the frozen
# dataclasses were.


class ChecklistItem(NamedTuple):
    """One ``- [ ]`` / ``- [x]`` line; ``text`` is without the ``[IP:agent]`` marker."""

    index: int  # 0-based among the file's checklist items (code blocks excluded)
    line: int  # 1-based
    checked: bool
    text: str
    agent: Optional[str] = None
    section: Optional[str] = None

    def to_dict(self) -> dict:
        return {"index": self.index, "line": self.line, "checked": self.checked, "text": self.text,
                "agent": self.agent, "section": self.section}


class Section(NamedTuple):
    """A ``## Name`` section: heading line, last body line, body text (### headings included)."""

    name: str
    line: int
    end: int
    text: str
    level: int = 2

    def to_dict(self) -> dict:
        return {"name": self.name, "line": self.line, "end": self.end, "level": self.level}


class Task:
    """A parsed task file, shared with the list cache: read-only, compared by identity.

    Made with its attributes, in the order of ``__match_args__`` or by name.
    """

    task_id: str
    title: str
    path: Optional[Path]
    fields: Mapping[str, str]  # header fields in file order, names as written
    field_lines: Mapping[str, int]
    status: Optional[Status]  # PENDING when the file has no Status field; None when unrecognised
    status_text: Optional[str]
    priority: Optional[Priority]
    priority_text: Optional[str]
    created: Optional[str]
    depends_on: tuple[str, ...]
    parent: Optional[str]
    assigned_to: Optional[str]
    sub_tasks: tuple[str, ...]
    sections: tuple[Section, ...]
    checklist: tuple[ChecklistItem, ...]
    files_to_modify: tuple[str, ...]
    title_line: int  # 1 unless given

    __match_args__ = ("task_id", "title", "path", "fields", "field_lines", "status", "status_text", "priority",
                      "priority_text", "created", "depends_on", "parent", "assigned_to", "sub_tasks", "sections",
                      "checklist", "files_to_modify", "title_line")

    def __init__(self, task_id: str, title: str, path: Optional[Path], fields: Mapping[str, str],
                 field_lines: Mapping[str, int], status: Optional[Status], status_text: Optional[str],
                 priority: Optional[Priority], priority_text: Optional[str], created: Optional[str],
                 depends_on: tuple[str, ...], parent: Optional[str], assigned_to: Optional[str],
                 sub_tasks: tuple[str, ...], sections: tuple[Section, ...], checklist: tuple[ChecklistItem, ...],
                 files_to_modify: tuple[str, ...], title_line: int = 1) -> None:
        vars(self).update(
            task_id=task_id, title=title, path=path, fields=fields, field_lines=field_lines, status=status,
            status_text=status_text, priority=priority, priority_text=priority_text, created=created,
            depends_on=depends_on, parent=parent, assigned_to=assigned_to, sub_tasks=sub_tasks, sections=sections,
            checklist=checklist, files_to_modify=files_to_modify, title_line=title_line)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a Task (read-only)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a Task (read-only)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in Task.__match_args__)})"

    def field(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A header field by name, ignoring case, spaces and dashes."""
        wanted = field_key(name)
        for written, value in self.fields.items():
            if field_key(written) == wanted:
                return value
        return default

    def section(self, name: str) -> Optional[Section]:
        """The first section with this name (case-insensitive), or None."""
        wanted = name.strip().lower()
        return next((s for s in self.sections if s.name.lower() == wanted), None)

    @property
    def type(self) -> Optional[str]:
        return self.field("Type")

    @property
    def objective(self) -> str:
        found = self.section("Objective") or self.section("Goal")
        return found.text if found else ""

    @property
    def success_criteria(self) -> tuple[ChecklistItem, ...]:
        """The items of ``## Success Criteria`` and ``## Acceptance Criteria`` (RALF writes either)."""
        return tuple(i for i in self.checklist if _CRITERIA_SECTION.match(i.section or ""))

    @property
    def claimed_by(self) -> Optional[str]:
        """The ``**Claimed By:**`` field (the lease's holder as the runtime mirrors it), or None."""
        return self.field("Claimed By")

    @property
    def checklist_counts(self) -> tuple[int, int]:
        """(items checked, items in all) of the checklist: what ``swarm.py status`` shows of it. A task
        from the task index has it without reading its file."""
        checklist = self.checklist
        return (sum(item.checked for item in checklist), len(checklist))

    @property
    def priority_rank(self) -> float:
        return priority_rank(self.priority or self.priority_text)

    @property
    def created_at(self) -> Optional[datetime]:
        try:
            return parse_ts(self.created) if self.created else None
        except ValueError:
            return None

    @cached_property
    def _order(self) -> tuple:
        moment = self.created_at
        return (-self.priority_rank, moment.timestamp() if moment else float("inf"), self.task_id)

    def to_dict(self) -> dict:
        return {
            "task_id": self.task_id, "title": self.title, "path": str(self.path) if self.path else None,
            "status": self.status.value if self.status else None, "status_text": self.status_text,
            "priority": self.priority.value if self.priority else None, "priority_text": self.priority_text,
            "created": self.created, "depends_on": list(self.depends_on), "parent": self.parent,
            "assigned_to": self.assigned_to, "sub_tasks": list(self.sub_tasks), "fields": dict(self.fields),
            "sections": [s.to_dict() for s in self.sections],
            "checklist": [i.to_dict() for i in self.checklist], "files_to_modify": list(self.files_to_modify),
        }


def ready_order_key(task: Task) -> tuple:
    """Claim order: higher priority first, then oldest Created first, then task id."""
    return task._order


# ---------------------------------------------------------------------------- parsing

_HEADING = _pattern(r"(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
FIELD_LINE = _pattern(r"\*\*([^*\n:]+?)(?::\*\*|\*\*:)[ \t]*(.*?)[ \t]*$")
_FENCE = _pattern(r"[ \t]*(`{3,}|~{3,})[ \t]*([^`]*?)[ \t]*$")
CHECKLIST_LINE = _pattern(r"([ \t]*[-*+][ \t]+\[)([ xX])(\])(.*?)[ \t]*$")
IP_MARKER = _pattern(r"[ \t]*\[IP:([^\]\s]*)\]$")
_FILES_SECTION = _pattern(
    r"files?\s+(?:to\s+(?:modify|create|change|edit|update|add|write|touch)|modified|created|changed|added)\b",
    re.I)
_BULLET = _pattern(r"[ \t]*(?:[-*+]|\d+[.)])[ \t]+(.*)$")
_TICKED = _pattern(r"`([^`\n]+)`")
_BARE_PATH = _pattern(
    r"(?<![\w@:/.~-])((?:~/|\.{1,2}/)?[\w.-]*[\w-]/[\w./*-]*[\w*]|[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/-])")
_PATH_LIKE = _pattern(r"(?:~/|\.{1,2}/)?[\w.*-]+(?:/[\w.*-]+)*/?$")
_ID_TOKEN = _pattern(r"[^\s,;()]+")
_CRITERIA_SECTION = _pattern(r"(?:success|acceptance)\s+criteria\b", re.I)
_SUBTASKS_SECTION = _pattern(r"sub[- ]?tasks\b", re.I)
_TABLE_LINK = _pattern(r"\[([^\]]+)\]\([^)]*\)")
_NOT_KEY = _pattern(r"[^a-z0-9]")
_NONE_WORDS = {"none", "n/a", "na", "-", "—", "null", "nothing"}


@lru_cache(maxsize=1024)  # a handful of field names, looked up for every field of every task read
def field_key(name: str) -> str:
    return _NOT_KEY.sub("", name.lower())


def _is_path(token: str, bare: bool = False) -> bool:
    token = token.strip().rstrip(".,:;")
    if not token or not _PATH_LIKE.match(token) or token.startswith("-"):
        return False
    stem, _, ext = token.rpartition(".")
    has_ext = len(stem) >= 2 and ext[:1].isalpha() and "/" not in ext
    if bare and not has_ext and token.count("/") == 1 and not token.startswith(("~/", "./", "../")):
        return token.endswith("/")  # "before/after", "and/or" in prose are not paths
    return "/" in token or has_ext


def extract_paths(text: str) -> list[str]:
    """File paths named in ``text``: backticked spans and bare tokens that look like paths."""
    found: list[str] = []
    for match in _TICKED.finditer(text):
        if _is_path(match.group(1)):
            found.append(match.group(1).strip().rstrip(".,:;"))
    for match in _BARE_PATH.finditer(_TICKED.sub(" ", text)):
        if _is_path(match.group(1), bare=True):
            found.append(match.group(1).rstrip(".,:;"))
    return list(dict.fromkeys(p[2:] if p.startswith("./") else p for p in found))


def _bullet_paths(line: str) -> list[str]:
    bullet = _BULLET.match(line)
    if not bullet:
        return []
    body = bullet.group(1)
    ticked = [m.group(1).strip() for m in _TICKED.finditer(body) if _is_path(m.group(1))]
    if ticked:
        return ticked
    first = body.split(maxsplit=1)[0].rstrip(".,:;") if body.strip() else ""
    return [first] if _is_path(first) else []


def parse_id_list(value: Optional[str]) -> tuple[list[str], list[str]]:
    """Ids in a field like ``TASK-1 (framework), TASK-2``: (valid ids, tokens that are not ids)."""
    good: list[str] = []
    bad: list[str] = []
    if not value:
        return good, bad
    for part in re.split(r"[,;]|\band\b", re.sub(r"\([^)]*\)", " ", value)):
        token = next(iter(_ID_TOKEN.findall(part)), "").strip("`*")
        if not token or token.lower() in _NONE_WORDS:
            continue
        try:
            good.append(validate_id(token, "task id"))
        except InvalidIdError:
            bad.append(token)
    return good, bad


def _table_ids(sections: Sequence[Section]) -> list[str]:
    """Ids in the first column of a ``## Sub-Tasks`` table (an epic's list of its children).

    RALF writes them as given (``TASK-1``) or shortened to the number (``20260203172001``);
    ``task_graph`` matches a short one to the task whose id ends in ``-<number>``.
    """
    found: list[str] = []
    for section in sections:
        if not _SUBTASKS_SECTION.match(section.name):
            continue
        rows = [r for r in section.text.split("\n") if r.lstrip().startswith("|")]
        for row in rows[2:]:  # after the header row and its |---| line
            cell = _TABLE_LINK.sub(r"\1", row.strip().strip("|").split("|")[0]).strip().strip("`*")
            try:
                found.append(validate_id(cell, "task id"))
            except InvalidIdError:
                continue
    return found


def _blank_trimmed(lines: list[str]) -> str:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def _title_id(title: str, path: Any, line: int) -> tuple[Optional[str], str]:
    head, colon, rest = title.partition(":")
    head = head.strip().strip("*`")
    if not colon or not head or re.search(r"\s", head):
        return None, title.strip()
    return _checked_id(head, path, line), rest.strip()


def _checked_id(value: str, path: Any, line: int) -> str:
    try:
        return validate_id(value, "task id")
    except InvalidIdError as exc:
        raise InvalidIdError(exc.reason, path=path, line=line, hint=exc.hint) from None


def _parse(lines: Sequence[str], path: Optional[Path]) -> Task:
    return assemble(*scan_lines(lines, path))


class Scanned(NamedTuple):
    """What one pass over a task file's lines finds; ``_assemble`` makes the Task of it."""

    title: str  # the title line's text, after "# "
    title_line: int
    fields: dict[str, str]
    field_lines: dict[str, int]
    sections: tuple[Section, ...]
    checklist: tuple[ChecklistItem, ...]
    files: tuple[str, ...]
    path: Optional[Path]


def scan_lines(lines: Sequence[str], path: Optional[Path]) -> Scanned:
    where = path if path is not None else "<text>"
    title: Optional[str] = None
    title_line = 0
    fields: dict[str, str] = {}
    field_lines: dict[str, int] = {}
    sections: list[Section] = []
    checklist: list[ChecklistItem] = []
    files: list[str] = []
    fences: list[tuple[str, int]] = []
    header = True
    current: Optional[tuple[str, int, int]] = None  # name, heading line, level
    body: list[str] = []
    in_files = False

    def close(end: int) -> None:
        if current is not None:
            sections.append(Section(current[0], current[1], end, _blank_trimmed(body), current[2]))

    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\n").rstrip("\r")
        if title is None:
            stripped = line.lstrip("\ufeff").strip()
            if not stripped:
                continue
            heading = _HEADING.match(stripped)
            if not heading or len(heading.group(1)) != 1:
                raise ParseError("no title line", path=where, line=number,
                                 hint="a task file starts with '# <ID>: <title>'")
            title, title_line = heading.group(2), number
            continue
        first = line.lstrip()[:1]
        if first in ("`", "~"):
            fence = _FENCE.match(line)
            if fence:
                mark, info = fence.group(1), fence.group(2)
                # A marker with an info string always opens (RALF nests ```bash inside ```markdown);
                # a bare marker closes the innermost open block.
                if fences and not info and mark[0] == fences[-1][0] and len(mark) >= fences[-1][1]:
                    fences.pop()
                elif info or not fences:
                    fences.append((mark[0], len(mark)))
                body.append(line)
                continue
        if fences:
            body.append(line)
            continue
        if first == "#":
            heading = _HEADING.match(line)
            if heading:
                header = False
                if len(heading.group(1)) <= 2:
                    close(number - 1)
                    current, body = (heading.group(2), number, len(heading.group(1))), []
                    in_files = bool(_FILES_SECTION.match(heading.group(2)))
                    continue
        elif header and first == "*":
            found = FIELD_LINE.match(line)
            if found and found.group(1).strip() not in fields:
                fields[found.group(1).strip()] = found.group(2)
                field_lines[found.group(1).strip()] = number
        if "[" in line:
            item = CHECKLIST_LINE.match(line)
            if item:
                text = item.group(4)
                marker = IP_MARKER.search(text)
                agent = None
                if marker:
                    agent, text = marker.group(1), text[:marker.start()]
                checklist.append(ChecklistItem(len(checklist), number, item.group(2) != " ",
                                               text.strip(), agent, current[0] if current else None))
        if in_files:
            files.extend(_bullet_paths(line))
        body.append(line)
    if title is None:  # only blank lines
        raise ParseError("empty task file", path=where, line=1, hint="a task file starts with '# <ID>: <title>'")
    close(len(lines))
    return Scanned(title, title_line, fields, field_lines, tuple(sections), tuple(checklist),
                    tuple(dict.fromkeys(files)), path)


def assemble(title: str, title_line: int, fields: dict[str, str], field_lines: dict[str, int],
              sections: tuple[Section, ...], checklist: tuple[ChecklistItem, ...],
              files: tuple[str, ...], path: Optional[Path]) -> Task:
    """The Task of a scanned file: its title line, header fields, sections, checklist and files."""
    where = path if path is not None else "<text>"
    keyed: dict[str, str] = {}
    for name, value in fields.items():  # the first of two spellings of one field wins, as before
        keyed.setdefault(field_key(name), value)

    def get(name: str) -> Optional[str]:
        return keyed.get(field_key(name))

    task_id, title_text = _title_id(title, where, title_line)
    if task_id is None:
        declared = get("Task ID")
        if not declared:
            raise ParseError("no task id in the title line", path=where, line=title_line,
                             hint="write the title as '# <ID>: <title>' or add '**Task ID:** <ID>'")
        line_no = next(n for k, n in field_lines.items() if field_key(k) == "taskid")
        task_id = _checked_id(declared.strip().strip("`"), where, line_no)
    status_text = get("Status")
    priority_text = get("Priority")
    return Task(
        task_id=task_id, title=title_text, path=path,
        fields=MappingProxyType(fields), field_lines=MappingProxyType(field_lines),
        status=Status.parse(status_text) if status_text is not None else Status.PENDING,
        status_text=status_text,
        priority=Priority.parse(priority_text), priority_text=priority_text,
        created=get("Created"),
        depends_on=tuple(parse_id_list(get("Depends On") or get("Dependencies"))[0]),
        parent=(parse_id_list(_TABLE_LINK.sub(r"\1", get("Parent Task") or get("Parent") or ""))[0] or [None])[0],
        assigned_to=get("Assigned To") or get("Assignee"),
        sub_tasks=tuple(dict.fromkeys(parse_id_list(get("Sub-Tasks"))[0] + _table_ids(sections))),
        sections=sections, checklist=checklist, files_to_modify=files, title_line=title_line,
    )


def parse_task(text: str, path: Optional[PathLike] = None) -> Task:
    """Parse task Markdown; ParseError/InvalidIdError naming ``path`` and the line."""
    return _parse(split_lines(text), Path(path) if path is not None else None)


def validate_task(task: Task) -> list[ValidationError]:
    """What is wrong with a parsed task (unknown status or priority, bad ids, bad time); [] if fine."""
    problems: list[ValidationError] = []

    def report(name: str, what: str, hint: str) -> None:
        wanted = field_key(name)
        line = next((n for k, n in task.field_lines.items() if field_key(k) == wanted), task.title_line)
        problems.append(ValidationError(what, path=task.path or "<text>", line=line, hint=hint))

    if task.status is None:
        report("Status", f"unrecognised status {task.status_text!r}",
                "use one of: " + ", ".join(s.value for s in Status))
    if task.priority_text is not None and task.priority is None:
        try:
            float(task.priority_text)
        except ValueError:
            report("Priority", f"unrecognised priority {task.priority_text!r}",
                   "use critical, high, medium, low or a number")
    if task.created is not None and task.created_at is None:
        report("Created", f"Created is not an ISO-8601 time: {task.created!r}", "e.g. 2026-02-01T18:30:00Z")
    for name in ("Depends On", "Dependencies", "Parent Task", "Sub-Tasks"):
        bad = parse_id_list(task.field(name))[1]
        if bad:
            report(name, f"{name} names invalid task ids: {', '.join(bad)}", "ids are letters, digits, . _ -")
    declared = task.field("Task ID")
    if declared and declared.strip().strip("`") != task.task_id:
        report("Task ID", f"Task ID {declared!r} differs from the title's id {task.task_id!r}",
               "make them the same; the title wins")
    return problems
