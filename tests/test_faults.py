"""Fault injection: kill -9 mid-write, disk faults, claim races, paused holders, clock jumps.

The quick tier runs by default; ``SWARM_LONG_TESTS=1`` adds the long tier (more kills, more
tasks, more schedules). ``SWARM_TEST_SEED`` fixes the random choices of a run (kill moments
still vary with the machine); assertion messages carry the seed.

Kill trials go through a fork server: one interpreter started by subprocess that imports the
runtime once and forks a fresh writer per trial, so a trial costs a millisecond rather than an
interpreter start. The server is single-threaded and holds no lock or open data file when it
forks, so a writer starts as clean as a spawned one. The test process kills each writer with
SIGKILL at a random moment; a writer never exits on its own (on an error it reports and
waits to be killed), so its pid cannot be reused before the kill.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import BACKENDS, snapshot

import agent_discovery
import chat
import claims
import events
import state_sync
from swarmfile import tasks
from swarmfile import task_store
from claims import LeaseState
from swarmfile.clock import HOSTNAME, format_ts, parse_ts, utc_now
from swarmfile.errors import AlreadyClaimed, LeaseLost, NotClaimable, SwarmError
from swarmfile.liveness import process_start_time
from procs import run_together

LIB = Path(__file__).resolve().parent.parent / "lib"
TESTS = Path(__file__).resolve().parent
LONG = bool(os.environ.get("SWARM_LONG_TESTS"))
# The long tier's cases run for minutes (an fsync per step): more than the suite's 2-minute timeout on a
# loaded machine, which is for the default tier's hangs.
LONG_ONLY = [pytest.mark.slow, pytest.mark.skipif(not LONG, reason="long tier: set SWARM_LONG_TESTS=1"),
             pytest.mark.timeout(900)]
SEED = int(os.environ.get("SWARM_TEST_SEED") or random.SystemRandom().randrange(2**32))
TEMP_NAME = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}$")  # fileio.atomic_write's temp files
BASE = datetime(2030, 1, 1, tzinfo=timezone.utc)  # injected clocks start here
KILL_TRIALS = 20 if not LONG else 150  # per kind of write: 120 kills in all, 900 in the long tier


def temp_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*.tmp-*"))


def write_task(root: Path, task_id: str, status: str = "pending", extra: str = "") -> Path:
    path = root / "tasks" / "active" / f"{task_id}.md"
    path.write_text(f"# {task_id}: task {task_id}\n\n**Priority:** medium\n**Status:** {status}\n"
                    f"**Created:** 2026-01-01T00:00:00Z\n{extra}\n## Objective\n\nKeep this line.\n")
    return path


# ============================================================================ 1. kill -9 mid-write


class Violation(AssertionError):
    """The files after a kill are not the state before or after the interrupted write."""


class _Kind:
    """One kind of write under test: set up in the parent, written by the child, observed after a kill.

    ``observe`` returns the index of the last write the files show (0: none) for a rewrite, or
    the list of indices for a log; it raises Violation when the files are not a valid state.
    """

    name = ""
    append = False
    expected_files: tuple[str, ...] = ()

    def setup(self, root: Path) -> None: ...

    def begin(self, root: Path, start: int, req: dict) -> None: ...

    def write(self, root: Path, i: int, req: dict) -> None:
        raise NotImplementedError

    def observe(self, root: Path, acked: Optional[int]) -> Any:
        """``acked``: the last write acknowledged in this trial, None when there was none."""
        raise NotImplementedError


class _Heartbeat(_Kind):
    name = "heartbeat"
    expected_files = ("heartbeat.yaml",)

    def setup(self, root):
        (root / "heartbeat.yaml").write_text(
            "# the agent registry, kept on rewrite\nheartbeats:\n"
            "  other:\n    last_seen: '2026-01-01T00:00:00Z'\n    status: running\n    note: keep me\n"
            "metadata:\n  timeout_seconds: 120\n")

    def write(self, root, i, req):
        agent_discovery.heartbeat("agent-1", root=root, counter=i)

    def observe(self, root, acked):
        agents = {a.agent_id: a for a in agent_discovery.read_agents(root=root)}  # ParseError if torn
        text = (root / "heartbeat.yaml").read_text()
        other = agents.get("other")
        if not text.startswith("# the agent registry") or other is None or other.extra != {"note": "keep me"}:
            raise Violation(f"the rewrite lost what it does not own:\n{text}")
        return agents["agent-1"].extra.get("counter") if "agent-1" in agents else 0


class _NaiveHeartbeat(_Heartbeat):
    """A deliberately broken writer (truncate, then write in two halves): the checker must catch it."""

    name = "naive"

    def write(self, root, i, req):
        text = (root / "heartbeat.yaml").read_text()
        data = re.sub(r"counter: \d+", f"counter: {i}", text) if "counter:" in text else (
            text.replace("metadata:", f"  agent-1:\n    counter: {i}\nmetadata:"))
        payload = data.encode()
        with open(root / "heartbeat.yaml", "r+b") as handle:
            handle.truncate(0)
            handle.write(payload[: len(payload) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            handle.write(payload[len(payload) // 2:])


class _State(_Kind):
    name = "state"
    expected_files = ("agent-state.yaml",)

    def setup(self, root):
        state_sync.sync_agent_state("other", {"note": "keep me", "context": {"status": "working"}}, root=root)

    def write(self, root, i, req):
        state_sync.sync_agent_state("agent-1", {"counter": i}, root=root)

    def observe(self, root, acked):
        states = state_sync.get_all_states(root=root)
        if states["other"].get("note") != "keep me" or states["other"]["context"]["status"] != "working":
            raise Violation(f"the rewrite lost another agent's state: {states}")
        return states.get("agent-1", {}).get("counter", 0)


class _TaskField(_Kind):
    name = "task"
    expected_files = ("tasks/active/T-1.md",)

    def setup(self, root):
        write_task(root, "T-1", extra="**Counter:** 0\n")

    def write(self, root, i, req):
        task_store.set_field(root / "tasks" / "active" / "T-1.md", "Counter", i, root=root)

    def observe(self, root, acked):
        path = root / "tasks" / "active" / "T-1.md"
        task = task_store.load_task(path, use_cache=False)
        others = re.sub(r"\*\*Counter:\*\* \d+", "", path.read_text())
        if others != re.sub(r"\*\*Counter:\*\* \d+", "", write_task_text("T-1")):
            raise Violation(f"the field edit changed other lines:\n{path.read_text()}")
        listed = task_store.list_tasks(root=root, include_completed=True)
        if [t.task_id for t in listed] != ["T-1"]:
            raise Violation(f"a reader saw {[t.path for t in listed]}")
        return int(task.field("Counter"))


def write_task_text(task_id: str) -> str:
    return (f"# {task_id}: task {task_id}\n\n**Priority:** medium\n**Status:** pending\n"
            f"**Created:** 2026-01-01T00:00:00Z\n**Counter:** 0\n\n## Objective\n\nKeep this line.\n")


class _Lease(_Kind):
    """claim, renew, release, claim, ... with an injected clock: write i shows as a known lease.

    Write i happens at BASE + i seconds with a TTL of 1000 s, so a held lease's expires_at
    names the write that made it. The holder pid is the test process (alive), so only the
    token and the state decide, never a dead-pid takeover.
    """

    name = "lease"
    expected_files = (".swarm/leases/journal-0.jsonl", "tasks/active/T-1.md")
    ttl = 1000

    def setup(self, root):
        write_task(root, "T-1")

    def begin(self, root, start, req):
        # Repairs a task file a kill left one write behind its lease (claimed after a release).
        claims.reap_expired(BASE + timedelta(seconds=start), root=root)

    def write(self, root, i, req):
        now = BASE + timedelta(seconds=i)
        op = (i - 1) % 3
        if op == 0:
            claims.claim_task("T-1", "agent-1", self.ttl, root=root, now=now, pid=req["pid"], host=HOSTNAME,
                              proc_start=req["proc_start"])
            return
        lease = claims.get_lease("T-1", root=root)
        if op == 1:
            claims.renew(lease, self.ttl, root=root, now=now)
        else:
            claims.release(lease, root=root, now=now)

    def observe(self, root, acked):
        lease = claims.get_lease("T-1", root=root)
        task = task_store.load_task(root / "tasks" / "active" / "T-1.md", use_cache=False)
        if len(claims.list_leases(root=root)) != (0 if lease is None else 1):
            raise Violation("a reader listed a lease that is not there")
        if lease is None:
            return 0
        made = int((parse_ts(lease.expires_at) - BASE).total_seconds()) - self.ttl
        index = made if lease.state is LeaseState.HELD else made + 1
        op = (index - 1) % 3
        claimed_at = 3 * (lease.token - 1) + 1
        good = (
            lease.agent_id == "agent-1"
            and (op in (0, 1) if lease.state is LeaseState.HELD else lease.state is LeaseState.RELEASED and op == 2)
            and lease.token == (index - 1) // 3 + 1
            and lease.acquired_at == format_ts(BASE + timedelta(seconds=claimed_at))
        )
        if not good:
            raise Violation(f"lease {lease} is no state of the write sequence")
        mirror = tasks.Status.CLAIMED if lease.state is LeaseState.HELD else tasks.Status.PENDING
        # The lease is written first, its task mirror second: only an unacknowledged claim or
        # release may have left the mirror behind (a renew does not write it).
        strict = acked == index and op != 1
        allowed = {mirror} if strict else {tasks.Status.CLAIMED, tasks.Status.PENDING}
        if task.status not in allowed:
            raise Violation(f"task shows {task.status} with lease {lease.state} (write {index})")
        return index


class _Events(_Kind):
    name = "events"
    append = True
    expected_files = ("events.yaml",)

    def write(self, root, i, req):
        events.append_event("tick", "agent-1", root=root, n=i)

    def observe(self, root, acked):
        every = events.read_events(root=root)
        if events.read_events(root=root, limit=3) != every[-3:]:
            raise Violation("the backward tail read disagrees with the full read")
        return [e["n"] for e in every if e["type"] == "tick"]


class _Chat(_Kind):
    name = "chat"
    append = True
    expected_files = ("chat-log.yaml", "events.yaml")

    def write(self, root, i, req):
        chat.send("agent-1", "agent-2", f"n={i}", root=root, type="info")

    def observe(self, root, acked):
        messages = chat.read_messages(root=root)
        ids = [m.id for m in messages]
        if ids != sorted(set(ids)):
            raise Violation(f"message ids not unique and increasing: {ids}")
        events.read_events(root=root)  # each message also logs an event: that log must parse too
        return [int(m.content[2:]) for m in messages]


KINDS: dict[str, _Kind] = {k.name: k for k in (_Heartbeat(), _NaiveHeartbeat(), _State(), _TaskField(),
                                                 _Lease(), _Events(), _Chat())}


def _writer(req: dict) -> None:
    """The forked child: write forever, acknowledging each returned write on the side log."""
    kind = KINDS[req["kind"]]
    root = Path(req["root"])
    ack = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        i = req["start"]
        kind.begin(root, i, req)
        while True:
            kind.write(root, i, req)
            os.write(ack, f"{i}\n".encode())  # unbuffered: a returned write is on the log before the next
            i += 1
    except BaseException:
        os.write(ack, ("error " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        while True:  # stay alive until the parent's kill: our pid must not be reused before it
            signal.pause()


def _serve() -> None:
    """Fork server loop: one JSON request per line; replies with the child's pid, then its wait status."""
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _writer(req)
            finally:
                os._exit(3)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)


