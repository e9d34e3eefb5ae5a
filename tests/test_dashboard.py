"""dashboard: snapshot and frame of a populated workspace, corrupt files in place of panels, and a real tmux run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

import claims
import dashboard
import events
import reservations
from swarmfile import task_store
from swarmfile.clock import HOSTNAME, format_ts, utc_now
LIB = Path(__file__).resolve().parent.parent / "lib"
DASHBOARD = LIB / "dashboard.py"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def write_heartbeats(root: Path, current_task: str = "T-1") -> int:
    now = format_ts()
    gone = dead_pid()
    (root / "heartbeat.yaml").write_text(
        "heartbeats:\n"
        f"  planner: {{last_seen: '{now}', status: running, current_action: planning, role: planner,"
        f" pid: {os.getpid()}, host: {HOSTNAME}}}\n"
        f"  executor-1: {{last_seen: '{now}', status: running, current_action: executing, role: executor,"
        f" current_task: {current_task}, pid: {os.getpid()}, host: {HOSTNAME}}}\n"
        f"  executor-2: {{last_seen: '{now}', status: running, role: executor, pid: {gone}, host: {HOSTNAME}}}\n"
        "metadata: {timeout_seconds: 120}\n")
    return gone


def populate(root: Path) -> dict:
    """Agents, tasks with checklists and sub-tasks, a lease, a reservation, a merge entry, events."""
    gone = write_heartbeats(root)
    task_store.new_task_file("T-1", "Build the parser", root=root, priority="high",
                        criteria=["- [x] tokenizer", "- [x] grammar", "- [ ] error lines [IP:executor-1]"])
    task_store.new_task_file("T-2", "Split work", root=root, criteria=["plan"], fields={"Sub-Tasks": "T-2-SUB1, T-2-SUB2"})
    task_store.new_task_file("T-2-SUB1", "First half", root=root, status="completed", fields={"Parent Task": "T-2"},
                        directory=root / "tasks" / "completed")
    task_store.new_task_file("T-2-SUB2", "Second half", root=root, fields={"Parent Task": "T-2"})
    task_store.new_task_file("T-3", "Wait for review", root=root, status="blocked")
    lease = claims.claim_task("T-1", "executor-1", ttl=600)
    claims.start(lease)
    reservations.reserve("executor-1", ["lib/parser/**"], task_id="T-1", ttl=900)
    (root / ".swarm" / "merge-queue.yaml").write_text(
        "queue:\n- {id: abc123, op: enqueue, branch: swarm/T-9/executor-1-aa, task_id: T-9, agent_id: executor-1,"
        " base: main, at: '2026-01-01T00:00:00.000Z'}\n")
    events.append_event("started", "executor-1", "T-1", note="go")
    events.append_event("progress", "executor-1", "T-1", done=2)
    return {"dead": gone}


def frame_text(root, width=160, height=0, now=None) -> str:
    return "\n".join(dashboard.build_frame(root=root, width=width, height=height, now=now))


# ---------------------------------------------------------------------------- snapshot and frame


def test_collect_reads_every_panel(workspace):
    extra = populate(workspace)
    snap = dashboard.collect(root=workspace)
    assert snap["errors"] == {}
    agents = {a["agent_id"]: a for a in snap["agents"]}
    assert agents["planner"]["active"] and agents["executor-1"]["current_task"] == "T-1"
    assert agents["executor-2"]["active"] is False
    assert agents["executor-2"]["inactive_reason"] == f"process {extra['dead']} is dead"
    by_id = {t["task_id"]: t for t in snap["tasks"]}
    assert set(by_id) == {"T-1", "T-2", "T-2-SUB2", "T-3"} and snap["completed_count"] == 1
    assert (by_id["T-1"]["status"], by_id["T-1"]["checklist_done"], by_id["T-1"]["checklist_total"]) == \
        ("in_progress", 2, 3)
    assert by_id["T-1"]["agent"] == "executor-1"
    assert (by_id["T-2"]["subtasks_done"], by_id["T-2"]["subtasks_total"]) == (1, 2)
    assert by_id["T-2-SUB2"]["parent"] == "T-2"
    [lease] = snap["leases"]
    assert (lease["task_id"], lease["agent_id"], lease["acknowledged"], lease["stale"]) == \
        ("T-1", "executor-1", True, None)
    assert 590 < lease["seconds_left"] <= 600
    [held] = snap["reservations"]
    assert held["patterns"] == ["lib/parser/**"] and held["task_id"] == "T-1"
    assert [e["branch"] for e in snap["merge_queue"]] == ["swarm/T-9/executor-1-aa"]
    assert [e["type"] for e in snap["events"]][-2:] == ["started", "progress"]
    json.dumps(snap)  # plain data all the way down


def test_frame_shows_liveness_progress_and_expiry(workspace):
    populate(workspace)
    text = frame_text(workspace)
    assert "AGENTS  2 active, 1 inactive" in text
    assert "inactive: process" in text and "is dead" in text
    assert "TASKS  4 open (in_progress 1, pending 2, blocked 1), 1 completed" in text
    t1 = next(line for line in text.splitlines() if "T-1 " in line and "Build the parser" in line)
    assert "2/3" in t1 and "executor-1" in t1 and t1.lstrip().startswith("in_progress")
    t2 = next(line for line in text.splitlines() if " T-2 " in line)
    assert "sub 1/2" in t2
    assert "sub of T-2" in text
    lease_line = next(line for line in text.splitlines() if "token 1" in line)
    assert "expires in 9m" in lease_line and "started" in lease_line
    assert "lib/parser/**" in text and "swarm/T-9/executor-1-aa" in text
    assert "progress" in text and "done=2" in text
    # an hour later the lease and the reservation have run out
    later = frame_text(workspace, now=utc_now() + timedelta(hours=1))
    assert "LEASES  1 held (1 stale)" in later and "STALE: lease expired at" in later
    assert "RESERVATIONS  0 live, 1 stale" in later


def test_frame_fits_the_terminal_and_keeps_the_newest_events(workspace):
    populate(workspace)
    for n in range(40):
        events.append_event("progress", "executor-1", "T-1", step=n, detail="x" * 200)
    lines = dashboard.build_frame(root=workspace, width=60, height=20)
    assert len(lines) <= 20 and all(len(line) <= 60 for line in lines)
    assert any("… " in line and "earlier" in line for line in lines)
    assert "step=39" in lines[-1]  # the newest event is the last line
    assert any(line.startswith("AGENTS") for line in lines) and any(line.startswith("TASKS") for line in lines)
    tiny = dashboard.build_frame(root=workspace, width=20, height=3)
    assert len(tiny) == 3 and all(len(line) <= 20 for line in tiny)


def test_control_characters_never_reach_the_terminal(workspace):
    path = task_store.new_task_file("T-1", "safe title", root=workspace)
    path.write_text(path.read_text().replace("safe title", "evil \x1b[2J\x07 title"))
    # YAML's escapes can put ESC in any key or value of a hand-written entry
    (workspace / "events.yaml").write_text('events:\n- {type: progress, agent: a, "k\\e[31m": "v\\e[32m"}\n')
    text = frame_text(workspace)
    assert "evil ?[2J? title" in text and "k?[31m=v?[32m" in text
    assert "\x1b" not in text and "\x07" not in text


@pytest.mark.parametrize("panel, relpath, content, line", [
    ("agents", "heartbeat.yaml", "heartbeats:\n  a: {last_seen: [\n", 3),
    ("leases", ".swarm/leases/journal-0.jsonl", '{"task_id": "T-1", "token": [1, \n', 1),
    ("events", "events.yaml", "events:\n- {timestamp: '2026-01-01T00:00:00Z', type: started}\n- {type: [x}\n", 3),
    ("reservations", ".swarm/reservations.yaml", "reservations:\n- id: r1\n  patterns: [\n", 4),
])
def test_a_corrupt_file_shows_its_error_in_place_of_its_panel(workspace, panel, relpath, content, line):
    populate(workspace)
    target = workspace / relpath
    target.write_text(content)
    before = target.read_bytes()
    snap = dashboard.collect(root=workspace)
    assert list(snap["errors"]) == [panel]
    [error] = snap["errors"][panel]
    assert error.startswith(f"{relpath}:{line}: ")
    text = frame_text(workspace)
    assert f"! {relpath}:{line}: " in text
    assert "Build the parser" in text and "TASKS" in text  # the other panels still show
    assert target.read_bytes() == before


def test_a_corrupt_task_file_is_one_error_line_among_the_tasks(workspace):
    populate(workspace)
    bad = workspace / "tasks" / "active" / "T-8-broken.md"
    bad.write_text("\n\nno title here\n")
    text = frame_text(workspace)
    assert "! tasks/active/T-8-broken.md:3: no title line" in text
    assert "Build the parser" in text


def test_a_broken_swarm_yaml_shows_only_that(workspace):
    (workspace / "swarm.yaml").write_text("paths: [\n")
    snap = dashboard.collect(root=workspace)
    assert list(snap["errors"]) == ["config"] and "swarm.yaml:" in snap["errors"]["config"][0]
    assert "CONFIG" in frame_text(workspace)


def test_paint_overwrites_in_place():
    painted = dashboard.paint(["a", "b"])
    assert painted == "\x1b[Ha\x1b[K\r\nb\x1b[K\x1b[J"
    assert "\x1b[2J" not in painted


# ---------------------------------------------------------------------------- command line


def test_cli_once_and_json_from_another_directory(workspace, tmp_path):
    populate(workspace)
    run = lambda *args: subprocess.run([sys.executable, str(DASHBOARD), "--root", str(workspace), *args],
                                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    once = run("--once")
    assert once.returncode == 0, once.stderr
    assert "Build the parser" in once.stdout and "\x1b" not in once.stdout
    narrow = run("--once", "--width", "30", "--height", "8")
    assert len(narrow.stdout.splitlines()) == 8 and max(map(len, narrow.stdout.splitlines())) <= 30
    doc = json.loads(run("--json").stdout)
    assert {t["task_id"] for t in doc["tasks"]} >= {"T-1", "T-2"}
    assert run().returncode == 2  # stdout is a pipe: no live view
    assert run("--interval", "0").returncode == 2
    helped = subprocess.run([sys.executable, str(DASHBOARD), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert helped.returncode == 0 and "--interval" in helped.stdout


# ---------------------------------------------------------------------------- a real terminal


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Tmux:
    """One tmux server of our own, with one pane running a plain shell."""

    def __init__(self, cwd: Path, socket: Path) -> None:
        # A socket of our own under tmp_path (sockets paths are limited to ~107 bytes).
        self.socket = ["-S", str(socket)] if len(str(socket)) < 100 else \
            ["-L", f"swarm-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"]
        self.cmd("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", "120", "-y", "45",
                 "env PS1='$ ' bash --norc --noprofile", cwd=cwd)

    def cmd(self, *args: str, cwd=None) -> str:
        return subprocess.run(["tmux", *self.socket, *args], check=True, capture_output=True, text=True,
                              cwd=cwd, timeout=10).stdout

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "main")

    def flags(self) -> str:
        return self.cmd("display-message", "-p", "-t", "main", "#{alternate_on} #{cursor_flag}").strip()

    def type(self, text: str, enter: bool = True) -> None:
        self.cmd("send-keys", "-t", "main", "-l", text)
        if enter:
            self.cmd("send-keys", "-t", "main", "Enter")

    def child_pid(self) -> int:
        shell = int(self.cmd("display-message", "-p", "-t", "main", "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        return int(children[0]) if children else 0

    def kill(self) -> None:
        subprocess.run(["tmux", *self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(tmp_path, request):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    here = tmp_path / "elsewhere"
    here.mkdir()
    server = Tmux(here, tmp_path / "tmux.sock")
    request.addfinalizer(server.kill)
    wait_for(lambda: server.screen().strip().startswith("$"), "the shell prompt")
    return server, here


def start_dashboard(server: Tmux, root: Path) -> None:
    server.type(f"stty -g > before.txt; {sys.executable} {DASHBOARD} --root {root} --interval 0.2; "
                f"echo EXITED=$?; stty -g > after.txt")


def test_live_dashboard_in_a_real_terminal(workspace, tmux):
    server, here = tmux
    populate(workspace)
    start_dashboard(server, workspace)
    first = wait_for(lambda: (lambda s: s if "Build the parser" in s and "executor-2" in s else None)(server.screen()),
                     "the first frame")
    assert "AGENTS  2 active, 1 inactive" in first and "T-2-SUB2" in first
    assert server.flags() == "1 0"  # alternate screen on, cursor hidden
    # an operator edits a task: the next frame shows it
    t3 = task_store.find_task("T-3", root=workspace).path
    t3.write_text(t3.read_text().replace("**Status:** blocked", "**Status:** needs_attention"))
    task_store.set_checklist_item(task_store.find_task("T-1", root=workspace).path, 2, checked=True)
    wait_for(lambda: "needs_attention" in server.screen() and "3/3" in server.screen(), "the updated frame")
    assert all(len(line) < 120 for line in server.screen().splitlines())
    server.cmd("resize-window", "-t", "main", "-x", "70", "-y", "12")  # a smaller terminal: the frame follows

    def fits(screen: str) -> bool:
        lines = screen.splitlines()
        return lines[0].startswith("swarm watch") and "EVENTS" in screen and max(map(len, lines)) < 70

    wait_for(lambda: fits(server.screen()), "the frame to fit the smaller window")
    server.type("q", enter=False)
    after = wait_for(lambda: (lambda s: s if "EXITED=0" in s else None)(server.screen()), "the dashboard to quit")
    assert "Build the parser" not in after  # back on the normal screen, the frames are gone
    assert server.flags() == "0 1"
    wait_for(lambda: (here / "after.txt").exists() and (here / "after.txt").read_text(), "stty after")
    assert (here / "after.txt").read_text() == (here / "before.txt").read_text()  # cbreak undone


def test_sigterm_restores_the_terminal(workspace, tmux):
    server, here = tmux
    populate(workspace)
    start_dashboard(server, workspace)
    wait_for(lambda: "Build the parser" in server.screen(), "the first frame")
    pid = wait_for(server.child_pid, "the dashboard process")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: f"EXITED={128 + signal.SIGTERM}" in server.screen(), "the dashboard to stop")
    assert server.flags() == "0 1"
    wait_for(lambda: (here / "after.txt").exists() and (here / "after.txt").read_text(), "stty after")
    assert (here / "after.txt").read_text() == (here / "before.txt").read_text()
