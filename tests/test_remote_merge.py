"""Merging into a shared git remote from several hosts' clones (worktrees.remote), with real git.

A "host" is a clone of one bare remote in tmp_path with its own workspace and SWARM_HOST.
Remotes are bare repositories on disk and git may use no other transport (GIT_ALLOW_PROTOCOL=file),
so nothing here can send a packet anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import claims
import events
import merge_queue as mq
import worktrees as wtm
from swarmfile import config, lifecycle, remote_merge, task_store, tasks
from swarmfile.errors import GitError, ValidationError
from gitenv import git, hermetic_git, seeded_remote
from procs import run_together

pytestmark = pytest.mark.timeout(120)

LIB = Path(__file__).resolve().parent.parent / "lib"


@pytest.fixture(autouse=True)
def _hermetic_git(tmp_path, monkeypatch):
    """As everywhere (gitenv), and no transport but the local filesystem."""
    hermetic_git(tmp_path, monkeypatch)
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    monkeypatch.delenv("SWARM_ROOT", raising=False)


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare remote whose main holds one commit, the runtime's events.yaml tracked as in a real repository."""
    return seeded_remote(tmp_path, {"shared.txt": "one\ntwo\nthree\n", "a.txt": "a v1\n", "events.yaml": "events:\n"})


SETTINGS = "worktrees:\n  remote: origin\n  base_branch: main\n"


def _host(tmp_path: Path, remote: Path, name: str) -> Path:
    """A host: its own clone of ``remote`` and a workspace in it that merges into the remote."""
    root = tmp_path / name
    git(tmp_path, "clone", "-q", str(remote), str(root))
    git(root, "config", "user.name", f"Person on {name}")
    git(root, "config", "user.email", f"{name}@example.com")
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir()
    (root / "heartbeat.yaml").write_text("heartbeats: {}\n")
    (root / "swarm.yaml").write_text(SETTINGS)
    return root


@pytest.fixture
def hosts(tmp_path, remote) -> tuple[Path, Path]:
    return _host(tmp_path, remote, "host-a"), _host(tmp_path, remote, "host-b")


def _work(root: Path, task_id: str, agent_id: str, files: dict[str, str]) -> wtm.Worktree:
    """An executor's finished run on this host: a task, its worktree, files written, one commit, queued."""
    if not list((root / "tasks" / "active").glob(f"{task_id}.md")):
        task_store.new_task_file(task_id, f"Work on {task_id}", root=root)
    wt = wtm.create(task_id, agent_id, root=root)
    for name, text in files.items():
        (wt.path / name).write_text(text)
    assert mq.finish(wt, f"edit {', '.join(files)}", root=root) is not None
    return wt


def _merges(remote: Path) -> list[tuple[str, str, str]]:
    """(merge, first parent, second parent) of every merge on the remote's main, oldest first."""
    lines = git(remote, "log", "--merges", "--reverse", "--format=%H %P", "main").splitlines()
    return [tuple(line.split()) for line in lines]


def _merged_events(root: Path) -> list[dict]:
    return events.read_events(types=["merged"], root=root)


def _drain(root: str, host: str) -> list[str]:
    os.environ["SWARM_HOST"] = host
    return [f"{r.branch} {r.status.value}" for r in mq.process_queue(root=root)]


# ---------------------------------------------------------------------------- many hosts


def test_two_hosts_racing_merge_every_branch_exactly_once(hosts, remote):
    a, b = hosts
    made = [_work(root, f"TASK-{name}{n}", f"executor-{n}", {f"{name}-{n}.txt": f"{name} {n}\n"})
            for root, name in ((a, "a"), (b, "b")) for n in range(3)]
    tips = {wt.branch: git(wt.root, "rev-parse", wt.branch) for wt in made}
    start = git(remote, "rev-parse", "main")

    # Two processes per host, all released at once: each branch is merged by one of its host's two.
    outcomes = run_together(_drain, [(str(a), "host-a"), (str(a), "host-a"), (str(b), "host-b"), (str(b), "host-b")])
    assert sorted(line for lines in outcomes for line in lines) == sorted(f"{wt.branch} merged" for wt in made)

    merges = _merges(remote)
    assert sorted(second for _, _, second in merges) == sorted(tips.values()), "every branch merged exactly once"
    assert [first for _, first, _ in merges] == [start] + [merge for merge, _, _ in merges[:-1]], \
        "one first-parent line: no merge was overwritten"
    assert git(remote, "rev-parse", "main") == merges[-1][0]
    for commit in [start, *tips.values()]:
        git(remote, "merge-base", "--is-ancestor", commit, "main")  # no commit lost
    tree = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert {f"{name}-{n}.txt" for name in "ab" for n in range(3)} <= set(tree)

    for root, host in ((a, "host-a"), (b, "host-b")):
        merged = _merged_events(root)
        assert sorted(e["branch"] for e in merged) == sorted(wt.branch for wt in made if wt.root == root)
        assert {(e["host"], e["remote"]) for e in merged} == {(host, "origin")}
        assert all(e["attempts"] >= 1 for e in merged) and mq.pending(root=root) == []
        assert [e.status for e in mq.read_queue(root=root)] == ["merged"] * 3
        git(root, "merge-base", "--is-ancestor", "main", "origin/main")  # the local base only moved forward
        assert wtm.list_worktrees(root=root) == [], "merged worktrees are retired"
    assert git(remote, "branch", "--list", "swarm/*") == "", "merged task branches are deleted from the remote"


