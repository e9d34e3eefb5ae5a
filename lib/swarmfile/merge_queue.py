"""The merge queue: finished task branches merge into the base branch one at a time, in completion order.

The queue and the merge lock are the workspace's ``MergeQueueStore`` (merge_queue_store.py): on
Redis a list and a lock shared by every host (redis_merge_queue.py); by default one append-only
file, ``.swarm/merge-queue.yaml``, where every change is one appended line (fileio.append_line),
so it is never rewritten and a crash cannot corrupt what is there::

    queue:
    - {id: 5e0c9a1b2f3d, op: enqueue, branch: swarm/TASK-1/executor-1-a1b2c3, task_id: TASK-1, ...}
    - {id: 5e0c9a1b2f3d, op: done, status: merged, commit: 9c1e..., at: '2026-...Z'}

An entry is pending until a ``done`` line with its id follows; file order is completion order.
``process_queue`` repeats: take the merge lock (a sidecar lock of ``.swarm/merge.lock``, held
across processes; on Redis a server lock first), re-read the queue, merge the first pending
entry, append its done line, release. So merges never overlap, waiters interleave fairly, and every done line is written
before anyone else looks at the queue. Merging is idempotent: a crash between a merge commit and
its done line makes the next run find the branch already in base and record it ``up_to_date``
without a second merge (the ``merged`` event of that crashed run is not repeated). A torn last
line left by a crash mid-append is skipped by readers and repaired by the next append.

A merge happens in the root checkout, which must be on the base branch and have no uncommitted
changes to tracked files (the runtime's own shared files, such as events.yaml and the task
files, excepted), else MergeRefused and nothing is merged. ``git merge --no-ff``; on a conflict
``git merge --abort`` leaves base as it was, the task is marked ``needs_attention`` with the
conflicting files and the branch is kept. Events: ``merged`` (commit, branch), ``merge_conflict``
(files, branch), ``merge_failed`` (error, branch).

With ``worktrees.remote`` (several hosts, each with its own clone) a merge goes into the
remote's base instead, through remote_merge.py, and never touches the root checkout (which
may then be on any branch, with any changes); its events add ``remote``, ``host``,
``attempts`` and ``local_base``. A remote that cannot be reached raises GitError with the
entry still pending, like a MergeRefused. When the queue is shared by several hosts (Redis),
``enqueue`` pushes the branch to the remote, since whichever host holds the lock merges it,
and that host deletes it from the remote after the merge.
"""

from __future__ import annotations

from . import remote_merge, stores, task_store
import logging
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .clock import format_ts

from .config import Config, load_config, validate_id
from .errors import NotFoundError, SwarmError, ValidationError
from .merge_queue_store import HEADER
from .cli import table
from .errors import GitError, MergeRefused
from .records import Record
from .git_repo import branch_tip, commit_of, commits_ahead, current_branch, dirty_files, git, identity, split_z, toplevel
from .worktrees import NAME_PATTERN, Worktree, base_ref, commit, find_by_branch, get_worktree, resolve_base, retire, setting

__all__ = [
    "HEADER",
    "MergeStatus",
    "MergeResult",
    "QueueEntry",
    "enqueue",
    "finish",
    "read_queue",
    "pending",
    "process_queue",
    "merge_branch",
    "merge_lock",
    "cli_command",
]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]



class MergeStatus(str, Enum):
    MERGED = "merged"  # a merge commit on base
    UP_TO_DATE = "up_to_date"  # base already had every commit of the branch: nothing to do
    CONFLICT = "conflict"  # aborted; base untouched, task needs attention, branch kept
    FAILED = "failed"  # git refused for another reason (missing branch, files in the way)


@dataclass(frozen=True)
class QueueEntry(Record):
    """One branch waiting (``status`` None) or done merging."""

    UNSTORED = ("status",)  # from the queue's later "done" record, not the entry's own
    OMIT_NONE = True

    id: str
    branch: str
    task_id: str
    agent_id: str
    base: str
    at: str
    worktree: Optional[str] = None  # name of the worktree record, if the branch has one
    status: Optional[str] = None
    extra: dict = field(default_factory=dict, compare=False)



