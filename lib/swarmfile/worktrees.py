"""A git worktree per claimed task: create, commit, list, remove, clean up; CLI for the merge queue too.

Layout, under the workspace root (the repository's main checkout)::

    .swarm/worktrees/<task>-<agent>-<nonce>/        the worktree, on branch swarm/<task>/<agent>-<nonce>
    .swarm/worktrees/<task>-<agent>-<nonce>.yaml    its record: task, agent, base branch, created_at

Branches are cut from the base branch: ``base=``, else ``worktrees.base_branch`` in swarm.yaml,
else the branch the root checkout is on. ``.swarm/`` is added to the repository's
``info/exclude``, which every worktree shares, so nothing of the runtime is ever staged; locks
live in the root's lock dir, never inside a worktree.

For the executor: ``create_for_lease(lease)`` makes the worktree, ``run_env(wt)`` is the
environment to run the agent with (cwd = ``wt.path``), and ``finish(wt, title)`` commits the
run and enqueues the branch for the merge queue (merge_queue.py).

Errors: GitError (a git command failed; its message leads with git's first line of complaint),
WorktreeBusy (removal refused: the task's lease is live or there is uncommitted work),
MergeRefused (merge_queue: the root checkout is not fit to merge into), NotFoundError,
ValidationError, InvalidIdError.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

from .clock import format_ts

from .config import Config, load_config, validate_id
from .errors import GitError, MergeRefused, NotFoundError, SwarmError, ValidationError, WorktreeBusy
from .fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_file, locked
from .records import Record
from .git_repo import branch_tip, commit_of, commits_ahead, current_branch, dirty_files, git, identity, split_z, toplevel

__all__ = [
    "GitError", "WorktreeBusy", "MergeRefused", "Worktree", "Cleanup",
    "create", "create_for_lease", "commit", "changed_files", "remove", "retire", "run_env",
    "list_worktrees", "get_worktree", "find_by_branch", "cleanup_stale",
    "resolve_base", "base_ref", "ensure_excluded", "live_lease", "setting", "git",
]

PathLike = Union[str, "os.PathLike[str]"]

# Section ``worktrees`` of swarm.yaml. Kept here until config.DEFAULTS grows the section.
# A worktree name is <task>-<agent>-<nonce>: two ids joined, so longer than one id may be.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,299}")
def setting(cfg: Config, key: str) -> Any:
    """A ``worktrees.<key>`` setting (swarm.yaml over config.DEFAULTS)."""
    return cfg.get("worktrees", key)


def resolve_base(*, root: Optional[PathLike] = None, base: Optional[str] = None) -> str:
    """The base branch: ``base``, else ``worktrees.base_branch``, else the root checkout's branch."""
    cfg = load_config(root=root)
    base = base or setting(cfg, "base_branch")
    if base:
        git(cfg.root, "check-ref-format", "--branch", str(base), hint="worktrees.base_branch must name a branch")
        return str(base)
    current = current_branch(cfg.root)
    if current is None:
        toplevel(cfg.root)  # says "not a git repository" when that is the trouble
        raise ValidationError("the root checkout has a detached HEAD, so there is no base branch", path=cfg.root,
                              hint="check out the base branch, or set worktrees.base_branch in swarm.yaml")
    return current


def base_ref(base: str, *, root: Optional[PathLike] = None) -> str:
    """The ref task branches of ``base`` are cut from and measured against.

    With ``worktrees.remote``: the remote's base as last fetched (every merge fetches it), so a
    task starts from what the hosts share and never carries commits only this clone has; else
    (or before the first fetch) the local base branch.
    """
    cfg = load_config(root=root)
    remote = setting(cfg, "remote")
    if remote and commit_of(cfg.root, f"refs/remotes/{remote}/{base}") is not None:
        return f"refs/remotes/{remote}/{base}"
    return f"refs/heads/{base}"


