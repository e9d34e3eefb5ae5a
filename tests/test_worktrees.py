"""Worktrees per task and the merge queue, against real git repositories in tmp_path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import claims
import events
from swarmfile import fileio
import merge_queue as mq
from swarmfile import tasks
from swarmfile.task_document import render_task
from swarmfile import task_store
import worktrees as wtm
from swarmfile.clock import utc_now
from swarmfile.errors import InvalidIdError, NotFoundError, ParseError, ValidationError
from gitenv import git, hermetic_git
from procs import run_together
from conftest import BACKENDS

pytestmark = pytest.mark.timeout(60)

LIB = Path(__file__).resolve().parent.parent / "lib"


@pytest.fixture(autouse=True)
def _hermetic_git(tmp_path, monkeypatch):
    hermetic_git(tmp_path, monkeypatch)


def _task(root: Path, task_id: str) -> None:
    (root / "tasks" / "active" / f"{task_id}.md").write_text(render_task(task_id, f"Work on {task_id}"))


@pytest.fixture
def repo(workspace):
    """The workspace as a git repository on main, coordination files and tasks tracked like in a real repo."""
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "config", "user.name", "Test Person")
    git(workspace, "config", "user.email", "test@example.com")
    for name in ("a.txt", "b.txt", "c.txt"):
        (workspace / name).write_text(f"{name} v1\n")
    (workspace / "shared.txt").write_text("one\ntwo\nthree\n")
    for task_id in ("TASK-1", "TASK-2", "TASK-3"):
        _task(workspace, task_id)
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "initial")
    return workspace


def _work(root, task_id, agent_id, files: dict[str, str]) -> wtm.Worktree:
    """An executor's run: a worktree, files written in it, one commit."""
    wt = wtm.create(task_id, agent_id, root=root)
    for name, text in files.items():
        (wt.path / name).write_text(text)
    assert wtm.commit(wt, f"edit {', '.join(files)}")
    return wt