@dataclass(frozen=True)
class MergeResult:
    """What merging one branch did."""

    branch: str
    task_id: str
    agent_id: str
    base: str
    status: MergeStatus
    commit: Optional[str] = None  # the merge commit (merged)
    files: tuple[str, ...] = ()  # conflicting files (conflict)
    error: Optional[str] = None  # git's complaint (failed)
    warning: Optional[str] = None  # the event or task-file update that could not be made
    id: Optional[str] = None  # the queue entry, when merged from the queue

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        data["files"] = list(self.files)
        return data


# ---------------------------------------------------------------------------- the queue's store


def _append(cfg: Config, record: dict[str, Any]) -> None:
    stores.merge_queue(cfg).append(record)


def _records(cfg: Config) -> list[dict[str, Any]]:
    return stores.merge_queue(cfg).records()


def _entries(cfg: Config) -> list[QueueEntry]:
    records = _records(cfg)
    done = {r["id"]: r.get("status", "done") for r in records if r["op"] == "done"}
    entries, seen = [], set()
    for record in records:
        if record["op"] != "enqueue" or record["id"] in seen:
            continue
        seen.add(record["id"])
        values, extra = QueueEntry.split(record)
        values.setdefault("at", "")
        extra.pop("op", None)
        entries.append(QueueEntry(**values, status=done.get(record["id"]), extra=extra))
    return entries


def read_queue(*, root: Optional[PathLike] = None) -> list[QueueEntry]:
    """Every queue entry, pending and done, in queue order. ParseError/ValidationError if malformed."""
    return _entries(load_config(root=root))


def pending(*, root: Optional[PathLike] = None) -> list[QueueEntry]:
    """The entries still waiting to merge, in queue (completion) order."""
    return [e for e in read_queue(root=root) if e.status is None]


def _describe(target: Union[Worktree, str], task_id: Optional[str], agent_id: Optional[str],
              cfg: Config, base: Optional[str]) -> tuple[str, str, str, str, Optional[str]]:
    """(branch, task, agent, base, worktree name) of a Worktree or a branch name."""
    if not isinstance(target, str):  # a Worktree (duck-typed: the CLI's copy is worktrees.__main__'s class)
        return target.branch, task_id or target.task_id, agent_id or target.agent_id, base or target.base, target.name
    known = find_by_branch(target, root=cfg.root)
    if known is not None:
        return target, task_id or known.task_id, agent_id or known.agent_id, base or known.base, known.name
    if not task_id or not agent_id:
        raise ValidationError(f"branch {target} has no worktree record: give its task id and agent id")
    return target, task_id, agent_id, resolve_base(root=cfg.root, base=base), None


def finish(worktree: Worktree, message: Optional[str] = None, *, root: Optional[PathLike] = None) -> Optional["QueueEntry"]:
    """After an agent run: commit the worktree and enqueue its branch for merging.

    Returns the QueueEntry, or None when the branch has nothing beyond its base.
    """
    cfg = load_config(root=root if root is not None else worktree.root)
    commit(worktree, message)
    if commits_ahead(cfg.root, base_ref(worktree.base, root=cfg.root), worktree.branch) == 0:
        return None
    return enqueue(worktree, root=cfg.root)


def enqueue(worktree_or_branch: Union[Worktree, str], task_id: Optional[str] = None,
            agent_id: Optional[str] = None, *, root: Optional[PathLike] = None,
            base: Optional[str] = None) -> QueueEntry:
    """Queue a finished branch for merging into its base; returns the entry.

    Task and agent come from the worktree (record) unless given. NotFoundError if the branch
    does not exist. With ``worktrees.remote`` and a queue shared by several hosts (Redis), the
    branch is pushed to the remote first (GitError, and nothing queued, when that fails).
    """
    cfg = load_config(root=root)
    branch, task_id, agent_id, base, name = _describe(worktree_or_branch, task_id, agent_id, cfg, base)
    validate_id(task_id, "task id")
    validate_id(agent_id, "agent id")
    if branch_tip(cfg.root, branch) is None:
        raise NotFoundError(f"branch {branch} does not exist", path=cfg.root, task_id=task_id)
    entry = QueueEntry(id=secrets.token_hex(6), branch=branch, task_id=task_id, agent_id=agent_id, base=base,
                       at=format_ts(), worktree=name)
    remote = setting(cfg, "remote")
    if remote and stores.merge_queue(cfg).shared:
        # Whichever host holds the lock merges the entry: the branch must be where every host can fetch it.
        remote_merge.push_branch(root=cfg.root, remote=str(remote), branch=branch)
    _append(cfg, {"id": entry.id, "op": "enqueue", **{k: v for k, v in entry.to_dict().items() if k != "id"}})
    return entry


