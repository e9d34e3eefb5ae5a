"""Split a task into sub-tasks that agents can run in parallel, only where the work really is independent.

The units of a task are its Success Criteria (or Acceptance Criteria) items (else the items of
its first checklist, else the ``###`` steps of its Approach). A task is split only when its
units fall into two or more groups that each name files of their own. Units are joined into
one group when:

- they name the same file;
- one states an order (``then``, ``after``, ``once``, a numbered step...): it joins the unit before;
- they share a subject: a word of substance that is not in the task's title (the title's words
  are the theme every unit shares: "Sales report" and "Stock report" of "Build the monthly
  reports" are apart, "Configuration file created" and "Configuration parser working" are not);
- one checks, documents, integrates or announces the others (``tested``, ``Documentation
  updated``, ``All contributors notified``, ``prioritized``...; or starts with "All"): it joins
  the units it shares a subject with, and all of them when it names none;
- one names no file and shares no subject: it joins the unit before it (no evidence it stands apart).

A group that names no file gives no evidence that it can run apart, so then nothing is split;
a task with Files to Modify but no criteria is not split either (files alone do not say what
each part delivers). When the title and objective read as sequential (more words of
``distribution.sequential_keywords`` than of ``parallel_keywords``) nothing is split. The
groups are packed into at most ``distribution.max_subtasks`` sub-tasks ``<PARENT>-SUB<n>.md``;
every unit lands in exactly one, and a sub-task whose units name no file gets the parent's
Files to Modify.

Splitting holds the parent's lock from the check for existing sub-tasks to the
``**Sub-Tasks:**`` line on the parent, so two planners splitting one task at once create one
set; splitting a task again returns the sub-tasks it already has, as they are now.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from . import task_store
from . import tasks as taskmod
from .config import Config, ID_PATTERN, load_config, validate_id
from .errors import ValidationError

__all__ = ["Unit", "Analysis", "SubTask", "analyze_task_structure", "can_parallelize", "plan_subtasks",
           "distribute_task", "existing_subtasks", "main"]

PathLike = Union[str, "os.PathLike[str]"]
TaskRef = Union[PathLike, taskmod.Task]

_NUMBERED = re.compile(r"^\s*(?:(?:step|phase|part)\s+)?\d+[.):](?:\s|$)", re.I)
_NUMBERED_LINE = re.compile(r"^\s*\d+[.)]\s+\S", re.M)
_STEP_SECTION = re.compile(r"approach|steps?|tasks?|plan|implementation|what you need to do|work", re.I)
_SUB_ID = re.compile(r"-SUB(\d+)$")
# A criterion with one of these checks, documents, integrates or announces the work of the others.
_FOLLOW_UP = re.compile(
    r"\b(?:tests?|tested|testing|verif(?:y|ied|ies|ication)|confirm(?:s|ed)?|document(?:s|ed|ation)?|docs|"
    r"notif(?:y|ied|ication)|announc\w*|integrat\w*|prioriti[sz]\w*|rank(?:ed|ing)?|reviews?|reviewed|"
    r"regressions?|benchmark\w*|recommendations?|summar(?:y|ies|ised|ized|ize|ise)|end-to-end|e2e)\b"
    r"|^\W*(?:all|every)\b", re.I)
_WORD = re.compile(r"[a-z][a-z0-9_]+")
# Words that say nothing about which part of the work a criterion is about.
_GENERIC = frozenset("""
a an the and or but nor of to in on at by for with from into onto via as is are was were be been being this
that these those it its their there here we you our your not no yes do does did so such than too very can
could should would will shall may might must also just only any all each every some about over under up
down out off per etc use used using new make made add added adds create created creates implement
implemented implements update updated updates work works working done complete completed support supported
supports provide provided provides ensure ensured include includes included have has had get gets able
exist exists existing when where which what how why who properly correctly fully proper correct clear
clearly successfully file files task tasks run runs system part parts piece step steps thing things then after
before once first next finally""".split())


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:5]


def _prose(text: str) -> str:
    """``text`` without the paths it names (``docs/guide.md`` says nothing about documenting)."""
    for path in sorted(taskmod.extract_paths(text), key=len, reverse=True):
        text = text.replace(path, " ")
    return text.lower()


def _subjects(text: str) -> frozenset[str]:
    """The stems of the words of substance in ``text`` (paths and follow-up words left out)."""
    return frozenset(_stem(w) for w in _WORD.findall(_FOLLOW_UP.sub(" ", _prose(text)))
                     if w not in _GENERIC and len(w) >= 3)


def _follow_up(text: str, title: str) -> bool:
    """Whether the unit checks, documents or announces the others' work.

    A word that the title holds is the task's theme, not a follow-up: in "Automated
    Documentation Generator", "Can generate API documentation" is the work itself.
    """
    theme = {_stem(w) for w in _WORD.findall(title.lower())}
    for found in _FOLLOW_UP.finditer(_prose(text)):
        word = found.group(0).strip(" \t*-_([").lower()
        if word in ("all", "every") or _stem(word) not in theme:
            return True
    return False


@dataclass(frozen=True)
class Unit:
    """One piece of work a sub-task could take: a criterion, a file, or a step."""

    index: int
    kind: str  # "criterion", "file" or "step"
    text: str
    line: int
    files: tuple[str, ...] = ()
    order_words: tuple[str, ...] = ()  # sequential keywords in the unit: it follows the unit before
    item: Optional[taskmod.ChecklistItem] = None
    body: str = ""  # a step's text
    follow_up: bool = False  # it checks, documents or announces the other units' work
    subjects: frozenset = frozenset()  # stems of its words of substance, the title's left out

    def markdown(self) -> str:
        """The unit as a Success Criteria line."""
        if self.item is not None:
            agent = f" [IP:{self.item.agent}]" if self.item.agent else ""
            return f"- [{'x' if self.item.checked else ' '}] {self.item.text}{agent}"
        return f"- [ ] {'Modify `' + self.text + '`' if self.kind == 'file' else self.text}"

    def to_dict(self) -> dict:
        return {"index": self.index, "kind": self.kind, "text": self.text, "line": self.line,
                "files": list(self.files), "order_words": list(self.order_words), "follow_up": self.follow_up,
                "subjects": sorted(self.subjects)}


@dataclass(frozen=True)
class Analysis:
    """Which units of a task could run apart, the groups that must not, and why."""

    task_id: str
    path: Optional[Path]
    can_parallelize: bool
    unit_kind: Optional[str]
    units: tuple[Unit, ...]
    groups: tuple[tuple[int, ...], ...]
    parallel_evidence: tuple[str, ...]
    sequential_evidence: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"task_id": self.task_id, "path": str(self.path) if self.path else None,
                "can_parallelize": self.can_parallelize, "unit_kind": self.unit_kind,
                "units": [u.to_dict() for u in self.units], "groups": [list(g) for g in self.groups],
                "parallel_evidence": list(self.parallel_evidence),
                "sequential_evidence": list(self.sequential_evidence), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class SubTask:
    """A planned or written sub-task."""

    task_id: str
    parent_id: str
    title: str
    assigned_to: str
    criteria: tuple[str, ...]  # Success Criteria lines
    files: tuple[str, ...]
    path: Optional[Path] = None
    status: str = taskmod.Status.PENDING.value
    units: tuple[int, ...] = ()

    @classmethod
    def from_task(cls, task: taskmod.Task) -> "SubTask":
        criteria = tuple(f"- [{'x' if i.checked else ' '}] {i.text}" + (f" [IP:{i.agent}]" if i.agent else "")
                         for i in task.success_criteria)
        return cls(task.task_id, task.parent or "", task.title, task.assigned_to or "unassigned", criteria,
                   task.files_to_modify, task.path, task.status_text or taskmod.Status.PENDING.value)

    def to_dict(self) -> dict:
        return {"task_id": self.task_id, "parent_id": self.parent_id, "title": self.title,
                "assigned_to": self.assigned_to, "criteria": list(self.criteria), "files": list(self.files),
                "path": str(self.path) if self.path else None, "status": self.status, "units": list(self.units)}


# ---------------------------------------------------------------------------- analysis


def _keywords(cfg: Config, name: str, given: Optional[Sequence[str]]) -> re.Pattern:
    words = list(given) if given is not None else cfg.get("distribution", name)
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValidationError(f"distribution.{name} must be a list of words", path=cfg.root / "swarm.yaml",
                              hint="e.g. [parallel, independent]")
    phrases = sorted({w.strip().lower() for w in words}, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.I)


def _hits(pattern: re.Pattern, text: str) -> list[str]:
    return [" ".join(m.group(0).lower().split()) for m in pattern.finditer(text)]


def _summary(words: list[str], where: str) -> list[str]:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return [f"'{w}' x{n} in {where}" if n > 1 else f"'{w}' in {where}" for w, n in counts.items()]


def _steps(task: taskmod.Task) -> list[tuple[str, int, str]]:
    for section in task.sections:
        if not _STEP_SECTION.search(section.name):
            continue
        steps: list[tuple[str, int, str]] = []
        fence = False
        for offset, line in enumerate(section.text.split("\n")):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            elif not fence and line.startswith("### "):
                steps.append((line[4:].strip(), section.line + offset, ""))
                continue
            if steps:
                name, number, body = steps[-1]
                steps[-1] = (name, number, body + line + "\n")
        if len(steps) >= 2:
            return steps
    return []


def _units(task: taskmod.Task, sequential: re.Pattern) -> tuple[Optional[str], list[Unit]]:
    known = task.files_to_modify
    by_name: dict[str, list[str]] = {}
    for path in known:
        by_name.setdefault(os.path.basename(path.rstrip("/")), []).append(path)

    def files_in(text: str) -> tuple[str, ...]:
        found = []
        for token in taskmod.extract_paths(text):
            same = [p for p in known if p == token or p.lstrip("~/") == token.lstrip("~/")]
            named = by_name.get(os.path.basename(token), [])
            found += same or (named if len(named) == 1 else [token])
        return tuple(dict.fromkeys(found))

    def order(text: str) -> tuple[str, ...]:
        words = _hits(sequential, text)
        return tuple(dict.fromkeys(words + (["numbered step"] if _NUMBERED.match(text) else [])))

    theme = _subjects(task.title)

    def judged(unit: Unit) -> Unit:
        return replace(unit, follow_up=_follow_up(unit.text, task.title), subjects=_subjects(unit.text) - theme)

    items = list(task.success_criteria)
    if not items and task.checklist:
        first = task.checklist[0].section
        items = [i for i in task.checklist if i.section == first]
    if items:
        return "criterion", [judged(Unit(n, "criterion", i.text, i.line, files_in(i.text), order(i.text), i))
                             for n, i in enumerate(items)]
    if known:
        line = next((s.line for s in task.sections if s.text and any(p in s.text for p in known)), 0)
        return "file", [Unit(n, "file", p, line, (p,)) for n, p in enumerate(known)]
    steps = _steps(task)
    if steps:
        return "step", [judged(Unit(n, "step", name, line, files_in(name + "\n" + body), order(name), body=body))
                        for n, (name, line, body) in enumerate(steps)]
    return None, []


def _group(units: Sequence[Unit]) -> tuple[list[tuple[int, ...]], list[str]]:
    """Units joined by the rules of the module docstring: (groups, why units were joined)."""
    parent = list(range(len(units)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        parent[max(find(a), find(b))] = min(find(a), find(b))

    why: list[str] = []
    owner: dict[str, int] = {}
    for unit in units:
        for path in unit.files:
            join(owner.setdefault(path, unit.index), unit.index)
        if unit.order_words and unit.index > 0:
            join(unit.index - 1, unit.index)
    said: dict[str, int] = {}
    for unit in units:
        for stem in sorted(unit.subjects):
            if stem in said:
                if find(said[stem]) != find(unit.index):
                    why.append(f"units {said[stem] + 1} and {unit.index + 1} share the subject '{stem}'")
                join(said[stem], unit.index)
            else:
                said[stem] = unit.index
    alone = {u.index for u in units if sum(find(v.index) == find(u.index) for v in units) == 1}
    for unit in units:
        if unit.follow_up and unit.index in alone and len(units) > 1:
            why.append(f"unit {unit.index + 1} checks, documents or announces the work of all the others")
            for other in units:
                join(unit.index, other.index)
    for unit in units:
        if not unit.files and not unit.follow_up and unit.index in alone and len(units) > 1:
            if sum(find(u.index) == find(unit.index) for u in units) == 1:
                why.append(f"unit {unit.index + 1} names no file and no subject of its own: it stays with "
                           f"unit {unit.index if unit.index > 0 else 2}")
                join(unit.index, unit.index - 1 if unit.index > 0 else 1)
    groups: dict[int, list[int]] = {}
    for unit in units:
        groups.setdefault(find(unit.index), []).append(unit.index)
    return [tuple(g) for g in sorted(groups.values())], why


def _load(task: TaskRef, root: Optional[PathLike]) -> tuple[taskmod.Task, Config]:
    if isinstance(task, taskmod.Task):
        return task, task_store.task_config(task.path, root=root) if task.path else load_config(root=root)
    path = Path(task)
    if not path.exists() and ID_PATTERN.fullmatch(str(task)) and not str(task).endswith(".md"):
        found = task_store.find_task(str(task), root=root)
        return found, task_store.task_config(found.path, root=root)
    return task_store.load_task(path, use_cache=False), task_store.task_config(path, root=root)


def _analyze(task: taskmod.Task, cfg: Config, parallel_keywords: Optional[Sequence[str]] = None,
             sequential_keywords: Optional[Sequence[str]] = None) -> Analysis:
    parallel = _keywords(cfg, "parallel_keywords", parallel_keywords)
    sequential = _keywords(cfg, "sequential_keywords", sequential_keywords)
    kind, units = _units(task, sequential)
    scope = f"{task.title}\n{task.objective}"
    par = _summary(_hits(parallel, scope), "title/objective")
    seq_words = _hits(sequential, scope)
    if len(_NUMBERED_LINE.findall(task.objective)) >= 2:
        seq_words.append("numbered steps")
    seq = _summary(seq_words, "title/objective")
    for unit in units[1:]:
        if unit.order_words:
            seq.append(f"unit {unit.index + 1} follows the one before ({', '.join(unit.order_words)})")
    shared = sorted({p for u in units for p in u.files if sum(p in v.files for v in units) > 1})
    if shared:
        seq.append("units share files: " + ", ".join(shared))
    groups, joined = _group(units)
    seq += joined
    reasons: list[str] = []
    if task.status is not taskmod.Status.PENDING:
        reasons.append(f"status is {task.status_text!r}: only pending tasks are split")
    if task.parent:
        reasons.append(f"is a sub-task of {task.parent}: sub-tasks are not split again")
    if task.sub_tasks:
        reasons.append("already split into " + ", ".join(task.sub_tasks))
    if len(units) < 2:
        reasons.append(f"only {len(units)} unit(s) of work (success criteria, checklist, files or steps)")
    elif kind == "file":
        reasons.append("no criteria: files alone do not say what each part would deliver")
        groups = [tuple(range(len(units)))]
    elif len(seq_words) > len(_hits(parallel, scope)):
        reasons.append(f"title/objective read as sequential ({', '.join(dict.fromkeys(seq_words))}) "
                       "more than parallel: kept as one task")
        groups = [tuple(range(len(units)))]
    elif len(groups) < 2:
        reasons.append(f"all {len(units)} units are linked by shared files, subjects, order or follow-ups: "
                       "kept together")
    elif any(not any(units[i].files for i in group) for group in groups):
        reasons.append("some units name no file: no evidence they can run apart from the others, kept together")
        groups = [tuple(range(len(units)))]
    can = not reasons
    if can:
        reasons.append(f"{len(units)} {kind} units in {len(groups)} independent groups")
    return Analysis(task.task_id, task.path, can, kind, tuple(units), tuple(groups), tuple(par), tuple(seq),
                    tuple(reasons))


def analyze_task_structure(task_file: TaskRef, *, root: Optional[PathLike] = None,
                           parallel_keywords: Optional[Sequence[str]] = None,
                           sequential_keywords: Optional[Sequence[str]] = None) -> Analysis:
    """Units of the task that could run apart, how they group, the keyword evidence and the reasons."""
    task, cfg = _load(task_file, root)
    return _analyze(task, cfg, parallel_keywords, sequential_keywords)


def can_parallelize(task_file: TaskRef, *, root: Optional[PathLike] = None) -> bool:
    """Whether the task would be split (``analyze_task_structure(...).reasons`` says why not)."""
    return analyze_task_structure(task_file, root=root).can_parallelize


# ---------------------------------------------------------------------------- planning


def _pack(groups: Sequence[tuple[int, ...]], bins: int) -> list[list[int]]:
    """Groups in order into ``bins`` consecutive bins of about equal unit counts."""
    packed: list[list[int]] = []
    current: list[int] = []
    units_left = sum(len(g) for g in groups)
    bins_left = bins
    for position, group in enumerate(groups):
        current.extend(group)
        groups_after = len(groups) - position - 1
        if bins_left > 1 and (len(current) >= units_left / bins_left or groups_after == bins_left - 1):
            packed.append(current)
            units_left -= len(current)
            bins_left -= 1
            current = []
    if current:
        packed.append(current)
    return packed


def plan_subtasks(analysis: Analysis, task: taskmod.Task, *, available_agents: Optional[Sequence[str]] = None,
                  max_subtasks: int = 3) -> list[SubTask]:
    """The sub-tasks a split would write ([] when the analysis says not to split)."""
    agents = [validate_id(a, "agent id") for a in (available_agents or [])]
    if not analysis.can_parallelize or max_subtasks < 2:
        return []
    packed = _pack(analysis.groups, min(max_subtasks, len(analysis.groups)))
    planned = []
    for number, members in enumerate(packed, 1):
        units = [analysis.units[i] for i in sorted(members)]
        # Named by none of its units: it may need any of the parent's files, so it reserves them all.
        files = tuple(dict.fromkeys(p for u in units for p in u.files)) or tuple(task.files_to_modify)
        planned.append(SubTask(
            task_id=validate_id(f"{task.task_id}-SUB{number}", "sub-task id"), parent_id=task.task_id,
            title=f"{task.title} (part {number} of {len(packed)})",
            assigned_to=agents[(number - 1) % len(agents)] if agents else "unassigned",
            criteria=tuple(u.markdown() for u in units), files=files, units=tuple(u.index for u in units)))
    return planned


def _render(sub: SubTask, part: str, task: taskmod.Task, analysis: Analysis) -> dict[str, Any]:
    steps = "\n\n".join(f"### {analysis.units[i].text}\n\n{analysis.units[i].body.strip()}".strip()
                        for i in sub.units if analysis.units[i].kind == "step")
    owned = {p for u in analysis.units for p in u.files}
    shared = [p for p in task.files_to_modify if p not in owned]
    sections = {"Context": f"Split from {task.task_id} ({task.path.name if task.path else task.task_id}). "
                           "Read the parent task for the full context and approach."}
    if steps:
        sections["Approach"] = steps
    if shared:
        sections["Related Files"] = ("Named by the parent but by none of its units; coordinate through "
                                     "file reservations:\n\n" + "\n".join(f"- `{p}`" for p in shared))
    objective = (f"Part {part} of {task.task_id}: deliver the "
                 f"success criteria below.\n\n{task.objective}").strip()
    fields = {"Parent Task": task.task_id, "Assigned To": sub.assigned_to}
    return dict(type=task.type, priority=task.priority_text or taskmod.Priority.MEDIUM,
                status=taskmod.Status.PENDING, depends_on=task.depends_on, fields=fields, objective=objective,
                criteria=sub.criteria, files=sub.files, sections=sections)


def existing_subtasks(task: taskmod.Task, *, root: Optional[PathLike] = None) -> list[SubTask]:
    """Sub-tasks of ``task`` on disk (active or completed), by their Parent Task field or the parent's list."""
    cfg = task_store.task_config(task.path, root=root) if task.path else load_config(root=root)
    errors: list = []
    every = task_store.indexed_listing(cfg, errors)  # a split in a new process parses only what changed
    for error in errors:  # a sub-task we cannot read must not be split again over the top of
        if error.path and os.path.basename(error.path).startswith(f"{task.task_id}-SUB"):
            raise error.with_traceback(None)
    found = [t for t in every if t.parent == task.task_id or t.task_id in task.sub_tasks]
    found.sort(key=lambda t: (int(_SUB_ID.search(t.task_id).group(1)) if _SUB_ID.search(t.task_id) else 1 << 30,
                              t.task_id))
    return [SubTask.from_task(t) for t in found]


