"""Workspace checks: every shared file, task, lease, reservation, worktree and log, and safe repairs.

``check(root)`` reads every file of a workspace and returns what is wrong as Findings, each
printed as one line ``SEVERITY FILE[:LINE]: problem (what to do)``. ERROR: a file cannot be
used as it is (it does not parse, two tasks share an id). WARNING: the files disagree with
each other or a crash left something behind (a stale lease, a torn log line, a temp file of
a dead process). INFO: worth knowing, nothing to do now.

``diagnose(root, fix=True)`` also repairs what is safe to repair, with the owning module's
own function wherever there is one, and then checks again: a finding counts as fixed only
when the second look no longer finds it. Safe means: reap stale leases (claims.reap_expired,
which requeues their tasks), cut a torn last line off a log (the cut bytes are kept in
``.swarm/doctor/``), remove temp files of dead processes, move completed tasks out of
tasks/active (task_store.move_to_completed), retire orphan worktree records (worktrees.retire) and
reap stale reservations. A file that does not parse is only ever reported, never rewritten.

    python lib/doctor.py [--root DIR] [--fix] [--json]

Exit codes: 0 no errors or warnings (left), 1 some were found (and not fixed), 2 bad usage.
"""

from __future__ import annotations

from . import task_store
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, TextIO, Union

from .clock import format_ts, parse_ts, utc_now

from .config import Config, load_config, resolve_root
from .errors import HAND_FIX, NotFoundError, SwarmError
from .yaml_log import cut_torn_tail, torn_tail

__all__ = ["Severity", "Finding", "Report", "check", "repair", "diagnose", "main"]

PathLike = Union[str, "os.PathLike[str]"]

# fileio.atomic_write's temp file: .<name>.tmp-<pid>-<hex>
_TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>[1-9]\d{0,8})-(?P<nonce>[0-9a-f]+)")  # pids fit os.kill
_PROGRESS_EVERY = 1000  # files between progress lines when stderr is not a terminal
_BY_HAND = HAND_FIX


class Severity(str, Enum):
    ERROR = "ERROR"  # a file cannot be used as it is
    WARNING = "WARNING"  # files disagree, or a crash left something behind
    INFO = "INFO"  # worth knowing; nothing to do


@dataclass(frozen=True)
class Finding:
    """One problem in one file; ``action`` names the repair ``--fix`` makes (None: by hand only)."""

    severity: Severity
    code: str  # what kind of problem: parse, duplicate-id, stale-lease, torn-log, temp-file, ...
    path: Optional[Path]
    problem: str
    fix: str  # what to do about it
    line: Optional[int] = None
    action: Optional[str] = None
    subject: Optional[str] = None  # the task, reservation or worktree it is about

    @property
    def key(self) -> tuple:
        """Identity across two checks: the same problem of the same thing in the same file."""
        return self.code, str(self.path), self.subject if self.subject is not None else self.problem

    def where(self, *, root: Optional[Path] = None) -> str:
        """``FILE[:LINE]``, the file relative to ``root`` when it is inside it."""
        shown = _shown(self.path, root)
        return shown if self.line is None else f"{shown}:{self.line}"

    def render(self, *, root: Optional[Path] = None) -> str:
        return f"{self.severity.value} {self.where(root=root)}: {self.problem} ({self.fix})"

    def to_dict(self, *, root: Optional[Path] = None) -> dict[str, Any]:
        return {"severity": self.severity.value, "code": self.code, "file": _shown(self.path, root),
                "line": self.line, "problem": self.problem, "fix": self.fix, "action": self.action,
                "subject": self.subject}


def _shown(path: Optional[Path], root: Optional[Path]) -> str:
    if path is None:
        return "-"
    if root is not None and path.is_absolute() and path.is_relative_to(root):
        return str(path.relative_to(root))
    return str(path)


