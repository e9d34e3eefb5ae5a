"""Merging a finished task branch into the base branch of a shared git remote, for hosts that each have a clone.

With ``worktrees: {remote: origin}`` in swarm.yaml, the merge queue (merge_queue.py) merges
through here instead of into the root checkout. One merge, under the merge lock::

    push the task branch          git push origin swarm/T/a-1:swarm/T/a-1 (so any host can merge it)
    fetch the remote's base       +refs/heads/main:refs/remotes/origin/main
    merge without a checkout      git merge-tree --write-tree; git commit-tree (two parents)
    push the merge commit         git push origin <merge>:refs/heads/main (never forced)
    fast-forward the local base   only when it is safe (see ``fast_forward_base``)

The merge is computed by ``git merge-tree`` into the object store: no working tree, no index,
so neither the operator's checkout nor any worktree is touched, whatever branch it is on and
whatever it has uncommitted. The push of the base is never forced: the remote accepts it only
as a fast-forward of the tip we merged onto, so git's compare-and-swap on the ref is what makes
a merge atomic across hosts. A host that was overtaken (another host pushed in between: git says
"fetch first" or "non-fast-forward") fetches, merges again onto the new tip and pushes again,
``worktrees.push_attempts`` times in all. A conflict pushes nothing: the remote base is as it was.

Errors: GitError (git failed: the remote cannot be reached, git is older than 2.38, overtaken
on every attempt); ValidationError (no such remote). Either way nothing was merged, and the
queue entry stays pending for the next run. URLs in messages have their user and password cut.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from .clock import HOSTNAME
from .errors import GitError, ValidationError
from .git_repo import branch_tip, commit_of, current_branch, dirty_files, git, split_z

__all__ = ["RemoteMerge", "host", "remote_url", "push_branch", "fetch_base", "merge_into_remote",
           "fast_forward_base", "delete_remote_branch"]

PathLike = Union[str, "os.PathLike[str]"]

# What git answers when the remote ref moved since we read it: someone else merged first.
# (A remote's own ref lock, taken by a push landing at the same instant, reads as "failed to lock".)
_OVERTAKEN = ("fetch first", "non-fast-forward", "failed to update ref", "failed to lock", "cannot lock ref")
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def host() -> str:
    """This host's name in events: ``$SWARM_HOST``, else the machine's node name."""
    return os.environ.get("SWARM_HOST") or HOSTNAME


def _redact(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL cut: a token in a remote URL must not reach a log."""
    return _USERINFO.sub(r"\1***@", text)


def _error(exc: GitError, hint: str) -> GitError:
    """``exc`` again with its secrets cut and ``hint`` (git's own complaint stays the message)."""
    return GitError(exc.command, exc.path, exc.returncode, _redact(exc.stderr), hint=hint)


@dataclass(frozen=True)
class RemoteMerge:
    """What one merge into the remote did. ``status`` is a merge_queue.MergeStatus value."""

    status: str  # merged | up_to_date | conflict | failed
    commit: Optional[str] = None  # the merge commit now at the remote's base (merged), or its tip (up_to_date)
    files: tuple[str, ...] = ()  # conflicting files (conflict)
    error: Optional[str] = None  # why (failed)
    attempts: int = 1  # pushes of the base it took: more than one when other hosts merged first
    local_base: Optional[str] = None  # what became of the local base branch (fast_forward_base)


def remote_url(*, root: PathLike, remote: str) -> str:
    """The URL of ``remote`` (secrets cut); ValidationError naming swarm.yaml if there is no such remote."""
    proc = git(root, "remote", "get-url", "--", remote, check=False)
    if proc.returncode != 0:
        raise ValidationError(f"worktrees.remote names {remote!r}, which is not a remote of this clone",
                              path=Path(root) / "swarm.yaml",
                              hint=f"git remote add {remote} URL, or fix worktrees.remote; nothing was merged")
    return _redact(proc.stdout.strip())


def _unreachable(root: PathLike, remote: str) -> str:
    return (f"the remote {remote} ({remote_url(root=root, remote=remote)}) could not be reached or refused us; nothing was "
            "merged and the branch stays queued: fix the remote or its credentials, then `worktrees.py merge --all`")


