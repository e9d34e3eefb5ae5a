"""The demo behind ``python lib/swarm.py demo``: a planner and executors on sample tasks.

``--backend redis`` (or a Redis URL) runs it on two simulated hosts instead: two clones of one
bare remote sharing a Redis server (``run_demo_on_hosts``).

It scaffolds a workspace (a fresh temp directory unless ``--root`` is given), writes sample
tasks (a large parallelizable one, independent small ones, one with a dependency), starts
one planner and N executors as real processes running the bundled simulated agent, prints
the events as they happen, and ends with a summary. It succeeds only if every task was
completed exactly once.
"""

from __future__ import annotations

import os
import queue
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from . import claims
from . import events
from . import tasks
from . import task_store
from . import workspace as workspaces
from .cli import module_argv, print_json, table
from .liveness import stop_processes
from .redis_backend import redact

__all__ = ["run_demo", "run_demo_on_hosts", "SAMPLE_TASKS"]


SAMPLE_TASKS: list[dict[str, Any]] = [
    dict(task_id="DEMO-1", title="Add input validation to the signup form", priority="high",
         objective="Reject malformed e-mail addresses before they reach the API.",
         criteria=["Validation function in `app/validate.py`", "Error message shown next to the field"],
         files=["app/validate.py"]),
    dict(task_id="DEMO-2", title="Write the changelog for release 2.1", priority="medium",
         objective="Summarise the merged changes for users.", criteria=["CHANGELOG.md has a 2.1 section"],
         files=["CHANGELOG.md"]),
    dict(task_id="DEMO-3", title="Fix the flaky payment retry test", priority="critical",
         objective="The retry test fails one run in ten; make it deterministic.",
         criteria=["Test passes 100 runs in a row"], files=["tests/test_payments.py"]),
    dict(task_id="DEMO-4", title="Upgrade the HTTP client library", priority="medium",
         objective="Move to the new major version of the HTTP client.",
         criteria=["Dependency bumped", "Call sites updated"], files=["requirements.txt"]),
    dict(task_id="DEMO-5", title="Document the new payment retry behaviour", priority="low",
         objective="Explain the retry policy once the flaky test is fixed.",
         criteria=["Guide section written"], files=["docs/payments.md"], depends_on=["DEMO-3"]),
    dict(task_id="DEMO-6", title="Build the monthly reports", priority="low",
         objective="Build three independent reports; each can be done separately and in parallel.",
         criteria=["Sales report in `reports/sales.py`", "Stock report in `reports/stock.py`",
                   "Staff report in `reports/staff.py`"],
         files=["reports/sales.py", "reports/stock.py", "reports/staff.py"]),
]


def _make_repo(root: Path) -> bool:
    """Make the workspace a git repository with one commit, so executors can use worktrees."""
    if shutil.which("git") is None:
        return False
    if not (root / ".git").exists():
        run = lambda *args: subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
        run("init", "-q")
        run("config", "user.name", "Swarmfile demo")
        run("config", "user.email", "demo@swarm.local")
        (root / "README.md").write_text("# Demo project\n\nEdited by simulated agents.\n")
        run("add", "README.md")
        run("commit", "-qm", "Demo project")
    return True


def _write_samples(root: Path) -> None:
    for n, sample in enumerate(SAMPLE_TASKS):
        spec = dict(sample)
        task_store.new_task_file(spec.pop("task_id"), spec.pop("title"), root=root,
                            created=f"2026-01-01T00:00:{n:02d}Z", **spec)


_SETTLED = {tasks.Status.COMPLETED, tasks.Status.BLOCKED, tasks.Status.NEEDS_ATTENTION, tasks.Status.CANCELLED}


def _settled(root: Path) -> bool:
    """Nothing left to run: every task completed, or waiting for a person."""
    every = task_store.list_tasks(root=root, include_completed=True, errors=[])
    return bool(every) and all(t.status in _SETTLED for t in every)


def _line(event: dict, start: float) -> str:
    extra = {k: v for k, v in event.items()
             if k in ("to", "sub_tasks", "error", "duration_seconds", "reason", "attempt", "commit", "files")}
    if "commit" in extra:
        extra["commit"] = str(extra["commit"])[:10]
    detail = " ".join(f"{k}={v}" for k, v in extra.items())
    return (f"  {time.monotonic() - start:5.1f}s  {event.get('agent', ''):<11} {event.get('type', ''):<13}"
            f"{event.get('task_id') or '':<13} {detail}")[:150]