@dataclass
class Report:
    """What ``diagnose`` found, what it fixed and which fixes failed."""

    root: Path
    files: int
    findings: list[Finding]  # what is wrong now (after the fixes, when fixing)
    fixed: list[tuple[Finding, str]]  # (finding, what was done)
    failed: list[tuple[Finding, str]]  # (finding, why its fix failed)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is not Severity.INFO]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counts = {s: sum(f.severity is s for f in self.findings) for s in Severity}
        plural = lambda n, word: f"{n} {word}{'s' * (n != 1)}"  # noqa: E731
        text = f"checked {plural(self.files, 'file')}: " + (
            "workspace is clean" if not self.findings else ", ".join(
                [plural(counts[Severity.ERROR], "error"), plural(counts[Severity.WARNING], "warning"),
                 plural(counts[Severity.INFO], "note")]))
        if self.fixed or self.failed:
            text += f"; fixed {len(self.fixed)}" + (f", {len(self.failed)} fixes failed" if self.failed else "")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "files_checked": self.files, "ok": self.ok, "summary": self.summary(),
                "findings": [f.to_dict(root=self.root) for f in self.findings],
                "fixed": [dict(f.to_dict(root=self.root), done=done) for f, done in self.fixed],
                "fix_failed": [dict(f.to_dict(root=self.root), error=why) for f, why in self.failed]}