def ensure_excluded(*, root: Optional[PathLike] = None) -> bool:
    """Make git ignore the runtime dir (``.swarm/``) in every worktree; True if a line was added.

    Appends to ``<git common dir>/info/exclude`` unless the dir is ignored already.
    """
    cfg = load_config(root=root)
    top = toplevel(cfg.root)
    rel = os.path.relpath(os.path.realpath(cfg.runtime_dir), os.path.realpath(top))
    if rel == os.curdir or rel.startswith(os.pardir):
        return False  # the runtime dir is outside the repository: git never sees it
    rel = rel.replace(os.sep, "/")
    probe = git(top, "check-ignore", "-q", "--no-index", f"{rel}/probe", check=False)
    if probe.returncode == 0:
        return False
    if probe.returncode != 1:
        raise GitError(["check-ignore"], top, probe.returncode, probe.stderr)
    common = Path(git(top, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip())
    exclude = common / "info" / "exclude"
    # Unanchored for the default one-level name, so a stray .swarm/ an agent makes inside a
    # worktree is ignored as well.
    pattern = f"{rel}/" if "/" not in rel else f"/{rel}/"
    with locked(exclude, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        try:
            text = exclude.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            text = ""
        if pattern in text.splitlines():
            return False
        exclude.parent.mkdir(parents=True, exist_ok=True)
        # Not fileio.append_line: its torn-tail repair judges the last line as YAML, and an
        # exclude pattern such as '*.log' is not YAML.
        with open(exclude, "a", encoding="utf-8") as handle:
            handle.write(("\n" if text and not text.endswith("\n") else "") + pattern + "\n")
    return True


def live_lease(task_id: str, *, root: Optional[PathLike] = None, now: Optional[datetime] = None) -> Any:
    """The task's lease while it binds (held, not expired, holder not dead), else None."""
    from .claims import get_lease  # late: claims pulls in the task model, which only this needs

    lease = get_lease(task_id, root=root)
    if lease is None or lease.free_reason(now) is not None:
        return None
    return lease


# ---------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Worktree(Record):
    """One task's worktree; ``root`` is the workspace it belongs to (not stored)."""

    UNSTORED = ("root",)
    OMIT_NONE = True

    path: Path
    branch: str
    task_id: str
    agent_id: str
    base: str
    created_at: str
    base_commit: Optional[str] = None  # the base branch's commit the branch was cut from
    lease_token: Optional[int] = None  # fencing token of the lease it was made for
    extra: dict = field(default_factory=dict, compare=False)  # keys this version does not know, kept
    root: Optional[Path] = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Optional[PathLike] = None,
                  *, root: Optional[Path] = None) -> "Worktree":
        values, extra = cls.split(data)
        try:
            for key in ("path", "branch", "task_id", "agent_id", "base", "created_at"):
                if not isinstance(values.get(key), str):
                    raise ValueError(f"{key} must be a string")
            values["path"] = Path(values["path"])
            if values.get("lease_token") is not None:
                values["lease_token"] = int(values["lease_token"])
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"malformed worktree record: {exc}", path=path,
                                  hint="fix or delete the record; the worktree itself is untouched") from None
        return cls(**values, extra=extra, root=root)


def _records(cfg: Config) -> Path:
    return cfg.runtime_dir / "worktrees"


def _record_file(cfg: Config, name: str) -> Path:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValidationError(f"invalid worktree name {name!r}", hint="names look like TASK-1-executor-1-a1b2c3")
    return _records(cfg) / f"{name}.yaml"


def _load(cfg: Config, record: Path) -> Worktree:
    data = expect_mapping(load_yaml_file(record), record, "a worktree record")
    return Worktree.from_dict(data, record, root=cfg.root)


def get_worktree(name: str, *, root: Optional[PathLike] = None) -> Worktree:
    """The worktree named ``name`` (its directory's name); NotFoundError if it has no record."""
    cfg = load_config(root=root)
    record = _record_file(cfg, name)
    if not record.exists():
        raise NotFoundError(f"no worktree named {name}", path=_records(cfg), hint="see `worktrees.py list`")
    return _load(cfg, record)


def list_worktrees(*, root: Optional[PathLike] = None) -> list[Worktree]:
    """Every recorded worktree, oldest first (a removed directory still listed: see ``exists``)."""
    cfg = load_config(root=root)
    try:
        names = sorted(n for n in os.listdir(_records(cfg)) if n.endswith(".yaml") and not n.startswith("."))
    except FileNotFoundError:
        return []
    found = [_load(cfg, _records(cfg) / name) for name in names]
    return sorted(found, key=lambda wt: (wt.created_at, wt.name))


def find_by_branch(branch: str, *, root: Optional[PathLike] = None) -> Optional[Worktree]:
    """The recorded worktree of ``branch``, or None."""
    return next((wt for wt in list_worktrees(root=root) if wt.branch == branch), None)


def _resolve(worktree: Union[Worktree, str], root: Optional[PathLike]) -> Worktree:
    if not isinstance(worktree, str):
        return worktree
    return get_worktree(worktree, root=root)


def _cfg_of(worktree: Worktree, root: Optional[PathLike]) -> Config:
    return load_config(root=root if root is not None else worktree.root)


# ---------------------------------------------------------------------------- create and commit