class ForkServer:
    def __init__(self, tmp_path: Path) -> None:
        self.errors = open(tmp_path / "forkserver.stderr", "w+")
        boot = "import sys; sys.path[:0] = sys.argv[1:3]; import test_faults; test_faults._serve()"
        self.proc = subprocess.Popen([sys.executable, "-c", boot, str(LIB), str(TESTS)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errors, text=True, bufsize=1)

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.errors.seek(0)
            raise AssertionError(f"fork server died: {self.errors.read()[-2000:]}")
        return json.loads(line)

    def kill_during(self, req: dict, delay: float) -> int:
        """Start a writer, SIGKILL it after ``delay`` seconds; returns its wait status."""
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = self._reply()["pid"]
        time.sleep(delay)  # the random moment of the kill, by design
        os.kill(pid, signal.SIGKILL)
        return self._reply()["status"]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.errors.close()


def kill_trials(server: ForkServer, kind: _Kind, root: Path, log: Path, trials: int, rng: random.Random,
                span: float = 4) -> dict:
    """Kill a writer of ``kind`` ``trials`` times; check the files after every kill.

    Each kill comes at a random moment within the time of ``span`` writes (measured as it
    goes: disks here are slow and uneven), so kills land in every phase of a write.

    Raises Violation on the first bad state. Returns counts: writes acknowledged, trials whose
    file showed the unacknowledged write (the kill came after it landed), temp files left.
    """
    stats = {"acked": 0, "after": 0, "temps": 0}
    waited = 0.0
    allowed = set(snapshot(root)) | set(kind.expected_files)
    log.touch()  # a writer killed before it opens the log acknowledged nothing
    last = 0
    offset = 0
    for trial in range(trials):
        req = {"kind": kind.name, "root": str(root), "log": str(log), "start": last + 1,
               "pid": os.getpid(), "proc_start": process_start_time(os.getpid())}
        # Until a write is acknowledged the time of one is unknown: guess 10 ms, and double the guess
        # after every trial that acknowledged nothing (a loaded machine starts a writer slowly).
        per_write = waited / stats["acked"] if stats["acked"] else 0.01 * 2 ** min(trial, 8)
        delay = rng.uniform(0, span * per_write)
        waited += delay
        status = server.kill_during(req, delay)
        with open(log) as handle:
            handle.seek(offset)
            lines = handle.read().splitlines()
            offset = handle.tell()
        failed = [line for line in lines if line.startswith("error")]
        assert not failed, f"writer raised (seed {SEED}): {failed[0]}"
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        acked = [int(line) for line in lines]
        assert acked == list(range(last + 1, last + 1 + len(acked))), acked
        top = acked[-1] if acked else last
        where = f"{kind.name} trial {trial} (seed {SEED}): acknowledged up to {top}"
        try:
            seen = kind.observe(root, acked[-1] if acked else None)
        except SwarmError as exc:
            raise Violation(f"{where}, but the files do not read: {exc}") from None
        if kind.append:
            if seen not in (list(range(1, top + 1)), list(range(1, top + 2))):
                raise Violation(f"{where}, the log holds {seen[-5:]} ({len(seen)} entries)")
            seen = len(seen)
        elif seen not in (top, top + 1):
            raise Violation(f"{where}, the file shows write {seen}")
        stats["acked"] += len(acked)
        stats["after"] += seen == top + 1
        extra = [p for p in snapshot(root) if p not in allowed]
        strays = [p for p in extra if not TEMP_NAME.match(Path(p).name)]
        assert not strays, f"{where}: unexpected files {strays}"
        stats["temps"] = len(extra)
        last = seen
    # After the last kill, the next write in a fresh process state works and lands.
    kind.begin(root, last + 1, req)
    kind.write(root, last + 1, req)
    after = kind.observe(root, last + 1)
    assert (len(after) if kind.append else after) == last + 1
    return stats


@pytest.fixture
def fork_server(tmp_path):
    server = ForkServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["heartbeat", "state", "task", "lease", "events", "chat"])