# ---------------------------------------------------------------------------- merging


@contextmanager
def merge_lock(*, root: Optional[PathLike] = None) -> Iterator[Any]:
    """Hold the workspace's merge lock (across processes) for the ``with`` block.

    Every merge takes the lock here and nowhere else. It is the merge queue store's: on files a
    lock of this host (with ``worktrees.remote`` hosts are kept from overwriting each other's
    merges by the remote itself, which takes a push of the base only as a fast-forward:
    remote_merge.py); on Redis one lock for every host, renewed while held (redis_merge_queue.py).
    Waits at most ``worktrees.merge_lock_seconds``, then LockTimeout.
    """
    cfg = load_config(root=root)
    with stores.merge_queue(cfg).lock(float(setting(cfg, "merge_lock_seconds"))) as held:
        yield held


def _shared_file(cfg: Config, top: Path, rel: str) -> bool:
    """Whether ``rel`` (from the top of the checkout) is one of the runtime's own shared files."""
    path = os.path.realpath(top / rel)
    if path in {os.path.realpath(p) for p in (cfg.state_file, cfg.chat_file)}:
        return True
    if stores.agent_registry(cfg).owns(path) or stores.event_log(cfg).owns(path):
        return True  # the registry, the event log or one of its archives, when kept in files
    return any(Path(path).is_relative_to(os.path.realpath(d)) for d in (cfg.tasks_active, cfg.tasks_completed))


def _check_root(cfg: Config, base: str) -> None:
    current = current_branch(cfg.root)
    if current != base:
        raise MergeRefused(f"the root checkout is on {current or 'a detached HEAD'}, not the base branch {base}",
                           path=cfg.root, hint=f"check out {base} there; nothing was merged")
    top = toplevel(cfg.root)
    dirty = [rel for rel in dirty_files(cfg.root, untracked=False) if not _shared_file(cfg, top, rel)]
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise MergeRefused(f"the root checkout has uncommitted changes to tracked files: {shown}", path=cfg.root,
                           hint="commit or stash them; nothing was merged")


def _note(action: str, call: Any) -> Optional[str]:
    """Run a bookkeeping step after the merge decision; its failure is logged, not raised."""
    try:
        call()
        return None
    except SwarmError as exc:
        log.warning("merge queue: could not %s: %s", action, exc)
        return f"could not {action}: {exc}"


def _flag_task(cfg: Config, task_id: str, detail: dict[str, str]) -> None:
    """Mark the task ``needs_attention`` in its Markdown, with the ``detail`` fields."""
    from . import tasks

    if stores.task_board(cfg) is not None:
        return  # only the operator checkout's planner writes task Markdown, from the lease's needs_attention
    task = task_store.find_task(task_id, root=cfg.root)
    task_store.set_fields(task.path, {"Status": tasks.Status.NEEDS_ATTENTION.value, **detail}, root=cfg.root)


def _event(cfg: Config, type: str, agent_id: str, task_id: str, **data: Any) -> None:
    from . import events

    events.append_event(type, agent_id, task_id, root=cfg.root, **data)


def _merge_remote_locked(cfg: Config, remote: str, branch: str, task_id: str, agent_id: str, base: str,
                         entry_id: Optional[str]) -> MergeResult:
    """Merge ``branch`` into the remote's ``base`` (remote_merge.py); the caller holds the merge lock."""
    top = toplevel(cfg.root)
    done = remote_merge.merge_into_remote(
        root=cfg.root, remote=remote, branch=branch, base=base, message=f"Merge {branch}: {task_id} [swarm {agent_id}]",
        identity=identity(cfg.root, agent_id), attempts=int(setting(cfg, "push_attempts")),
        ignorable=lambda rel: _shared_file(cfg, top, rel))
    status = MergeStatus(done.status)
    where = {"branch": branch, "remote": remote, "host": remote_merge.host(), "attempts": done.attempts}
    if done.local_base:
        where["local_base"] = done.local_base
    result = MergeResult(branch=branch, task_id=task_id, agent_id=agent_id, base=base, status=status, id=entry_id,
                         commit=done.commit, files=done.files, error=done.error)
    if status is MergeStatus.MERGED:
        warning = _note("log the event", lambda: _event(cfg, "merged", agent_id, task_id, commit=done.commit, **where))
    elif status is MergeStatus.CONFLICT:
        warning = _note("log the event", lambda: _event(cfg, "merge_conflict", agent_id, task_id,
                                                        files=list(done.files), **where))
        warning = _note("mark the task", lambda: _flag_task(cfg, task_id, {"Merge Conflict": ", ".join(done.files)})) \
            or warning
    elif status is MergeStatus.FAILED:
        warning = _note("log the event", lambda: _event(cfg, "merge_failed", agent_id, task_id, error=done.error,
                                                        **where))
    else:
        warning = None
    return replace(result, warning=warning)


