"""agent_memory: per-agent memory files, sections edited in place, people's sections kept, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import agent_memory as mem
from conftest import LIB
from swarmfile.errors import InvalidIdError, NotFoundError, ParseError, ValidationError
from procs import run_together

pytestmark = pytest.mark.timeout(60)

SCRIPT = LIB / "agent_memory.py"

PERSON = """# Memory: executor-1

Intro a person wrote.

## Scratchpad

## Decisions   

- keep the old API   
  * with trailing spaces

```text
## not a section (in a fence)
```

## notes

- old note

## Links ##
see https://example.com
"""


def memory_file(root: Path, agent: str = "executor-1") -> Path:
    return root / ".swarm" / "agents" / f"{agent}.md"


def write_person(root: Path, text: str = PERSON, agent: str = "executor-1") -> Path:
    path = memory_file(root, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_missing_memory_reads_empty_and_a_first_write_makes_the_skeleton(workspace):
    assert mem.read_memory("executor-1") == {"Scratchpad": "", "Subtasks": "", "Notes": ""}
    assert mem.read_memory("executor-1", "notes") == ""
    assert not memory_file(workspace).exists()
    sections = mem.append_memory("executor-1", "Notes", "the API needs a token")
    assert sections == {"Scratchpad": "", "Subtasks": "", "Notes": "the API needs a token"}
    assert memory_file(workspace).read_text() == (
        "# Memory: executor-1\n\n## Scratchpad\n\n## Subtasks\n\n## Notes\n\nthe API needs a token\n")
    assert mem.memory_path("executor-1") == memory_file(workspace)


def test_round_trips_of_append_replace_and_clear(workspace):
    mem.replace_section("executor-1", "scratchpad", "step 1\n\n  indented\nstep 2\n")
    mem.append_memory("executor-1", "SUBTASKS", "- [ ] a")
    mem.append_memory("executor-1", "Subtasks", "- [ ] b\n- [ ] c")
    assert mem.read_memory("executor-1") == {
        "Scratchpad": "step 1\n\n  indented\nstep 2", "Subtasks": "- [ ] a\n- [ ] b\n- [ ] c", "Notes": ""}
    mem.replace_section("executor-1", "Scratchpad", "")
    assert mem.read_memory("executor-1", "Scratchpad") == ""
    mem.append_memory("executor-1", "Plan", "new section")
    assert list(mem.read_memory("executor-1")) == ["Scratchpad", "Subtasks", "Notes", "Plan"]
    assert memory_file(workspace).read_text().endswith("## Notes\n\n## Plan\n\nnew section\n")
    assert mem.clear_memory("executor-1") == {"Scratchpad": "", "Subtasks": "", "Notes": "", "Plan": "new section"}
    mem.clear_memory("executor-1", "plan")
    assert mem.read_memory("executor-1", "Plan") == ""


def test_clear_of_a_missing_memory_creates_nothing(workspace):
    mem.clear_memory("executor-1")
    mem.replace_section("executor-1", "Notes", "")
    assert not memory_file(workspace).exists()


def test_sections_a_person_wrote_are_kept_byte_for_byte_in_place(workspace):
    path = write_person(workspace)
    assert mem.read_memory("executor-1") == {
        "Scratchpad": "", "Decisions": "- keep the old API   \n  * with trailing spaces\n\n```text\n"
                                       "## not a section (in a fence)\n```",
        "Notes": "- old note", "Links": "see https://example.com", "Subtasks": ""}
    mem.append_memory("executor-1", "Notes", "new note")
    mem.replace_section("executor-1", "Scratchpad", "thinking")
    mem.append_memory("executor-1", "subtasks", "- [ ] x")
    expected = PERSON.replace("## Scratchpad\n", "## Scratchpad\n\nthinking\n").replace(
        "- old note\n", "- old note\nnew note\n") + "\n## Subtasks\n\n- [ ] x\n"
    assert path.read_text() == expected
    mem.clear_memory("executor-1")
    assert path.read_text() == PERSON.replace("- old note\n\n", "") + "\n## Subtasks\n"


def test_crlf_and_no_final_newline_are_handled(workspace):
    path = write_person(workspace, "# Memory: executor-1\r\n\r\n## Notes\r\n\r\n- one")
    mem.append_memory("executor-1", "notes", "two")
    assert path.read_bytes() == b"# Memory: executor-1\r\n\r\n## Notes\r\n\r\n- one\r\ntwo\r\n"


@pytest.mark.parametrize("text", ["## sneaky heading", "```python\nunclosed fence", "a\n## b"])
def test_text_that_would_move_section_borders_is_refused(workspace, text):
    path = write_person(workspace)
    with pytest.raises(ValidationError, match="section borders"):
        mem.append_memory("executor-1", "Scratchpad", text)
    assert path.read_text() == PERSON


def test_fenced_headings_in_the_text_are_fine(workspace):
    mem.append_memory("executor-1", "Notes", "```md\n## inside\n```")
    assert mem.read_memory("executor-1", "Notes") == "```md\n## inside\n```"


@pytest.mark.parametrize("agent", ["../etc/passwd", "", ".hidden", "a/b", "x" * 200, None])
def test_invalid_agent_ids_are_refused_before_any_path(workspace, agent):
    for call in (lambda: mem.read_memory(agent), lambda: mem.append_memory(agent, "Notes", "x"),
                 lambda: mem.replace_section(agent, "Notes", "x"), lambda: mem.clear_memory(agent)):
        with pytest.raises(InvalidIdError):
            call()
    assert not (workspace / ".swarm").exists()


@pytest.mark.parametrize("section", ["", "# Notes", "two\nlines", "x" * 100])
def test_invalid_section_names_are_refused(workspace, section):
    with pytest.raises(ValidationError, match="invalid section name"):
        mem.append_memory("executor-1", section, "text")
    assert not memory_file(workspace).exists()


def test_a_memory_that_is_not_utf8_raises_parse_error_with_line_and_stays(workspace):
    data = b"# Memory: executor-1\n\n## Notes\n\n- caf\xe9\n"
    path = memory_file(workspace)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    for call in (lambda: mem.read_memory("executor-1"), lambda: mem.append_memory("executor-1", "Notes", "x"),
                 lambda: mem.clear_memory("executor-1")):
        with pytest.raises(ParseError, match="not valid UTF-8") as info:
            call()
        assert info.value.line == 5 and info.value.path == str(path)
    assert path.read_bytes() == data


@pytest.mark.parametrize("text, error, line", [
    ("", ParseError, 1),
    ("  \n\n", ParseError, 1),
    ("# Memory: executor-1\n## Notes\na\n## NOTES\nb\n", ParseError, 4),
    ("# Memory: executor-2\n## Notes\n", ValidationError, 1),
])
def test_malformed_memory_files_are_refused_and_stay(workspace, text, error, line):
    path = write_person(workspace, text)
    with pytest.raises(error) as info:
        mem.append_memory("executor-1", "Notes", "x")
    assert info.value.line == line
    with pytest.raises(error):
        mem.read_memory("executor-1")
    assert path.read_text() == text


def test_unknown_section_read_is_not_found(workspace):
    write_person(workspace)
    assert mem.read_memory("executor-1", "decisions").startswith("- keep")
    with pytest.raises(NotFoundError, match="no section 'Nope'.*sections: Scratchpad, Decisions"):
        mem.read_memory("executor-1", "Nope")


def test_configured_memory_directory(workspace):
    (workspace / "swarm.yaml").write_text("memory:\n  directory: state/memory\n")
    mem.append_memory("planner", "Notes", "configured")
    assert (workspace / "state" / "memory" / "planner.md").is_file()
    assert mem.memory_path("planner") == workspace / "state" / "memory" / "planner.md"
    other = workspace.parent / "other"
    other.mkdir()
    (other / "swarm.yaml").write_text("memory: [1]\n")
    with pytest.raises(ValidationError, match="'memory' must be a mapping"):
        mem.read_memory("planner", root=other)


def _append(root: str, agent: str, text: str) -> str:
    mem.append_memory(agent, "Notes", text, root=root)
    return text


def test_eight_processes_append_to_one_memory_and_all_lines_are_kept(workspace):
    write_person(workspace)
    lines = [f"- note from process {n}" for n in range(8)]
    assert sorted(run_together(_append, [(str(workspace), "executor-1", line) for line in lines])) == lines
    notes = mem.read_memory("executor-1", "Notes").split("\n")
    assert notes[0] == "- old note" and sorted(notes[1:]) == lines
    text = memory_file(workspace).read_text()
    assert text.startswith(PERSON.split("## notes")[0]) and text.endswith("## Links ##\nsee https://example.com\n")


# ---------------------------------------------------------------------------- command line


def _cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SWARM_ROOT"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=30)


def test_cli_show_append_replace_clear(workspace, tmp_path):
    root = ["--root", str(workspace)]
    assert _cli(*root, "append", "executor-1", "Notes", "first", cwd=tmp_path).returncode == 0
    piped = _cli(*root, "append", "executor-1", "notes", "-", cwd=tmp_path, stdin="second\nthird\n")
    assert piped.returncode == 0, piped.stderr
    assert _cli(*root, "replace", "executor-1", "Scratchpad", "idea", cwd=tmp_path).returncode == 0
    shown = _cli(*root, "show", "executor-1", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == (
        "## Scratchpad\n\nidea\n\n## Subtasks\n\n## Notes\n\nfirst\nsecond\nthird\n")
    one = json.loads(_cli(*root, "--json", "show", "executor-1", "--section", "NOTES", cwd=tmp_path).stdout)
    assert one["text"] == "first\nsecond\nthird" and one["path"] == str(memory_file(workspace))
    assert _cli(*root, "clear", "executor-1", cwd=tmp_path).returncode == 0
    everything = json.loads(_cli("show", "executor-1", "--json", *root, cwd=tmp_path).stdout)
    assert everything["sections"] == {"Scratchpad": "", "Subtasks": "", "Notes": ""}


@pytest.mark.parametrize("args, message", [
    (["show", "../x"], "invalid agent id"),
    (["append", "executor-1", "Notes", "## heading"], "section borders"),
    (["show", "executor-1", "--section", "Nope"], "no section 'Nope'"),
])
def test_cli_errors_are_one_line_exit_2(workspace, tmp_path, args, message):
    result = _cli("--root", str(workspace), *args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_refuses_a_file_that_is_not_utf8(workspace, tmp_path):
    path = memory_file(workspace)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"# Memory: executor-1\n\xff\n")
    result = _cli("--root", str(workspace), "append", "executor-1", "Notes", "x", cwd=tmp_path)
    assert result.returncode == 2 and f"{path}:2: is not valid UTF-8" in result.stderr
    assert path.read_bytes() == b"# Memory: executor-1\n\xff\n"


def test_cli_help_works_from_anywhere(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "append" in result.stdout