def test_kill_nine_mid_write_leaves_before_or_after(workspace, tmp_path, fork_server, kind):
    """Writers killed at random moments: each file reads, shows the last acknowledged write or
    the one after it, and loses no acknowledged write; leftover temp files are never read."""
    rng = random.Random(f"{SEED}-{kind}")
    KINDS[kind].setup(workspace)
    stats = kill_trials(fork_server, KINDS[kind], workspace, tmp_path / "acks.log", KILL_TRIALS, rng)
    print(kind, stats)
    assert stats["acked"] > 0, stats


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long tier: set SWARM_LONG_TESTS=1")
@pytest.mark.parametrize("kind", ["heartbeat", "state", "task", "lease", "events", "chat"])
def test_kill_nine_slow_kills_land_inside_writes(workspace, tmp_path, fork_server, kind):
    """Long tier: kills spread over a longer window, more writes between kills."""
    rng = random.Random(f"{SEED}-{kind}-slow")
    KINDS[kind].setup(workspace)
    kill_trials(fork_server, KINDS[kind], workspace, tmp_path / "acks.log", 60, rng, span=40)


def test_kill_checker_catches_a_non_atomic_writer(workspace, tmp_path, fork_server):
    """The checker itself can fail: a writer that truncates and writes in two halves is caught."""
    rng = random.Random(f"{SEED}-naive")
    KINDS["naive"].setup(workspace)
    for attempt in range(300):
        try:
            kill_trials(fork_server, KINDS["naive"], workspace, tmp_path / f"acks-{attempt}.log", 1, rng)
        except Violation:
            return
        except SwarmError:
            return  # the torn file did not even parse on the final check: caught as well
        KINDS["naive"].setup(workspace)
    pytest.fail(f"300 kills of a non-atomic writer went unnoticed (seed {SEED})")