class _Progress:
    """``checked N/M files`` on stderr: redrawn in place on a terminal, else every 1000 files."""

    def __init__(self, total: int, stream: Optional[TextIO]) -> None:
        self.total, self.done, self.stream, self.shown = total, 0, stream, 0.0
        self.tty = stream is not None and stream.isatty()

    def tick(self) -> None:
        self.done += 1
        moment = time.monotonic()
        if self.tty and (moment - self.shown >= 0.1 or self.done == self.total):
            self.shown = moment
            self._say(f"\rchecked {self.done}/{self.total} files")
        elif self.stream is not None and not self.tty and self.done % _PROGRESS_EVERY == 0:
            self._say(f"checked {self.done}/{self.total} files\n")

    def close(self) -> None:
        if self.tty and self.shown:
            self._say("\r\x1b[K")

    def _say(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# ---------------------------------------------------------------------------- checks


class _Checker:
    """One pass over a workspace; findings accumulate in ``found``."""

    def __init__(self, cfg: Config, now: datetime) -> None:
        self.cfg, self.now = cfg, now
        self.found: list[Finding] = []
        self.tasks: list[Any] = []
        self.leases: dict[str, Any] = {}  # task id -> Lease, for the lease records that parse
        self.unreadable_leases: set[str] = set()

    def add(self, severity: Severity, code: str, path: Optional[Path], problem: str, fix: str, **more: Any) -> None:
        self.found.append(Finding(severity, code, path, problem, fix, **more))

    def failed(self, exc: SwarmError, path: Path, code: str = "parse") -> None:
        where = Path(exc.path) if exc.path and exc.path != "<text>" else path
        self.add(Severity.ERROR, code, where, exc.reason, exc.hint or _BY_HAND, line=exc.line)

    def guarded(self, path: Path, read: Callable[[], Any]) -> bool:
        """Run ``read``; a SwarmError becomes an ERROR finding. True when it read cleanly."""
        try:
            read()
            return True
        except SwarmError as exc:
            self.failed(exc, path)
        except OSError as exc:
            self.add(Severity.ERROR, "unreadable", path, f"cannot be read: {exc.strerror or exc}",
                     "check its permissions")
        return False

    # -- shared files

    def shared(self, path: Path, read: Callable[[], Any], log: bool = False) -> None:
        """A shared file: it must parse and have the right shape; a log must not end in a torn line."""
        parsed = self.guarded(path, read)
        found = torn_tail(path) if log else None
        if found is None:
            return
        _, tail, line = found
        fix = f"--fix cuts its {len(tail)} bytes off and keeps them in .swarm/doctor/" if parsed else \
            "fix the parse error first; then --fix can cut it"
        self.add(Severity.WARNING, "torn-log", path, "last line is torn (no newline, does not parse): "
                 f"{tail.decode('utf-8', errors='replace')[:60]!r}", fix, line=line,
                 action="cut-tail" if parsed else None)

    def store(self, store: Any) -> int:
        """A store checks itself (doctor does not know its layout); returns how many parts it looked at."""
        problems, parts = store.check()
        for p in problems:
            self.add(Severity(p.severity), p.code, Path(p.where), p.problem, p.fix, line=p.line, action=p.action)
        return parts

    def reservations(self, path: Path) -> None:
        from .reservations import list_reservations

        table: list = []
        if self.guarded(path, lambda: table.extend(list_reservations(root=self.cfg.root, now=self.now, include_expired=True))):
            for r in table:
                why = r.free_reason(self.now)
                if why:
                    self.add(Severity.WARNING, "stale-reservation", path,
                             f"reservation {r.id} of {r.agent_id} ({', '.join(r.patterns)[:80]}) is stale: {why}",
                             "--fix reaps it", action="reap-reservations", subject=r.id)

    # -- tasks and leases

    def task_file(self, path: Path) -> None:
        from . import tasks as taskmod

        try:
            task = task_store.load_task(path)
        except SwarmError as exc:
            self.failed(exc, path)
            return
        self.tasks.append(task)
        for problem in taskmod.validate_task(task):
            self.add(Severity.WARNING, "task-field", path, problem.reason, problem.hint or "edit the field",
                     line=problem.line, subject=f"{task.task_id}: {problem.reason}")

    def lease_table(self) -> int:
        """Every lease record, through the lease table; returns how many were looked at."""
        from .stores import lease_table

        table = lease_table(self.cfg)
        unreadable: list[SwarmError] = []
        try:
            listed = table.list(errors=unreadable)
        except SwarmError as exc:  # the table as a whole cannot be read (lease files it cannot migrate)
            self.failed(exc, Path(exc.path or self.cfg.runtime_dir), "corrupt-lease")
            self.unreadable_leases.update(t.task_id for t in self.tasks)
            return 1
        for lease in listed:
            self.leases[lease.task_id] = lease
        for exc in unreadable:
            path = Path(exc.path) if exc.path else Path(table.where(exc.task_id or "?"))
            self.failed(exc, path, "corrupt-lease")
            self.unreadable_leases.add(exc.task_id or path.stem)
        return len(self.leases) + len(unreadable)

    def cross_check(self) -> None:
        """What no single file shows: duplicate ids, parents, dependencies, leases against tasks."""
        from . import tasks as taskmod
        from .claims import LeaseState

        active_dir = self.cfg.tasks_active
        by_id: dict[str, list] = {}
        for task in self.tasks:
            by_id.setdefault(task.task_id, []).append(task)
        for task_id, copies in by_id.items():
            first = copies[0]
            for other in copies[1:]:
                self.add(Severity.ERROR, "duplicate-id", other.path,
                         f"task id {task_id} is also used by {_shown(first.path, self.cfg.root)}",
                         "rename one of the tasks or delete the stale copy", line=other.title_line, subject=task_id)
        from . import task_graph

        runtime_owned = (taskmod.Status.CLAIMED, taskmod.Status.IN_PROGRESS)
        links = task_graph.family(self.tasks)
        for task in self.tasks:
            status_line = _field_line(task, "status")
            lease = self.leases.get(task.task_id)
            in_active = task.path.is_relative_to(active_dir)
            if task.status is taskmod.Status.COMPLETED and in_active and task.path.parent != active_dir:
                self.add(Severity.INFO, "completed-in-active", task.path, f"task {task.task_id} is completed and "
                         "kept in its folder under the active directory", "nothing to do: it counts as finished",
                         line=status_line, subject=task.task_id)
            elif task.status is taskmod.Status.COMPLETED and in_active:
                single = len(by_id[task.task_id]) == 1
                self.add(Severity.WARNING, "completed-in-active", task.path, f"task {task.task_id} is completed "
                         "but still in the active directory",
                         "--fix moves it to the completed directory" if single else "resolve the duplicate id first",
                         line=status_line, action="move-completed" if single else None, subject=task.task_id)
            if task.status in runtime_owned and task.task_id not in self.unreadable_leases:
                shown = task.status_text
                if lease is None and not in_active:  # finished work: never tell anyone to reopen it
                    self.add(Severity.INFO, "no-lease", task.path, f"task {task.task_id} is in the completed "
                             f"directory but shows {shown!r}", "nothing to do: the folder says it is finished",
                             line=status_line, subject=task.task_id)
                elif lease is None and links.children.get(task.task_id):
                    pass  # an epic or split parent: its status is the operator's; it completes with its children
                elif lease is None:
                    self.add(Severity.WARNING, "no-lease", task.path,
                             f"task {task.task_id} shows {shown!r} but was never leased",
                             "set **Status:** pending if nobody works on it", line=status_line,
                             subject=task.task_id)
                elif lease.state is not LeaseState.HELD:
                    self.add(Severity.WARNING, "ended-lease", task.path,
                             f"task {task.task_id} shows {shown!r} but its lease ended ({lease.state.value})",
                             "--fix writes the lease's status back to the task" if lease.mirror else
                             "set the status by hand", line=status_line,
                             action="reap-leases" if lease.mirror else None, subject=task.task_id)
            if not in_active:
                continue  # finished work keeps the links it had; only open tasks need them to resolve
            if task.parent and task.parent not in by_id:
                self.add(Severity.WARNING, "missing-parent", task.path,
                         f"sub-task {task.task_id} names parent {task.parent}, which does not exist",
                         "fix the Parent Task field or restore the parent",
                         line=_field_line(task, "parent task", "parent"), subject=task.parent)
            for dep in (d for d in task.depends_on if d not in by_id):
                self.add(Severity.WARNING, "unknown-dependency", task.path,
                         f"task {task.task_id} depends on {dep}, which does not exist",
                         "fix the Depends On field; until then the task is never ready",
                         line=_field_line(task, "depends on", "dependencies"), subject=dep)
        open_tasks = [t for t in self.tasks if not task_store.is_finished(t, self.cfg)]
        first = {t.task_id: t for t in reversed(open_tasks)}
        for cycle in task_graph.find_cycles(open_tasks):
            task = first[cycle[0]]
            self.add(Severity.WARNING, "dependency-cycle", task.path,
                     f"dependency cycle {' -> '.join(cycle)}: none of these tasks ever becomes ready",
                     "remove one Depends On entry of the cycle", subject=" -> ".join(cycle),
                     line=_field_line(task, "depends on", "dependencies"))
        from .stores import lease_table

        table = lease_table(self.cfg)
        for task_id, lease in self.leases.items():
            why = lease.free_reason(self.now) if lease.state is LeaseState.HELD else None
            if why is None:
                continue
            path = Path(table.where(task_id))
            task = by_id.get(task_id, [None])[0]
            problem = f"lease of {task_id} held by {lease.agent_id} (token {lease.token}) is stale: {why}"
            if task is not None and task.status in runtime_owned:
                self.add(Severity.WARNING, "stale-lease", path, problem, "--fix reaps it and requeues the task",
                         action="reap-leases", subject=task_id)
            else:
                state = f"is {task.status_text or 'pending'}" if task is not None else "does not exist"
                self.add(Severity.INFO, "stale-lease", path, f"{problem}; the task {state}",
                         "harmless: the next claim takes it over", subject=task_id)

    # -- worktrees and temp files

    def worktree_record(self, path: Path) -> None:
        from .worktrees import base_ref, get_worktree

        try:
            wt = get_worktree(path.stem, root=self.cfg.root)
        except SwarmError as exc:
            self.failed(exc, path)
            return
        branch = _branch_state(self.cfg.root, wt.branch)
        fix, action = "--fix removes the record (and the directory, if nothing is uncommitted)", "retire-worktree"
        if branch is False:
            where = "directory is gone" if not wt.exists else "directory is still there"
            self.add(Severity.WARNING, "orphan-worktree", path,
                     f"worktree {wt.name} of task {wt.task_id}: branch {wt.branch} is gone, {where}", fix,
                     action=action, subject=wt.name)
        elif not wt.exists:
            ahead = _ahead(self.cfg.root, base_ref(wt.base, root=self.cfg.root), wt.branch) if branch else None
            if ahead:
                self.add(Severity.INFO, "orphan-worktree", path,
                         f"worktree {wt.name} was removed; branch {wt.branch} keeps {ahead} unmerged commit(s)",
                         f"merge the branch into {wt.base} or delete it", subject=wt.name)
            else:
                self.add(Severity.WARNING, "orphan-worktree", path,
                         f"worktree {wt.name} of task {wt.task_id}: its directory is gone", fix,
                         action=action if ahead == 0 else None, subject=wt.name)

    def unregistered_worktrees(self, directory: Path) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        names = {e.name for e in entries}
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and f"{entry.name}.yaml" not in names:
                self.add(Severity.WARNING, "unregistered-worktree", Path(entry.path),
                         "directory in the worktrees directory has no record",
                         f"check it holds nothing you need, then `git worktree remove --force {entry.path}`",
                         subject=entry.name)

    def temp_file(self, path: Path) -> None:
        from .liveness import pid_alive

        pid = int(_TEMP.fullmatch(path.name).group("pid"))
        if not pid_alive(pid):
            self.add(Severity.WARNING, "temp-file", path,
                     f"leftover temp file of a write by process {pid}, which is dead",
                     "--fix removes it", action="remove-temp", subject=str(pid))


def _field_line(task: Any, *names: str) -> Optional[int]:
    return next((n for k, n in task.field_lines.items() if k.lower() in names), None)


def _git(root: Path, *args: str) -> Optional[Any]:
    """The finished ``git`` process, or None when git is not installed."""
    from .worktrees import git

    try:
        return git(root, *args, check=False)
    except SwarmError:
        return None


def _branch_state(root: Path, branch: str) -> Optional[bool]:
    """Whether ``branch`` exists in the repository at ``root`` (None: git cannot tell)."""
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    return None if proc is None or proc.returncode not in (0, 1) else proc.returncode == 0


def _ahead(root: Path, base: str, branch: str) -> Optional[int]:
    """Commits on ``branch`` that the ref ``base`` lacks (None: git cannot tell)."""
    proc = _git(root, "rev-list", "--count", f"{base}..refs/heads/{branch}")
    return int(proc.stdout.strip()) if proc is not None and proc.returncode == 0 else None


def _listing(directory: Path, keep: Callable[[str], bool]) -> list[Path]:
    try:
        return sorted(directory / name for name in os.listdir(directory) if keep(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _temp_files(cfg: Config) -> list[Path]:
    """Temp files of atomic writes in every directory the runtime writes to (checkouts excluded)."""
    is_temp = lambda name: _TEMP.fullmatch(name) is not None  # noqa: E731
    flat = {cfg.root, cfg.tasks_active, cfg.tasks_completed, cfg.heartbeat_file.parent, cfg.events_file.parent,
            cfg.state_file.parent, cfg.chat_file.parent}
    found = {p for directory in flat for p in _listing(directory, is_temp)}
    runtime = cfg.runtime_dir
    skip = {runtime / "worktrees", runtime / "locks"}
    for directory, subdirs, files in os.walk(runtime):
        here = Path(directory)
        # worktrees/ holds records (checked) and whole checkouts (not ours); locks are never replaced
        subdirs[:] = [d for d in subdirs if here / d not in skip]
        found.update(here / name for name in files if is_temp(name))
    found.update(_listing(runtime / "worktrees", is_temp))
    return sorted(found)


def _moment(cfg: Config, now: Any) -> datetime:
    """The moment leases are judged by: ``now`` when given, else the lease table's clock (the Redis
    server's on Redis: a host whose clock runs ahead reaped other hosts' live leases), or this
    host's when the table cannot be asked (its leases cannot be read or reaped then either)."""
    if now is not None:
        return parse_ts(now)
    from .stores import lease_table

    try:
        return lease_table(cfg).now()
    except SwarmError:
        return utc_now()


def check(*, root: Optional[PathLike] = None, now: Any = None,
          progress: Optional[TextIO] = None) -> tuple[list[Finding], int]:
    """Check every file of the workspace at ``root``: (findings, number of files checked).

    ``progress``: a stream for ``checked N/M files`` lines (see _Progress). Reads only.
    """
    try:
        cfg = load_config(root=root)
    except SwarmError as exc:  # every path may be wrong: nothing else can be checked
        where = Path(exc.path) if exc.path else resolve_root(root=root) / "swarm.yaml"
        return [Finding(Severity.ERROR, "config", where, exc.reason,
                        f"{exc.hint or _BY_HAND}; nothing else was checked", line=exc.line)], 1
    from .chat import read_messages
    from .merge_queue import read_queue
    from .state_sync import get_all_states
    from .stores import agent_registry, event_log

    checker = _Checker(cfg, _moment(cfg, now))
    runtime, top = cfg.runtime_dir, cfg.root
    stores = [agent_registry(cfg), event_log(cfg)]
    shared: list[tuple[Path, Callable[[Path], None]]] = [
        (cfg.state_file, lambda p: checker.shared(p, lambda: get_all_states(root=top))),
        (cfg.chat_file, lambda p: checker.shared(p, lambda: read_messages(root=top), log=True)),
        (runtime / "merge-queue.yaml", lambda p: checker.shared(p, lambda: read_queue(root=top), log=True)),
        (runtime / "reservations.yaml", checker.reservations)]
    jobs = [(path, job) for path, job in shared if path.exists()]
    for directory in (cfg.tasks_active, cfg.tasks_completed):  # at any depth, documents left out
        jobs += [(path, checker.task_file) for path in task_store.task_files(directory)]
    yaml_file = lambda name: name.endswith(".yaml") and not name.startswith(".")  # noqa: E731
    jobs += [(path, checker.worktree_record) for path in _listing(runtime / "worktrees", yaml_file)]
    jobs += [(path, checker.temp_file) for path in _temp_files(cfg)]
    meter = _Progress(len(stores) + len(jobs), progress)
    parts = 0
    try:
        for store in stores:
            parts += checker.store(store)
            meter.tick()
        for path, job in jobs:
            job(path)
            meter.tick()
    finally:
        meter.close()
    leases = checker.lease_table()
    checker.cross_check()
    checker.unregistered_worktrees(runtime / "worktrees")
    return checker.found, parts + len(jobs) + leases


# ---------------------------------------------------------------------------- repairs


def _cut_tail(cfg: Config, path: Path, now: datetime, events: Any) -> str:
    """Cut a torn last line off ``path`` under its lock; the cut bytes go to .swarm/doctor/ first.

    A part of the event log is cut by the log itself (``events``: the workspace's EventLog).
    """
    if events.owns(str(path)):
        return events.repair("cut-tail", str(path), now=now)
    stamp = format_ts(now).replace(":", "").replace("-", "")
    keep = cfg.runtime_dir / "doctor" / f"{path.name}.{stamp}.torn"
    cut = cut_torn_tail(path, keep, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout, hint=_BY_HAND)
    if cut is None:
        return "already whole"
    return f"cut {cut} bytes, kept in {_shown(keep, cfg.root)}"


def _remove_temp(path: Path) -> str:
    from .liveness import pid_alive

    pid = int(_TEMP.fullmatch(path.name).group("pid"))
    if pid_alive(pid):  # the pid came back (reused): not provably a leftover any more
        raise SwarmError(f"process {pid} is alive now", path=path, hint="run doctor again later")
    try:
        path.unlink()
    except FileNotFoundError:
        return "already gone"
    return "removed"


def repair(findings: list[Finding], *, root: Optional[PathLike] = None,
           now: Any = None) -> tuple[dict[tuple, str], dict[tuple, str]]:
    """Run the repair of every finding that has one: ({key: what was done}, {key: why it failed})."""
    from . import claims
    from . import reservations
    from . import worktrees

    from .stores import event_log

    cfg = load_config(root=root)
    events = event_log(cfg)
    moment = _moment(cfg, now)
    batches: dict[str, dict[str, str]] = {}  # a reaper runs once for all its findings: why, by subject

    def reaped(finding: Finding, run: Callable[[], list], otherwise: str) -> str:
        if finding.action not in batches:
            batches[finding.action] = {getattr(item, "task_id" if finding.action == "reap-leases" else "id"): why
                                       for item, why in run()}
        return f"reaped: {batches[finding.action].get(finding.subject, otherwise)}"

    def retire(finding: Finding) -> str:
        outcome = worktrees.retire(finding.subject, root=cfg.root, now=moment)
        return "kept: its lease is live" if outcome is None else f"{outcome.action}: {outcome.reason}"

    actions: dict[str, Callable[[Finding], str]] = {  # in this order: reaping leases requeues tasks first
        "reap-leases": lambda f: reaped(f, lambda: claims.reap_expired(moment, root=cfg.root), "nothing to do"),
        "move-completed": lambda f: "moved to " + _shown(task_store.move_to_completed(f.subject, root=cfg.root, status=None),
                                                         cfg.root),
        "cut-tail": lambda f: _cut_tail(cfg, f.path, moment, events),
        "remove-temp": lambda f: _remove_temp(f.path),
        "reap-reservations": lambda f: reaped(f, lambda: reservations.reap(moment, root=cfg.root), "already gone"),
        "retire-worktree": retire,
    }
    done: dict[tuple, str] = {}
    failed: dict[tuple, str] = {}
    for action, run in actions.items():
        for finding in (f for f in findings if f.action == action):
            try:
                done[finding.key] = run(finding)
            except (SwarmError, OSError) as exc:
                failed[finding.key] = str(exc) if isinstance(exc, SwarmError) else str(exc.strerror or exc)
    return done, failed


def diagnose(*, root: Optional[PathLike] = None, fix: bool = False, now: Any = None,
             progress: Optional[TextIO] = None) -> Report:
    """Check the workspace; with ``fix``, repair what is safe and check again (see the module docstring).

    A repair can uncover the next one (a requeued mirror shows a completed task still in
    active/), so repairs run up to three rounds, each fix at most once.
    """
    findings, files = check(root=root, now=now, progress=progress)
    tried: dict[tuple, Finding] = {}
    done: dict[tuple, str] = {}
    failed: dict[tuple, str] = {}
    for _ in range(3 if fix else 0):
        todo = [f for f in findings if f.action and f.key not in tried]
        if not todo:
            break
        tried.update((f.key, f) for f in todo)
        round_done, round_failed = repair(todo, root=root, now=now)
        done.update(round_done)
        failed.update(round_failed)
        findings, files = check(root=root, now=now, progress=progress)
    left = {f.key for f in findings}
    return Report(resolve_root(root=root), files, findings,
                  fixed=[(f, done.get(key, "fixed")) for key, f in tried.items() if key not in left],
                  failed=[(f, failed[key]) for key, f in tried.items() if key in failed and key in left])


# ---------------------------------------------------------------------------- CLI


def main(argv: Optional[list[str]] = None) -> int:
    """Check (and with --fix repair) a workspace; returns 0 clean, 1 problems, 2 bad usage."""
    from . import cli

    p = cli.parser("doctor.py", "Check every file of a workspace: parse errors with file and line, duplicate "
                   "task ids, stale leases and reservations, torn logs, leftover temp files, orphan worktrees.")
    p.add_argument("--fix", action="store_true", help="repair what is safe to repair (never a file that does "
                   "not parse), then check again")
    args = p.parse_args(argv)

    def body() -> int:
        root = resolve_root(root=args.root)
        if not root.is_dir():
            raise NotFoundError("workspace root is not a directory", path=root, hint="pass --root DIR")
        report = diagnose(root=root, fix=args.fix, progress=sys.stderr)
        if args.json:
            cli.print_json(report.to_dict())
        else:
            for finding, what in report.fixed:
                print(f"FIXED {finding.where(root=root)}: {finding.problem} -> {what}")
            for finding, why in report.failed:
                print(f"FAILED {finding.where(root=root)}: could not fix: {why}")
            for finding in report.findings:
                print(finding.render(root=root))
            print(report.summary())
        return cli.EXIT_OK if report.ok else cli.EXIT_CHECK_FAILED

    return cli.run(body)