def _summary(root: Path, log: Optional[list[dict]] = None) -> tuple[bool, list[list[str]], dict[str, Any]]:
    """Every task completed exactly once? Rows for the table and the facts behind them (``log``: the events)."""
    log = events.read_events(root=root) if log is None else log
    completions = Counter(e.get("task_id") for e in log if e.get("type") == "completed")
    failures = Counter(e.get("task_id") for e in log if e.get("type") == "failed")
    by_task = {e.get("task_id"): e for e in log if e.get("type") == "completed"}
    rows, problems = [], []
    for task in sorted(task_store.list_tasks(root=root, include_completed=True, errors=[]), key=lambda t: t.task_id):
        done = by_task.get(task.task_id, {})
        count = completions[task.task_id]
        lease = claims.get_lease(task.task_id, root=root)
        if task.status is not tasks.Status.COMPLETED or count != 1:
            problems.append(f"{task.task_id}: status {task.status_text}, completed {count} times")
        if lease is not None and lease.state is not claims.LeaseState.COMPLETED:
            problems.append(f"{task.task_id}: lease {lease.state.value}")
        rows.append([task.task_id, task.title[:42], done.get("agent", "-"),
                     f"{done['duration_seconds']:.1f}s" if "duration_seconds" in done else "-",
                     str(failures[task.task_id] + 1) if lease else "-", str(count)])
    facts = {"tasks": len(rows), "events_written": len(log), "problems": problems,
             "completed_by": dict(Counter(e.get("agent") for e in by_task.values()))}
    return not problems and bool(rows), rows, facts


def run_demo(*, root: Optional[str] = None, executors: int = 3, timeout: float = 55,
             keep: bool = False, as_json: bool = False) -> bool:
    """Run the demo; True when every task was completed exactly once."""
    made_temp = root is None
    workspace = Path(tempfile.mkdtemp(prefix="swarm-demo-") if made_temp else root).absolute()
    say = (lambda *a: None) if as_json else (lambda *a: print(*a, flush=True))
    workspace.mkdir(parents=True, exist_ok=True)
    use_git = _make_repo(workspace)
    workspaces.init_workspace(root=str(workspace))
    _write_samples(workspace)
    say(f"Swarmfile demo in {workspace}")
    say(f"{len(SAMPLE_TASKS)} sample tasks, 1 planner, {executors} executors running the simulated agent"
        + (" in git worktrees, merged back through the merge queue\n" if use_git else " (no git: no worktrees)\n"))
    env = dict(os.environ, SWARM_ROOT=str(workspace), SIM_DELAY="0.4", SIM_FAIL_ONCE="DEMO-2", PYTHONUNBUFFERED="1")
    sim = " ".join(shlex.quote(part) for part in module_argv("sim_agent")) + " {task_file}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=workspace, env=env)
    procs: list[subprocess.Popen] = []
    start = time.monotonic()
    finished = False
    try:
        procs.append(subprocess.Popen([*module_argv("planner"), "--agent-id", "planner",
                                       "--interval", "0.3", "--ack-timeout", "5"], **quiet))
        for n in range(1, executors + 1):
            procs.append(subprocess.Popen([*module_argv("executor"), "--agent-id", f"executor-{n}",
                                           "--command", sim, "--poll", "0.2", "--backoff", "0.5"]
                                          + (["--worktree"] if use_git else []), **quiet))
        for event in events.follow(root=workspace, timeout=timeout, interval=0.1):
            say(_line(event, start))
            if event.get("type") in ("completed", "blocked", "merge_conflict") and _settled(workspace):
                finished = True
                break
            if any(p.poll() is not None for p in procs):
                break  # a loop died: report it below instead of waiting out the timeout
    finally:
        stop_processes(procs, grace=15)
    elapsed = time.monotonic() - start
    crashed = [(p.args[1], p.stderr.read().decode(errors="replace").strip()) for p in procs
               if p.returncode not in (0, -signal.SIGTERM)]
    for proc in procs:
        proc.stderr.close()
    ok, rows, facts = _summary(workspace)
    if use_git:
        merged = [e.get("task_id") for e in events.read_events(types=["merged"], root=workspace)]
        facts["merged"] = len(merged)
        executed = [e.get("task_id") for e in events.read_events(types=["completed"], root=workspace)
                    if e.get("agent", "").startswith("executor")]
        if sorted(merged) != sorted(executed):
            facts["problems"].append(f"merged {len(merged)} branches for {len(executed)} executed tasks")
            ok = False
    ok = ok and finished and not crashed
    facts.update(workspace=str(workspace), seconds=round(elapsed, 1), ok=ok,
                 crashed=[f"{name}: {err[-300:]}" for name, err in crashed])
    if as_json:
        print_json(facts)
    else:
        say("\n" + table(["TASK", "TITLE", "DONE BY", "TOOK", "RUNS", "COMPLETED"], rows))
        say(f"\n{facts['tasks']} tasks, {facts['events_written']} events, "
            + (f"{facts['merged']} branches merged, " if use_git else "") + f"{elapsed:.1f}s; "
            f"completed by {', '.join(f'{a}: {n}' for a, n in sorted(facts['completed_by'].items()))}")
        for problem in facts["problems"] + facts["crashed"]:
            say(f"PROBLEM {problem}")
        if not finished:
            say(f"PROBLEM the tasks did not settle within {timeout:g}s")
        say("every task completed exactly once" if ok else "demo FAILED")
    if made_temp and not keep and ok:
        shutil.rmtree(workspace, ignore_errors=True)
    elif not as_json:
        say(f"workspace kept: {workspace}")
    return ok