def distribute_task(task_file: TaskRef, available_agents: Optional[Sequence[str]] = None,
                    max_subtasks: Optional[int] = None, *, root: Optional[PathLike] = None) -> list[SubTask]:
    """Split the task into ``<PARENT>-SUB<n>.md`` files in tasks/active and list them on the parent.

    Returns the sub-tasks; the existing ones if the task was split before; [] when it is not
    split (``analyze_task_structure`` says why). Raises ParseError/NotFoundError for a bad parent.
    """
    task, cfg = _load(task_file, root)
    limit = int(max_subtasks if max_subtasks is not None else cfg.get("distribution", "max_subtasks"))
    with task_store.edit_task(task.path, root=cfg.root) as document:
        parent = document.task  # re-read under the lock: another planner may have split it meanwhile
        existing = existing_subtasks(parent, root=cfg.root)
        if existing or parent.sub_tasks:
            if existing and not parent.sub_tasks:
                document.set_field("Sub-Tasks", ", ".join(s.task_id for s in existing))
            return existing
        listing = task_store.indexed_listing(cfg, errors=[])
        twin = next((t.path for t in listing if t.task_id == parent.task_id and t.path != task.path), None)
        if twin is not None:  # which file's criteria would the sub-tasks hold? Neither is split.
            raise ValidationError(f"task id {parent.task_id} is used by two files: {task.path} and {twin}",
                                  path=twin, task_id=parent.task_id,
                                  hint="rename one of the tasks or delete the stale copy")
        analysis = _analyze(parent, cfg)
        planned = plan_subtasks(analysis, parent, available_agents=available_agents, max_subtasks=limit)
        if not planned:
            return []
        used = {t.task_id: t.path for t in listing}
        for sub in planned:  # check every target first: a half-written split is worse than none
            target = cfg.tasks_active / f"{sub.task_id}.md"
            if target.exists() or sub.task_id in used:
                raise ValidationError(f"sub-task {sub.task_id} already exists", path=used.get(sub.task_id, target),
                                      task_id=sub.task_id, hint="remove it or add it to the parent's Sub-Tasks")
        written = []
        for number, sub in enumerate(planned, 1):
            path = task_store.new_task_file(sub.task_id, sub.title, root=cfg.root, filename=f"{sub.task_id}.md",
                                         **_render(sub, f"{number} of {len(planned)}", parent, analysis))
            written.append(replace(sub, path=path))
        document.set_field("Sub-Tasks", ", ".join(s.task_id for s in written))
    return written


