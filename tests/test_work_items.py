"""work_items: checklist lines as claimable items, under the task lock, in real racing processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import events
from swarmfile import task_store
import work_items as wi
from conftest import LIB
from swarmfile.errors import AlreadyClaimed, InvalidIdError, NotClaimable, NotFoundError, ParseError, ValidationError
from procs import run_together

pytestmark = pytest.mark.timeout(60)

SCRIPT = LIB / "work_items.py"
F005 = "TASK-1769952151"

TASK = """# TASK-1: Build the thing

**Priority:** high
**Status:** pending

## Objective

Build it.

```markdown
- [ ] not an item (inside a fence)
```

## Success Criteria

- [ ] write the parser
- [ ] write the tests [IP:executor-9]
- [x] agree on the format
- [ ] same text
- [ ] same text

## Files to Modify

- `lib/thing.py`
"""


@pytest.fixture(autouse=True)
def _fresh_cache():
    task_store.clear_cache()
    yield
    task_store.clear_cache()


def make(root: Path, text: str = TASK, name: str = "TASK-1-build.md", where: str = "active") -> Path:
    path = root / "tasks" / where / name
    path.write_bytes(text.encode("utf-8"))
    return path


def item_events(root: Path, kind: str) -> list[dict]:
    return events.read_events(types=kind, root=root)


def changed_lines(before: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    old, new = before.split(b"\n"), after.split(b"\n")
    assert len(old) == len(new), "line count changed"
    return [(a, b) for a, b in zip(old, new) if a != b]


# ---------------------------------------------------------------------------- single process


def test_claim_by_index_marks_only_that_line_and_logs(workspace):
    path = make(workspace)
    before = path.read_bytes()
    item = wi.claim_item("TASK-1", 0, "executor-2", root=workspace)
    assert (item.index, item.agent, item.checked, item.text) == (0, "executor-2", False, "write the parser")
    assert changed_lines(before, path.read_bytes()) == [
        (b"- [ ] write the parser", b"- [ ] write the parser [IP:executor-2]")]
    [event] = item_events(workspace, "item_claimed")
    assert (event["agent"], event["task_id"], event["index"], event["text"]) == (
        "executor-2", "TASK-1", 0, "write the parser")


def test_claim_by_text_and_by_path_and_again_by_the_holder_changes_nothing(workspace):
    path = make(workspace)
    first = wi.claim_item(path, "  write the parser ", "executor-2")
    after = path.read_bytes()
    again = wi.claim_item(str(path), "write the parser [IP:executor-2]", "executor-2")
    assert again == first and path.read_bytes() == after
    assert len(item_events(workspace, "item_claimed")) == 1


def test_claim_of_an_item_held_by_another_names_the_holder_and_changes_nothing(workspace):
    path = make(workspace)
    before = path.read_bytes()
    with pytest.raises(AlreadyClaimed) as info:
        wi.claim_item("TASK-1", "write the tests", "executor-2")
    assert info.value.holder == "executor-9"
    assert "claimed by executor-9" in str(info.value) and f"{path}:17" in str(info.value)
    with pytest.raises(NotClaimable, match="already done"):
        wi.claim_item("TASK-1", "agree on the format", "executor-2")
    assert path.read_bytes() == before
    assert item_events(workspace, "item_claimed") == []


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_items_of_a_finished_task_cannot_be_claimed(workspace, status):
    path = make(workspace, TASK.replace("pending", status))
    before = path.read_bytes()
    with pytest.raises(NotClaimable, match=status):
        wi.claim_item("TASK-1", 0, "executor-2")
    assert path.read_bytes() == before


def test_complete_by_the_holder_checks_and_removes_the_marker(workspace):
    path = make(workspace)
    item = wi.complete_item("TASK-1", "write the tests", "executor-9")
    assert (item.checked, item.agent) == (True, None)
    assert "- [x] write the tests\n" in path.read_text()
    [event] = item_events(workspace, "item_completed")
    assert (event["agent"], event["index"], event["text"]) == ("executor-9", 1, "write the tests")
    # Done already: nothing to do, no second event.
    assert wi.complete_item("TASK-1", 1, "executor-9") == item
    assert len(item_events(workspace, "item_completed")) == 1


def test_only_the_holder_may_complete_or_release(workspace):
    path = make(workspace)
    before = path.read_bytes()
    for action in (wi.complete_item, wi.release_item):
        with pytest.raises(AlreadyClaimed, match="held by executor-9: only executor-9 may") as info:
            action("TASK-1", "write the tests", "executor-2")
        assert info.value.holder == "executor-9"
    assert path.read_bytes() == before


def test_any_agent_may_complete_an_unclaimed_item(workspace):
    path = make(workspace)
    item = wi.complete_item("TASK-1", "write the parser", "planner")
    assert item.checked and "- [x] write the parser\n" in path.read_text()


def test_release_removes_the_marker_and_an_unheld_item_is_left_alone(workspace):
    path = make(workspace)
    item = wi.release_item("TASK-1", 1, "executor-9")
    assert (item.agent, item.checked) == (None, False)
    assert "- [ ] write the tests\n" in path.read_text()
    after = path.read_bytes()
    assert wi.release_item("TASK-1", 1, "executor-9") == item
    assert path.read_bytes() == after
    [event] = item_events(workspace, "item_released")
    assert (event["agent"], event["index"]) == ("executor-9", 1)


def test_ambiguous_text_is_an_error_naming_the_lines(workspace):
    path = make(workspace)
    before = path.read_bytes()
    with pytest.raises(ValidationError, match="ambiguous: it is on lines 19, 20") as info:
        wi.claim_item("TASK-1", "same text", "executor-2")
    assert "select it by index: 3, 4" in str(info.value)
    assert wi.claim_item("TASK-1", 4, "executor-2").line == 20  # the index still works
    assert path.read_text().count("same text [IP:executor-2]") == 1
    assert before != path.read_bytes()


@pytest.mark.parametrize("selector", [5, 99, -1])
def test_index_out_of_range(workspace, selector):
    path = make(workspace)
    before = path.read_bytes()
    with pytest.raises(NotFoundError, match=rf"no checklist item #{selector} in TASK-1 \(5 items: #0-#4\)"):
        wi.claim_item("TASK-1", selector, "executor-2")
    assert path.read_bytes() == before


def test_unknown_text_lists_the_closest_items(workspace):
    make(workspace)
    with pytest.raises(NotFoundError, match="no checklist item 'write the parsr'") as info:
        wi.claim_item("TASK-1", "write the parsr", "executor-2")
    assert "closest: 'write the parser'" in str(info.value)
    with pytest.raises(NotFoundError, match="no task TASK-404"):
        wi.list_items("TASK-404")


def test_items_in_code_fences_and_lower_case_text_do_not_match(workspace):
    make(workspace)
    with pytest.raises(NotFoundError):
        wi.claim_item("TASK-1", "not an item (inside a fence)", "executor-2")
    with pytest.raises(NotFoundError):
        wi.claim_item("TASK-1", "WRITE THE PARSER", "executor-2")  # exact text, not a guess


@pytest.mark.parametrize("agent", ["../x", "", "a b", "-lead"])
def test_invalid_agent_ids_are_refused(workspace, agent):
    path = make(workspace)
    before = path.read_bytes()
    with pytest.raises(InvalidIdError):
        wi.claim_item("TASK-1", 0, agent)
    with pytest.raises(InvalidIdError):
        wi.release_items_of(agent)
    assert path.read_bytes() == before


def test_a_task_file_that_does_not_parse_is_not_written(workspace):
    path = make(workspace, "no title here\n- [ ] item\n", name="broken.md")
    before = path.read_bytes()
    with pytest.raises(ParseError, match="no title line"):
        wi.claim_item(path, 0, "executor-2")
    with pytest.raises(ParseError):
        wi.add_item(path, "another")
    assert path.read_bytes() == before


def test_an_operator_edit_between_two_calls_is_kept(workspace):
    path = make(workspace)
    seen = wi.list_items("TASK-1")
    assert seen[0].agent is None
    # The operator edits the file after the agent looked and before it claims.
    text = path.read_text().replace("**Priority:** high", "**Priority:** critical")
    text = text.replace("Build it.", "Build it.\n\nOperator note: use the new API.")
    path.write_text(text)
    item = wi.claim_item("TASK-1", seen[0].text, "executor-2")
    after = path.read_text()
    assert "**Priority:** critical" in after and "Operator note: use the new API." in after
    assert item.line == seen[0].line + 2  # found in the re-read file, not at the line seen earlier
    assert after == text.replace("- [ ] write the parser\n", "- [ ] write the parser [IP:executor-2]\n")


# ---------------------------------------------------------------------------- adding


def test_add_item_goes_below_the_last_item_of_the_section(workspace):
    path = make(workspace)
    before = path.read_text()
    item = wi.add_item("TASK-1", "document it", agent="planner")
    assert (item.index, item.line, item.section, item.checked, item.agent) == (
        5, 21, "Success Criteria", False, None)
    assert path.read_text() == before.replace("- [ ] same text\n- [ ] same text\n",
                                              "- [ ] same text\n- [ ] same text\n- [ ] document it\n")
    [event] = item_events(workspace, "item_added")
    assert (event["agent"], event["index"], event["text"], event["section"]) == (
        "planner", 5, "document it", "Success Criteria")


def test_add_item_keeps_the_bullet_style_and_creates_a_missing_section(workspace):
    text = "# TASK-2: Two\r\n\r\n## Objective\r\n\r\nDo.\r\n\r\n## Success Criteria\r\n\r\n  * [ ] one\r\n"
    path = make(workspace, text, name="TASK-2.md")
    wi.add_item("TASK-2", "two", section="success criteria")
    wi.add_item("TASK-2", "check it", section="Review")
    assert path.read_bytes().decode() == text + "  * [ ] two\r\n\r\n## Review\r\n\r\n- [ ] check it\r\n"
    assert [i.text for i in wi.list_items("TASK-2")] == ["one", "two", "check it"]


def test_add_item_to_an_empty_section_and_one_without_items(workspace):
    text = "# TASK-3: Three\n\n## Success Criteria\n## Notes\n\nSome prose.\n\n## End\n"
    path = make(workspace, text, name="TASK-3.md")
    wi.add_item("TASK-3", "first", section="Success Criteria")
    wi.add_item("TASK-3", "noted", section="Notes")
    assert path.read_text() == ("# TASK-3: Three\n\n## Success Criteria\n\n- [ ] first\n\n## Notes\n\n"
                                "Some prose.\n\n- [ ] noted\n\n## End\n")


@pytest.mark.parametrize("text, error", [
    ("write the parser", "already exists"),
    ("sneaky [IP:executor-1]", "would not read back"),
    ("two\nlines", "one non-empty line"),
    ("   ", "one non-empty line"),
])
def test_add_item_refuses_what_would_not_read_back(workspace, text, error):
    path = make(workspace)
    before = path.read_bytes()
    with pytest.raises(ValidationError, match=error):
        wi.add_item("TASK-1", text)
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------- dead agents


def test_release_items_of_a_dead_agent_across_active_tasks(workspace):
    one = make(workspace, TASK.replace("write the parser", "write the parser [IP:executor-9]"))
    two = make(workspace, "# TASK-2: Two\n\n- [ ] a [IP:executor-9]\n- [ ] b [IP:executor-1]\n", name="TASK-2.md")
    done = make(workspace, "# TASK-3: Old\n\n- [ ] c [IP:executor-9]\n", name="TASK-3.md", where="completed")
    broken = make(workspace, "garbage without a title\n- [ ] d [IP:executor-9]\n", name="broken.md")
    untouched = {p: p.read_bytes() for p in (done, broken)}
    released = wi.release_items_of("executor-9", root=workspace, by="planner")
    assert sorted((task_id, item.text) for task_id, item in released) == [
        ("TASK-1", "write the parser"), ("TASK-1", "write the tests"), ("TASK-2", "a")]
    assert "[IP:executor-9]" not in one.read_text() + two.read_text()
    assert "- [ ] b [IP:executor-1]" in two.read_text()
    assert {p: p.read_bytes() for p in untouched} == untouched
    found = item_events(workspace, "item_released")
    assert len(found) == 3 and {(e["agent"], e["holder"]) for e in found} == {("planner", "executor-9")}
    assert wi.release_items_of("executor-9", root=workspace) == []


# ---------------------------------------------------------------------------- RALF fixtures


def test_ralf_fixture_checklists_work(ralf):
    source = ralf / "tasks" / "active" / "TASK-1769952151-implement-feature-f005.md"
    items = wi.list_items(F005, root=ralf)
    assert len(items) == 7 and items[2].text == "Can generate API documentation from code"
    before = source.read_bytes()
    wi.claim_item(F005, "Can generate API documentation from code", "executor-1", root=ralf)
    with pytest.raises(AlreadyClaimed):
        wi.claim_item(F005, 2, "executor-2", root=ralf)
    wi.complete_item(F005, 2, "executor-1", root=ralf)
    added = wi.add_item(F005, "Examples added", root=ralf)
    assert added.index == 7 and added.line == 41
    assert changed_lines(before, source.read_bytes().replace(b"- [ ] Examples added\n", b"")) == [
        (b"- [ ] Can generate API documentation from code", b"- [x] Can generate API documentation from code")]
    # The RALF events.yaml (block-style entries) takes the appended flow lines.
    kinds = [e["type"] for e in events.read_events(root=ralf, task_id=F005)]
    assert kinds[-3:] == ["item_claimed", "item_completed", "item_added"]


# ---------------------------------------------------------------------------- real processes


def _claim(root: str, task: str, selector, agent: str) -> str:
    try:
        wi.claim_item(task, selector, agent, root=root)
        return f"won:{agent}"
    except AlreadyClaimed as exc:
        return f"lost:{exc.holder}"


def _operator(root: str, path: str, edits: int) -> str:
    for number in range(edits):
        task_store.set_field(path, f"Operator Edit {number}", f"value {number}", root=root)
    return "operator"


def _worker(kind: str, *args):
    return _claim(*args) if kind == "claim" else _operator(*args)


def test_eight_processes_race_for_one_item_exactly_one_wins(workspace):
    path = make(workspace)
    results = run_together(_claim, [(str(workspace), "TASK-1", "write the parser", f"executor-{n}")
                                    for n in range(8)])
    winners = [r.split(":")[1] for r in results if r.startswith("won:")]
    assert len(winners) == 1
    assert sorted(results) == sorted([f"won:{winners[0]}"] + [f"lost:{winners[0]}"] * 7)
    assert path.read_text().count("[IP:") == 2  # the winner's and executor-9's from the fixture
    assert f"- [ ] write the parser [IP:{winners[0]}]\n" in path.read_text()
    assert [e["agent"] for e in item_events(workspace, "item_claimed")] == winners


def test_eight_processes_claim_different_items_while_an_operator_edits(workspace):
    criteria = [f"item {n}" for n in range(8)]
    path = Path(task_store.new_task_file("TASK-8", "Eight", root=workspace, criteria=criteria))
    jobs = [("claim", str(workspace), "TASK-8", criteria[n], f"executor-{n}") for n in range(8)]
    results = run_together(_worker, jobs + [("operator", str(workspace), str(path), 10)])
    assert sorted(results) == sorted([f"won:executor-{n}" for n in range(8)] + ["operator"])
    items = wi.list_items(path)
    assert [(i.text, i.agent) for i in items] == [(f"item {n}", f"executor-{n}") for n in range(8)]
    task = task_store.load_task(path, use_cache=False)
    assert [task.field(f"Operator Edit {n}") for n in range(10)] == [f"value {n}" for n in range(10)]


# ---------------------------------------------------------------------------- command line


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SWARM_ROOT"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30)


def test_cli_list_claim_complete_release_add(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = make(workspace)
    root = ["--root", str(workspace)]
    listed = _cli(*root, "list", "TASK-1", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "IP:executor-9" in listed.stdout and "write the parser" in listed.stdout
    claimed = _cli(*root, "--json", "claim", "TASK-1", "0", "--agent", "executor-2", cwd=elsewhere)
    assert claimed.returncode == 0, claimed.stderr
    assert json.loads(claimed.stdout)["agent"] == "executor-2"
    by_text = _cli("claim", "TASK-1", "write the tests", "--agent", "executor-2", *root, cwd=elsewhere)
    assert by_text.returncode == 1 and by_text.stdout == ""
    assert by_text.stderr.startswith("error: ") and by_text.stderr.count("\n") == 1
    assert "claimed by executor-9" in by_text.stderr
    done = _cli(*root, "complete", str(path), "write the parser", "--agent", "executor-2", cwd=elsewhere)
    assert done.returncode == 0 and "done" in done.stdout
    assert _cli(*root, "release", "TASK-1", "1", "--agent", "executor-9", cwd=elsewhere).returncode == 0
    added = _cli(*root, "add", "TASK-1", "ship it", "--section", "Rollout", cwd=elsewhere)
    assert added.returncode == 0, added.stderr
    listed = json.loads(_cli(*root, "--json", "list", "TASK-1", cwd=elsewhere).stdout)
    assert [(i["text"], i["checked"], i["agent"]) for i in listed][:2] == [
        ("write the parser", True, None), ("write the tests", False, None)]
    assert listed[-1]["section"] == "Rollout"


@pytest.mark.parametrize("args, message", [
    (["claim", "TASK-1", "same text", "--agent", "executor-2"], "ambiguous"),
    (["claim", "TASK-1", "42", "--agent", "executor-2"], "no checklist item #42"),
    (["claim", "TASK-1", "0", "--agent", "../x"], "invalid agent id"),
    (["list", "TASK-404"], "no task TASK-404"),
])
def test_cli_errors_are_one_line_exit_2(workspace, tmp_path, args, message):
    path = make(workspace)
    before = path.read_bytes()
    result = _cli("--root", str(workspace), *args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    assert path.read_bytes() == before


def test_cli_help_works_from_anywhere(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "claim" in result.stdout