# ---------------------------------------------------------------------------- two hosts on Redis

_HOSTS = ("host-a", "host-b")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def _hosts_repo(base: Path, url: str) -> list[Path]:
    """A bare remote and one clone per simulated host, each a workspace on the Redis backend."""
    remote, seed = base / "remote.git", base / "seed"
    _git(base, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(base, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# Demo project\n\nEdited by simulated agents on two hosts.\n")
    (seed / ".gitignore").write_text(".swarm/\ntasks/\nevents.yaml\nheartbeat.yaml\nswarm.yaml\n")
    _git(seed, "add", "-A")
    _git(seed, "-c", "user.name=Swarmfile demo", "-c", "user.email=demo@swarm.local", "commit", "-qm", "Demo project")
    _git(seed, "push", "-q", str(remote), "main")
    shutil.rmtree(seed)
    namespace = f"swarm-demo-{os.getpid()}-{int(time.time())}"  # a server that was given may hold other demos
    roots = []
    for name in _HOSTS:
        root = base / name
        _git(base, "clone", "-q", str(remote), str(root))
        _git(root, "config", "user.name", f"Swarmfile demo on {name}")
        _git(root, "config", "user.email", f"demo@{name}.swarm.local")
        (root / "swarm.yaml").write_text(f"backend: {url}\nnamespace: {namespace}\ntask_board: true\n"
                                         "worktrees:\n  remote: origin\n  base_branch: main\n")
        workspaces.init_workspace(root=str(root))
        roots.append(root)
    return roots


def _follow_all(roots: list[Path], timeout: float, sink: "queue.Queue[dict]", stop: threading.Event) -> None:
    """Every host's events into ``sink``; the same event read on two hosts (a shared log) comes once."""
    seen: set = set()
    guard = threading.Lock()

    def one(host_root: Path) -> None:
        for event in events.follow(root=host_root, timeout=timeout, interval=0.1, stop=stop.is_set):
            key = (event.get("timestamp"), event.get("type"), event.get("agent"), event.get("task_id"))
            with guard:
                if key in seen:
                    continue
                seen.add(key)
            sink.put(event)

    for root in roots:
        threading.Thread(target=one, args=(root,), daemon=True).start()


def run_demo_on_hosts(*, backend: str, executors: int = 3, timeout: float = 90, keep: bool = False,
                      as_json: bool = False) -> bool:
    """The demo on two simulated hosts sharing a Redis backend; True when every task was completed exactly once.

    ``backend``: ``redis`` to start a private redis-server (a free loopback port, AOF always, in
    the temp folder), or a Redis URL to use that server. Host A is the operator checkout (its
    planner publishes the sample tasks and mirrors their status); executors alternate between the
    hosts; finished branches merge into the shared remote's base.
    """
    from . import redis_local

    say = (lambda *a: None) if as_json else (lambda *a: print(*a, flush=True))
    if shutil.which("git") is None:
        say("the demo on two hosts needs git (each host is a clone of one remote)")
        return False
    base = Path(tempfile.mkdtemp(prefix="swarm-demo-redis-")).absolute()
    server = None
    try:
        if backend == "redis":
            server = redis_local.LocalRedis(base / "redis").start()
        ok = _on_hosts(base, server.url if server else backend, server is not None, executors, timeout, say, as_json)
    finally:
        if server is not None:
            server.stop()
    if not keep and ok:
        shutil.rmtree(base, ignore_errors=True)
    elif not as_json:
        say(f"workspace kept: {base}")
    return ok


def _on_hosts(base: Path, url: str, private: bool, executors: int, timeout: float, say: Any, as_json: bool) -> bool:
    procs: list[tuple[str, subprocess.Popen]] = []
    roots = _hosts_repo(base, url)
    start_at = time.monotonic()
    try:
        operator = roots[0]
        _write_samples(operator)
        say(f"Swarmfile demo on two simulated hosts in {base}")
        say(f"Redis: {'a private redis-server, ' if private else ''}{redact(url)}; "
            f"{len(SAMPLE_TASKS)} sample tasks in {_HOSTS[0]}'s checkout (the operator's), 1 planner there, "
            f"{executors} executors on {' and '.join(_HOSTS)}, branches merged through the shared remote\n")
        host_of = {"planner": _HOSTS[0], **{f"executor-{n}": _HOSTS[(n - 1) % 2] for n in range(1, executors + 1)}}
        sim = " ".join(shlex.quote(part) for part in module_argv("sim_agent")) + " {task_file}"

        def start(agent: str, argv: list[str]) -> None:
            root = roots[_HOSTS.index(host_of[agent])]
            # The simulated agent remembers its one failure per workspace: only host A's fails, once.
            env = dict(os.environ, SWARM_ROOT=str(root), SWARM_HOST=host_of[agent], SIM_DELAY="0.4",
                       SIM_FAIL_ONCE="DEMO-2" if root == operator else "", PYTHONUNBUFFERED="1")
            procs.append((agent, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=root,
                                                  env=env)))

        stop = threading.Event()
        sink: "queue.Queue[dict]" = queue.Queue()
        _follow_all(roots, timeout, sink, stop)
        start("planner", [*module_argv("planner"), "--agent-id", "planner", "--interval", "0.3", "--ack-timeout", "5"])
        for n in range(1, executors + 1):
            start(f"executor-{n}", [*module_argv("executor"), "--agent-id", f"executor-{n}", "--command", sim,
                                    "--poll", "0.2", "--backoff", "0.5", "--worktree"])
        finished = False
        while time.monotonic() - start_at < timeout and not any(p.poll() is not None for _, p in procs):
            try:
                event = sink.get(timeout=0.5)
            except queue.Empty:
                continue
            say(f"{host_of.get(event.get('agent', ''), ''):<7}" + _line(event, start_at))
            if event.get("type") in ("completed", "blocked", "merge_conflict") and _settled(operator):
                finished = True
                break
        stop.set()
    finally:
        stop_processes((proc for _, proc in procs), grace=15)
    elapsed = time.monotonic() - start_at
    crashed = [(agent, p.stderr.read().decode(errors="replace").strip()) for agent, p in procs
               if p.returncode not in (0, -signal.SIGTERM)]
    for _, proc in procs:
        proc.stderr.close()
    log = _merged_logs(roots)
    ok, rows, facts = _summary(operator, log)
    merged = [e.get("task_id") for e in log if e.get("type") == "merged"]
    executed = [e.get("task_id") for e in log if e.get("type") == "completed" and e.get("agent", "").startswith("executor")]
    if sorted(merged) != sorted(executed):
        facts["problems"].append(f"merged {len(merged)} branches for {len(executed)} executed tasks")
        ok = False
    by_host = Counter(host_of.get(e.get("agent", ""), "?") for e in log
                      if e.get("type") == "completed" and e.get("agent", "").startswith("executor"))
    ok = ok and finished and not crashed
    facts.update(workspace=str(base), seconds=round(elapsed, 1), ok=ok, merged=len(merged),
                 completed_on=dict(by_host), crashed=[f"{name}: {err[-300:]}" for name, err in crashed])
    if as_json:
        print_json(facts)
    else:
        say("\n" + table(["TASK", "TITLE", "DONE BY", "TOOK", "RUNS", "COMPLETED"], rows))
        say(f"\n{facts['tasks']} tasks, {len(merged)} branches merged into the remote, {elapsed:.1f}s; completed on "
            + ", ".join(f"{h}: {n}" for h, n in sorted(by_host.items())))
        for problem in facts["problems"] + facts["crashed"]:
            say(f"PROBLEM {problem}")
        if not finished:
            say(f"PROBLEM the tasks did not settle within {timeout:g}s")
        say("every task completed exactly once, on two hosts" if ok else "demo FAILED")
    return ok


def _merged_logs(roots: list[Path]) -> list[dict]:
    """The events of every host, once each (one shared log reads the same on every host), by time."""
    seen, out = set(), []
    for root in roots:
        for event in events.read_events(root=root):
            key = (event.get("timestamp"), event.get("type"), event.get("agent"), event.get("task_id"))
            if key not in seen:
                seen.add(key)
                out.append(event)
    return sorted(out, key=lambda e: str(e.get("timestamp", "")))
