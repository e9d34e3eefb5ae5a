"""Real git in tests: a runner that fails the test on a git error, and a git that reads no one's config."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(cwd, *args: str) -> str:
    """Run git in ``cwd``; its output without the last newline. A failure fails the test with git's message."""
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.rstrip("\n")


def hermetic_git(tmp_path: Path, monkeypatch) -> None:
    """No global or system git config: identity and hooks come only from the test repository."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