def push_branch(*, root: PathLike, remote: str, branch: str) -> None:
    """Push the task branch to the remote under its own name (a no-op when the remote has it already)."""
    proc = git(root, "push", "--porcelain", "--", remote, f"refs/heads/{branch}:refs/heads/{branch}", check=False)
    if proc.returncode == 0:
        return
    if any(line.startswith("!") for line in proc.stdout.splitlines()):
        hint = f"the remote {remote} has another branch named {branch}; nothing was merged, the branch stays queued"
    else:
        hint = _unreachable(root, remote)
    raise _error(GitError(["push"], root, proc.returncode, proc.stderr, proc.stdout), hint)


def fetch_base(*, root: PathLike, remote: str, base: str) -> str:
    """Fetch the remote's ``base`` into ``refs/remotes/<remote>/<base>``; its commit."""
    tracking = f"refs/remotes/{remote}/{base}"
    try:
        git(root, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote,
            f"+refs/heads/{base}:{tracking}")
    except GitError as exc:
        if "couldn't find remote ref" in exc.stderr:
            raise _error(exc, f"the remote {remote} has no branch {base}: push it there, or set worktrees.base_branch; "
                              "nothing was merged") from None
        raise _error(exc, _unreachable(root, remote)) from None
    return git(root, "rev-parse", "--verify", f"{tracking}^{{commit}}").stdout.strip()


def _fetch_branch(root: PathLike, remote: str, branch: str) -> Optional[str]:
    """The tip of ``branch`` fetched from the remote (a branch another host pushed), or None if it has none."""
    tracking = f"refs/remotes/{remote}/{branch}"
    proc = git(root, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote,
               f"+refs/heads/{branch}:{tracking}", check=False)
    if proc.returncode != 0:
        if "couldn't find remote ref" in proc.stderr:
            return None
        raise _error(GitError(["fetch"], root, proc.returncode, proc.stderr), _unreachable(root, remote))
    return commit_of(root, tracking)