def _merge_locked(cfg: Config, branch: str, task_id: str, agent_id: str, base: str,
                  entry_id: Optional[str] = None) -> MergeResult:
    """Merge ``branch`` into ``base`` in the root checkout (or the remote's); the caller holds the merge lock."""
    remote = setting(cfg, "remote")
    if remote:
        return _merge_remote_locked(cfg, str(remote), branch, task_id, agent_id, base, entry_id)
    _check_root(cfg, base)

    def result(status: MergeStatus, **more: Any) -> MergeResult:
        return MergeResult(branch=branch, task_id=task_id, agent_id=agent_id, base=base, status=status,
                           id=entry_id, **more)

    root = cfg.root
    tip = branch_tip(root, branch)
    if tip is None:
        error = f"branch {branch} does not exist"
        warning = _note("log the event", lambda: _event(cfg, "merge_failed", agent_id, task_id,
                                                        branch=branch, error=error))
        return result(MergeStatus.FAILED, error=error, warning=warning)
    before = git(root, "rev-parse", "HEAD").stdout.strip()
    if git(root, "merge-base", "--is-ancestor", tip, before, check=False).returncode == 0:
        return result(MergeStatus.UP_TO_DATE, commit=before)
    message = f"Merge {branch}: {task_id} [swarm {agent_id}]"
    proc = git(root, "merge", "--no-ff", "--no-edit", "-m", message, f"refs/heads/{branch}", check=False,
               config=identity(root, agent_id))
    if proc.returncode == 0:
        sha = git(root, "rev-parse", "HEAD").stdout.strip()
        warning = _note("log the event", lambda: _event(cfg, "merged", agent_id, task_id, commit=sha, branch=branch))
        return result(MergeStatus.MERGED, commit=sha, warning=warning)
    if "index.lock" in proc.stderr:  # another git process in the root checkout: retry later, entry stays pending
        raise GitError(["merge"], root, proc.returncode, proc.stderr, hint="another git command holds the index; retry")
    files: list[str] = []
    if commit_of(root, "MERGE_HEAD") is not None:
        files = split_z(git(root, "diff", "--name-only", "--diff-filter=U", "-z").stdout)
        git(root, "merge", "--abort")
    after = commit_of(root, "HEAD")
    if after != before:  # never expected: abort restores HEAD. Stop the queue rather than go on.
        raise GitError(["merge"], root, proc.returncode, f"base moved from {before} to {after} in a failed merge",
                       hint="inspect the root checkout by hand")
    if files:
        warning = _note("log the event", lambda: _event(cfg, "merge_conflict", agent_id, task_id,
                                                        files=files, branch=branch))
        flagged = _note("mark the task", lambda: _flag_task(cfg, task_id, {"Merge Conflict": ", ".join(files)}))
        return result(MergeStatus.CONFLICT, files=tuple(files), warning=warning or flagged)
    error = str(GitError(["merge"], root, proc.returncode, proc.stderr, proc.stdout))
    warning = _note("log the event", lambda: _event(cfg, "merge_failed", agent_id, task_id,
                                                    branch=branch, error=error))
    flagged = _note("mark the task", lambda: _flag_task(cfg, task_id, {"Merge Error": error[:300]}))
    return result(MergeStatus.FAILED, error=error, warning=warning or flagged)


