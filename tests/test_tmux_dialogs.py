"""Regressions of issue 9 with the fake interactive agent on a private tmux server: a task typed
into a dialog, a task typed before the input is ready, a lost Enter; the loop `up` starts."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

import events
from swarmfile import tasks
from swarmfile import task_store
import tmux_bridge
from swarmfile.clock import utc_now
from swarmfile.config import load_config
from swarmfile.errors import ValidationError
from tmux_bridge import Bridge, pane_status
from test_tmux_bridge import fake, kinds, make_task, sock, start, wait_for  # noqa: F401 (sock: a fixture)

SCREENS = Path(__file__).parent / "fixtures" / "screens"


def until(check, timeout=15.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


def states(root):
    return {row["agent_id"]: row["state"] for row in pane_status(root=str(root))}


def test_a_task_is_never_typed_into_the_trust_dialog_which_is_answered_only_when_set(workspace, sock):
    # Regression: the pane at Claude Code's trust dialog was taken for idle; the [TASK] line's
    # Enter answered the dialog (here: "No, exit") and the task was lost until the ack timeout.
    make_task(workspace, "T-1")
    (pane,) = start(workspace, "--trust-dialog")
    wait_for(pane, "Enter to confirm")
    bridge = Bridge(root=str(workspace))
    for _ in range(3):
        handled, answered, sent = bridge.step()
        assert sent == [] and handled == []
    assert states(workspace) == {"main-agent-1": "dialog: workspace trust"}
    with pytest.raises(ValidationError, match=r"waiting at a prompt \(dialog: workspace trust\)"):
        bridge.dispatch("agent-1", "T-1")  # at once: a dialog does not go away by waiting
    (waiting,) = events.read_events(types=["dialog_waiting"], root=workspace)  # reported once
    assert waiting["dialog"] == "workspace trust" and "tmux.trust_workspace: true" in waiting["reason"]
    assert not bridge.panes()[0].dead and kinds(workspace, "T-1") == []

    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true}\n")
    trusting = Bridge(root=str(workspace))
    assert [a["action"] for a in trusting.auto_confirm_once()] == ["chose 'Yes, I trust this folder'"]
    wait_for(pane, "agent> ")
    until(lambda: trusting.step()[2] or kinds(workspace, "T-1"), what="the dispatch")
    until(lambda: trusting.step() and "completed" in kinds(workspace, "T-1"), what="the task's completion")
    assert kinds(workspace, "T-1") == ["assigned", "acknowledged", "completed"]
    (answered,) = events.read_events(types=["dialog_answered"], root=workspace)
    assert (answered["dialog"], answered["choice"]) == ("workspace trust", "Yes, I trust this folder")


# Regressions (CI): each way Claude Code's trust menu was seen to take its answer badly.
_TRUST_MISBEHAVIOURS = {
    # It kept its menu after the Enter; the answer came only after the 30 s cooldown.
    "dropped-enter": ("--trust-drops", "1"),
    # 2.1.332 drops an Enter pressed in its first moments, then draws the menu again with the cursor
    # back on "No, exit": the cursor leaving the option was taken for the answer, and the dialog was
    # answered a second time 30 s later (2 runs in 6 here under load).
    "redrawn-after-the-enter": ("--trust-redraw", "2.5"),
    # The same redraw before any key: keys pressed before it are lost, and an Enter reaching the new
    # menu chooses "No, exit". The menu is watched a moment before the first key.
    "redrawn-before-any-key": ("--trust-redraw", "0.6"),
}


@pytest.mark.parametrize("misbehaviour", list(_TRUST_MISBEHAVIOURS))
def test_a_trust_dialog_that_takes_its_answer_badly_is_answered_once_in_one_round(workspace, sock, misbehaviour):
    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true}\n")
    (pane,) = start(workspace, "--trust-dialog", *_TRUST_MISBEHAVIOURS[misbehaviour])
    wait_for(pane, "Enter to confirm")
    assert [a["action"] for a in Bridge(root=str(workspace)).auto_confirm_once()] == ["chose 'Yes, I trust this folder'"]
    wait_for(pane, "agent> ")
    assert len(events.read_events(types=["dialog_answered"], root=workspace)) == 1


def test_dispatch_waits_for_a_slow_starting_agent_instead_of_typing_into_nothing(workspace, sock):
    # Regression: the [TASK] line was typed before the CLI read keys; it was lost and typed
    # again only after the 60 s ack timeout.
    make_task(workspace, "T-1")
    (pane,) = start(workspace, "--slow-start", "1.5")
    bridge = Bridge(root=str(workspace))
    wait_for(pane, "starting...")
    assert bridge.dispatch_ready() == [] and states(workspace) == {"main-agent-1": "not-ready"}
    bridge.dispatch("agent-1", "T-1")  # waits (tmux.ready_timeout_seconds) for the prompt
    wait_for(pane, "[DONE] T-1")
    assert [h.event for h in bridge.scan_once()] == ["acknowledged", "completed"]


def test_a_lost_enter_is_pressed_again_at_once(workspace, sock):
    # Regression: the line sat in the input box, its Enter lost, until the ack timeout.
    make_task(workspace, "T-1")
    (pane,) = start(workspace, "--drop-enter", "1")
    wait_for(pane, "agent> ")
    bridge = Bridge(root=str(workspace))
    bridge.dispatch("agent-1", "T-1")
    wait_for(pane, "[DONE] T-1")  # no ack timeout passed: the second Enter was pressed at once
    (assigned,) = events.read_events(types=["assigned"], root=workspace)
    assert assigned["enter_presses"] == 2
    assert [h.event for h in bridge.scan_once()] == ["acknowledged", "completed"]


def test_a_line_that_never_leaves_the_input_is_shown_and_taken_back_at_the_ack_timeout(workspace, sock):
    make_task(workspace, "T-1")
    (pane,) = start(workspace, "--drop-enter", "9")
    wait_for(pane, "agent> ")
    bridge = Bridge(root=str(workspace), ack_timeout=0)
    bridge.dispatch("agent-1", "T-1")
    (assigned,) = events.read_events(types=["assigned"], root=workspace)
    assert assigned["sent"] is False
    assert states(workspace) == {"main-agent-1": "text-in-input"}
    assert [h.event for h in bridge.scan_once()] == ["requeued"]
    assert bridge.dispatch_ready() == []  # never typed after a line still in the input


PERMISSION_PANE = """\
import os, sys, tty
screen, drops = open(sys.argv[1]).read(), int(sys.argv[2])
sys.stdout.write(screen); sys.stdout.flush()
tty.setraw(0)
while True:
    key = os.read(0, 16)
    if drops:  # a prompt just drawn that drops keys
        drops -= 1
        continue
    sys.stdout.write('\\x1b[2J\\x1b[H' + 'key: %r\\r\\n' % key); sys.stdout.flush()  # the prompt is gone
    sys.stdin.read(1)