# ---------------------------------------------------------------------------- CLI


def _print_human(analysis: Analysis, subs: list[SubTask], split: bool, existed: bool) -> None:
    print(f"{analysis.task_id}: {'can' if analysis.can_parallelize else 'cannot'} be split")
    for reason in analysis.reasons:
        print(f"  - {reason}")
    if analysis.parallel_evidence:
        print("  parallel evidence: " + "; ".join(analysis.parallel_evidence))
    if analysis.sequential_evidence:
        print("  sequential evidence: " + "; ".join(analysis.sequential_evidence))
    if analysis.units:
        print(f"units ({analysis.unit_kind}):")
        for unit in analysis.units:
            extra = f"  [files: {', '.join(unit.files)}]" if unit.files else ""
            print(f"  {unit.index + 1:>3}. {unit.text[:90]}{extra}")
    if subs:
        label = "existing sub-tasks" if existed else ("written" if split else "planned sub-tasks")
        print(f"{label}:")
        for sub in subs:
            where = f"  {sub.path}" if sub.path else ""
            print(f"  {sub.task_id}  assigned to {sub.assigned_to}  {len(sub.criteria)} item(s){where}")
            for line in sub.criteria:
                print(f"      {line[:100]}")


def _progress(done: int, total: int) -> None:
    """``split N/M tasks`` on stderr: redrawn in place on a terminal, every 100 tasks otherwise."""
    if sys.stderr.isatty():
        print(f"\r  {done}/{total} tasks", end="" if done < total else "\n", file=sys.stderr, flush=True)
    elif done % 100 == 0 or done == total:
        print(f"  {done}/{total} tasks", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .cli import at_least, fail, parser, print_json, run

    # One task: its workspace is checked with the file (cli.task_workspace); --all needs one.
    p = parser("task_distribution.py", "Analyse a task and split it into parallel sub-tasks.",
               needs_workspace=lambda args: bool(args.all))
    p.add_argument("task", metavar="TASK.md", nargs="?", help="task file (or a task id)")
    p.add_argument("--all", action="store_true",
                   help="every pending top-level task in tasks/active instead of one (progress on stderr)")
    p.add_argument("--split", action="store_true", help="write the sub-task files (default: only show the plan)")
    p.add_argument("--max-subtasks", type=at_least(2), metavar="N", help="most sub-tasks to create (default: swarm.yaml)")
    p.add_argument("--agents", metavar="A,B,C", help="agents to assign round-robin")
    args = p.parse_args(argv)
    if (args.task is None) == (not args.all):
        return fail("give one TASK.md or --all")

    def one(task: taskmod.Task, cfg: Config, agents: Optional[list[str]], limit: int) -> tuple:
        analysis = _analyze(task, cfg)
        existing = existing_subtasks(task, root=cfg.root)
        if args.split:
            subs = distribute_task(task.path, agents, limit, root=cfg.root)
        else:
            subs = existing or plan_subtasks(analysis, task, available_agents=agents, max_subtasks=limit)
        return analysis, subs, bool(existing)

    def body() -> int:
        agents = [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else None
        if args.all:
            cfg = load_config(root=args.root)
            todo = [t for t in task_store.list_tasks(root=cfg.root, errors=[])
                    if t.status is taskmod.Status.PENDING and not t.parent and not t.sub_tasks]
        else:
            task, cfg = _load(args.task, task_store.task_workspace(args.task, root=args.root))
            todo = [task]
        limit = args.max_subtasks if args.max_subtasks is not None else int(cfg.get("distribution", "max_subtasks"))
        report = []
        for number, task in enumerate(todo, 1):
            report.append(one(task, cfg, agents, limit))
            if args.all:
                _progress(number, len(todo))
        if args.json:
            docs = [{"analysis": a.to_dict(), "split": bool(args.split), "existing": e,
                     "subtasks": [s.to_dict() for s in subs]} for a, subs, e in report]
            print_json(docs if args.all else docs[0])
        elif args.all:
            for analysis, subs, existed in report:
                verb = "has" if existed else ("split into" if args.split else "would split into")
                print(f"{analysis.task_id}: " + (f"{verb} {len(subs)} sub-tasks" if subs else "not split"))
            print(f"{sum(1 for _, subs, _ in report if subs)} of {len(report)} pending tasks "
                  f"{'are split' if args.split else 'can be split'}")
        else:
            _print_human(report[0][0], report[0][1], args.split, report[0][2])
        return 0

    return run(body)