HOOK = """#!/bin/sh
# Fires when this host's fetch moves its view of the remote's main: the other host merges right then.
[ "$1" = committed ] || exit 0
grep -q ' refs/remotes/origin/main$' || exit 0
mkdir "{sentinel}" 2>/dev/null || exit 0
SWARM_HOST=host-b "{python}" -c 'import sys; sys.path.insert(0, "{lib}"); import merge_queue; merge_queue.process_queue(root="{other}")' >"{log}" 2>&1
"""


def test_an_overtaken_push_fetches_merges_again_and_retries(hosts, remote, tmp_path, monkeypatch):
    a, b = hosts
    mine = _work(a, "TASK-A", "executor-1", {"from-a.txt": "a\n"})
    theirs = _work(b, "TASK-B", "executor-2", {"from-b.txt": "b\n"})
    tips = [git(b, "rev-parse", theirs.branch), git(a, "rev-parse", mine.branch)]
    # Someone moves main first, so host A's fetch moves its remote-tracking ref and fires the hook.
    seed = tmp_path / "seed"
    (seed / "elsewhere.txt").write_text("x\n")
    git(seed, "add", "elsewhere.txt")
    git(seed, "commit", "-q", "-m", "elsewhere")
    git(seed, "push", "-q", str(remote), "main")
    hooks = tmp_path / "hooks-a"
    hooks.mkdir()
    hook = hooks / "reference-transaction"
    hook.write_text(HOOK.format(sentinel=tmp_path / "fired", python=sys.executable, lib=LIB, other=b,
                                log=tmp_path / "host-b.log"))
    hook.chmod(0o755)
    git(a, "config", "core.hooksPath", str(hooks))
    monkeypatch.setenv("SWARM_HOST", "host-a")

    [result] = mq.process_queue(root=a)

    assert (tmp_path / "fired").is_dir(), "host B merged between host A's fetch and its push"
    assert result.status is mq.MergeStatus.MERGED, (tmp_path / "host-b.log").read_text()
    [ours] = _merged_events(a)
    [other] = _merged_events(b)
    assert (ours["attempts"], ours["host"], other["attempts"], other["host"]) == (2, "host-a", 1, "host-b")
    merges = _merges(remote)
    assert [m[2] for m in merges] == tips
    assert merges[1][1] == merges[0][0] == other["commit"], "host A merged again onto host B's merge"
    assert git(remote, "rev-parse", "main") == ours["commit"] == result.commit
    assert {"from-a.txt", "from-b.txt", "elsewhere.txt"} <= set(git(remote, "ls-tree", "--name-only", "main").split())


def test_overtaken_on_every_attempt_leaves_the_branch_queued(hosts, remote, tmp_path):
    a, b = hosts
    (a / "swarm.yaml").write_text(SETTINGS + "  push_attempts: 1\n")
    _work(a, "TASK-A", "executor-1", {"from-a.txt": "a\n"})
    _work(b, "TASK-B", "executor-2", {"from-b.txt": "b\n"})
    seed = tmp_path / "seed"
    (seed / "elsewhere.txt").write_text("x\n")
    git(seed, "add", "elsewhere.txt")
    git(seed, "commit", "-q", "-m", "elsewhere")
    git(seed, "push", "-q", str(remote), "main")
    hooks = tmp_path / "hooks-a"
    hooks.mkdir()
    (hooks / "reference-transaction").write_text(HOOK.format(sentinel=tmp_path / "fired", python=sys.executable,
                                                             lib=LIB, other=b, log=tmp_path / "host-b.log"))
    (hooks / "reference-transaction").chmod(0o755)
    git(a, "config", "core.hooksPath", str(hooks))
    before = git(remote, "rev-parse", "main")

    with pytest.raises(GitError, match="merged into main first on each of 1 attempts"):
        mq.process_queue(root=a)
    [entry] = mq.pending(root=a)
    assert _merged_events(a) == [] and len(_merges(remote)) == 1 and git(remote, "rev-parse", "main") != before
    assert [r.status for r in mq.process_queue(root=a)] == [mq.MergeStatus.MERGED]  # the next run merges it
    assert len(_merges(remote)) == 2 and mq.pending(root=a) == []


