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


def seeded_remote(tmp_path: Path, files: dict[str, str]) -> Path:
    """A bare remote ``tmp_path/remote.git`` whose main holds one commit of ``files`` (name -> text)."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    git(seed, "config", "user.name", "Seed")
    git(seed, "config", "user.email", "seed@example.com")
    for name, text in files.items():
        (seed / name).write_text(text)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(bare), "main")
    return bare
