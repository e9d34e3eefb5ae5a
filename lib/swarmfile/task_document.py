"""Editing a task file's lines, and rendering a new task file.

``TaskDocument`` holds a task file's lines; its edits (a header value, a checklist line, an
added field) change only the lines they own, so an operator's edit elsewhere is kept and an
unchanged document renders back byte for byte. ``render_task`` writes a new task's Markdown.
The grammar (what a field line, a checklist line is) and the parse are tasks.py's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from .config import validate_id
from .clock import format_ts
from .errors import NotFoundError, ValidationError
from .fileio import split_lines
from .tasks import (CHECKLIST_LINE, FIELD_LINE, IP_MARKER, ChecklistItem, PathLike, Priority, Scanned, Status, Task,
                    assemble, field_key, scan_lines)

__all__ = ["TaskDocument", "KEEP", "render_task"]

KEEP: Any = object()  # set_checklist_item: leave the [IP:agent] marker as it is


def _clean_value(value: Any, path: Optional[Path] = None) -> str:
    text = value.value if isinstance(value, Enum) else str(value)
    if "\n" in text or "\r" in text:
        raise ValidationError(f"value must be one line: {text[:60]!r}", path=path)
    return text.strip()


def _with_line_added(scanned: Scanned, after: int, name: str, value: str) -> Scanned:
    """``scanned`` with a header field line ``name``/``value`` inserted after line ``after`` (1-based)."""

    def moved(line: int) -> int:
        return line + 1 if line > after else line

    field_lines = {k: moved(n) for k, n in scanned.field_lines.items()}
    field_lines[name] = after + 1
    return scanned._replace(
        title_line=moved(scanned.title_line),
        fields={**scanned.fields, name: value}, field_lines=field_lines,
        sections=tuple(replace(s, line=moved(s.line), end=moved(s.end)) for s in scanned.sections),
        checklist=tuple(replace(c, line=moved(c.line)) if c.line > after else c for c in scanned.checklist))


class TaskDocument:
    """The lines of one task file, editable one line at a time; ``render()`` gives the text back."""

    def __init__(self, text: str, path: Optional[PathLike] = None) -> None:
        self.path = path if path is None or isinstance(path, Path) else Path(path)
        self.original = text
        self._lines = split_lines(text)
        self._task: Optional[Task] = None
        # The last scan of the lines, kept across edits of a header value in place (the lines stay
        # where they are, and only that value changes): setting Status and Claimed By, and the
        # task after them, cost one parse of the file, not three.
        self._scanned: Optional[Scanned] = None
        self.task  # parse now: a document that does not parse is never edited

    @property
    def task(self) -> Task:
        if self._task is None:
            if self._scanned is None:
                self._scanned = scan_lines(self._lines, self.path)
            self._task = assemble(*self._scanned)
        return self._task

    def render(self) -> str:
        return "".join(self._lines)

    @property
    def changed(self) -> bool:
        return self.render() != self.original

    def _newline(self) -> str:
        return "\r\n" if self._lines and self._lines[0].endswith("\r\n") else "\n"

    def _insert(self, index: int, new: list[str]) -> None:
        newline = self._newline()
        at_end = index >= len(self._lines)
        if at_end and self._lines and not self._lines[-1].endswith("\n"):
            # The file ended without a newline: keep it that way after the inserted lines.
            self._lines[-1] += newline
            self._lines.extend([n + newline for n in new[:-1]] + [new[-1]])
        else:
            self._lines[index:index] = [n + newline for n in new]
        self._task = self._scanned = None

    def set_field(self, name: str, value: Any) -> bool:
        """Set header field ``name``: replace its value in place, else add a line after the last field."""
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9 _./-]{0,60}", name):
            raise ValidationError(f"invalid field name {name!r}", path=self.path)
        text = _clean_value(value, self.path)
        if self._scanned is None:
            self.task
        scanned = self._scanned
        wanted = field_key(name)
        written, line_no = next(((k, n) for k, n in scanned.field_lines.items() if field_key(k) == wanted), (None, None))
        if line_no is not None:
            raw = self._lines[line_no - 1]
            content = raw.rstrip("\n").rstrip("\r")
            found = FIELD_LINE.match(content)
            start, end = found.span(2)
            prefix = content[:start]
            if not prefix[-1:].isspace() and text:
                prefix += " "
            new = prefix + text + content[end:] + raw[len(content):]
            if new == raw:
                return False
            self._lines[line_no - 1] = new
            self._task = None
            # Only this value changed: the scan stays true with it replaced, as a scan of the new
            # line would read it (a "Task ID" the title lacks names the task: scanned again).
            again = FIELD_LINE.match(new.rstrip("\n").rstrip("\r"))
            if again and again.group(1).strip() == written and field_key(written) != "taskid":
                self._scanned = scanned._replace(fields={**scanned.fields, written: again.group(2)})
            else:
                self._scanned = None
            return True
        new_line = f"**{name}:** {text}".rstrip()
        if scanned.field_lines:
            last = max(scanned.field_lines.values())
            self._insert(last, [new_line])
            # One line after the last header field: the scan stays true with the lines below it moved
            # down one and the field added (a claim inserting Claimed By parses the file once).
            again = FIELD_LINE.match(new_line)
            if again and field_key(again.group(1).strip()) != "taskid":
                self._scanned = _with_line_added(scanned, last, again.group(1).strip(), again.group(2))
        else:
            index = self.task.title_line
            following = self._lines[index] if index < len(self._lines) else None
            if following is not None and not following.strip():
                after = self._lines[index + 1] if index + 1 < len(self._lines) else None
                self._insert(index + 1, [new_line] + ([""] if after is not None and after.strip() else []))
            else:
                self._insert(index, ["", new_line] + ([""] if following is not None else []))
        return True

    def find_item(self, selector: Union[int, str]) -> ChecklistItem:
        """A checklist item by index, or by its text (exact, then ignoring case and spaces)."""
        items = self.task.checklist
        if isinstance(selector, int) and not isinstance(selector, bool):
            if 0 <= selector < len(items):
                return items[selector]
            raise NotFoundError(f"no checklist item #{selector} ({len(items)} items)", path=self.path)
        wanted = str(selector).strip()
        exact = [i for i in items if i.text == wanted]
        loose = exact or [i for i in items if " ".join(i.text.split()).lower() == " ".join(wanted.split()).lower()]
        if len(loose) == 1:
            return loose[0]
        if not loose:
            raise NotFoundError(f"no checklist item {wanted[:60]!r}", path=self.path)
        raise ValidationError(f"checklist item {wanted[:60]!r} is ambiguous", path=self.path,
                              line=loose[1].line, hint="select it by index")

    def set_checklist_item(self, selector: Union[int, str], *, checked: Optional[bool] = None,
                           agent: Any = KEEP) -> ChecklistItem:
        """Tick/untick one item and/or set (a str) or remove (None) its ``[IP:agent]`` marker."""
        item = self.find_item(selector)
        if agent is not KEEP and agent is not None:
            validate_id(agent, "agent id")
        raw = self._lines[item.line - 1]
        content = raw.rstrip("\n").rstrip("\r")
        found = CHECKLIST_LINE.match(content)
        mark = found.group(2) if checked is None or bool(checked) == item.checked else ("x" if checked else " ")
        new = content[:found.start(2)] + mark + content[found.end(2):]
        if agent is not KEEP and agent != item.agent:
            tail = content[found.start(4):]
            marker = IP_MARKER.search(tail.rstrip())
            text = tail.rstrip()[:marker.start()] if marker else tail.rstrip()
            new = content[:found.start(2)] + mark + "]" + text + (f" [IP:{agent}]" if agent else "")
        new += raw[len(content):]
        if new != raw:
            self._lines[item.line - 1] = new
            self._task = self._scanned = None
        return self.task.checklist[item.index]


# ---------------------------------------------------------------------------- rendering a new task


def _one_line(value: Any, what: str) -> str:
    text = _clean_value(value)
    if not text and what == "title":
        raise ValidationError("a task needs a title")
    return text


def render_task(task_id: str, title: str, *, status: Any = Status.PENDING, priority: Any = Priority.MEDIUM,
                type: Optional[str] = None, created: Optional[str] = None, depends_on: Sequence[str] = (),
                fields: Optional[Mapping[str, Any]] = None, objective: str = "",
                criteria: Sequence[str] = (), files: Sequence[str] = (),
                sections: Optional[Mapping[str, str]] = None) -> str:
    """Task Markdown from its parts. ``criteria`` items become ``- [ ]`` lines unless already checklist lines."""
    validate_id(task_id, "task id")
    for dep in depends_on:
        validate_id(dep, "task id")
    head: dict[str, Any] = {}
    if type:
        head["Type"] = type
    head.update({"Priority": priority, "Status": status, "Created": created or format_ts()})
    if depends_on:
        head["Depends On"] = ", ".join(depends_on)
    head.update(fields or {})
    out = [f"# {task_id}: {_one_line(title, 'title')}", ""]
    for name, value in head.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9 _./-]{0,60}", name):
            raise ValidationError(f"invalid field name {name!r}")
        out.append(f"**{name}:** {_one_line(value, name)}".rstrip())
    body = {"Objective": objective.strip(),
            "Success Criteria": "\n".join(c if CHECKLIST_LINE.match(c) else f"- [ ] {c}"
                                          for c in (_one_line(c, "criterion") for c in criteria)),
            "Files to Modify": "\n".join(f"- `{_one_line(f, 'file')}`" for f in files)}
    body.update({k: v.strip() for k, v in (sections or {}).items()})
    for name, text in body.items():
        if text or name == "Objective":
            out += ["", f"## {_one_line(name, 'section')}", ""] + ([text] if text else [])
    return "\n".join(out) + "\n"
