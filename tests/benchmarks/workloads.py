"""The Swarmfile side of each benchmark row, and the workspaces the rows run on.

Gang jobs take ``(barrier, index, ...)`` (see ``harness.Gang``); ``cold_*`` functions run as
the first call in a fresh process. Fixtures are written directly (no locks, no fsync): they
are set-up, not measurement.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

LIB = Path(__file__).resolve().parents[2] / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))

import agent_discovery  # noqa: E402
import claims  # noqa: E402
import doctor  # noqa: E402
import events  # noqa: E402
from swarmfile import task_index  # noqa: E402
from swarmfile.task_document import render_task  # noqa: E402
from swarmfile.clock import HOSTNAME, format_ts
from swarmfile.config import load_config  # noqa: E402
from swarmfile.event_log_file import HEADER as LOG_HEADER  # noqa: E402
from swarmfile.fileio import dump_yaml  # noqa: E402
from swarmfile.liveness import process_start_time  # noqa: E402

import baselines  # noqa: E402
from harness import in_fresh_process, profiled  # noqa: E402

__all__ = [
    "task_specs", "make_workspace", "write_tasks", "write_event_log", "write_heartbeats",
    "swarm_claim_worker", "swarm_append_worker", "cold_call", "settle_task_index", "doctor_check", "read_lines",
]

_PRIORITIES = (("critical", 3), ("high", 2), ("medium", 1), ("low", 0))
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------- fixtures


def task_specs(n: int, deps_every: int = 0) -> list[dict]:
    """``n`` tasks of mixed priority, oldest first; every ``deps_every``-th depends on the one before.

    The dependency is on a pending task, so such a task is not ready: the ready query must
    look its dependency up, as it would in a real backlog.
    """
    specs = []
    for i in range(n):
        word, rank = _PRIORITIES[i % len(_PRIORITIES)]
        deps = [f"TASK-{i - 1:06d}"] if deps_every and i and i % deps_every == 0 else []
        specs.append({"task_id": f"TASK-{i:06d}", "priority": word, "rank": rank,
                      "created": format_ts(_EPOCH + timedelta(seconds=i)), "depends_on": deps})
    return specs


def make_workspace(parent: str, name: str) -> Path:
    """An empty workspace (the layout of tests/conftest.py's ``workspace`` fixture)."""
    root = Path(parent) / name
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir(parents=True)
    (root / "heartbeat.yaml").write_text("heartbeats: {}\nmetadata:\n  timeout_seconds: 120\n")
    (root / "events.yaml").write_text("events:\n")
    return root


def write_tasks(root: Path, specs: list[dict]) -> None:
    """One task Markdown file per spec in tasks/active, as ``render_task`` writes them."""
    active = root / "tasks" / "active"
    for spec in specs:
        text = render_task(
            spec["task_id"], f"Implement feature {spec['task_id'][-4:]} of the importer",
            priority=spec["priority"], type="implement (feature)", created=spec["created"],
            depends_on=spec["depends_on"],
            objective="Add the importer step that reads the vendor CSV export, validates each row "
                      "against the schema and writes the accepted rows to the staging table.",
            criteria=["rows that fail validation are reported with their line number",
                      "the step is idempotent: a second run imports nothing new",
                      "unit tests cover empty, malformed and duplicate input"],
            files=["src/importer/csv_step.py", "tests/test_csv_step.py"],
        )
        (active / f"{spec['task_id']}.md").write_text(text, encoding="utf-8")


def write_event_log(path: Path, count: int) -> None:
    """An events.yaml of ``count`` one-line events in the format append_event writes, written directly."""
    stamp = _EPOCH
    chunk = []
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(LOG_HEADER)
        for i in range(count):
            if i % 1000 == 0:
                ts = format_ts(stamp + timedelta(seconds=i // 1000))
            chunk.append(f"- {{timestamp: '{ts}', type: progress, agent: executor-{i % 8}, "
                         f"task_id: TASK-{i % 5000:06d}, step: {i}}}\n")
            if len(chunk) >= 10000:
                handle.write("".join(chunk))
                chunk = []
        handle.write("".join(chunk))


def write_heartbeats(path: Path, n: int, local_every: int = 10) -> None:
    """A heartbeat.yaml of ``n`` agents, all seen now, in the format the module writes.

    Every ``local_every``-th agent is on this host and names this (live) process, so discovery
    probes it; the rest are on other hosts, where ``last_seen`` alone decides, as for most
    agents of a many-host swarm.
    """
    now = format_ts()
    me = os.getpid()
    start = process_start_time(me)
    beats = {}
    for i in range(n):
        local = i % local_every == 0
        beats[f"agent-{i:04d}"] = {
            "last_seen": now, "status": "running", "current_action": "executing",
            "current_task": f"TASK-{i:06d}", "role": "executor" if i else "planner",
            "pid": me if local else 20000 + i, "host": HOSTNAME if local else f"box{i % 7}",
            "started_at": now, "proc_start": start if local else 4242,
        }
    data = {"heartbeats": beats, "metadata": {"timeout_seconds": 120, "last_updated": now, "updated_by": "bench"}}
    path.write_text(dump_yaml(data), encoding="utf-8")


# ---------------------------------------------------------------------------- gang jobs


def swarm_claim_worker(barrier: Any, index: int, root: str, profile: Optional[str] = None) -> dict:
    """Gang job: ``claims.claim_next`` until nothing is ready; ids, per-claim latencies, start, end.

    The task cache is warmed before the barrier: a running executor has listed the tasks before.
    """
    agent = f"executor-{index}"
    claims.ready_tasks(root=root)
    barrier.wait()
    got, lat = [], []
    with profiled(profile if index == 0 else None):
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            lease = claims.claim_next(agent, root=root)
            if lease is None:
                break
            lat.append(time.perf_counter() - t0)
            got.append(lease.task_id)
        end = time.perf_counter()
    return {"start": start, "end": end, "ids": got, "lat": lat}


def journal_claim_worker(barrier: Any, index: int, root: str) -> dict:
    """Gang job: claims on the lease journal alone, the floor under ``swarm_claim_worker``: the
    same lock, re-read and one-line durable append per claim, none of the task Markdown (no
    listing, no re-read of the task file, no Status line). Tasks in claim order, listed before
    the barrier; a task another worker locks or holds is skipped, as claim_next skips it."""
    from swarmfile.errors import LockTimeout
    from swarmfile.lease_store import Lease
    from swarmfile.stores import lease_table

    agent = f"executor-{index}"
    cfg = load_config(root=root)
    table = lease_table(cfg)
    order = [task.task_id for task in claims.ready_tasks(root=root)]
    ident = {"pid": os.getpid(), "host": HOSTNAME, "proc_start": process_start_time(os.getpid())}
    barrier.wait()
    got, lat = [], []
    start = time.perf_counter()
    for task_id in order:
        t0 = time.perf_counter()
        if table.read(task_id) is not None:
            continue
        try:
            with table.lock(task_id, timeout=0):
                current = table.read(task_id)
                if current is not None:
                    continue
                now = table.now()
                table.write(Lease(task_id=task_id, agent_id=agent, token=1, acquired_at=format_ts(now),
                                  expires_at=format_ts(now + timedelta(seconds=cfg.lease_seconds)), **ident))
        except LockTimeout:
            continue
        lat.append(time.perf_counter() - t0)
        got.append(task_id)
    return {"start": start, "end": time.perf_counter(), "ids": got, "lat": lat}


def swarm_append_worker(barrier: Any, index: int, root: str, count: int, profile: Optional[str] = None) -> dict:
    """Gang job: ``count`` calls of ``events.append_event`` (fsync as configured)."""
    agent = f"executor-{index}"
    load_config(root=root)
    barrier.wait()
    with profiled(profile if index == 0 else None):
        start = time.perf_counter()
        for seq in range(count):
            events.append_event("progress", agent, f"TASK-{seq % 100:06d}", root=root, step=seq)
        end = time.perf_counter()
    return {"start": start, "end": end, "count": count}


# ---------------------------------------------------------------------------- first calls


def settle_task_index(root: Path) -> None:
    """Wait until the task files just written are older than the racily-clean window, then list them
    once in a fresh process: the index a workspace has after its first listing (task_index.py)."""
    newest = max(p.stat().st_ctime_ns for p in (root / "tasks" / "active").glob("*.md"))
    wait = (newest + task_index.RACY_NS - time.time_ns()) / 1e9 + 0.05
    if wait > 0:
        time.sleep(wait)  # ctime cannot be set back: only time makes a file settled
    in_fresh_process(cold_call, "swarm", "ready", str(root))


def cold_call(system: str, op: str, where: str) -> float:
    """Seconds taken by the first ``op`` (ready, ready_noindex or claim) of ``system`` in this fresh process.

    ``system`` "floor": one scandir and one stat of every task file, the least a cold listing that
    checks each file's stat key must do (the floor under the cold ready rows).

    Imports are done before the clock starts (the CLI row measures them); the SQLite time
    includes opening the connection, as Swarmfile's includes loading its config.
    ``ready_noindex`` deletes the task index first (untimed): the listing parses every file.
    """
    if op == "ready_noindex":
        task_index.index_file(load_config(root=where).runtime_dir).unlink(missing_ok=True)
    t0 = time.perf_counter()
    if system == "floor":  # what any cold listing that checks every file's stat key must do, and no more
        found = 0
        for folder in ("active", "completed"):
            with os.scandir(os.path.join(where, "tasks", folder)) as entries:
                for entry in entries:
                    entry.stat()
                    found += 1
    elif system == "swarm":
        if op in ("ready", "ready_noindex"):
            found = claims.ready_tasks(root=where)
        else:
            found = claims.claim_next("executor-cold", root=where)
    else:
        conn = baselines.sqlite_connect(where)
        try:
            found = baselines.sqlite_ready(conn) if op == "ready" else baselines.sqlite_claim(conn, "executor-cold")
        finally:
            conn.close()
    elapsed = time.perf_counter() - t0
    if not found:
        raise RuntimeError(f"cold {system} {op} found nothing to return in {where}")
    return elapsed


def doctor_check(root: str) -> dict:
    """``doctor.check`` of the workspace in this fresh process: seconds, findings, peak RSS (KB)."""
    import resource
    # What check imports on first use: the row times the check, the CLI rows time start-ups.
    for name in ("agent_discovery", "agent_registry_file", "chat", "claims", "event_check", "event_log_file",
                 "events", "lease_journal", "lease_store", "liveness", "merge_queue", "reservations", "state_sync",
                 "stores", "task_graph", "worktrees"):
        importlib.import_module(f"swarmfile.{name}")

    t0 = time.perf_counter()
    findings, files = doctor.check(root=root)
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "findings": len(findings), "files": files,
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def read_lines(path: str) -> dict:
    """The baseline of the doctor row: read the file line by line once, in this fresh process."""
    import resource

    t0 = time.perf_counter()
    count = 0
    with open(path, "rb") as handle:
        for _ in handle:
            count += 1
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "lines": count, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


# Re-exported for run.py, so it needs one import for the Swarmfile side.
ready_tasks = claims.ready_tasks
claim_next = claims.claim_next
tail = events.tail
heartbeat = agent_discovery.heartbeat
discover_agents = agent_discovery.discover_agents
