"""tasks.py and task_store.py: parsing every RALF task, byte-exact edits under the lock, listing with a cache, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmfile import task_cache, task_store
from swarmfile import task_document, tasks
from swarmfile.task_document import TaskDocument
from conftest import RALF
from swarmfile.errors import InvalidIdError, NotFoundError, ParseError, ValidationError
from procs import run_together
from swarmfile.tasks import Priority, Status

pytestmark = pytest.mark.timeout(60)

FIXTURES = sorted((RALF / "tasks").glob("*/*.md"))

SIMPLE = """# TASK-1: Build the thing

**Type:** implement
**Priority:** high
**Status:** pending
**Created:** 2026-02-01T18:30:00Z
**Depends On:** TASK-0 (setup), TASK-00

## Objective

Build it.

```bash
# not a heading
## not a section either
- [ ] not an item
```

## Success Criteria

- [ ] item one
- [ ] item two [IP:executor-2]
- [X] item three

## Files to Modify

- `lib/thing.py` (create) - the thing
- docs/thing.md
- some prose without a path

## Completion

**Status:** COMPLETE - NO ACTION NEEDED
"""


@pytest.fixture(autouse=True)
def _fresh_cache():
    task_store.clear_cache()
    yield
    task_store.clear_cache()


def write(workspace: Path, name: str, text: str, where: str = "active") -> Path:
    path = workspace / "tasks" / where / name
    path.write_bytes(text.encode("utf-8"))
    return path


def changed_lines(before: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    old, new = before.split(b"\n"), after.split(b"\n")
    assert len(old) == len(new), "line count changed"
    return [(a, b) for a, b in zip(old, new) if a != b]


# ---------------------------------------------------------------------------- RALF fixtures


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_ralf_task_parses_and_round_trips(path):
    text = path.read_bytes().decode("utf-8")
    task = task_store.load_task(path)
    assert task.task_id and task.title and task.path == path
    assert task.status is not None, task.status_text
    assert tasks.validate_task(task) == []
    assert task.success_criteria, "every fixture has success criteria"
    assert TaskDocument(text, path).render() == text


@pytest.mark.parametrize("name, task_id, title, status, priority, criteria", [
    ("TASK-1769952151-implement-feature-f005.md", "TASK-1769952151",
     "Implement Feature F-005 (Automated Documentation Generator)", Status.PENDING, Priority.HIGH, 7),
    ("TASK-1769811775-fix-critical-api-mismatches.md", "TASK-1738363312",
     "Fix Critical API Mismatches in main.py", Status.COMPLETED, Priority.HIGH, 4),
    ("RALF-2026-01-30-001.md", "RALF-2026-01-30-001", "Initialize Self-Improvement System",
     Status.COMPLETED, Priority.CRITICAL, 5),
    # the Completion section says "**Status:** COMPLETE", but only header fields are the task's
    ("TASK-1738300332-fix-skills-system-critical-issues.md", "TASK-1738300332",
     "Fix Skills System Critical Issues", Status.IN_PROGRESS, Priority.CRITICAL, 5),
    ("TASK-1769916002-add-phase-1.5-skill-checking.md", "TASK-1769916002",
     "Add Phase 1.5 Skill Checking to Executor Prompt", Status.PENDING, Priority.HIGH, 5),
])
def test_ralf_task_details(name, task_id, title, status, priority, criteria):
    path = next(p for p in FIXTURES if p.name == name)
    task = task_store.load_task(path)
    assert (task.task_id, task.title, task.status, task.priority) == (task_id, title, status, priority)
    assert len(task.success_criteria) == criteria


def test_headings_inside_code_fences_are_not_sections():
    path = next(p for p in FIXTURES if p.name.startswith("TASK-1769916002"))
    task = task_store.load_task(path)
    names = [s.name for s in task.sections]
    assert "Skill Usage for This Task" not in names and "Phase 1.5: Skill Checking (MANDATORY)" not in names
    assert names[:5] == ["Objective", "Context", "Success Criteria", "Approach", "Files to Modify"]
    assert task.files_to_modify == (
        "2-engine/.autonomous/prompts/system/executor/variations/v2-legacy-based.md",
        ".templates/tasks/THOUGHTS.md.template", ".templates/tasks/task-completion.md.template")


def test_find_task_uses_the_title_id_not_the_file_name(ralf):
    task = task_store.find_task("TASK-1738363312", root=ralf)
    assert task.path.name == "TASK-1769811775-fix-critical-api-mismatches.md"
    assert task.path.parent == ralf / "tasks" / "completed"
    with pytest.raises(NotFoundError):
        task_store.find_task("TASK-1769811775", root=ralf)


# ---------------------------------------------------------------------------- the model


def test_parse_fields_sections_checklist_and_files():
    task = tasks.parse_task(SIMPLE, "x.md")
    assert list(task.fields) == ["Type", "Priority", "Status", "Created", "Depends On"]
    assert task.field_lines["Status"] == 5 and task.field("depends-on") == "TASK-0 (setup), TASK-00"
    assert task.status is Status.PENDING and task.type == "implement"
    assert task.depends_on == ("TASK-0", "TASK-00")
    assert [s.name for s in task.sections] == ["Objective", "Success Criteria", "Files to Modify", "Completion"]
    assert task.objective.startswith("Build it.") and "## not a section either" in task.objective
    items = task.checklist
    assert [(i.index, i.line, i.checked, i.agent, i.text) for i in items] == [
        (0, 21, False, None, "item one"), (1, 22, False, "executor-2", "item two"), (2, 23, True, None, "item three")]
    assert task.files_to_modify == ("lib/thing.py", "docs/thing.md")


def test_a_task_is_read_only_and_compared_by_identity_its_parts_by_value():
    task = tasks.parse_task(SIMPLE, "x.md")
    again = tasks.parse_task(SIMPLE, "x.md")
    for change in (lambda: setattr(task, "status", Status.COMPLETED), lambda: delattr(task, "title"),
                   lambda: setattr(task.sections[0], "line", 9), lambda: setattr(task.checklist[0], "checked", True)):
        with pytest.raises(AttributeError):
            change()
    assert task.status is Status.PENDING and task.title == again.title
    assert task != again and task == task and len({task, again}) == 2  # identity: a listing's cache relies on it
    assert task.sections == again.sections and task.checklist == again.checklist  # values
    assert task.checklist[0]._replace(line=99) == tasks.ChecklistItem(0, 99, False, "item one", None, "Success Criteria")
    made = tasks.Task(**{name: getattr(task, name) for name in tasks.Task.__match_args__})
    assert [getattr(made, name) for name in tasks.Task.__match_args__] == [
        getattr(task, name) for name in tasks.Task.__match_args__]
    assert tasks.ready_order_key(made) == tasks.ready_order_key(task)
    assert repr(task).startswith("Task(task_id='") and "title_line=1" in repr(task)


@pytest.mark.parametrize("raw, expected", [
    ("pending", Status.PENDING), ("COMPLETE", Status.COMPLETED), ("done", Status.COMPLETED),
    ("in progress", Status.IN_PROGRESS), ("In-Progress", Status.IN_PROGRESS), ("in_progress", Status.IN_PROGRESS),
    ("completed ✅", Status.COMPLETED), ("COMPLETE - NO ACTION NEEDED", Status.COMPLETED),
    ("Needs Attention", Status.NEEDS_ATTENTION), ("canceled", Status.CANCELLED), ("BLOCKED", Status.BLOCKED),
    ("claimed", Status.CLAIMED), ("failed: timeout", Status.FAILED), ("frobnicated", None), ("", None),
])
def test_status_normalisation(raw, expected):
    assert Status.parse(raw) is expected


def test_unrecognised_status_parses_and_is_reported_by_validate():
    text = SIMPLE.replace("**Status:** pending", "**Status:** frobnicated").replace("**Priority:** high",
                                                                                   "**Priority:** sky-high")
    task = tasks.parse_task(text, "t.md")
    assert task.status is None and task.status_text == "frobnicated"
    problems = [str(p) for p in tasks.validate_task(task)]
    assert any(p.startswith("t.md:5: unrecognised status 'frobnicated'") for p in problems), problems
    assert any("t.md:4: unrecognised priority" in p for p in problems), problems
    assert tasks.parse_task("# T-1: no fields\n").status is Status.PENDING  # no Status line: pending


def test_priority_order_and_ready_order():
    assert tasks.priority_rank("CRITICAL") > tasks.priority_rank("high") > tasks.priority_rank("Medium") \
        > tasks.priority_rank("low")
    assert tasks.priority_rank("7") == 7.0 and tasks.priority_rank(None) == tasks.priority_rank("medium")

    def make(task_id, priority, created):
        return tasks.parse_task(f"# {task_id}: t\n\n**Priority:** {priority}\n**Created:** {created}\n")

    batch = [make("C", "low", "2026-01-01T00:00:00Z"), make("B", "high", "2026-01-02T00:00:00Z"),
             make("A", "HIGH", "2026-01-01T00:00:00+00:00"), make("D", "critical", "2026-03-01T00:00:00Z"),
             make("E", "high", "not a time")]
    assert [t.task_id for t in sorted(batch, key=tasks.ready_order_key)] == ["D", "A", "B", "E", "C"]


def test_title_id_and_task_id_field():
    assert tasks.parse_task("# Initialise things\n\n**Task ID:** RALF-1\n").task_id == "RALF-1"
    task = tasks.parse_task("# TASK-9: Fix: a colon in the title\n")
    assert (task.task_id, task.title) == ("TASK-9", "Fix: a colon in the title")
    mismatch = tasks.parse_task("# TASK-9: t\n\n**Task ID:** TASK-8\n", "m.md")
    assert "Task ID 'TASK-8' differs" in str(tasks.validate_task(mismatch)[0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, error, line", [
    (b"", ParseError, 1),
    (b"\n  \n", ParseError, 1),
    (b"just some text\n# TASK-1: late title\n", ParseError, 1),
    (b"\x00\x01\x02garbage\xff\xfe", ParseError, 1),
    (b"# TASK-1: ok\n\xc3\x28 bad utf-8\n", ParseError, 2),
    (b"# ../../etc: escape\n", InvalidIdError, 1),
    (b"# A title without an id\n\n**Status:** pending\n", ParseError, 1),
    (b"# A title\n\n**Task ID:** ../x\n", InvalidIdError, 3),
])
def test_bad_task_files_fail_closed(workspace, content, error, line):
    path = write(workspace, "bad.md", "")
    path.write_bytes(content)
    with pytest.raises(error) as caught:
        task_store.load_task(path)
    assert caught.value.path == str(path) and caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert caught.value.hint
    with pytest.raises(error):
        task_store.set_field(path, "Status", "completed", root=workspace)
    with pytest.raises(error):
        task_store.set_checklist_item(path, 0, checked=True, root=workspace)
    assert path.read_bytes() == content


def test_find_task_rejects_invalid_ids(workspace):
    with pytest.raises(InvalidIdError):
        task_store.find_task("../../etc", root=workspace)


# ---------------------------------------------------------------------------- edits


def test_set_field_replaces_one_line_in_place(workspace):
    path = write(workspace, "t.md", SIMPLE)
    before = path.read_bytes()
    task = task_store.set_field(path, "status", Status.IN_PROGRESS, root=workspace)
    assert task.status is Status.IN_PROGRESS
    assert changed_lines(before, path.read_bytes()) == [(b"**Status:** pending", b"**Status:** in_progress")]
    # the Completion section's own Status line is untouched
    assert path.read_bytes().endswith(b"**Status:** COMPLETE - NO ACTION NEEDED\n")


def _as_parsed(task: tasks.Task) -> dict:
    return {name: getattr(task, name) for name in tasks.Task.__match_args__}


EDGE_CASES = [
    SIMPLE,
    SIMPLE.replace("\n", "\r\n"),
    # the same field twice, and under two spellings: the first one is the task's, and is the one set
    "# T-1: title\n\n**Status:** pending\n**status:** blocked\n**Status:** done\n**Claimed By:** none\n",
    # no id in the title: the Task ID field names the task (editing it must rename the task)
    "# Fix the importer\n\n**Task ID:** T-9\n**Status:** pending\n**Priority:** low\n",
    # the other way of closing the name, trailing blanks, stars and colons in the value
    "# T-2: t\n\n**Status**: pending   \n**Priority:** **high**: now\n**Depends On:** T-1\n## Notes\n**Status:** x\n",
]


@pytest.mark.parametrize("text", [p.read_text(encoding="utf-8") for p in FIXTURES] + EDGE_CASES)
def test_a_document_edited_in_place_is_the_task_a_fresh_parse_of_its_text_gives(text):
    """Setting header values in place updates the document's task without parsing the file again:
    it must be exactly what parsing the edited text gives, field by field."""
    document = TaskDocument(text, Path("/x/t.md"))
    for name, value in [("Status", "claimed"), ("Claimed By", "executor-1"), ("Priority", "critical"),
                        ("Status", "in_progress"), ("Depends On", "T-7, T-8"), ("Task ID", "T-10"),
                        ("Parent Task", "T-3"), ("Sub-Tasks", "T-10-SUB1"), ("Assigned To", "executor-2"),
                        ("status", "done")]:
        document.set_field(name, value)
        assert _as_parsed(document.task) == _as_parsed(tasks.parse_task(document.render(), Path("/x/t.md"))), name


def test_a_claims_two_field_edits_scan_the_file_once(monkeypatch):
    scans = []
    real = task_document.scan_lines
    monkeypatch.setattr(task_document, "scan_lines", lambda lines, path: scans.append(path) or real(lines, path))
    document = TaskDocument(SIMPLE, Path("/x/t.md"))
    document.set_field("Status", "claimed")
    document.set_field("Claimed By", "executor-1")  # not in SIMPLE: a line inserted, the scan moved with it
    document.set_field("Claimed By", "executor-2")
    assert document.task.status is Status.CLAIMED and document.task.field("Claimed By") == "executor-2"
    assert len(scans) == 1  # the first read only


def test_unchanged_edit_does_not_rewrite(workspace):
    path = write(workspace, "t.md", SIMPLE)
    inode = path.stat().st_ino
    task_store.set_field(path, "Status", "pending", root=workspace)
    assert path.stat().st_ino == inode and path.read_text() == SIMPLE


def test_set_field_inserts_after_the_last_header_field(workspace):
    path = write(workspace, "t.md", SIMPLE)
    task_store.set_fields(path, {"Claimed By": "executor-1", "Priority": "low"}, root=workspace)
    lines = path.read_text().split("\n")
    assert lines[1:9] == ["", "**Type:** implement", "**Priority:** low", "**Status:** pending",
                          "**Created:** 2026-02-01T18:30:00Z", "**Depends On:** TASK-0 (setup), TASK-00",
                          "**Claimed By:** executor-1", ""]
    assert path.read_text().replace("**Claimed By:** executor-1\n", "").replace("low", "high", 1) == SIMPLE


@pytest.mark.parametrize("text, expected", [
    ("# T-1: title\r\n\r\n**Status:** pending\r\n\r\n## Objective\r\nx",
     "# T-1: title\r\n\r\n**Status:** pending\r\n**Owner:** me\r\n\r\n## Objective\r\nx"),
    ("# T-1: title\n**Status:** pending", "# T-1: title\n**Status:** pending\n**Owner:** me"),
    ("# T-1: title", "# T-1: title\n\n**Owner:** me"),
    ("# T-1: title\n\n## Objective\n", "# T-1: title\n\n**Owner:** me\n\n## Objective\n"),
    ("# T-1: title\n## Objective\n", "# T-1: title\n\n**Owner:** me\n\n## Objective\n"),
])
def test_insert_keeps_line_endings_and_missing_final_newline(workspace, text, expected):
    path = write(workspace, "t.md", text)
    task_store.set_field(path, "Owner", "me", root=workspace)
    assert path.read_bytes() == expected.encode()
    assert task_store.load_task(path).field("Owner") == "me"


def test_crlf_field_replace_keeps_crlf(workspace):
    path = write(workspace, "t.md", SIMPLE.replace("\n", "\r\n"))
    task_store.set_field(path, "Status", "blocked", root=workspace)
    assert path.read_bytes() == SIMPLE.replace("**Status:** pending", "**Status:** blocked").replace(
        "\n", "\r\n").encode()


@pytest.mark.parametrize("name, value", [("Status", "two\nlines"), ("Bad*Name", "x"), ("", "x"),
                                         ("Status", "x\r")])
def test_invalid_field_edits_are_refused(workspace, name, value):
    path = write(workspace, "t.md", SIMPLE)
    with pytest.raises(ValidationError):
        task_store.set_field(path, name, value, root=workspace)
    assert path.read_text() == SIMPLE


def test_checklist_edits_touch_only_their_line(workspace):
    path = write(workspace, "t.md", SIMPLE)
    before = path.read_bytes()
    item = task_store.set_checklist_item(path, "item one", checked=True, agent="executor-1", root=workspace)
    assert (item.checked, item.agent, item.text) == (True, "executor-1", "item one")
    assert changed_lines(before, path.read_bytes()) == [(b"- [ ] item one", b"- [x] item one [IP:executor-1]")]
    item = task_store.set_checklist_item(path, 1, agent=None, root=workspace)
    assert (item.agent, item.checked) == (None, False)
    item = task_store.set_checklist_item(path, "ITEM   three", checked=False, root=workspace)
    assert not item.checked
    text = path.read_text()
    assert "- [x] item one [IP:executor-1]\n- [ ] item two\n- [ ] item three\n" in text
    task_store.set_checklist_item(path, 2, checked=True, root=workspace)
    task_store.set_checklist_item(path, "item one", checked=False, agent=None, root=workspace)
    assert path.read_text() == SIMPLE.replace(" [IP:executor-2]", "").replace("[X]", "[x]")


def test_checked_capital_x_is_kept_when_only_the_agent_changes(workspace):
    path = write(workspace, "t.md", SIMPLE)
    task_store.set_checklist_item(path, 2, agent="a-1", root=workspace)
    assert "- [X] item three [IP:a-1]\n" in path.read_text()


@pytest.mark.parametrize("selector, kwargs, error", [
    (7, {"checked": True}, NotFoundError), ("no such item", {"checked": True}, NotFoundError),
    (0, {"agent": "../evil"}, InvalidIdError), (True, {"checked": True}, NotFoundError),
])
def test_checklist_edit_errors_leave_the_file_alone(workspace, selector, kwargs, error):
    path = write(workspace, "t.md", SIMPLE)
    with pytest.raises(error):
        task_store.set_checklist_item(path, selector, root=workspace, **kwargs)
    assert path.read_text() == SIMPLE


def test_ambiguous_checklist_text(workspace):
    path = write(workspace, "t.md", SIMPLE.replace("item two", "item one"))
    with pytest.raises(ValidationError, match="ambiguous"):
        task_store.set_checklist_item(path, "item one", checked=True, root=workspace)


def test_edit_rereads_so_an_operators_concurrent_edit_is_kept(workspace):
    path = write(workspace, "t.md", SIMPLE)
    stale = task_store.load_task(path)
    path.write_text(SIMPLE.replace("Build it.", "Build it, carefully."))  # the operator saves
    task_store.set_field(stale.path, "Status", "claimed", root=workspace)
    text = path.read_text()
    assert "Build it, carefully." in text and "**Status:** claimed" in text


def test_edit_task_writes_nothing_when_the_block_raises(workspace):
    path = write(workspace, "t.md", SIMPLE)
    with pytest.raises(RuntimeError):
        with task_store.edit_task(path, root=workspace) as document:
            document.set_field("Status", "failed")
            raise RuntimeError("boom")
    assert path.read_text() == SIMPLE


def _edit_in_child(root: str, path: str, n: int) -> int:
    for round_ in range(5):
        task_store.set_field(path, f"Field {n}", f"value {round_}", root=root)
    task_store.set_checklist_item(path, n % 3, agent=f"agent-{n}", root=root) if n < 3 else None
    return n


def test_concurrent_editors_lose_no_update(workspace):
    path = write(workspace, "t.md", SIMPLE)
    run_together(_edit_in_child, [(str(workspace), str(path), n) for n in range(4)])
    task = task_store.load_task(path, use_cache=False)
    assert [task.field(f"Field {n}") for n in range(4)] == ["value 4"] * 4
    assert [i.agent for i in task.checklist] == ["agent-0", "agent-1", "agent-2"]
    assert task.objective.startswith("Build it.")


def test_edit_without_root_finds_the_workspace_lock_dir(workspace, tmp_path, monkeypatch):
    path = write(workspace, "t.md", SIMPLE)
    monkeypatch.delenv("SWARM_ROOT")
    monkeypatch.chdir(tmp_path)
    assert task_store.task_config(path).root == workspace
    task_store.set_field(path, "Status", "claimed")
    assert (workspace / ".swarm" / "locks").is_dir()


# ---------------------------------------------------------------------------- listing, finding, creating


def test_list_tasks_caches_by_stat(workspace, monkeypatch):
    for n in range(5):
        write(workspace, f"T-{n}.md", f"# T-{n}: task {n}\n")
    write(workspace, "T-9.md", "# T-9: done\n\n**Status:** completed\n", "completed")
    write(workspace, "README.md", "not a task\n")
    parsed = []
    real = task_cache._read_task
    monkeypatch.setattr(task_cache, "_read_task", lambda p: parsed.append(p.name) or real(p))
    first = task_store.list_tasks(root=workspace)
    assert [t.task_id for t in first] == [f"T-{n}" for n in range(5)] and len(parsed) == 5
    assert [t.task_id for t in task_store.list_tasks(root=workspace, include_completed=True)][-1] == "T-9"
    parsed.clear()
    again = task_store.list_tasks(root=workspace)
    assert parsed == [] and all(a is b for a, b in zip(first, again))
    task_store.set_field(workspace / "tasks" / "active" / "T-2.md", "Status", "claimed", root=workspace)
    write(workspace, "T-1.md", "# T-1: task 1\n\n**Status:** blocked\n")  # by hand: read again
    (workspace / "tasks" / "active" / "T-4.md").unlink()
    after = task_store.list_tasks(root=workspace)
    # Our own edit is recorded as written (no parse); the hand edit is parsed.
    assert parsed == ["T-1.md"] and [t.status for t in after] == [Status.PENDING, Status.BLOCKED, Status.CLAIMED,
                                                                  Status.PENDING]
    assert task_store.load_task(workspace / "tasks" / "active" / "T-2.md") is after[2]


def test_list_tasks_with_a_broken_file(workspace):
    write(workspace, "good.md", "# T-1: fine\n")
    bad = write(workspace, "bad.md", "no title here\n")
    with pytest.raises(ParseError):
        task_store.list_tasks(root=workspace)
    errors: list = []
    assert [t.task_id for t in task_store.list_tasks(root=workspace, errors=errors)] == ["T-1"]
    assert [e.path for e in errors] == [str(bad)]
    assert bad.read_text() == "no title here\n"


def test_list_tasks_of_a_directory(tmp_path):
    (tmp_path / "a.md").write_text("# A-1: a\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [t.task_id for t in task_store.list_tasks(directory=tmp_path)] == ["A-1"]
    assert task_store.list_tasks(directory=tmp_path / "missing") == []


def test_find_task_active_then_completed_and_duplicates(workspace):
    write(workspace, "T-1.md", "# T-1: open\n")
    write(workspace, "T-2.md", "# T-2: done\n\n**Status:** done\n", "completed")
    assert task_store.find_task("T-1", root=workspace).title == "open"
    assert task_store.find_task("T-2", root=workspace).status is Status.COMPLETED
    write(workspace, "T-1-copy.md", "# T-1: stale copy\n", "completed")
    with pytest.raises(ValidationError) as caught:
        task_store.find_task("T-1", root=workspace)
    assert "T-1.md" in str(caught.value) and "T-1-copy.md" in str(caught.value)
    with pytest.raises(NotFoundError):
        task_store.find_task("T-3", root=workspace)


def test_new_task_file_renders_a_parseable_task(workspace):
    path = task_store.new_task_file("TASK-7", "Add a cache", root=workspace, priority="high", type="implement",
                               depends_on=["TASK-1"], objective="Make it fast.",
                               criteria=["first", "- [x] already done"], files=["lib/cache.py"],
                               fields={"Assigned To": "executor-1"}, sections={"Notes": "Be careful."},
                               created="2026-02-01T00:00:00Z")
    assert path == workspace / "tasks" / "active" / "TASK-7-add-a-cache.md"
    task = task_store.load_task(path)
    assert (task.task_id, task.title, task.status, task.priority, task.type) == (
        "TASK-7", "Add a cache", Status.PENDING, Priority.HIGH, "implement")
    assert task.depends_on == ("TASK-1",) and task.assigned_to == "executor-1"
    assert [(i.text, i.checked) for i in task.success_criteria] == [("first", False), ("already done", True)]
    assert task.files_to_modify == ("lib/cache.py",) and task.section("Notes").text == "Be careful."
    assert tasks.validate_task(task) == []
    with pytest.raises(ValidationError, match="already used"):
        task_store.new_task_file("TASK-7", "Another title", root=workspace)
    with pytest.raises(InvalidIdError):
        task_store.new_task_file("../x", "Escape", root=workspace)
    with pytest.raises(ValidationError):
        task_store.new_task_file("TASK-8", "two\nlines", root=workspace)


def test_move_to_completed(workspace):
    path = task_store.new_task_file("TASK-5", "Finish", root=workspace, filename="TASK-5.md")
    moved = task_store.move_to_completed("TASK-5", root=workspace)
    assert moved == workspace / "tasks" / "completed" / "TASK-5.md" and not path.exists()
    assert task_store.find_task("TASK-5", root=workspace).status is Status.COMPLETED
    assert task_store.move_to_completed("TASK-5", root=workspace) == moved  # already there
    task_store.new_task_file("TASK-6", "Clash", root=workspace, filename="TASK-5.md")
    with pytest.raises(ValidationError, match="already exists"):
        task_store.move_to_completed("TASK-6", root=workspace)
    assert (workspace / "tasks" / "active" / "TASK-5.md").exists()


def test_a_second_listing_of_many_tasks_parses_only_the_changed_file(workspace, monkeypatch):
    """The speed of a listing is its parses (a stat is ~100x cheaper): counted, not timed
    (tests/benchmarks/run.py times it)."""
    active = workspace / "tasks" / "active"
    for n in range(2000):
        (active / f"T-{n}.md").write_text(f"# T-{n}: task\n\n**Priority:** high\n**Status:** pending\n")
    assert len(task_store.list_tasks(root=workspace)) == 2000
    parsed = []
    real = task_cache.parse_task
    monkeypatch.setattr(task_cache, "parse_task", lambda text, path=None: parsed.append(path) or real(text, path))
    assert len(task_store.list_tasks(root=workspace)) == 2000 and parsed == []
    (active / "T-7.md").write_text("# T-7: task\n\n**Priority:** low\n**Status:** pending\n")  # by hand
    listing = task_store.list_tasks(root=workspace)
    assert [Path(p).name for p in parsed] == ["T-7.md"] and len(listing) == 2000
    task_store.set_field(active / "T-8.md", "Priority", "low", root=workspace)
    parsed.clear()  # what the edit itself read: our own write is recorded as written, not read again
    listing = task_store.list_tasks(root=workspace)
    assert parsed == [] and [t.priority_text for t in listing if t.task_id in ("T-7", "T-8")] == ["low", "low"]


def test_listing_sees_a_renamed_in_file_at_once_and_an_in_place_edit_on_the_full_scan(workspace, monkeypatch):
    import os as _os
    import time as _time

    from swarmfile import tasks as tk

    active = workspace / "tasks" / "active"
    task_store.new_task_file("T-1", "First", root=workspace)
    old = _time.time() - 10  # an mtime older than a clock tick: the skip may trust it
    _os.utime(active, (old, old))
    monkeypatch.setattr(task_cache, "_FULL_SCAN_SECONDS", 3600.0)
    assert [t.task_id for t in task_store.list_tasks(root=workspace, fast=True)] == ["T-1"]
    task_store.new_task_file("T-2", "Second", root=workspace)  # atomic rename: the directory's mtime moves
    assert [t.task_id for t in task_store.list_tasks(root=workspace, fast=True)] == ["T-1", "T-2"]
    task_store.set_field(task_store.find_task("T-1", root=workspace).path, "Status", "blocked")  # a rename: a new inode
    assert task_store.list_tasks(root=workspace, fast=True)[0].status is tk.Status.BLOCKED
    path = task_store.find_task("T-1", root=workspace).path
    with open(path, "a") as handle:  # an editor saving in place: no directory change
        handle.write("\nmore text\n")
    _os.utime(active, (old, old))
    assert "more text" in task_store.list_tasks(root=workspace)[0].sections[-1].text, "a plain listing stats every file"
    monkeypatch.setattr(task_cache, "_FULL_SCAN_SECONDS", 0.0)
    assert "more text" in task_store.list_tasks(root=workspace, fast=True)[0].sections[-1].text


def test_the_model_does_not_import_the_files_on_disk():
    """tasks.py is the Markdown model; task_store.py (files on disk) builds on it, never the reverse."""
    import ast

    from conftest import LIB

    tree = ast.parse((LIB / "swarmfile" / "tasks.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names} | \
        {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "task_store" not in imported


def test_a_file_moved_away_during_a_listing_is_left_out_not_raised(workspace, monkeypatch):
    # Regression (the long soak): an executor died when a task another one completed was moved
    # between the directory read and the file read of its listing.
    from swarmfile import task_store
    from swarmfile.errors import NotFoundError

    task_store.new_task_file("T-1", "Stays", root=workspace)
    moving = task_store.new_task_file("T-2", "Moves away", root=workspace)
    task_store.clear_cache()
    real = task_cache._read_task

    def vanish(path):
        if path == moving:
            raise NotFoundError("task file does not exist", path=path)
        return real(path)

    monkeypatch.setattr(task_cache, "_read_task", vanish)
    assert [t.task_id for t in task_store.list_tasks(root=workspace, errors=[])] == ["T-1"]


def test_tasks_compare_by_identity():
    """The ready query compares listings with list equality (ready_query._same): that is only
    "the very same task objects" while a Task has no __eq__ of its own."""
    from swarmfile.task_index import IndexedTask

    assert tasks.Task.__eq__ is object.__eq__ and IndexedTask.__eq__ is object.__eq__
    one, two = (tasks.parse_task("# T-1: a\n\n**Status:** pending\n") for _ in range(2))
    assert [one] != [two] and [one] == [one]