def create(task_id: str, agent_id: str, *, root: Optional[PathLike] = None, base: Optional[str] = None,
           lease_token: Optional[int] = None) -> Worktree:
    """A new worktree and branch for ``task_id`` worked on by ``agent_id``, cut from the base branch.

    Raises InvalidIdError, GitError (not a repository, ...), NotFoundError (no such base branch).
    """
    validate_id(task_id, "task id")
    validate_id(agent_id, "agent id")
    cfg = load_config(root=root)
    base = resolve_base(root=cfg.root, base=base)
    base_commit = commit_of(cfg.root, base_ref(base, root=cfg.root))
    if base_commit is None:
        raise NotFoundError(f"base branch {base!r} does not exist or has no commits", path=cfg.root,
                            hint="commit something first, or set worktrees.base_branch")
    ensure_excluded(root=cfg.root)
    _records(cfg).mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        nonce = secrets.token_hex(3)
        name = f"{task_id}-{agent_id}-{nonce}"
        branch = f"swarm/{task_id}/{agent_id}-{nonce}"
        path = _records(cfg) / name
        record = _record_file(cfg, name)
        if path.exists() or branch_tip(cfg.root, branch) is not None:
            continue
        try:  # the record is made first and exclusively: of two creates drawing one nonce, one wins
            os.close(os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        wt = Worktree(path=path, branch=branch, task_id=task_id, agent_id=agent_id, base=base,
                      created_at=format_ts(), base_commit=base_commit, lease_token=lease_token, root=cfg.root)
        try:
            atomic_write(record, dump_yaml(wt.to_dict()))
            _worktree_admin(cfg, "add", "--quiet", "-b", branch, str(path), base_commit)
        except BaseException:
            record.unlink()
            raise
        return wt
    raise SwarmError(f"no free worktree name for {task_id}-{agent_id} after 20 tries", path=_records(cfg))


def create_for_lease(lease: Any, *, root: Optional[PathLike] = None, base: Optional[str] = None) -> Worktree:
    """The worktree an executor runs its agent in for a claims.Lease it holds."""
    return create(lease.task_id, lease.agent_id, root=root, base=base, lease_token=lease.token)


def run_env(worktree: Worktree, *, root: Optional[PathLike] = None) -> dict[str, str]:
    """Environment additions for an agent run in ``worktree`` (run it with cwd = ``worktree.path``).

    SWARM_ROOT points the runtime back at the workspace, so no lock or state file lands in the worktree.
    """
    cfg = _cfg_of(worktree, root)
    return {"SWARM_ROOT": str(cfg.root), "SWARM_WORKTREE": str(worktree.path), "SWARM_TASK_ID": worktree.task_id,
            "SWARM_AGENT_ID": worktree.agent_id, "SWARM_BRANCH": worktree.branch, "SWARM_BASE": worktree.base}


def commit(worktree: Worktree, message: Optional[str] = None) -> Optional[str]:
    """Stage everything in the worktree and commit it; the new commit's sha, or None if nothing changed.

    The message is ``<task>: <message> [swarm <agent>]`` (a multi-line ``message`` keeps its body).
    The agent is the author when the repository has no identity configured.
    """
    path = worktree.path
    if not path.is_dir():
        raise NotFoundError("worktree directory does not exist", path=path, task_id=worktree.task_id)
    git(path, "add", "-A")
    staged = git(path, "diff", "--cached", "--quiet", check=False)
    if staged.returncode == 0:
        return None
    if staged.returncode != 1:
        raise GitError(["diff"], path, staged.returncode, staged.stderr)
    summary, _, body = (message or "").strip().partition("\n")
    text = f"{worktree.task_id}: {summary.strip()}" if summary.strip() else worktree.task_id
    text += f" [swarm {worktree.agent_id}]"
    if body.strip():
        text += "\n\n" + body.strip()
    git(path, "commit", "--quiet", "-m", text, config=identity(path, worktree.agent_id))
    return git(path, "rev-parse", "HEAD").stdout.strip()


def changed_files(worktree: Worktree) -> list[str]:
    """Files the branch changed since its merge-base with the base branch, plus uncommitted ones."""
    path = worktree.path
    ref = base_ref(worktree.base, root=worktree.root) if worktree.root is not None else f"refs/heads/{worktree.base}"
    base = ref if commit_of(path, ref) else worktree.base_commit
    if not base:
        raise NotFoundError(f"base branch {worktree.base!r} no longer exists", path=path, task_id=worktree.task_id)
    fork = git(path, "merge-base", base, "HEAD").stdout.strip()
    tracked = split_z(git(path, "diff", "--name-only", "--no-renames", "-z", fork).stdout)
    untracked = split_z(git(path, "ls-files", "--others", "--exclude-standard", "-z").stdout)
    return sorted(set(tracked) | set(untracked))


# ---------------------------------------------------------------------------- remove and clean up


def _worktree_admin(cfg: Config, *args: str) -> subprocess.CompletedProcess:
    """``git worktree <args>``, one process at a time.

    git does not lock its worktree bookkeeping: an ``add`` running while another process adds
    or prunes can read a half-made ``.git/worktrees/<name>/`` and fail ("failed to read
    commondir"), so every add/remove/prune of the workspace goes through one lock.
    """
    with locked(cfg.root / ".git" / "worktrees", lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout * 4):
        return git(cfg.root, "worktree", *args)


def _drop_dir(cfg: Config, wt: Worktree) -> None:
    if wt.path.exists():
        _worktree_admin(cfg, "remove", "--force", str(wt.path))
    else:
        _worktree_admin(cfg, "prune")


def _drop_record(cfg: Config, wt: Worktree) -> None:
    try:
        _record_file(cfg, wt.name).unlink()
    except FileNotFoundError:
        pass


def remove(worktree: Union[Worktree, str], force: bool = False, *, root: Optional[PathLike] = None,
           now: Optional[datetime] = None) -> Worktree:
    """Remove a worktree's directory and record; its branch is kept.

    Refused (WorktreeBusy) while the task's lease is live or the worktree has uncommitted
    changes, unless ``force``. ``worktree`` is a Worktree or its name.
    """
    wt = _resolve(worktree, root)
    cfg = _cfg_of(wt, root)
    if not force:
        lease = live_lease(wt.task_id, root=cfg.root, now=now)
        if lease is not None:
            raise WorktreeBusy(f"task {wt.task_id} is still leased to {lease.agent_id} until {lease.expires_at}",
                               path=wt.path, task_id=wt.task_id, holder=lease.agent_id,
                               hint="wait for the lease to end, or force the removal")
        if wt.exists and dirty_files(wt.path):
            raise WorktreeBusy("the worktree has uncommitted changes", path=wt.path, task_id=wt.task_id,
                               hint="commit them, or force the removal to discard them")
    _drop_dir(cfg, wt)
    _drop_record(cfg, wt)
    return wt


@dataclass(frozen=True)
class Cleanup:
    """What ``cleanup_stale`` did with one worktree whose lease is gone."""

    name: str
    task_id: str
    agent_id: str
    branch: str
    action: str  # removed | branch_kept (dir removed, unmerged commits kept) | kept
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def retire(worktree: Union[Worktree, str], *, root: Optional[PathLike] = None,
           now: Optional[datetime] = None) -> Optional[Cleanup]:
    """Clean up one worktree if its lease is gone (see ``cleanup_stale``); None while the lease binds."""
    wt = _resolve(worktree, root)
    cfg = _cfg_of(wt, root)
    if live_lease(wt.task_id, root=cfg.root, now=now) is not None:
        return None

    def report(action: str, reason: str) -> Cleanup:
        return Cleanup(wt.name, wt.task_id, wt.agent_id, wt.branch, action, reason)

    try:
        if wt.exists and dirty_files(wt.path):
            return report("kept", "uncommitted changes in the worktree")
        tip = branch_tip(cfg.root, wt.branch)
        if tip is None:
            reason = "its branch no longer exists"
        else:
            # with a remote: merged into the remote's base, though the local one may lag (a dirty checkout)
            ahead = commits_ahead(cfg.root, base_ref(wt.base, root=cfg.root), wt.branch)
            if ahead:
                _drop_dir(cfg, wt)  # the commits live on in the branch; the record keeps it listed
                return report("branch_kept", f"{ahead} unmerged commit(s) on {wt.branch}")
            reason = "no commits beyond base" if tip == wt.base_commit else f"merged into {wt.base}"
        _drop_dir(cfg, wt)
        if tip is not None:
            git(cfg.root, "branch", "--quiet", "-D", wt.branch)
        _drop_record(cfg, wt)
        return report("removed", reason)
    except GitError as exc:
        return report("kept", str(exc))


def cleanup_stale(*, root: Optional[PathLike] = None, now: Optional[datetime] = None) -> list[Cleanup]:
    """Clean up worktrees whose task lease is gone (none, ended, expired, holder dead).

    Directory, branch and record go when the branch holds nothing that base lacks. A branch
    with unmerged commits is kept (and reported every time); only its directory goes. A
    worktree with uncommitted changes is kept whole. Also runs ``git worktree prune``.
    """
    cfg = load_config(root=root)
    _worktree_admin(cfg, "prune")
    results = []
    for wt in list_worktrees(root=cfg.root):
        outcome = retire(wt, root=cfg.root, now=now)
        if outcome is not None:
            results.append(outcome)
    return results


# ---------------------------------------------------------------------------- CLI