def _tree(root: Path) -> dict[str, bytes]:
    """Every file of the checkout but .git, .swarm, the task files and the event log (the runtime's)."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".swarm/", "tasks/", "events.yaml")):
            out[rel] = path.read_bytes()
    return out


def _events(root, type):
    return [e for e in events.read_events(root=root) if e["type"] == type]


# ---------------------------------------------------------------------------- worktrees


def test_create_names_never_collide_and_are_recorded(repo):
    one = wtm.create("TASK-1", "executor-1", root=repo)
    two = wtm.create("TASK-1", "executor-1", root=repo)
    assert one.name != two.name and one.branch != two.branch
    for wt in (one, two):
        assert wt.path.parent == repo / ".swarm" / "worktrees" and wt.path.is_dir()
        assert re.fullmatch(r"TASK-1-executor-1-[0-9a-f]{6}", wt.name)
        assert re.fullmatch(r"swarm/TASK-1/executor-1-[0-9a-f]{6}", wt.branch)
        assert wt.base == "main" and git(wt.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
        assert git(wt.path, "symbolic-ref", "--short", "HEAD") == wt.branch
    record = fileio.load_yaml_file(repo / ".swarm" / "worktrees" / f"{one.name}.yaml")
    assert (record["task_id"], record["agent_id"], record["base"]) == ("TASK-1", "executor-1", "main")
    assert [w.name for w in wtm.list_worktrees(root=repo)] == [one.name, two.name]
    assert wtm.get_worktree(two.name, root=repo) == two
    exclude = Path(git(repo, "rev-parse", "--git-common-dir"))
    exclude = (exclude if exclude.is_absolute() else repo / exclude) / "info" / "exclude"
    assert exclude.read_text().splitlines().count(".swarm/") == 1
    assert git(repo, "status", "--porcelain") == ""  # .swarm/ and its worktrees are invisible to git


def test_base_from_parameter_and_swarm_yaml(repo):
    git(repo, "branch", "develop")
    (repo / "a.txt").write_text("main moved on\n")
    git(repo, "commit", "-q", "-am", "main only")
    assert wtm.create("TASK-1", "executor-1", root=repo, base="develop").base == "develop"
    (repo / "swarm.yaml").write_text("worktrees:\n  base_branch: develop\n")
    wt = wtm.create("TASK-2", "executor-1", root=repo)
    assert wt.base == "develop"
    assert (wt.path / "a.txt").read_text() == "a.txt v1\n"
    assert wtm.create("TASK-3", "executor-1", root=repo, base="main").base == "main"


@pytest.mark.parametrize("task_id, agent_id", [("../x", "executor-1"), ("TASK-1", "a/b"), ("", "executor-1")])
def test_bad_ids_reach_no_path(repo, task_id, agent_id):
    with pytest.raises(InvalidIdError):
        wtm.create(task_id, agent_id, root=repo)
    assert not (repo / ".swarm" / "worktrees").exists()


def test_git_failures_become_swarm_errors(tmp_path):
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    with pytest.raises(wtm.GitError, match="not a git repository"):
        wtm.create("TASK-1", "executor-1", root=plain)
    (plain / ".git").mkdir()  # nothing to say which branch
    with pytest.raises(wtm.GitError):
        wtm.resolve_base(root=plain, base="bad..name")


def test_commit_holds_only_the_agents_files(repo):
    wt = wtm.create("TASK-1", "executor-1", root=repo)
    (wt.path / "new.py").write_text("print('hi')\n")
    (wt.path / "a.txt").write_text("changed by the agent\n")
    # The runtime is busy meanwhile: events, locks, leases all land in the root's .swarm/
    events.append_event("progress", "executor-1", "TASK-1", root=repo)
    claims.claim_task("TASK-2", "executor-2", root=repo)
    with fileio.locked(repo / "events.yaml", lock_dir=repo / ".swarm" / "locks"):
        pass
    # ... and a runtime module run with the worktree as its cwd leaves a .swarm/ there
    (wt.path / ".swarm" / "locks").mkdir(parents=True)
    (wt.path / ".swarm" / "locks" / "x.lock").write_text("pid 1\n")
    sha = wtm.commit(wt, "Add new.py")
    assert sorted(git(wt.path, "show", "--name-only", "--format=", sha).split()) == ["a.txt", "new.py"]
    assert git(wt.path, "log", "-1", "--format=%s|%an", sha) == "TASK-1: Add new.py [swarm executor-1]|Test Person"
    assert wtm.commit(wt) is None  # nothing left to commit
    assert not any(p.name.endswith(".lock") for p in wt.path.rglob("*") if ".swarm" not in p.parts)


def test_commit_names_the_agent_when_the_repo_has_no_identity(repo):
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    wt = wtm.create("TASK-1", "executor-3", root=repo)
    (wt.path / "b.txt").write_text("x\n")
    sha = wtm.commit(wt)
    assert git(wt.path, "log", "-1", "--format=%s|%an|%ae|%cn", sha) == \
        "TASK-1 [swarm executor-3]|executor-3|executor-3@swarm.local|executor-3"


def test_changed_files_since_the_fork_plus_uncommitted(repo):
    wt = _work(repo, "TASK-1", "executor-1", {"a.txt": "agent\n"})
    (repo / "c.txt").write_text("base moved on\n")  # base advances: not the branch's change
    git(repo, "commit", "-q", "-am", "base change")
    (wt.path / "b.txt").write_text("uncommitted\n")
    (wt.path / "d.txt").write_text("untracked\n")
    assert wtm.changed_files(wt) == ["a.txt", "b.txt", "d.txt"]


def test_remove_refuses_a_live_lease_unless_forced(repo):
    lease = claims.claim_task("TASK-1", "executor-1", root=repo)
    wt = wtm.create_for_lease(lease, root=repo)
    assert wt.lease_token == lease.token
    with pytest.raises(wtm.WorktreeBusy, match="still leased to executor-1"):
        wtm.remove(wt.name, root=repo)
    assert wt.path.is_dir()
    wtm.remove(wt, force=True)
    assert not wt.path.exists() and wtm.list_worktrees(root=repo) == []
    assert git(repo, "branch", "--list", wt.branch)  # the branch is kept
    assert wt.name not in git(repo, "worktree", "list")

    claims.release(lease, root=repo)
    other = wtm.create("TASK-1", "executor-1", root=repo)
    (other.path / "a.txt").write_text("unsaved work\n")
    with pytest.raises(wtm.WorktreeBusy, match="uncommitted"):
        wtm.remove(other, root=repo)
    wtm.commit(other)
    wtm.remove(other, root=repo)
    assert not other.path.exists()


def test_cleanup_stale_never_loses_commits(repo):
    idle = wtm.create("TASK-1", "executor-1", root=repo)  # no lease, no commits
    merged = _work(repo, "TASK-2", "executor-2", {"b.txt": "merged work\n"})
    git(repo, "merge", "-q", "--no-ff", "--no-edit", merged.branch)
    unmerged = _work(repo, "TASK-3", "executor-3", {"c.txt": "unmerged work\n"})
    unmerged_tip = git(repo, "rev-parse", unmerged.branch)
    dirty = wtm.create("TASK-3", "executor-4", root=repo)
    (dirty.path / "a.txt").write_text("uncommitted\n")
    lease = claims.claim_task("TASK-1", "executor-5", ttl=60, root=repo)
    leased = wtm.create_for_lease(lease, root=repo)

    assert wtm.cleanup_stale(root=repo) == [  # the live lease of TASK-1 protects both of its worktrees
        wtm.Cleanup(merged.name, "TASK-2", "executor-2", merged.branch, "removed", "merged into main"),
        wtm.Cleanup(unmerged.name, "TASK-3", "executor-3", unmerged.branch, "branch_kept",
                    f"1 unmerged commit(s) on {unmerged.branch}"),
        wtm.Cleanup(dirty.name, "TASK-3", "executor-4", dirty.branch, "kept", "uncommitted changes in the worktree"),
    ]
    assert idle.path.is_dir() and leased.path.is_dir() and dirty.path.is_dir()
    assert not merged.path.exists() and not git(repo, "branch", "--list", merged.branch)
    assert not unmerged.path.exists() and git(repo, "rev-parse", unmerged.branch) == unmerged_tip
    assert unmerged.name in [w.name for w in wtm.list_worktrees(root=repo)]  # still reported next time

    later = utc_now() + timedelta(seconds=120)  # the lease has expired by then
    actions = {c.name: c.action for c in wtm.cleanup_stale(root=repo, now=later)}
    assert actions == {idle.name: "removed", leased.name: "removed", unmerged.name: "branch_kept",
                       dirty.name: "kept"}
    assert not git(repo, "branch", "--list", idle.branch)
    assert git(repo, "rev-parse", unmerged.branch) == unmerged_tip


def test_finish_commits_and_enqueues(repo):
    wt = wtm.create("TASK-1", "executor-1", root=repo)
    assert mq.finish(wt, "nothing done") is None and mq.pending(root=repo) == []
    env = wtm.run_env(wt)
    assert env["SWARM_ROOT"] == str(repo) and env["SWARM_WORKTREE"] == str(wt.path)
    (wt.path / "a.txt").write_text("done\n")
    entry = mq.finish(wt, "Do it")
    assert mq.pending(root=repo) == [entry] and entry.branch == wt.branch and entry.worktree == wt.name


# ---------------------------------------------------------------------------- merge queue


def test_three_executors_merge_cleanly_in_completion_order(repo):
    a = _work(repo, "TASK-1", "executor-1", {"a.txt": "from executor-1\n"})
    b = _work(repo, "TASK-2", "executor-2", {"b.txt": "from executor-2\n"})
    c = _work(repo, "TASK-3", "executor-3", {"c.txt": "from executor-3\n"})
    order = [b, c, a]  # the order they finished in
    tips = [git(repo, "rev-parse", wt.branch) for wt in order]
    for wt in order:
        mq.enqueue(wt, root=repo)
    events.append_event("completed", "executor-1", "TASK-1", root=repo)
    assert "events.yaml" in git(repo, "status", "--porcelain")  # the runtime's own files may be dirty
    results = mq.process_queue(root=repo)
    assert [(r.branch, r.status) for r in results] == [(wt.branch, mq.MergeStatus.MERGED) for wt in order]
    for name, agent in (("a.txt", "executor-1"), ("b.txt", "executor-2"), ("c.txt", "executor-3")):
        assert (repo / name).read_text() == f"from {agent}\n"
    merges = git(repo, "log", "--first-parent", "--merges", "--reverse", "--format=%H %P", "main").splitlines()
    assert [line.split()[2] for line in merges] == tips
    merged = _events(repo, "merged")
    assert [(e["task_id"], e["agent"], e["branch"]) for e in merged] == [
        (wt.task_id, wt.agent_id, wt.branch) for wt in order]
    assert [e["commit"] for e in merged] == [r.commit for r in results] == [m.split()[0] for m in merges]
    assert mq.pending(root=repo) == [] and mq.process_queue(root=repo) == []
    assert wtm.list_worktrees(root=repo) == []  # no leases: merged worktrees are retired
    text = (repo / ".swarm" / "merge-queue.yaml").read_text()
    assert text.startswith("queue:\n- {") and len(text.splitlines()) == 7


def test_conflict_merges_nothing_and_flags_the_task(repo):
    first = _work(repo, "TASK-1", "executor-1", {"shared.txt": "one\nTWO by 1\nthree\n"})
    second = _work(repo, "TASK-2", "executor-2", {"shared.txt": "one\nTWO by 2\nthree\n"})
    assert mq.merge_branch(first, root=repo).status is mq.MergeStatus.MERGED
    head, tree = git(repo, "rev-parse", "HEAD"), _tree(repo)
    second_tip = git(repo, "rev-parse", second.branch)

    result = mq.merge_branch(second.branch, root=repo)
    assert result.status is mq.MergeStatus.CONFLICT and result.files == ("shared.txt",)
    assert git(repo, "rev-parse", "HEAD") == head and _tree(repo) == tree
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=no").splitlines() == [
        " M events.yaml", " M tasks/active/TASK-2.md"]
    assert git(repo, "rev-parse", second.branch) == second_tip and second.path.is_dir()
    task = task_store.find_task("TASK-2", root=repo)
    assert task.status is tasks.Status.NEEDS_ATTENTION and task.field("Merge Conflict") == "shared.txt"
    assert len(_events(repo, "merged")) == 1
    [conflict] = _events(repo, "merge_conflict")
    assert (conflict["task_id"], conflict["agent"], conflict["files"]) == ("TASK-2", "executor-2", ["shared.txt"])
    assert len(git(repo, "log", "--merges", "--format=%H").splitlines()) == 1


def test_queue_goes_on_after_a_conflict(repo):
    first = _work(repo, "TASK-1", "executor-1", {"shared.txt": "1\n"})
    second = _work(repo, "TASK-2", "executor-2", {"shared.txt": "2\n"})
    third = _work(repo, "TASK-3", "executor-3", {"c.txt": "3\n"})
    for wt in (first, second, third):
        mq.enqueue(wt, root=repo)
    statuses = [r.status.value for r in mq.process_queue(root=repo)]
    assert statuses == ["merged", "conflict", "merged"]
    assert [e.status for e in mq.read_queue(root=repo)] == statuses
    assert [w.name for w in wtm.list_worktrees(root=repo)] == [second.name]


def test_dirty_root_refuses_and_merges_nothing(repo):
    wt = _work(repo, "TASK-1", "executor-1", {"b.txt": "agent\n"})
    entry = mq.enqueue(wt, root=repo)
    (repo / "a.txt").write_text("an operator's unsaved edit\n")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(wtm.MergeRefused, match="uncommitted changes to tracked files: a.txt"):
        mq.process_queue(root=repo)
    assert git(repo, "rev-parse", "HEAD") == head and mq.pending(root=repo) == [entry]
    assert (repo / "a.txt").read_text() == "an operator's unsaved edit\n"
    git(repo, "checkout", "-q", "-b", "elsewhere")
    (repo / "a.txt").write_text("a.txt v1\n")
    with pytest.raises(wtm.MergeRefused, match="not the base branch main"):
        mq.merge_branch(wt, root=repo)


def test_a_crash_before_the_done_line_does_not_merge_twice(repo, monkeypatch):
    wt = _work(repo, "TASK-1", "executor-1", {"a.txt": "agent\n"})
    mq.enqueue(wt, root=repo)
    real_append = mq._append

    def crash_on_done(cfg, record):
        if record["op"] == "done":
            raise KeyboardInterrupt  # the process dies between the merge commit and its done line
        real_append(cfg, record)

    monkeypatch.setattr(mq, "_append", crash_on_done)
    with pytest.raises(KeyboardInterrupt):
        mq.process_queue(root=repo)
    monkeypatch.setattr(mq, "_append", real_append)
    assert [r.status for r in mq.process_queue(root=repo)] == [mq.MergeStatus.UP_TO_DATE]
    assert len(git(repo, "log", "--merges", "--format=%H").splitlines()) == 1


def test_a_direct_merge_of_a_queued_branch_leaves_it_for_the_queue(repo):
    wt = _work(repo, "TASK-1", "executor-1", {"a.txt": "agent\n"})
    mq.enqueue(wt, root=repo)
    assert mq.merge_branch(wt, root=repo).status is mq.MergeStatus.MERGED
    assert wtm.list_worktrees(root=repo) == [wt]  # not retired while the queue still names its branch
    assert [r.status for r in mq.process_queue(root=repo)] == [mq.MergeStatus.UP_TO_DATE]
    assert wtm.list_worktrees(root=repo) == [] and _events(repo, "merge_failed") == []


def test_queue_file_fails_closed_and_skips_a_torn_tail(repo):
    wt = _work(repo, "TASK-1", "executor-1", {"a.txt": "agent\n"})
    entry = mq.enqueue(wt, root=repo)
    queue = repo / ".swarm" / "merge-queue.yaml"
    with open(queue, "a") as handle:
        handle.write("- {id: abc, op: enq")  # a crash mid-append
    assert mq.pending(root=repo) == [entry]
    for bad in (b"queue:\n- {id: x, op: enqueue\n", b"- just a list\n", b"queue:\n- {id: x, op: shred}\n"):
        queue.write_bytes(bad)
        with pytest.raises((ParseError, ValidationError), match="merge-queue.yaml"):
            mq.process_queue(root=repo)
        assert queue.read_bytes() == bad


def test_enqueue_checks_its_input(repo):
    with pytest.raises(NotFoundError):
        mq.enqueue("swarm/none/branch", "TASK-1", "executor-1", root=repo)
    git(repo, "branch", "feature")
    with pytest.raises(ValidationError, match="task id and agent id"):
        mq.enqueue("feature", root=repo)
    assert mq.enqueue("feature", "TASK-1", "operator", root=repo).base == "main"


def _process(root: str) -> list[str]:
    return [f"{r.branch} {r.status.value}" for r in mq.process_queue(root=root)]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_three_processes_merge_each_branch_exactly_once(repo, backend):
    made = [_work(repo, f"TASK-{n % 3 + 1}", f"executor-{n}", {f"file-{n}.txt": f"{n}\n"}) for n in range(6)]
    for wt in made:
        mq.enqueue(wt, root=repo)
    tips = {git(repo, "rev-parse", wt.branch) for wt in made}
    outcomes = [line for done in run_together(_process, [(str(repo),)] * 3) for line in done]
    assert sorted(outcomes) == sorted(f"{wt.branch} merged" for wt in made)
    merges = git(repo, "log", "--merges", "--format=%P").splitlines()
    assert len(merges) == 6 and {line.split()[1] for line in merges} == tips
    assert [e["branch"] for e in _events(repo, "merged")] == [wt.branch for wt in made]  # queue order
    assert all((repo / f"file-{n}.txt").exists() for n in range(6))
    assert (repo / ".swarm" / "merge-queue.yaml").exists() == (backend is None)  # on Redis: the server's list


def _create_two(root: str, agent: str) -> list[str]:
    made = [wtm.create("TASK-1", agent, root=root) for _ in range(2)]
    for wt in made:
        (wt.path / f"{wt.name}.txt").write_text("x\n")
        wtm.commit(wt)
    return [wt.name for wt in made]


def test_executors_create_worktrees_at_once(repo):
    names = [n for made in run_together(_create_two, [(str(repo), f"executor-{n}") for n in range(3)]) for n in made]
    assert sorted(names) == sorted(w.name for w in wtm.list_worktrees(root=repo)) and len(set(names)) == 6
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 7
    assert git(repo, "status", "--porcelain") == ""


# ---------------------------------------------------------------------------- CLI


def _cli(*args, cwd):
    return subprocess.run([sys.executable, str(LIB / "worktrees.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_cli(repo, tmp_path):
    assert _cli("--help", cwd=tmp_path).returncode == 0
    made = _cli("--root", str(repo), "--json", "create", "TASK-1", "executor-1", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    name = json.loads(made.stdout)["name"]
    listed = json.loads(_cli("--root", str(repo), "--json", "list", cwd=tmp_path).stdout)
    assert [(w["name"], w["task_id"], w["exists"]) for w in listed] == [(name, "TASK-1", True)]
    (repo / ".swarm" / "worktrees" / name / "a.txt").write_text("cli\n")
    wtm.commit(wtm.get_worktree(name, root=repo))
    assert _cli("--root", str(repo), "enqueue", name, cwd=tmp_path).returncode == 0
    merged = _cli("--root", str(repo), "merge", "--all", cwd=tmp_path)
    assert merged.returncode == 0 and merged.stdout.startswith("merged"), merged.stderr
    missing = _cli("--root", str(repo), "remove", "no-such-worktree", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "no worktree named" in missing.stderr
    assert _cli("--root", str(repo), "merge", cwd=tmp_path).returncode == 2
