"""The real interactive Claude Code in a tmux pane, started by `swarm.py up`, against the stub
model, in the loopback-only sandbox: its first-run dialogs answered as swarm.yaml says, a task
dispatched by the loop `up` starts, acknowledged, a file written after a permission prompt, done."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import events
from swarmfile import task_store
from realcli.conftest import unavailable
from realcli.stub_model import Step, ToolUse

LIB = Path(__file__).resolve().parents[2] / "lib"
SETTINGS = """\
tmux:
  trust_workspace: true     # the first-run dialogs, answered by choosing the option
  use_api_key: true
  auto_confirm: true        # the permission prompt: its "1. Yes"
  interval_seconds: 0.3
  presets:
    claude: claude --permission-mode default   # ask before each edit (the 2.1.332 default, auto mode, asks the model)
"""


@pytest.fixture
def tmux_socket():
    tmux = shutil.which("tmux")
    if tmux is None:
        unavailable("tmux is not installed")
    where = Path(tempfile.mkdtemp(prefix="swarm-tmux-"))  # short: a socket path has ~100 bytes
    try:
        yield str(where / "s")
    finally:
        subprocess.run([tmux, "-S", str(where / "s"), "kill-server"], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def test_swarm_up_runs_a_task_through_the_real_interactive_claude(model, sandbox, claude_cli, workspace,
                                                                   tmux_socket):
    (workspace / "swarm.yaml").write_text(SETTINGS)
    task_store.new_task_file("TASK-7", "Say hello", root=workspace, objective="Write hello.txt saying hello.")

    def hello(request):  # what the model writes comes from the task line it was sent
        task_id = re.search(r"\[TASK\] (\S+)", request.user_text).group(1)
        return {"file_path": f"{request.workdir}/hello.txt", "content": f"hello from {task_id}\n"}

    model.play([Step(text="[ACK] TASK-7", tools=[ToolUse("Write", hello)]), Step(text="[DONE] TASK-7")])
    # No prompt suggestions: Claude Code would otherwise ask the model for one after each reply.
    env = sandbox.env(SWARM_TMUX_SOCKET=tmux_socket, CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION="false")

    def swarm(*args: str) -> subprocess.CompletedProcess:
        return sandbox.run([sys.executable, str(LIB / "swarm.py"), *args, "--root", str(workspace)], cwd=workspace,
                           env=env, timeout=30)

    started = time.monotonic()
    up = swarm("up", "--agents", "1", "--agent", "claude")
    assert up.returncode == 0, up.stderr
    assert "dispatching: `tmux_bridge.py run` in window main:bridge" in up.stdout
    try:
        done = workspace / "tasks" / "completed"
        while not list(done.glob("TASK-7*.md")):
            if time.monotonic() - started > 50:
                panes = subprocess.run(["tmux", "-S", tmux_socket, "capture-pane", "-p", "-t", "=swarm-main:agent-1"],
                                       capture_output=True, text=True).stdout
                pytest.fail(f"TASK-7 not completed in 50s; events {[e['type'] for e in events.read_events(root=workspace)]}"
                            f"\n{panes}")
            time.sleep(0.2)
        took = time.monotonic() - started
    finally:
        down = swarm("down")
    assert down.returncode == 0, down.stderr
    assert (workspace / "hello.txt").read_text() == "hello from TASK-7\n"
    assert "[TASK] TASK-7 tasks/active/TASK-7" in model.turns[0].user_text, "the line typed into the box arrived"
    types = [e["type"] for e in events.read_events(task_id="TASK-7", root=workspace)]
    assert types == ["assigned", "acknowledged", "completed"], types
    dialogs = events.read_events(types=["dialog_answered", "dialog_answer_failed"], root=workspace)
    answered = [(e["dialog"], e["choice"]) for e in dialogs if e["type"] == "dialog_answered"]
    # Each dialog answered once, though Claude Code draws its trust menu a second time as it starts.
    assert answered == [("workspace trust", "Yes, I trust this folder"), ("API key", "Yes")], \
        [(e["timestamp"], e["type"], e["dialog"]) for e in dialogs]
    confirms = events.read_events(types=["auto_confirm"], root=workspace)
    # One prompt, answered once by its "1. Yes". A key the CLI dropped (seen in CI: the prompt, and
    # once the trust dialog, still drawn after the key) is pressed again within seconds, in the same answer.
    assert [(e["line"], e["choice"]) for e in confirms] == [("Do you want to create hello.txt?", "1. Yes")]
    assert events.read_events(types=["requeued"], root=workspace) == [], "no line was lost to the ack timeout"
    assert took < 50  # about 15 s on an idle machine: Claude Code starts in 3 s, each turn takes 1-2 s