# ---------------------------------------------------------------------------- conflicts and the local base


def test_a_conflict_leaves_the_remote_base_untouched_and_the_task_needs_attention(hosts, remote, monkeypatch):
    a, b = hosts
    _work(a, "TASK-A", "executor-1", {"shared.txt": "one\nTWO by a\nthree\n"})
    loser = _work(b, "TASK-B", "executor-2", {"shared.txt": "one\nTWO by b\nthree\n"})
    assert [r.status for r in mq.process_queue(root=a)] == [mq.MergeStatus.MERGED]
    before = git(remote, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main")
    checkout = (git(b, "rev-parse", "HEAD"), git(b, "diff", "HEAD", "--stat", "--", ":!events.yaml"),
                (b / "shared.txt").read_text())
    monkeypatch.setenv("SWARM_HOST", "host-b")

    [result] = mq.process_queue(root=b)

    assert result.status is mq.MergeStatus.CONFLICT and result.files == ("shared.txt",)
    assert git(remote, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main") == before
    assert (git(b, "rev-parse", "HEAD"), git(b, "diff", "HEAD", "--stat", "--", ":!events.yaml"),
            (b / "shared.txt").read_text()) == checkout, "the operator's checkout is untouched"
    [conflict] = events.read_events(types=["merge_conflict"], root=b)
    assert (conflict["task_id"], conflict["files"], conflict["host"], conflict["remote"]) == \
        ("TASK-B", ["shared.txt"], "host-b", "origin")
    task = task_store.find_task("TASK-B", root=b)
    assert task.status is tasks.Status.NEEDS_ATTENTION and task.field("Merge Conflict") == "shared.txt"
    assert git(remote, "rev-parse", loser.branch) == git(b, "rev-parse", loser.branch), \
        "the conflicting branch is on the remote for a person on any host"
    assert [e.status for e in mq.read_queue(root=b)] == ["conflict"]


def test_the_local_base_is_fast_forwarded_only_when_safe(hosts, remote):
    a, _ = hosts
    events.append_event("progress", "executor-1", "TASK-0", root=a)  # the runtime's own tracked file is dirty
    _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    mq.process_queue(root=a)
    [first] = _merged_events(a)
    assert first["local_base"] == "fast-forwarded"
    assert git(a, "rev-parse", "main") == git(remote, "rev-parse", "main") and (a / "one.txt").read_text() == "1\n"

    (a / "a.txt").write_text("an operator's unsaved edit\n")
    _work(a, "TASK-2", "executor-1", {"two.txt": "2\n"})
    mq.process_queue(root=a)
    second = _merged_events(a)[-1]
    assert second["local_base"].startswith("kept: uncommitted changes to tracked files") and "a.txt" in second["local_base"]
    assert git(a, "rev-parse", "main") == first["commit"] != second["commit"] == git(remote, "rev-parse", "main")
    assert (a / "a.txt").read_text() == "an operator's unsaved edit\n" and not (a / "two.txt").exists()
    assert wtm.list_worktrees(root=a) == [], "merged into the remote's base: retired though the local base lags"

    git(a, "checkout", "-q", "-b", "operator-work")  # the operator moves to a branch of their own
    _work(a, "TASK-3", "executor-1", {"three.txt": "3\n"})
    mq.process_queue(root=a)
    third = _merged_events(a)[-1]
    assert third["local_base"] == "fast-forwarded" and git(a, "rev-parse", "main") == git(remote, "rev-parse", "main")
    assert git(a, "symbolic-ref", "--short", "HEAD") == "operator-work" and not (a / "three.txt").exists()
    assert (a / "a.txt").read_text() == "an operator's unsaved edit\n"

    git(a, "commit", "-q", "-am", "local only")  # local commits on main the remote lacks are never dropped ...
    local_only = git(a, "rev-parse", "HEAD")
    git(a, "checkout", "-q", "main")
    git(a, "merge", "-q", "--no-edit", "operator-work")
    local = git(a, "rev-parse", "main")
    _work(a, "TASK-4", "executor-1", {"four.txt": "4\n"})
    mq.process_queue(root=a)
    assert _merged_events(a)[-1]["local_base"].startswith("kept: the local main has commits the remote lacks")
    assert git(a, "rev-parse", "main") == local
    unpublished = subprocess.run(["git", "-C", str(remote), "merge-base", "--is-ancestor", local_only, "main"])
    assert unpublished.returncode != 0, "... nor published: task branches are cut from the remote's base"


# ---------------------------------------------------------------------------- an unreachable remote


def _cli(*args):
    return subprocess.run([sys.executable, str(LIB / "worktrees.py"), *args], capture_output=True, text=True,
                          timeout=60)


def test_an_unreachable_remote_is_one_clear_error_and_the_task_stays_queued(hosts, remote, tmp_path):
    a, _ = hosts
    nowhere = tmp_path / "no-such-remote.git"
    git(a, "remote", "set-url", "origin", str(nowhere))
    task_store.new_task_file("TASK-1", "Write one.txt", root=a)
    lease = claims.claim_task("TASK-1", "executor-1", root=a)
    wt = wtm.create_for_lease(lease, root=a)
    (wt.path / "one.txt").write_text("1\n")

    merge = lifecycle.merge_back(lease, "executor-1", wt, root=a, title="Write one.txt")

    assert merge == {"merge": "queued", "branch": wt.branch}
    [waiting] = events.read_events(types=["merge_waiting"], root=a)
    assert "does not appear to be a git repository" in waiting["reason"] and str(nowhere) in waiting["reason"]
    [entry] = mq.pending(root=a)
    assert entry.branch == wt.branch and not nowhere.exists()
    cli = _cli("--root", str(a), "merge", "--all")
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("error: ") and "could not be reached" in cli.stderr
    assert mq.pending(root=a) == [entry], "still queued after every failed try"

    git(a, "remote", "set-url", "origin", str(remote))  # the remote is back
    assert [r.status for r in mq.process_queue(root=a)] == [mq.MergeStatus.MERGED]
    assert "one.txt" in git(remote, "ls-tree", "--name-only", "main").split()


def test_a_password_in_the_remote_url_never_reaches_an_error(hosts):
    a, _ = hosts
    git(a, "remote", "set-url", "origin", "https://operator:s3cret-token@127.0.0.1:9/repo.git")
    _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    with pytest.raises(GitError) as caught:  # GIT_ALLOW_PROTOCOL=file: refused before any connection
        mq.process_queue(root=a)
    assert "s3cret" not in str(caught.value) and "operator:" not in str(caught.value)
    assert "https://***@127.0.0.1:9/repo.git" in str(caught.value)
    assert len(mq.pending(root=a)) == 1


def test_remote_settings_are_checked(hosts):
    a, _ = hosts
    (a / "swarm.yaml").write_text("worktrees:\n  remote: upstream\n")
    _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    with pytest.raises(ValidationError, match="swarm.yaml.*'upstream', which is not a remote of this clone"):
        mq.process_queue(root=a)
    assert len(mq.pending(root=a)) == 1
    (a / "swarm.yaml").write_text(SETTINGS + "  push_attempts: 0\n")
    with pytest.raises(ValidationError, match="push_attempts"):
        config.load_config(root=a)


def test_without_a_remote_merges_stay_in_the_root_checkout(hosts, remote):
    a, _ = hosts
    (a / "swarm.yaml").write_text("")
    before = git(remote, "rev-parse", "main")
    _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    [result] = mq.process_queue(root=a)
    assert result.status is mq.MergeStatus.MERGED and git(a, "rev-parse", "main") == result.commit
    assert git(remote, "rev-parse", "main") == before and "remote" not in _merged_events(a)[0]
    assert remote_merge.host() == os.environ.get("SWARM_HOST", remote_merge.HOSTNAME)


def test_a_crash_between_the_push_and_the_done_line_does_not_merge_twice(hosts, remote, monkeypatch):
    a, _ = hosts
    _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    real_append = mq._append

    def crash_on_done(cfg, record):
        if record["op"] == "done":
            raise KeyboardInterrupt  # the process dies after the remote took the merge, before its done line
        real_append(cfg, record)

    monkeypatch.setattr(mq, "_append", crash_on_done)
    with pytest.raises(KeyboardInterrupt):
        mq.process_queue(root=a)
    monkeypatch.setattr(mq, "_append", real_append)
    assert [r.status for r in mq.process_queue(root=a)] == [mq.MergeStatus.UP_TO_DATE]
    assert len(_merges(remote)) == 1 and mq.pending(root=a) == []


# ---------------------------------------------------------------------------- executors on two hosts


def test_executors_on_two_hosts_merge_every_task_into_the_remote(hosts, remote):
    sim = f"{sys.executable} {LIB / 'sim_agent.py'} {{task_file}}"
    procs = []
    try:
        for root, name in zip(hosts, "ab"):
            for n in (1, 2):
                task_store.new_task_file(f"T{name}-{n}", f"Task {n} on host {name}", root=root,
                                         created=f"2026-01-01T00:00:0{n}Z")
            env = dict(os.environ, SWARM_ROOT=str(root), SWARM_HOST=f"host-{name}")
            procs.append(subprocess.Popen([sys.executable, str(LIB / "executor.py"), "--agent-id", f"exec-{name}",
                                           "--command", sim, "--once", "--worktree"], env=env, cwd=root))
        assert [p.wait(timeout=150) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    tree = set(git(remote, "ls-tree", "-r", "--name-only", "main").split())
    assert {f"work/T{name}-{n}.txt" for name in "ab" for n in (1, 2)} <= tree
    assert len(_merges(remote)) == 4
    for root, name in zip(hosts, "ab"):
        done = events.read_events(types=["completed"], root=root)
        assert sorted((e["task_id"], e["merge"]) for e in done) == [(f"T{name}-{n}", "merged") for n in (1, 2)]
        assert {e["host"] for e in _merged_events(root)} == {f"host-{name}"}
        assert all(task_store.find_task(f"T{name}-{n}", root=root).status is tasks.Status.COMPLETED for n in (1, 2))


def test_a_different_branch_of_the_same_name_on_the_remote_is_refused_not_overwritten(hosts, remote, tmp_path):
    a, _ = hosts
    wt = _work(a, "TASK-1", "executor-1", {"one.txt": "1\n"})
    seed = tmp_path / "seed"
    git(seed, "checkout", "-q", "-b", "squatter")
    (seed / "other.txt").write_text("not the task's work\n")
    git(seed, "add", "other.txt")
    git(seed, "commit", "-q", "-m", "someone else's")
    git(seed, "push", "-q", str(remote), f"squatter:{wt.branch}")
    theirs = git(remote, "rev-parse", wt.branch)
    with pytest.raises(GitError, match=f"has another branch named {wt.branch}"):
        mq.process_queue(root=a)
    assert git(remote, "rev-parse", wt.branch) == theirs and len(mq.pending(root=a)) == 1
    assert _merges(remote) == []


# ---------------------------------------------------------------------------- one queue for every host (Redis)


def test_two_hosts_sharing_a_redis_queue_merge_every_branch_exactly_once_in_queue_order(hosts, remote, redis_server):
    from conftest import backend_config

    a, b = hosts
    for root in hosts:
        backend_config(root, redis_server.url, SETTINGS + "namespace: acme/app\n")
    made = [_work(root, f"TASK-{name}{n}", f"executor-{n}", {f"{name}-{n}.txt": f"{name} {n}\n"})
            for n in range(3) for root, name in ((a, "a"), (b, "b"))]
    # Queued on either host, every branch is on the remote already: whichever host holds the lock merges it.
    assert sorted(git(remote, "branch", "--list", "--format=%(refname:short)", "swarm/*").split()) == \
        sorted(wt.branch for wt in made)
    assert [e.branch for e in mq.pending(root=a)] == [e.branch for e in mq.pending(root=b)] == [wt.branch for wt in made]
    tips = [git(wt.root, "rev-parse", wt.branch) for wt in made]

    outcomes = run_together(_drain, [(str(a), "host-a"), (str(a), "host-a"), (str(b), "host-b"), (str(b), "host-b")])
    assert sorted(line for lines in outcomes for line in lines) == sorted(f"{wt.branch} merged" for wt in made)
    merges = _merges(remote)
    assert [second for _, _, second in merges] == tips, \
        "each branch merged exactly once, in queue order"
    assert [first for _, first, _ in merges][1:] == [merge for merge, _, _ in merges[:-1]], "no merge was overwritten"
    assert all(attempts == 1 for attempts in (e["attempts"] for root in hosts for e in _merged_events(root))), \
        "under one lock no host was overtaken"
    assert mq.pending(root=a) == mq.pending(root=b) == []
    assert not (a / ".swarm" / "merge-queue.yaml").exists() and not (b / ".swarm" / "merge-queue.yaml").exists()
    assert git(remote, "branch", "--list", "swarm/*") == "", "merged task branches are deleted, whoever merged them"