# ============================================================================ 2. disk faults


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class DiskFaults:
    """Make os.write / os.fsync / os.replace fail for files whose path contains ``match``.

    ``short``: the first matching write stores only half its bytes and returns the count, every
    later one fails with ENOSPC (the disk filled up mid-write).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.call: Optional[str] = None
        self.err = 0
        self.match = ""
        self.fired = 0
        real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

        def write(fd, data):
            if self.call in ("write", "short") and self.match in _fd_path(fd):
                self.fired += 1
                if self.call == "short" and self.fired == 1 and len(data) > 1:
                    return real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(self.err, os.strerror(self.err))
            return real_write(fd, data)

        def fsync(fd):
            path = _fd_path(fd)
            if ((self.call == "fsync" and self.match in path and os.path.isfile(path))
                    or (self.call == "dirfsync" and os.path.isdir(path) and path == self.match)):
                self.fired += 1
                raise OSError(self.err, os.strerror(self.err))
            return real_fsync(fd)

        def replace(src, dst, **kw):
            if self.call == "replace" and self.match in os.fspath(dst):
                self.fired += 1
                raise OSError(self.err, os.strerror(self.err))
            return real_replace(src, dst, **kw)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def arm(self, call: str, err: int, match: str) -> None:
        self.call, self.err, self.match, self.fired = call, err, match, 0

    def clear(self) -> None:
        self.call = None


class _Op:
    """A write under test: ``do(n)`` makes write number n, ``value()`` says which write the files show.

    ``match`` picks the file the fault hits; ``lease-mirror`` claims like ``lease`` but the fault
    hits the task file the claim mirrors its status into (the second of its two writes).
    """

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.match, self.dir = {
            "heartbeat": ("heartbeat.yaml", root), "state": ("agent-state.yaml", root),
            "task": ("/tasks/active/", root / "tasks" / "active"),
            "lease": ("/leases/", root / ".swarm" / "leases"),
            "lease-mirror": ("/tasks/active/", root / "tasks" / "active"),
            "events": ("events.yaml", root), "chat": ("chat-log.yaml", root)}[name]
        if name == "task":
            write_task(root, "T-1", extra="**Counter:** 0\n")
        if name.startswith("lease"):
            for n in range(1, 6):
                write_task(root, f"T-{n}")

    def do(self, n: int) -> None:
        root = self.root
        if self.name == "heartbeat":
            agent_discovery.heartbeat("agent-1", root=root, counter=n)
        elif self.name == "state":
            state_sync.sync_agent_state("agent-1", {"counter": n}, root=root)
        elif self.name == "task":
            task_store.set_field(root / "tasks" / "active" / "T-1.md", "Counter", n, root=root)
        elif self.name.startswith("lease"):
            lease = claims.claim_task(f"T-{n}", "agent-1", root=root)  # write n: the first claim of T-n
            assert lease.token == 1, "a failed claim must not use up a token"
        elif self.name == "events":
            events.append_event("tick", "agent-1", root=root, n=n)
        else:
            chat.send("agent-1", "agent-2", f"n={n}", root=root, type="info")

    def value(self) -> int:
        root = self.root
        if self.name == "heartbeat":
            return agent_discovery.get_agent_info("agent-1", root=root).extra["counter"]
        if self.name == "state":
            return state_sync.get_agent_state("agent-1", root=root)["counter"]
        if self.name == "task":
            return int(task_store.load_task(root / "tasks" / "active" / "T-1.md", use_cache=False).field("Counter"))
        if self.name.startswith("lease"):
            held = [lease.task_id for lease in claims.list_leases(root=root, held_only=True)]
            shown = [t.task_id for t in task_store.list_tasks(root=root) if t.status is tasks.Status.CLAIMED]
            assert held == shown, f"leases {held} but task files show {shown}"
            return len(held)
        if self.name == "events":
            return len(events.read_events(root=root, types="tick"))
        return len(chat.read_messages(root=root))


FAULTS = [("write", errno.ENOSPC), ("write", errno.EIO), ("short", errno.ENOSPC), ("fsync", errno.EIO),
          ("fsync", errno.ENOSPC), ("replace", errno.EIO), ("replace", errno.ENOSPC)]
DISK_CASES = [pytest.param(op, call, err, id=f"{op}-{call}-{errno.errorcode[err]}")
              for op in ("heartbeat", "state", "task", "lease", "events", "chat")
              for call, err in FAULTS if not (call == "replace" and op in ("events", "chat", "lease"))]  # appended


def assert_clear(exc: BaseException, err: int, op: _Op, call: str) -> None:
    """The error says what failed: the errno is kept (a SwarmError names the file and the cause)."""
    wanted = {errno.ENOSPC, errno.EIO} if call == "short" else {err}
    if isinstance(exc, SwarmError):
        assert any(os.strerror(e) in str(exc) for e in wanted) and op.match.strip("/") in str(exc), str(exc)
    else:
        assert isinstance(exc, OSError) and exc.errno in wanted, repr(exc)


@pytest.mark.parametrize("op_name, call, err", DISK_CASES)
def test_disk_fault_keeps_old_state_and_next_write_works(workspace, monkeypatch, op_name, call, err):
    op = _Op(workspace, op_name)
    for n in (1, 2):
        op.do(n)
    before = snapshot(workspace)
    faults = DiskFaults(monkeypatch)
    faults.arm(call, err, op.match)
    with pytest.raises((OSError, SwarmError)) as info:
        op.do(3)
    faults.clear()
    assert faults.fired, "the fault was never hit: the test did not test anything"
    assert_clear(info.value, err, op, call)
    assert snapshot(workspace) == before, "a failed write changed the files (partial append not rolled back?)"
    assert temp_files(workspace) == []
    assert op.value() == 2
    op.do(3)
    assert op.value() == 3
    op.do(4)
    assert op.value() == 4


# Not fsync: a claim's mirror is not fsynced (the journal is the truth; test_claim_costs_one_fsync).
@pytest.mark.parametrize("call, err", [("write", errno.ENOSPC), ("write", errno.EIO), ("replace", errno.EIO)])
def test_claim_whose_status_mirror_fails_can_be_retried(workspace, monkeypatch, call, err):
    op = _Op(workspace, "lease-mirror")
    op.do(1)
    faults = DiskFaults(monkeypatch)
    faults.arm(call, err, op.match)
    with pytest.raises(OSError):
        op.do(2)
    faults.clear()
    assert faults.fired
    assert op.value() == 1, "the failed claim left a lease the task file does not show"
    claims.claim_task("T-2", "agent-1", root=workspace)  # the next operation after the fault works


def test_a_claim_costs_one_fsync_and_an_ended_lease_has_a_durable_mirror(workspace, monkeypatch):
    """The journal is the truth: a claim fsyncs its one line and nothing else; the task file's
    Status line is a mirror, made durable only when the lease ends (a lost claim mirror is a
    pending task whose holder died with the machine: the next claim takes it over)."""
    for n in (1, 2):
        write_task(workspace, f"T-{n}")
    claims.claim_task("T-1", "agent-1", root=workspace)  # creates the journal, durably
    journal = str(workspace / ".swarm" / "leases" / "journal-0.jsonl")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(_fd_path(fd))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    lease = claims.claim_task("T-2", "agent-1", root=workspace)
    assert synced == [journal]
    synced.clear()
    lease = claims.start(lease, root=workspace)
    assert synced == [journal]
    synced.clear()
    claims.complete(lease, root=workspace)
    assert synced[0] == journal and any(".T-2.md.tmp-" in path for path in synced)  # the new task file


# Not lease: a lease change is an append to the journal, with no directory fsync.
@pytest.mark.parametrize("op_name", ["heartbeat", "state", "task"])
def test_directory_fsync_fault_after_the_replace_is_not_a_false_failure(workspace, monkeypatch, op_name, caplog):
    """Once os.replace has run, the new content is what every reader sees: reporting the write
    as failed would make callers retry or give up on a write that happened. It is logged."""
    op = _Op(workspace, op_name)
    for n in (1, 2):
        op.do(n)
    faults = DiskFaults(monkeypatch)
    faults.arm("dirfsync", errno.EIO, str(op.dir))
    op.do(3)
    faults.clear()
    assert faults.fired
    assert op.value() == 3
    assert "directory fsync failed" in caplog.text
    op.do(4)
    assert op.value() == 4


@pytest.mark.parametrize("name", ["events.yaml", "chat-log.yaml"])
def test_torn_tail_from_a_crash_is_skipped_then_cut_off(workspace, name):
    """A crash that left half a line (no rollback ran) is invisible to readers and repaired on append."""
    op = _Op(workspace, "events" if name == "events.yaml" else "chat")
    op.do(1)
    path = workspace / name
    whole = path.read_bytes()
    line = whole[whole.rindex(b"\n", 0, len(whole) - 1) + 1:]
    path.write_bytes(whole + line[: len(line) // 2])  # the second entry, torn halfway
    assert op.value() == 1
    op.do(2)
    assert op.value() == 2
    assert path.read_bytes().startswith(whole) and path.read_bytes().endswith(b"\n")
    if name == "events.yaml":
        assert [e["type"] for e in events.read_events(root=workspace)][-2:] == ["tick", "repaired"]


def _fill(root: Path, target: str, size: int) -> None:
    n = 0
    while not (root / target).exists() or (root / target).stat().st_size < size:
        n += 1
        if target == "heartbeat.yaml":
            agent_discovery.heartbeat(f"agent-{n}", root=root, note="x" * 40)
        elif target == "agent-state.yaml":
            state_sync.sync_agent_state(f"agent-{n}", {"note": "x" * 40}, root=root)
        elif target == "events.yaml":
            events.append_event("tick", "agent-1", root=root, note="x" * 40)
        else:
            chat.send("agent-1", "agent-2", "x" * 40, root=root, type="info")


OSERROR_BUG: list = []  # fixed: cli.run turns OSError into one line naming the file
CLI_DISK_FULL = [
    pytest.param("agent_discovery", ["beat", "agent-1"], "heartbeat.yaml", marks=OSERROR_BUG),
    pytest.param("events", ["append", "tick", "--agent", "agent-1"], "events.yaml", marks=OSERROR_BUG),
    pytest.param("chat", ["send", "agent-1", "agent-2", "hello"], "chat-log.yaml", marks=OSERROR_BUG),
    pytest.param("state_sync", ["set", "agent-1", "--status", "working"], "agent-state.yaml"),
]


@pytest.mark.parametrize("module, args, target", CLI_DISK_FULL)
def test_cli_on_a_full_disk_fails_in_one_line(workspace, module, args, target):
    """A real process whose file size limit (RLIMIT_FSIZE) is below the file: EFBIG on every write."""
    limit = 8192
    _fill(workspace, target, limit + 1)
    before = snapshot(workspace)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes get EFBIG

    proc = subprocess.run([sys.executable, str(LIB / f"{module}.py"), *args, "--root", str(workspace)],
                          capture_output=True, text=True, timeout=60, preexec_fn=small_files)
    after = snapshot(workspace)
    assert after == before, "a failed write changed the files"
    assert proc.returncode == 2, proc.stderr[-1500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and target in lines[0], proc.stderr


# ============================================================================ 3. claim races


def many_tasks(root: Path, count: int, prefix: str = "T") -> list[str]:
    ids = []
    for n in range(count):
        task_id = f"{prefix}-{n:05d}"
        (root / "tasks" / "active" / f"{task_id}.md").write_text(
            f"# {task_id}: task {n}\n\n**Priority:** {['low', 'medium', 'high'][n % 3]}\n**Status:** pending\n"
            f"**Created:** 2026-01-01T00:00:{n % 60:02d}Z\n")
        ids.append(task_id)
    return ids


def _claim_everything(root: str, agent: str) -> list[tuple[str, int, str]]:
    got = []
    while (lease := claims.claim_next(agent, root=root)) is not None:
        got.append((lease.task_id, lease.token, agent))
    return got


def _try_each(root: str, agent: str, task_ids: list[str]) -> list[tuple[str, int, str]]:
    """One claim attempt per task, in the same order in every process: maximal contention."""
    won = []
    for task_id in task_ids:
        try:
            lease = claims.claim_task(task_id, agent, 600, root=root)
        except (AlreadyClaimed, NotClaimable):
            continue
        won.append((task_id, lease.token, agent))
    return won


CLAIM_RACES = [pytest.param(300, 1, id="quick-300"),
               *[pytest.param(2000, n, id=f"long-2000-run{n}", marks=LONG_ONLY) for n in (1, 2, 3)]]


@pytest.mark.parametrize("count, run", CLAIM_RACES)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_eight_processes_claim_every_task_exactly_once(workspace, count, run, backend):
    ids = many_tasks(workspace, count)
    results = run_together(_claim_everything, [(str(workspace), f"executor-{i}") for i in range(8)], timeout=1200)
    won = [entry for got in results for entry in got]
    assert sorted(t for t, _, _ in won) == ids, "every task claimed exactly once"
    assert {token for _, token, _ in won} == {1}
    for task_id, token, agent in won[:: max(1, count // 50)]:
        lease = claims.get_lease(task_id, root=workspace)
        assert (lease.agent_id, lease.token) == (agent, token)
    assert sum(1 for got in results if got) > 1, "the race had more than one winner overall"


@pytest.mark.parametrize("count", [pytest.param(50, id="quick-50"), pytest.param(200, id="long-200", marks=LONG_ONLY)])
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_eight_processes_take_over_each_expired_lease_once(workspace, count, backend):
    """200 expired leases, 8 processes racing for each: exactly one winner per task, token old+1."""
    ids = many_tasks(workspace, count)
    long_ago = utc_now() - timedelta(hours=2)
    old = {t: claims.claim_task(t, "old-holder", 60, root=workspace, now=long_ago) for t in ids}
    results = run_together(_try_each, [(str(workspace), f"racer-{i}", ids) for i in range(8)], timeout=600)
    winners: dict[str, list[tuple[int, str]]] = {}
    for got in results:
        for task_id, token, agent in got:
            winners.setdefault(task_id, []).append((token, agent))
    many = {t: w for t, w in winners.items() if len(w) > 1}
    assert not many, f"{len(many)} tasks had several winners: {list(many.items())[:5]}"
    assert sorted(winners) == ids, "every expired lease was taken over"
    for task_id, [(token, agent)] in winners.items():
        assert token == old[task_id].token + 1
        stored = claims.get_lease(task_id, root=workspace)
        assert (stored.agent_id, stored.token, stored.state) == (agent, token, LeaseState.HELD)
    # The old holder's token is stale: every action refused, nothing changed.
    before = snapshot(workspace)
    for task_id in ids[:10]:
        for action in (claims.renew, claims.start, claims.release, claims.complete, claims.fail):
            with pytest.raises(LeaseLost, match="stale"):
                action(old[task_id], root=workspace)
    assert snapshot(workspace) == before
    for task_id in ids:
        claims.complete(claims.get_lease(task_id, root=workspace), root=workspace)


@pytest.mark.parametrize("moved", [False, True], ids=["completed", "completed-and-moved"])
def test_reap_racing_a_normal_completion_changes_and_reports_nothing(workspace, monkeypatch, moved):
    """The interleaving the soak hit: the reaper lists T-1 in progress, then its holder completes it."""
    write_task(workspace, "T-1")
    lease = claims.start(claims.claim_task("T-1", "agent-1", root=workspace), root=workspace)
    listing = task_store.list_tasks(root=workspace, include_completed=True)  # what the reaper saw first
    claims.complete(lease, root=workspace)
    if moved:
        task_store.move_to_completed("T-1", root=workspace)
    monkeypatch.setattr(claims.task_store, "list_tasks", lambda *args, **kwargs: listing)
    assert claims.reap_expired(root=workspace) == []


HOLDER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import claims
from swarmfile.clock import parse_ts
from swarmfile.errors import LeaseLost
lease = claims.claim_task("T-1", "sleepy", float(sys.argv[2]))
print("claimed", lease.token, lease.expires_at, flush=True)
for line in sys.stdin:  # "<action> <time on the holder's clock, or - for the real clock>"
    action, when = line.split()
    try:
        lease = getattr(claims, action)(lease, now=None if when == "-" else parse_ts(when))
        print("ok", action, flush=True)
    except LeaseLost as exc:
        print("refused", action, exc, flush=True)
"""