def _after_merge(cfg: Config, result: MergeResult, worktree_name: Optional[str]) -> None:
    if result.status not in (MergeStatus.MERGED, MergeStatus.UP_TO_DATE) or not setting(cfg, "remove_after_merge"):
        return
    remote, tip = setting(cfg, "remote"), branch_tip(cfg.root, result.branch)
    if remote and tip is None and stores.merge_queue(cfg).shared:
        # Another host's branch, queued for whichever host merges: nobody else will delete it. The
        # tip fetched for the merge guards the delete: a branch that moved on since is kept.
        tip = commit_of(cfg.root, f"refs/remotes/{remote}/{result.branch}")
    if remote and tip is not None:  # the copy pushed for the merge; with a queue per host, another's is its to clean up
        _note("delete the merged branch from the remote",
              lambda: remote_merge.delete_remote_branch(root=cfg.root, remote=str(remote), branch=result.branch, tip=tip))
    if not worktree_name:
        return
    try:
        wt = get_worktree(worktree_name, root=cfg.root)
    except NotFoundError:
        return
    if wt.branch == result.branch:
        _note("retire the worktree", lambda: retire(wt, root=cfg.root))


def merge_branch(worktree_or_branch: Union[Worktree, str], task_id: Optional[str] = None,
                 agent_id: Optional[str] = None, *, root: Optional[PathLike] = None,
                 base: Optional[str] = None) -> MergeResult:
    """Merge one branch into its base now, under the merge lock (see the module docstring).

    Raises MergeRefused (root checkout not fit; nothing merged), LockTimeout, GitError.
    """
    cfg = load_config(root=root)
    branch, task_id, agent_id, base, name = _describe(worktree_or_branch, task_id, agent_id, cfg, base)
    with merge_lock(root=cfg.root):
        result = _merge_locked(cfg, branch, task_id, agent_id, base)
        # A queued entry of this branch still has to find it (and record itself up_to_date).
        if not any(e.branch == branch and e.status is None for e in _entries(cfg)):
            _after_merge(cfg, result, name)
    return result


def process_queue(*, root: Optional[PathLike] = None) -> list[MergeResult]:
    """Merge every pending entry in queue order; returns what this call merged.

    Safe to call from many processes at once: each entry is merged by exactly one of them.
    MergeRefused stops the run with the entry still pending.
    """
    cfg = load_config(root=root)
    results = []
    while True:
        with merge_lock(root=cfg.root):
            entry = next((e for e in _entries(cfg) if e.status is None), None)
            if entry is None:
                return results
            result = _merge_locked(cfg, entry.branch, entry.task_id, entry.agent_id, entry.base, entry.id)
            done: dict[str, Any] = {"id": entry.id, "op": "done", "status": result.status.value}
            if result.commit:
                done["commit"] = result.commit
            if result.files:
                done["files"] = list(result.files)
            if result.error:
                done["error"] = result.error[:300]
            done["at"] = format_ts()
            _append(cfg, done)
            _after_merge(cfg, result, entry.worktree)
        results.append(result)


def _target(name: str, root: Path) -> Union[Worktree, str]:
    """The worktree with this name, else ``name`` taken as a branch."""
    if NAME_PATTERN.fullmatch(name):
        try:
            return get_worktree(name, root=root)
        except NotFoundError:
            pass
    return name


def cli_command(args: Any, *, root: Path) -> int:
    """The ``enqueue``, ``merge`` and ``queue`` commands of ``python lib/worktrees.py``."""
    from .cli import EXIT_CHECK_FAILED, fail, print_json

    if args.command == "queue":
        waiting = pending(root=root)
        if args.json:
            print_json([e.to_dict() for e in waiting])
        elif waiting:
            print(table(["ID", "TASK", "AGENT", "BRANCH", "QUEUED"],
                        [[e.id, e.task_id, e.agent_id, e.branch, e.at] for e in waiting]))
        else:
            print("merge queue is empty")
        return 0
    if args.command == "enqueue":
        entry = enqueue(_target(args.name, root), args.task, args.agent, root=root)
        print_json(entry.to_dict()) if args.json else print(f"queued {entry.branch} as {entry.id}")
        return 0
    if args.all == bool(args.name):
        return fail("merge needs either --all or one worktree name or branch")
    results = process_queue(root=root) if args.all else [merge_branch(_target(args.name, root), args.task, args.agent, root=root)]
    if args.json:
        print_json([r.to_dict() for r in results])
    for r in [] if args.json else results:
        detail = r.commit or ", ".join(r.files) or r.error or ""
        print(f"{r.status.value:12} {r.branch} {detail}".rstrip())
    failed = [r for r in results if r.status in (MergeStatus.CONFLICT, MergeStatus.FAILED)]
    return EXIT_CHECK_FAILED if failed else 0