"""


def permission_screen(tmp_path, edit=lambda text: text, drops=0):
    """A pane command that shows the real permission prompt, drops the first ``drops`` keys,
    then clears the prompt and prints the key it got."""
    text = edit((SCREENS / "claude-2.1.332-permission-220x50.txt").read_text()).rstrip("\n")
    (tmp_path / "screen.txt").write_text(text)
    (tmp_path / "pane.py").write_text(PERMISSION_PANE)
    return shlex.join([sys.executable, str(tmp_path / "pane.py"), str(tmp_path / "screen.txt"), str(drops)])


@pytest.mark.parametrize("auto_confirm, edit, key", [
    (True, lambda text: text, "key: b'1'"),
    (False, lambda text: text, None),
    (True, lambda text: text.replace("  1 hello", "  1 sudo make install"), None),
])
def test_a_permission_prompt_gets_its_1_yes_key_only_under_auto_confirm(workspace, sock, tmp_path, auto_confirm,
                                                                        edit, key):
    (pane,) = tmux_bridge.up(1, command=permission_screen(tmp_path, edit), root=str(workspace))
    wait_for(pane, "Esc to cancel · Tab to amend")
    assert states(workspace) == {"main-agent-1": "waiting-for-answer: permission"}
    bridge = Bridge(root=str(workspace), auto_confirm=auto_confirm)
    (action,) = bridge.auto_confirm_once()
    if key:
        assert action["action"] == "chose '1. Yes'"
        wait_for(pane, key)
        (event,) = events.read_events(types=["auto_confirm"], root=workspace)
        assert (event["line"], event["choice"], event["presses"]) == ("Do you want to create hello.txt?", "1. Yes", 1)
    else:
        assert action["action"] == "skipped"
        assert bridge.auto_confirm_once() == []  # reported once
        assert "key:" not in tmux_bridge.Tmux().capture(pane.pane_id)
        assert events.read_events(types=["auto_confirm"], root=workspace) == []


def test_a_permission_prompt_that_drops_the_key_gets_it_again_at_once(workspace, sock, tmp_path):
    # Regression (CI): Claude Code kept its permission prompt after "1"; the next try waited out
    # the 30 s cooldown and the task was not done in time.
    (pane,) = tmux_bridge.up(1, command=permission_screen(tmp_path, drops=1), root=str(workspace))
    wait_for(pane, "Esc to cancel · Tab to amend")
    bridge = Bridge(root=str(workspace), auto_confirm=True)
    (action,) = bridge.auto_confirm_once()
    assert action["action"] == "chose '1. Yes'"
    wait_for(pane, "key: b'1'")
    (event,) = events.read_events(types=["auto_confirm"], root=workspace)
    assert event["presses"] == 2


def test_a_permission_prompt_that_outlasts_every_press_is_tried_again_next_round(workspace, sock, tmp_path):
    (pane,) = tmux_bridge.up(1, command=permission_screen(tmp_path, drops=4), root=str(workspace))
    wait_for(pane, "Esc to cancel · Tab to amend")
    bridge = Bridge(root=str(workspace), auto_confirm=True)
    (action,) = bridge.auto_confirm_once()
    assert action["action"] == "could not choose '1. Yes'"
    (failed,) = events.read_events(types=["auto_confirm_failed"], root=workspace)
    assert failed["presses"] == -1
    (action,) = bridge.auto_confirm_once()  # no cooldown after a failure: the fourth press is dropped, the fifth taken
    assert action["action"] == "chose '1. Yes'"
    wait_for(pane, "key: b'1'")


def test_up_starts_the_dispatching_loop_and_down_stops_it(workspace, sock, capsys):
    (workspace / "swarm.yaml").write_text("tmux: {interval_seconds: 0.1}\n")
    make_task(workspace, "T-1")
    assert tmux_bridge.main(["up", "--agents", "1", "--command", fake("--slow-start", "0.5")]) == 0
    out = capsys.readouterr().out
    assert "dispatching: `tmux_bridge.py run` in window main:bridge" in out and "swarm.py down" in out
    until(lambda: "completed" in kinds(workspace, "T-1"), what="T-1 handed out and completed by the loop")
    assert kinds(workspace, "T-1") == ["assigned", "acknowledged", "completed"]
    assert list(states(workspace)) == ["main-agent-1"]  # the loop's window is no agent
    tmux = tmux_bridge.Tmux()
    loop_pid = int(tmux.run("list-panes", "-t", "=swarm-main:bridge", "-F", "#{pane_pid}").strip())
    assert tmux_bridge.main(["down"]) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(loop_pid, 0)  # stopped (and reaped: its pane is gone with the session)
    assert tmux.run("has-session", "-t", "=swarm-main", check=False) is None
    assert load_config(root=workspace).root == workspace and task_store.find_task("T-1", root=workspace).status is tasks.Status.COMPLETED


def test_a_line_that_never_shows_in_the_input_gives_the_task_back(workspace, sock, monkeypatch):
    from swarmfile import tmux_pane

    monkeypatch.setattr(tmux_pane, "_ARRIVE_SECONDS", 0.5)
    make_task(workspace, "T-1")
    # A prompt whose program reads nothing and echoes nothing: the typed line never shows.
    deaf = ("import sys, time, tty; tty.setraw(0); sys.stdout.write('agent> '); sys.stdout.flush(); "
            "time.sleep(60)")
    (pane,) = tmux_bridge.up(1, command=shlex.join([sys.executable, "-c", deaf]), root=str(workspace))
    wait_for(pane, "agent> ")
    with pytest.raises(ValidationError, match="did not show in its input"):
        Bridge(root=str(workspace)).dispatch("agent-1", "T-1")
    assert kinds(workspace, "T-1") == ["released"]
    (released,) = events.read_events(types=["released"], root=workspace)
    assert released["reason"] == "the task line did not show in the pane's input"
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING


def test_up_with_claude_says_which_first_run_dialogs_wait_for_an_answer(workspace, sock, tmp_path, monkeypatch,
                                                                       capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text(f"#!/bin/sh\nexec {fake()}\n")  # a stand-in found on PATH as `claude`
    (bin_dir / "claude").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert tmux_bridge.main(["up", "--agents", "1", "--agent", "claude", "--no-bridge", "--cluster", "a"]) == 0
    out = capsys.readouterr().out
    assert "Claude Code may first ask whether it trusts the folder: answer in its pane, or set " \
           "tmux.trust_workspace: true in swarm.yaml" in out
    assert "tmux.use_api_key: true" in out
    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true, use_api_key: true}\n")
    assert tmux_bridge.main(["up", "--agents", "1", "--agent", "claude", "--no-bridge", "--cluster", "b"]) == 0
    assert "Claude Code may first ask" not in capsys.readouterr().out


def test_a_first_run_dialog_still_drawn_after_its_answer_is_not_answered_again(workspace):
    """A dialog answered is not answered again within the cooldown, whatever line is under its
    cursor then: the cooldown is keyed by the dialog's kind."""
    from swarmfile.tmux_cluster import Pane, pane_state
    from swarmfile.tmux_screen import Screen

    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true}\n")
    bridge = Bridge(root=str(workspace), dry_run=True)
    pane = Pane("main", "agent-1", "%1", "main-agent-1", 1, False)
    options = ("No, exit", "Yes, I trust this folder")
    before = Screen("dialog", "workspace trust", "❯ No, exit", options, 0)
    after = Screen("dialog", "workspace trust", "❯ Yes, I trust this folder", options, 1)  # same dialog, cursor moved
    with pane_state(bridge.cfg, pane.agent_id) as state:
        first = bridge._answer(pane, state, before, "choose", "Yes, I trust this folder", before.line, "", utc_now())
        again = bridge._answer(pane, state, after, "choose", "Yes, I trust this folder", after.line, "", utc_now())
    assert [a["action"] for a in first] == ["would choose 'Yes, I trust this folder'"] and again == []