@pytest.fixture
def paused_holder(workspace, tmp_path):
    """Start a holder of T-1 (TTL given to ``start``); yields (start, ask); reaped in finally."""
    write_task(workspace, "T-1")
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    procs: list[subprocess.Popen] = []

    def start(ttl: float) -> tuple[subprocess.Popen, int, str]:
        proc = subprocess.Popen([sys.executable, str(script), str(LIB), str(ttl)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, SWARM_ROOT=str(workspace)))
        procs.append(proc)
        word, token, expires = proc.stdout.readline().split()
        assert word == "claimed"
        return proc, int(token), expires

    def ask(proc: subprocess.Popen, action: str, when: str = "-") -> str:
        proc.stdin.write(f"{action} {when}\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()

    try:
        yield start, ask
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def test_sigstopped_holder_resumed_after_takeover_is_refused(workspace, paused_holder):
    start, ask = paused_holder
    proc, token, expires = start(30)
    proc.send_signal(signal.SIGSTOP)
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-1", "awake", root=workspace)
    later = parse_ts(expires) + timedelta(seconds=1)  # our clock past its TTL: no need to wait 30 s
    mine = claims.claim_task("T-1", "awake", root=workspace, now=later)
    assert mine.token == token + 1
    before = snapshot(workspace)
    proc.send_signal(signal.SIGCONT)
    for action in ("renew", "start", "complete", "release", "fail"):
        reply = ask(proc, action, format_ts(later))
        assert reply.startswith(f"refused {action}") and "stale" in reply, reply
        assert ask(proc, action).startswith(f"refused {action}")  # its own (real) clock: refused too
    assert snapshot(workspace) == before
    claims.complete(mine, root=workspace, now=later)
    assert claims.get_lease("T-1", root=workspace).agent_id == "awake"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_sigstopped_holder_resumed_past_its_ttl_is_refused(workspace, paused_holder, backend):
    start, ask = paused_holder
    proc, token, expires = start(0.5)
    proc.send_signal(signal.SIGSTOP)
    remaining = (parse_ts(expires) - utc_now()).total_seconds()
    time.sleep(max(0.0, remaining) + 0.05)  # real time must pass its TTL: that is the point
    before = snapshot(workspace)
    proc.send_signal(signal.SIGCONT)
    reply = ask(proc, "complete")
    assert reply.startswith("refused complete") and "expired" in reply, reply
    assert snapshot(workspace) == before
    taken = claims.claim_task("T-1", "awake", root=workspace)
    assert taken.token == token + 1
    assert ask(proc, "renew").startswith("refused renew")


# ============================================================================ 4. clock jumps


def test_clock_jumps_never_let_two_agents_act(workspace):
    write_task(workspace, "T-1")
    t = BASE
    a = claims.claim_task("T-1", "agent-a", 300, root=workspace, now=t)
    with pytest.raises(AlreadyClaimed):  # B's clock jumped back an hour: A still holds it
        claims.claim_task("T-1", "agent-b", 300, root=workspace, now=t - timedelta(hours=1))
    b = claims.claim_task("T-1", "agent-b", 300, root=workspace, now=t + timedelta(hours=1))
    assert b.token == a.token + 1
    before = snapshot(workspace)
    for when in (t - timedelta(hours=1), t, t + timedelta(seconds=10)):  # A's clock, jumped back or not
        for action in (claims.renew, claims.start, claims.complete, claims.release, claims.fail):
            with pytest.raises(LeaseLost, match="stale"):
                action(a, root=workspace, now=when)
    assert snapshot(workspace) == before
    claims.complete(b, root=workspace, now=t + timedelta(hours=1))


_CLOCK_ACTIONS = {
    "renew": lambda lease, root, now: claims.renew(lease, 300, root=root, now=now),
    "start": lambda lease, root, now: claims.start(lease, root=root, now=now),
    "complete": lambda lease, root, now: claims.complete(lease, root=root, now=now),
    "release": lambda lease, root, now: claims.release(lease, root=root, now=now),
    "fail": lambda lease, root, now: claims.fail(lease, "x", max_attempts=1000, root=root, now=now),
}


def run_clock_schedule(root: Path, rng: random.Random, steps: int) -> dict:
    """Agents with clocks that jump by an hour act on a few tasks; every success is checked.

    A success must use the newest token of its task (the one the latest claim issued, to that
    agent); a claim's token must be the previous one plus one; a refusal changes no byte.
    """
    pool = [f"T-{n}" for n in range(1, 4)]
    for task_id in pool:
        write_task(root, task_id)
    agents = ["agent-a", "agent-b", "agent-c", "planner"]
    offset = {a: 0.0 for a in agents}
    elapsed = 0.0
    latest = {t: 0 for t in pool}
    owner: dict[str, str] = {}
    known: dict[tuple[str, str], claims.Lease] = {}
    counts = {"ok": 0, "refused": 0}
    for step in range(steps):
        elapsed += rng.choice([0, 1, 10, 100, 250, 400])
        agent = rng.choice(agents)
        if rng.random() < 0.3:
            offset[agent] += rng.choice([-3600.0, 3600.0])
        now = BASE + timedelta(seconds=elapsed + offset[agent])
        task_id = rng.choice(pool)
        files = lambda: {k: v for k, v in snapshot(root).items() if task_id in k}  # noqa: E731
        where = f"step {step} (seed {SEED}): {agent} on {task_id} at {format_ts(now)}"
        if agent == "planner":
            for lease, _ in claims.reap_expired(now, root=root):
                assert lease.token == latest[lease.task_id], where
            continue
        action = rng.choice(["claim", "claim", "renew", "renew", "start", "release", "fail", "complete"])
        if action == "claim":
            before = files()
            try:
                lease = claims.claim_task(task_id, agent, 300, root=root, now=now)
            except (AlreadyClaimed, NotClaimable):
                assert files() == before, where
                counts["refused"] += 1
                continue
            assert lease.token == latest[task_id] + 1, where
            latest[task_id], owner[task_id] = lease.token, agent
            known[(agent, task_id)] = lease
            counts["ok"] += 1
            continue
        lease = known.get((agent, task_id))
        if lease is None:
            continue
        before = files()
        try:
            result = _CLOCK_ACTIONS[action](lease, root, now)
        except LeaseLost:
            assert files() == before, f"{where}: a refused {action} changed files"
            counts["refused"] += 1
            continue
        assert (lease.token, agent) == (latest[task_id], owner[task_id]), f"{where}: stale {action} succeeded"
        stored = claims.get_lease(task_id, root=root)
        assert (stored.token, stored.agent_id) == (lease.token, agent), where
        known[(agent, task_id)] = result
        counts["ok"] += 1
        if action == "complete":  # a finished task stays finished; bring in a fresh one
            pool[pool.index(task_id)] = fresh = f"T-{len(latest) + 1}"
            write_task(root, fresh)
            latest[fresh] = 0
    return counts


@pytest.mark.parametrize("schedules, steps", [pytest.param(15, 60, id="quick"),
                                              pytest.param(200, 200, id="long", marks=LONG_ONLY)])
def test_random_clock_jump_schedules(tmp_path, schedules, steps):
    totals = {"ok": 0, "refused": 0}
    for n in range(schedules):
        root = tmp_path / f"ws-{n}"
        (root / "tasks" / "active").mkdir(parents=True)
        (root / "tasks" / "completed").mkdir(parents=True)
        counts = run_clock_schedule(root, random.Random(f"{SEED}-clock-{n}"), steps)
        for key in totals:
            totals[key] += counts[key]
    assert totals["ok"] > schedules and totals["refused"] > schedules, totals
