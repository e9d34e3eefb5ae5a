"""tmux_screen on real screens of Claude Code 2.1.332 (tests/fixtures/screens, see its README):
each dialog read as such and never as idle, the answer the bridge may give, markers behind ●."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmfile import agents
from swarmfile import tmux_screen
from swarmfile.config import load_config
from swarmfile.errors import ValidationError
from swarmfile.tmux_screen import dialog_answer, input_holds, read_screen

SCREENS = Path(__file__).parent / "fixtures" / "screens"
TRUST, API_KEY = "Yes, I trust this folder", "Yes"


def shot(name: str) -> str:
    return (SCREENS / f"claude-2.1.332-{name}.txt").read_text()


@pytest.fixture
def settings(workspace):
    return tmux_screen.tmux_settings(load_config(root=workspace))


@pytest.mark.parametrize("name, kind, status, options, selected", [
    ("trust-220x50", "dialog", "dialog: workspace trust", ("No, exit", TRUST), 0),
    ("trust-100x30", "dialog", "dialog: workspace trust", ("No, exit", TRUST), 0),
    ("trust-yes-selected-220x50", "dialog", "dialog: workspace trust", ("No, exit", TRUST), 1),
    ("api-key-220x50", "dialog", "dialog: API key", ("Yes", "No (recommended)"), 1),
    ("api-key-100x30", "dialog", "dialog: API key", ("Yes", "No (recommended)"), 1),
    ("api-key-yes-selected-100x30", "dialog", "dialog: API key", ("Yes", "No (recommended)"), 0),
    ("permission-220x50", "dialog", "waiting-for-answer: permission", (
        "1. Yes", "2. Yes, and switch to accept edits (auto-approve file edits and common file commands) for this "
        "session (shift+tab)", "3. No"), 0),
    ("ready-220x50", "ready", "idle", (), None),
    ("ready-100x30", "ready", "idle", (), None),  # its box shows a dim suggestion: Try "..."
    ("done-220x50", "ready", "idle", (), None),
    ("working-220x50", "working", "working", (), None),
    ("typed-not-submitted-220x50", "typed", "text-in-input", (), None),
])
def test_each_real_screen_reads_as_what_it_is(settings, name, kind, status, options, selected):
    screen = read_screen(shot(name), settings)
    assert (screen.kind, screen.status, screen.options, screen.selected) == (kind, status, options, selected)


def test_the_dialogs_are_named_by_their_question(settings):
    assert read_screen(shot("trust-100x30"), settings).line.startswith("Quick safety check: Is this a project")
    assert read_screen(shot("api-key-220x50"), settings).line == "Do you want to use this API key?"
    assert read_screen(shot("permission-220x50"), settings).line == "Do you want to create hello.txt?"


def test_workspace_trust_is_answered_only_as_swarm_yaml_says(workspace, settings):
    screen = read_screen(shot("trust-220x50"), settings)
    for auto_confirm in (False, True):  # auto-confirm never trusts a folder
        action, key, why = dialog_answer(screen, settings, auto_confirm, shot("trust-220x50"))
        assert (action, key) == ("wait", "") and "tmux.trust_workspace: true" in why
    (workspace / "swarm.yaml").write_text("tmux: {trust_workspace: true}\n")
    trusting = tmux_screen.tmux_settings(load_config(root=workspace))
    assert dialog_answer(screen, trusting, False, "") == ("choose", TRUST, "")


def test_the_api_key_dialog_is_never_answered_by_enter(workspace, settings):
    screen = read_screen(shot("api-key-220x50"), settings)
    assert screen.options[screen.selected] == "No (recommended)"  # what a bare Enter would choose
    action, key, why = dialog_answer(screen, settings, True, shot("api-key-220x50"))
    assert (action, key) == ("wait", "") and "tmux.use_api_key: true" in why
    (workspace / "swarm.yaml").write_text("tmux: {use_api_key: true}\n")
    using = tmux_screen.tmux_settings(load_config(root=workspace))
    assert dialog_answer(screen, using, False, "") == ("choose", API_KEY, "")  # chosen by name, cursor checked


def test_a_permission_prompt_is_answered_by_its_one_yes_only_under_auto_confirm(settings):
    text = shot("permission-220x50")
    screen = read_screen(text, settings)
    assert dialog_answer(screen, settings, False, text)[0] == "wait"
    assert dialog_answer(screen, settings, True, text) == ("key", "1", "1. Yes")
    # Near a dangerous command, never; nor when the first option is more than a plain Yes.
    risky = text.replace("  1 hello", "  1 rm -rf build/")
    assert dialog_answer(read_screen(risky, settings), settings, True, risky)[2].startswith("dangerous text")
    allow_all = text.replace("❯ 1. Yes\n", "❯ 1. Yes, allow all edits during this session (shift+tab)\n")
    verdict = dialog_answer(read_screen(allow_all, settings), settings, True, allow_all)
    assert verdict[0] == "wait" and "not a plain Yes" in verdict[2]


def test_an_unknown_menu_is_waited_on_never_answered(settings):
    text = " Pick a model\n\n ❯ 1. Opus\n   2. Sonnet\n\n Enter to confirm · Esc to cancel\n"
    screen = read_screen(text, settings)
    assert (screen.kind, screen.status) == ("dialog", "waiting-for-answer: menu")
    assert dialog_answer(screen, settings, True, text)[0] == "wait"


def test_typed_text_is_seen_in_the_box_and_not_taken_for_a_placeholder(settings):
    line = "[TASK] TASK-7 tasks/active/TASK-7-say-hello.md"
    assert input_holds(shot("typed-not-submitted-220x50"), None, line)
    for name in ("ready-220x50", "ready-100x30", "done-220x50", "working-220x50"):
        assert not input_holds(shot(name), None, line), name
    # A plain prompt: the text left of the cursor.
    assert input_holds("agent> " + line, "agent> " + line, line)
    assert not input_holds("agent> " + line + "\nUnderstood", "", line)


def test_a_plain_prompt_is_ready_only_at_its_prompt(settings):
    assert read_screen("agent> ", settings, "agent> ").kind == "ready"
    assert read_screen("starting...\n", settings, "").kind == "unknown"
    assert read_screen("", settings, "").status == "not-ready"


def test_markers_behind_claude_codes_bullet_count_and_the_echo_does_not():
    found = agents.parse_markers(shot("done-220x50"))
    assert [(m.kind, m.task_id) for m in found] == [("ACK", "TASK-7"), ("DONE", "TASK-7")]
    assert [m.kind for m in agents.parse_markers("⏺ [DONE] T-1\n❯ [ACK] T-1\nsaid ● [ACK] T-1\n")] == ["DONE"]


@pytest.mark.parametrize("key, value", [("trust_workspace", "'yes'"), ("use_api_key", "1"), ("bridge", "'on'"),
                                        ("ready_patterns", "['(']")])
def test_bad_dialog_settings_are_refused(workspace, key, value):
    (workspace / "swarm.yaml").write_text(f"tmux: {{{key}: {value}}}\n")
    with pytest.raises(ValidationError, match=f"tmux.{key}"):
        tmux_screen.tmux_settings(load_config(root=workspace))