def _is_ancestor(root: PathLike, older: str, newer: str) -> bool:
    return git(root, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def _merge_tree(root: PathLike, onto: str, tip: str) -> tuple[Optional[str], list[str]]:
    """(tree of the merge, []) or (None, conflicting files), computed without a working tree."""
    proc = git(root, "merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", onto, tip, check=False)
    if proc.returncode == 0:
        return split_z(proc.stdout)[0], []
    if proc.returncode == 1:
        return None, split_z(proc.stdout)[1:]
    hint = ("a merge into a remote needs git 2.38 or newer (git merge-tree --write-tree)"
            if "write-tree" in proc.stderr else "inspect the clone by hand; nothing was merged")
    raise GitError(["merge-tree"], root, proc.returncode, proc.stderr, hint=hint)


def _push_base(root: PathLike, remote: str, commit: str, base: str) -> bool:
    """Push ``commit`` as the remote's ``base``: True, or False when another host moved it first."""
    proc = git(root, "push", "--porcelain", "--", remote, f"{commit}:refs/heads/{base}", check=False)
    if proc.returncode == 0:
        return True
    rejected = [line for line in proc.stdout.splitlines() if line.startswith("!")]
    if rejected and all(any(word in line for word in _OVERTAKEN) for line in rejected):
        return False
    raise _error(GitError(["push"], root, proc.returncode, proc.stderr, proc.stdout), _unreachable(root, remote))


def merge_into_remote(*, root: PathLike, remote: str, branch: str, base: str, message: str,
                      identity: Iterable[str] = (), attempts: int = 5,
                      ignorable: Callable[[str], bool] = lambda rel: False) -> RemoteMerge:
    """Merge ``branch`` into the remote's ``base`` (see the module docstring); the caller holds the merge lock.

    ``identity`` are ``-c`` settings naming the merge commit's author; ``ignorable(rel)`` says
    which dirty tracked files (the runtime's own) do not stop the local fast-forward.
    Raises GitError / ValidationError, with nothing merged.
    """
    remote_url(root=root, remote=remote)  # a missing remote is a configuration error, not an unreachable one
    tip = branch_tip(root, branch)
    if tip is not None:  # ours: push it first, so the branch is on the remote whatever comes next
        push_branch(root=root, remote=remote, branch=branch)
    else:
        tip = _fetch_branch(root, remote, branch)
        if tip is None:
            return RemoteMerge("failed", error=f"branch {branch} exists neither here nor on the remote {remote}")
    for attempt in range(1, attempts + 1):
        onto = fetch_base(root=root, remote=remote, base=base)
        if _is_ancestor(root, tip, onto):
            return RemoteMerge("up_to_date", commit=onto, attempts=attempt,
                               local_base=_follow(root, remote, base, onto, ignorable))
        tree, conflicts = _merge_tree(root, onto, tip)
        if tree is None:  # nothing was pushed: the remote base is as it was
            return RemoteMerge("conflict", files=tuple(conflicts), attempts=attempt)
        merge = git(root, "commit-tree", tree, "-p", onto, "-p", tip, "-m", message, config=identity).stdout.strip()
        if _push_base(root, remote, merge, base):
            return RemoteMerge("merged", commit=merge, attempts=attempt,
                               local_base=_follow(root, remote, base, merge, ignorable))
    raise GitError(["push"], root, 1, f"other hosts merged into {base} first on each of {attempts} attempts",
                   hint="the branch stays queued; the next run merges it (or raise worktrees.push_attempts)")


def _follow(root: PathLike, remote: str, base: str, commit: str, ignorable: Callable[[str], bool]) -> str:
    """After the remote took ``commit``: our view of the remote's base, then the local base, follow it.

    Never raises: the merge is done by now, and a failure here must not make it look undone.
    """
    try:
        git(root, "update-ref", f"refs/remotes/{remote}/{base}", commit)
        return fast_forward_base(root=root, base=base, commit=commit, ignorable=ignorable)
    except GitError as exc:
        return f"kept: {exc}"


def _checked_out(root: PathLike, base: str) -> list[Path]:
    """The checkouts (main one and worktrees) that have ``base`` checked out."""
    found, path = [], None
    for line in git(root, "worktree", "list", "--porcelain").stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
        elif line == f"branch refs/heads/{base}" and path is not None:
            found.append(path)
    return found


def fast_forward_base(*, root: PathLike, base: str, commit: str,
                      ignorable: Callable[[str], bool] = lambda rel: False) -> str:
    """Bring the local ``base`` branch to ``commit`` when that is safe; says what it did.

    Safe means a fast-forward (local commits the remote lacks are never dropped) and, when the
    branch is checked out, a checkout with no uncommitted changes to tracked files (``ignorable``
    ones, the runtime's own, excepted) and a merge that changes none of the ``ignorable`` files
    (a runtime append racing the checkout would be lost). Anything else leaves the branch as it
    was: ``kept: <why>``; the next merge tries again.
    """
    local = branch_tip(root, base)
    if local is None:
        return f"kept: there is no local branch {base}"
    if local == commit:
        return "up to date"
    if not _is_ancestor(root, local, commit):
        return f"kept: the local {base} has commits the remote lacks (push or rebase them)"
    places = _checked_out(root, base)
    if not places:
        git(root, "update-ref", f"refs/heads/{base}", commit, local)
        return "fast-forwarded"
    if len(places) > 1 or current_branch(places[0]) != base:
        return f"kept: {base} is checked out in {places[-1]}"
    checkout = places[0]
    dirty = [rel for rel in dirty_files(checkout, untracked=False) if not ignorable(rel)]
    if dirty:
        return f"kept: uncommitted changes to tracked files in {checkout}: {', '.join(dirty[:3])}"
    touched = [rel for rel in split_z(git(checkout, "diff", "--name-only", "-z", local, commit).stdout) if ignorable(rel)]
    if touched:
        return f"kept: the merge changes the runtime's own file {touched[0]}"
    proc = git(checkout, "merge", "--ff-only", "--quiet", commit, check=False)
    if proc.returncode != 0:
        return f"kept: {GitError(['merge'], checkout, proc.returncode, proc.stderr)}"
    return "fast-forwarded"


def delete_remote_branch(*, root: PathLike, remote: str, branch: str, tip: str) -> None:
    """Delete a merged task branch from the remote, unless it moved on since ``tip`` (then it is kept)."""
    try:
        git(root, "push", "--quiet", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{tip}", "--", remote,
            f":refs/heads/{branch}")
    except GitError as exc:
        raise _error(exc, f"the merged branch {branch} stays on the remote {remote}; delete it by hand") from None
    git(root, "update-ref", "-d", f"refs/remotes/{remote}/{branch}", check=False)
