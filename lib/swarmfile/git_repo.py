"""git, run for Swarmfile: one command runner and the few questions the worktrees and the merge queue ask.

Every call is ``git -C <dir>`` with the caller's repository only (GIT_DIR and friends from the
environment are dropped), never a terminal prompt, and no automatic gc racing other processes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable, Optional, Union

from .errors import GitError

__all__ = ["git", "split_z", "toplevel", "commit_of", "branch_tip", "current_branch", "identity", "dirty_files",
           "commits_ahead"]

PathLike = Union[str, "os.PathLike[str]"]

# Environment that would point git at another repository than the one we pass with -C.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX",
                 "GIT_OBJECT_DIRECTORY", "GIT_NAMESPACE")



# ---------------------------------------------------------------------------- git


def git(cwd: PathLike, *args: str, check: bool = True, config: Iterable[str] = (),
        hint: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``git -C cwd [-c config]... args``; GitError on a non-zero exit when ``check``."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal nobody watches
    opts = ["-c", "gc.auto=0"]  # an automatic gc racing other processes' ref updates fails them
    for item in config:
        opts += ["-c", item]
    command = ["git", "-C", os.fspath(cwd), *opts, *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, encoding="utf-8",
                              errors="surrogateescape", env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GitError(list(args), cwd, 127, "git is not installed", hint="install git") from None
    if check and proc.returncode != 0:
        raise GitError(list(args), cwd, proc.returncode, proc.stderr, proc.stdout, hint=hint)
    return proc


def split_z(output: str) -> list[str]:
    return [item for item in output.split("\0") if item]


def toplevel(cwd: PathLike) -> Path:
    return Path(git(cwd, "rev-parse", "--show-toplevel",
                    hint="the workspace root must be a git checkout (git init)").stdout.strip())


def commit_of(cwd: PathLike, ref: str) -> Optional[str]:
    proc = git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def branch_tip(cwd: PathLike, branch: str) -> Optional[str]:
    return commit_of(cwd, f"refs/heads/{branch}")


def current_branch(cwd: PathLike) -> Optional[str]:
    proc = git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def identity(cwd: PathLike, agent_id: str) -> list[str]:
    """``-c`` settings naming ``agent_id`` as author, for what the repository leaves unset."""
    proc = git(cwd, "config", "--get-regexp", r"^user\.(name|email)$", check=False)
    have = {line.split(" ", 1)[0] for line in proc.stdout.splitlines()}
    found = []
    if "user.name" not in have:
        found.append(f"user.name={agent_id}")
    if "user.email" not in have:
        found.append(f"user.email={agent_id}@swarm.local")
    return found


def dirty_files(cwd: PathLike, untracked: bool = True) -> list[str]:
    """Paths with uncommitted changes (relative to the top of the checkout); ignored files never."""
    out = git(cwd, "status", "--porcelain=v1", "-z", f"--untracked-files={'all' if untracked else 'no'}").stdout
    items = split_z(out)
    paths, index = [], 0
    while index < len(items):
        entry = items[index]
        paths.append(entry[3:])
        # A rename or copy is followed by its source path as an item of its own.
        index += 2 if entry[:1] in ("R", "C") else 1
    return paths


def commits_ahead(cwd: PathLike, base: str, branch: str) -> int:
    """Commits on ``branch`` that ``base`` (a branch, or a full ref such as ``refs/remotes/origin/main``) lacks."""
    base = base if base.startswith("refs/") else f"refs/heads/{base}"
    return int(git(cwd, "rev-list", "--count", f"{base}..refs/heads/{branch}").stdout.strip())