def test_an_earlier_dialog_drawn_again_after_the_next_one_is_not_answered_again(workspace, monkeypatch):
    """Every dialog's last answer is kept, not only the latest one: a trust dialog seen again after
    the API-key answer, within the cooldown, is not answered once more."""
    from swarmfile import tmux_bridge as bridge_module
    from swarmfile.tmux_cluster import Pane, pane_state
    from swarmfile.tmux_screen import Screen

    pressed = []
    monkeypatch.setattr(bridge_module, "choose", lambda tmux, pane_id, option, settings: pressed.append(option) or True)
    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true, use_api_key: true}\n")
    bridge = Bridge(root=str(workspace))
    pane = Pane("main", "agent-1", "%1", "main-agent-1", 1, False)
    trust = Screen("dialog", "workspace trust", "❯ Yes, I trust this folder", ("Yes, I trust this folder", "No, exit"), 0)
    api_key = Screen("dialog", "API key", "❯ No (recommended)", ("Yes", "No (recommended)"), 1)
    for screen, option in ((trust, "Yes, I trust this folder"), (api_key, "Yes"), (trust, "Yes, I trust this folder")):
        with pane_state(bridge.cfg, pane.agent_id) as state:
            bridge._answer(pane, state, screen, "choose", option, screen.line, "", utc_now())
    assert pressed == ["Yes, I trust this folder", "Yes"]
    answered = [(e["dialog"], e["choice"]) for e in events.read_events(types=["dialog_answered"], root=workspace)]
    assert answered == [("workspace trust", "Yes, I trust this folder"), ("API key", "Yes")]

