"""task_index.py: a cold listing parses only what changed; the index is a cache that is never wrong or fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LIB
from procs import live_holder, run_elsewhere, run_together
from swarmfile import claims, task_cache, task_index, task_store, tasks
from swarmfile.config import load_config
from swarmfile.tasks import Status

pytestmark = pytest.mark.timeout(120)


def write(root: Path, task_id: str, status: str = "pending", folder: str = "", extra: str = "") -> Path:
    directory = root / "tasks" / "active" / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{task_id}.md"
    path.write_text(f"# {task_id}: task {task_id}\n\n**Type:** implement\n**Priority:** medium\n"
                    f"**Status:** {status}\n**Created:** 2026-01-01T00:00:00Z\n{extra}\n## Objective\n\nDo it.\n\n"
                    "## Success Criteria\n\n- [ ] one\n- [x] two [IP:agent-1]\n")
    return path


@pytest.fixture
def trust_all(monkeypatch):
    """Every file counts as settled: the tests that are not about racily clean files need not wait 2 s."""
    monkeypatch.setattr(task_index, "RACY_NS", -10**12)


@pytest.fixture
def eager(monkeypatch):
    """The index is written again after every change (not after _INDEX_STALE_FILES of them)."""
    monkeypatch.setattr(task_cache, "_INDEX_STALE_FILES", 1)


@pytest.fixture
def parsed(monkeypatch):
    """The names of the task files parsed by listings, in order (a spy on task_store's parser)."""
    seen: list[str] = []
    real = task_cache.parse_task

    def spy(text, path=None):
        seen.append(Path(path).name)
        return real(text, path)

    monkeypatch.setattr(task_cache, "parse_task", spy)
    return seen


def cold_ready(root: Path) -> dict[str, tasks.Task]:
    """The ready query as the first call of a new process: nothing in memory but the index on disk."""
    task_store.clear_cache()
    return {t.task_id: t for t in claims.ready_tasks(root=root)}


def cold_listing(root: Path) -> dict[str, tasks.Task]:
    task_store.clear_cache()
    cfg = load_config(root=root)
    active, completed = task_store.list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=[])
    return {t.task_id: t for t in active + completed}


def index_of(root: Path) -> Path:
    return task_index.index_file(load_config(root=root).runtime_dir)


def indexed_names(path: Path) -> dict[str, set[str]]:
    """Per folder in the index file at ``path``: the files whose summary a listing may take from it."""
    return {folder: record.indexed() for folder, record in task_index.load(path, object()).items()}


# ---------------------------------------------------------------------------- what a cold listing parses


def test_a_cold_listing_parses_only_the_files_that_changed(workspace, trust_all, parsed):
    for n in range(20):
        write(workspace, f"T-{n:02d}")
    assert len(cold_ready(workspace)) == 20 and len(parsed) == 20  # no index yet: every file
    assert index_of(workspace).is_file()
    parsed.clear()
    assert len(cold_ready(workspace)) == 20 and parsed == []  # nothing changed: nothing parsed
    write(workspace, "T-05", status="blocked")
    found = cold_ready(workspace)
    assert parsed == ["T-05.md"] and "T-05" not in found and len(found) == 19


def test_an_edit_in_place_that_keeps_size_and_mtime_is_seen(workspace, trust_all):
    path = write(workspace, "T-1")
    before = os.stat(path)
    assert "T-1" in cold_ready(workspace)
    text = path.read_bytes().replace(b"**Status:** pending", b"**Status:** blocked")  # same length
    with open(path, "r+b") as handle:  # same inode: an editor that writes in place
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and a tool that keeps the mtime
    after = os.stat(path)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (before.st_size, before.st_ino, before.st_mtime_ns)
    assert cold_ready(workspace) == {}  # the ctime moved: re-read, blocked
    assert cold_listing(workspace)["T-1"].status is Status.BLOCKED


def test_new_deleted_moved_files_and_renamed_folders_are_seen(workspace, trust_all, eager, parsed):
    write(workspace, "T-1")
    gone = write(workspace, "T-2")
    moved = write(workspace, "T-3")
    write(workspace, "E-1", folder="epic-a")
    assert set(cold_ready(workspace)) == {"T-1", "T-2", "T-3", "E-1"}
    write(workspace, "T-4")
    gone.unlink()
    moved.rename(moved.with_name("T-3-renamed.md"))
    (workspace / "tasks" / "active" / "epic-a").rename(workspace / "tasks" / "active" / "epic-b")
    parsed.clear()
    found = cold_ready(workspace)
    assert set(found) == {"T-1", "T-3", "T-4", "E-1"}
    assert found["T-3"].path.name == "T-3-renamed.md" and found["E-1"].path.parent.name == "epic-b"
    assert sorted(parsed) == ["E-1.md", "T-3-renamed.md", "T-4.md"]  # T-1 came from the index
    stored = indexed_names(index_of(workspace))
    assert not any(key.endswith("epic-a") for key in stored)  # the old folder left the index
    assert stored[str(workspace / "tasks" / "active")] == {"T-1.md", "T-3-renamed.md", "T-4.md"}


def test_a_file_that_cannot_be_stat_ed_is_skipped_and_the_rest_listed(workspace, trust_all, parsed):
    """A dangling symlink named like a task is skipped, by a cold listing and by a warm full scan."""
    for n in range(5):
        write(workspace, f"T-{n}")
    assert len(cold_ready(workspace)) == 5
    (workspace / "tasks" / "active" / "T-9.md").symlink_to(workspace / "nowhere.md")
    write(workspace, "T-2", status="blocked")
    parsed.clear()
    assert set(cold_ready(workspace)) == {"T-0", "T-1", "T-3", "T-4"} and parsed == ["T-2.md"]
    cfg = load_config(root=workspace)
    task_cache._dir_seen.clear()  # the next fast listing is a full scan (every _FULL_SCAN_SECONDS)
    write(workspace, "T-3", status="blocked")
    assert {t.task_id for t in claims.ready_tasks(root=cfg.root)} == {"T-0", "T-1", "T-4"}


def test_a_dangling_symlink_costs_a_file_by_file_check_not_an_index_rewrite(workspace, trust_all, parsed):
    for n in range(5):
        write(workspace, f"T-{n}")
    (workspace / "tasks" / "active" / "T-9.md").symlink_to(workspace / "nowhere.md")
    cold_ready(workspace)
    written = index_of(workspace).stat()
    for _ in range(2):
        parsed.clear()
        assert set(cold_ready(workspace)) == {f"T-{n}" for n in range(5)} and parsed == []
    assert index_of(workspace).stat() == written


def test_a_completed_dependency_counts_from_the_index(workspace, trust_all):
    write(workspace, "T-1")
    write(workspace, "T-2", extra="**Depends On:** T-1")
    assert set(cold_ready(workspace)) == {"T-1"}
    lease = claims.claim_task("T-1", "agent-1", root=workspace)
    claims.complete(lease, root=workspace)
    task_store.move_to_completed("T-1", root=workspace)
    assert set(cold_ready(workspace)) == {"T-2"}
    assert set(cold_ready(workspace)) == {"T-2"}  # and from the index written by the listing before


def test_documents_and_broken_files_stay_out_and_broken_ones_are_reported_each_time(workspace, trust_all, parsed):
    write(workspace, "T-1")
    notes = workspace / "tasks" / "active" / "epic" / "THOUGHTS.md"
    notes.parent.mkdir()
    notes.write_text("# THOUGHTS: T-1\n\n## Status: done\n")
    broken = workspace / "tasks" / "active" / "T-9.md"
    broken.write_text("no title here\n")
    for _ in range(2):
        parsed.clear()
        task_store.clear_cache()
        cfg = load_config(root=workspace)
        errors: list = []
        active, _ = task_store.list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=errors)
        assert [t.task_id for t in active] == ["T-1"]
        assert [Path(e.path).name for e in errors] == ["T-9.md"]
    assert parsed == ["T-9.md"]  # the document's verdict came from the index; the broken file is parsed again


def test_an_unchanged_folder_is_checked_whole_and_a_changed_one_file_by_file(workspace, trust_all, eager, parsed,
                                                                              monkeypatch):
    """A folder whose names are the recorded ones is checked in a few C loops over all its files
    (task_index.Folder.check); one whose names changed is checked file by file, as before."""
    for n in range(20):
        write(workspace, f"T-{n:02d}")
    write(workspace, "E-1", folder="epic")
    cold_ready(workspace)
    by_file: list[str] = []
    real = task_index.Folder.entries
    monkeypatch.setattr(task_index.Folder, "entries", lambda self: by_file.append(Path(self.path).name) or real(self))
    parsed.clear()
    assert len(cold_ready(workspace)) == 21 and parsed == [] and by_file == []
    write(workspace, "T-05", status="blocked")  # in place: the same names
    write(workspace, "E-1", status="blocked", folder="epic")
    assert len(cold_ready(workspace)) == 19 and sorted(parsed) == ["E-1.md", "T-05.md"] and by_file == []
    parsed.clear()
    write(workspace, "T-99")  # a new name: that folder file by file, the others from their records
    assert len(cold_ready(workspace)) == 20 and parsed == ["T-99.md"] and by_file == ["active"]


def test_a_folder_whose_names_changed_is_recorded_again_by_the_next_listing(workspace, trust_all, parsed,
                                                                            monkeypatch):
    """Fewer than _INDEX_STALE_FILES changed files leave the index as it is, but not a changed name:
    until its record is written again, the folder would be checked file by file in every new process."""
    for n in range(20):
        write(workspace, f"T-{n:02d}")
    (workspace / "tasks" / "active" / "notes.txt").write_text("not a task\n")
    cold_ready(workspace)
    by_file: list[str] = []
    real = task_index.Folder.entries
    monkeypatch.setattr(task_index.Folder, "entries", lambda self: by_file.append(Path(self.path).name) or real(self))
    write(workspace, "T-99")
    (workspace / "tasks" / "active" / "notes.txt").rename(workspace / "tasks" / "active" / "notes-old.txt")
    assert len(cold_ready(workspace)) == 21 and by_file == ["active"]
    by_file.clear()
    parsed.clear()
    assert len(cold_ready(workspace)) == 21 and parsed == [] and by_file == []
    (workspace / "tasks" / "active" / "notes-old.txt").unlink()  # no task file changed, only a name
    cold_ready(workspace)
    by_file.clear()
    assert len(cold_ready(workspace)) == 21 and parsed == [] and by_file == []


def _past_the_tick_of(folder: Path, workspace: Path) -> None:
    """Wait until the file system's clock is past the folder's last change: a change made now gives the
    folder a new change time (within one tick it could keep the recorded one)."""
    probe = workspace / "probe"
    while True:
        probe.write_text("")
        if probe.stat().st_ctime_ns > folder.stat().st_ctime_ns:
            return


def test_a_settled_folder_is_not_listed_and_an_added_renamed_or_deleted_file_is_seen(workspace, trust_all, parsed,
                                                                                      monkeypatch):
    """A folder whose own stat key is the recorded one has the recorded names (no listing); any entry
    added, renamed or deleted changes that key, and the folder is listed and checked file by file."""
    monkeypatch.setattr(task_index, "FOLDER_RACY_NS", -10**12)  # settled at once (else 2 s after its last change)
    active = workspace / "tasks" / "active"
    for n in range(5):
        write(workspace, f"T-{n}")
    cold_ready(workspace)
    assert {Path(f).name: r.folder_key is not None for f, r in task_index.load(index_of(workspace), object()).items()} \
        == {"active": True, "completed": True}
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(task_index.os, "listdir", lambda path: listed.append(Path(path).name) or real(path))
    by_file: list[str] = []
    entries = task_index.Folder.entries
    monkeypatch.setattr(task_index.Folder, "entries", lambda self: by_file.append(Path(self.path).name) or entries(self))
    parsed.clear()
    assert set(cold_ready(workspace)) == {f"T-{n}" for n in range(5)} and listed == [] and parsed == []
    write(workspace, "T-1", status="blocked")  # in place: the folder's key stays, the file's changed
    assert set(cold_ready(workspace)) == {"T-0", "T-2", "T-3", "T-4"} and listed == [] and parsed == ["T-1.md"]
    for change in (lambda: write(workspace, "T-9"), lambda: (active / "T-2.md").rename(active / "T-7.md"),
                   lambda: (active / "T-3.md").unlink()):
        _past_the_tick_of(active, workspace)
        change()
        listed.clear()
        by_file.clear()
        found = set(cold_ready(workspace))
        assert listed[0] == "active" and by_file == ["active"]  # listed, checked file by file, the index written
        listed.clear()
        assert set(cold_ready(workspace)) == found and listed == []  # recorded again, with the folder's new key
    assert found == {"T-0", "T-2", "T-4", "T-9"} and cold_ready(workspace)["T-2"].path == active / "T-7.md"


def test_a_folder_changed_within_the_racy_window_has_no_key_in_the_index(workspace, trust_all):
    write(workspace, "T-1")
    cold_ready(workspace)
    records = task_index.load(index_of(workspace), object())
    assert [r.folder_key for f, r in records.items() if Path(f).name == "active"] == [None]
    assert set(cold_ready(workspace)) == {"T-1"}


def test_a_file_replaced_by_a_folder_of_the_same_name_is_listed(workspace, trust_all):
    write(workspace, "T-1")
    notes = workspace / "tasks" / "active" / "notes"
    notes.write_text("not a task\n")
    assert set(cold_ready(workspace)) == {"T-1"}
    notes.unlink()
    write(workspace, "E-1", folder="notes")  # the folder's inode may be the file's, freed
    assert set(cold_ready(workspace)) == {"T-1", "E-1"}


def test_an_index_of_the_old_format_is_never_read_and_is_deleted(workspace, trust_all):
    """The JSON index of format 4 had the same stat keys: a file it says is blocked is read, not believed."""
    path = write(workspace, "T-1")
    st = os.stat(path)
    runtime = load_config(root=workspace).runtime_dir
    runtime.mkdir(parents=True, exist_ok=True)
    columns = {"name": ["T-1.md"], "mtime": [st.st_mtime_ns], "size": [st.st_size], "ino": [st.st_ino],
               "ctime": [st.st_ctime_ns], "id": ["T-1"], "title": ["task T-1"], "status": ["blocked"],
               "status_text": [True], "priority": ["medium"], "priority_text": [True], "created": [None],
               "rank": [-1.0], "moment": [None], "depends_on": [None], "parent": [None], "assigned_to": [None],
               "sub_tasks": [None], "files": [None]}
    old = json.dumps({"format": 4, "dirs": {str(workspace / "tasks" / "active"): columns}})
    (runtime / "task-index.json").write_text(old)
    index_of(workspace).write_text(old)  # and the old text under the new name
    assert set(cold_ready(workspace)) == {"T-1"}
    assert not (runtime / "task-index.json").exists()
    assert task_index.decode(index_of(workspace).read_bytes()) is not None  # rebuilt in the new format
    assert set(cold_ready(workspace)) == {"T-1"}


def test_a_flipped_byte_fails_the_checksum_and_the_index_is_rebuilt(workspace, trust_all, parsed):
    write(workspace, "T-1")
    write(workspace, "T-2", status="blocked")
    cold_ready(workspace)
    good = index_of(workspace).read_bytes()
    at = good.index(b"blocked")  # T-2's status, the one text that flipped would make it ready
    index_of(workspace).write_bytes(good[:at] + b"pending" + good[at + 7:])
    parsed.clear()
    assert set(cold_ready(workspace)) == {"T-1"} and sorted(parsed) == ["T-1.md", "T-2.md"]
    assert index_of(workspace).read_bytes() != good[:at] + b"pending" + good[at + 7:]


# ---------------------------------------------------------------------------- tasks from the index


def test_a_task_from_the_index_reads_the_rest_of_its_file_on_first_use(workspace, trust_all):
    path = write(workspace, "T-1", extra="**Depends On:** T-0\n**Possible Duplicate Of:** T-7")
    (workspace / "tasks" / "completed" / "T-0.md").write_text("# T-0: done\n\n**Status:** completed\n")
    cold_ready(workspace)
    task = cold_ready(workspace)["T-1"]
    assert task_index.is_summary(task)
    full = tasks.parse_task(path.read_text(), path)
    assert task.to_dict() == full.to_dict()
    assert task.field("Possible Duplicate Of") == "T-7" and [i.text for i in task.checklist] == ["one", "two"]
    assert tasks.ready_order_key(task) == tasks.ready_order_key(full)


@pytest.mark.parametrize("head", ["**Status:** done\n**Priority:** 3", "**Status:** weird\n**Priority:** HIGH", "",
                                  "**Status:** in progress\n**Created:** yesterday"])
def test_a_task_from_the_index_equals_the_parsed_file(workspace, trust_all, head):
    path = workspace / "tasks" / "active" / "T-1.md"
    path.write_text(f"# T-1: title\n\n{head}\n")
    cold_listing(workspace)
    task = cold_listing(workspace)["T-1"]
    full = tasks.parse_task(path.read_text(), path)
    assert task_index.is_summary(task) and task.to_dict() == full.to_dict()
    assert tasks.ready_order_key(task) == tasks.ready_order_key(full)
    assert task.checklist_counts == full.checklist_counts == (0, 0)
    assert task.objective == full.objective == "" and task.claimed_by is full.claimed_by is None


def test_a_task_from_the_index_has_its_checklist_counts_objective_and_claimer_without_reading_its_file(
        workspace, trust_all):
    path = write(workspace, "T-1", extra="**Claimed By:** agent-7\n\n## Notes\n\n- [x] three\n- [X] four\n")
    cold_listing(workspace)
    task = cold_listing(workspace)["T-1"]
    assert task_index.is_summary(task) and task.checklist_counts == (3, 4) and task.objective == "Do it."
    assert task.claimed_by == "agent-7"
    assert not {"checklist", "sections", "fields"} & set(vars(task))  # the file was not read for them
    full = tasks.parse_task(path.read_text(), path)
    assert (full.checklist_counts, full.objective, full.claimed_by) == ((3, 4), "Do it.", "agent-7")


def test_status_from_the_index_is_the_status_from_the_files_and_sees_a_checklist_edit(workspace, trust_all, parsed):
    from swarmfile import swarm

    write(workspace, "T-1")
    write(workspace, "T-2", status="in_progress", folder="epic-a")
    write(workspace, "T-3", extra="**Depends On:** T-4")
    write(workspace, "T-4", extra="**Depends On:** T-3")  # a cycle, named by status
    # RALF left files in completed/ whose Status line still says pending: the folder decides.
    (workspace / "tasks" / "completed" / "T-0.md").write_text("# T-0: done\n\n**Status:** pending\n\n- [x] a\n")

    def status() -> dict:
        task_store.clear_cache()
        found = swarm.collect_status(root=workspace)
        found.pop("events")
        return found

    first = status()  # no index yet: every file parsed
    assert len(parsed) == 5 and index_of(workspace).is_file()
    parsed.clear()
    assert status() == first and parsed == []  # from the index: nothing parsed, the same document
    assert {t["task_id"]: t["items"] for ts in first["tasks"].values() for t in ts} == {
        "T-0": "1/1", "T-1": "1/2", "T-2": "1/2", "T-3": "1/2", "T-4": "1/2"}
    assert [t["task_id"] for t in first["tasks"]["completed"]] == ["T-0"]
    assert first["dependency_cycles"] == [["T-3", "T-4", "T-3"]]
    assert {t["path"] for t in first["tasks"]["in_progress"]} == {str(workspace / "tasks" / "active" / "epic-a" / "T-2.md")}
    path = workspace / "tasks" / "active" / "T-1.md"
    with open(path, "r+b") as handle:  # an editor that saves in place, to the same size
        text = handle.read()
        handle.seek(0)
        handle.write(text.replace(b"- [ ] one", b"- [x] one"))
    after = status()
    assert parsed == ["T-1.md"]
    assert [t["items"] for t in after["tasks"]["pending"] if t["task_id"] == "T-1"] == ["2/2"]


def test_find_task_and_a_claim_by_id_in_a_new_process_parse_only_what_changed(workspace, trust_all, parsed):
    for n in range(20):
        write(workspace, f"T-{n:02d}")
    cold_listing(workspace)  # writes the index
    parsed.clear()
    task_store.clear_cache()
    assert task_store.find_task("T-07", root=workspace).path == workspace / "tasks" / "active" / "T-07.md"
    task_store.clear_cache()
    lease = claims.claim_task("T-05", "agent-1", root=workspace)  # looks for sub-tasks of T-05 too
    assert parsed == [] and lease.task_id == "T-05"
    write(workspace, "T-09", status="blocked")
    task_store.clear_cache()
    assert task_store.find_task("T-09", root=workspace).status is Status.BLOCKED
    assert sorted(parsed) == ["T-05.md", "T-09.md"]  # the claim's Status line, the edit: read again


def test_the_dashboard_from_the_index_is_the_dashboard_from_the_files(workspace, trust_all, parsed):
    from swarmfile import dashboard

    write(workspace, "T-1", extra="**Claimed By:** agent-7")
    write(workspace, "T-2", status="in_progress", folder="epic-a")
    write(workspace, "T-3", extra="**Parent Task:** T-1")
    (workspace / "tasks" / "completed" / "T-0.md").write_text("# T-0: done\n\n**Status:** completed\n")

    def frame() -> dict:
        task_store.clear_cache()
        return {key: value for key, value in dashboard.collect(root=workspace).items() if key in ("tasks", "completed_count")}

    first = frame()  # no index yet: every file parsed
    parsed.clear()
    assert frame() == first and parsed == []
    rows = {row["task_id"]: row for row in first["tasks"]}
    assert rows["T-1"]["agent"] == "agent-7" and rows["T-1"]["subtasks_total"] == 1
    assert (rows["T-2"]["checklist_done"], rows["T-2"]["checklist_total"]) == (1, 2)
    assert rows["T-2"]["path"] == "tasks/active/epic-a/T-2.md" and first["completed_count"] == 1


def test_a_split_in_a_new_process_parses_only_the_task_it_splits(workspace, trust_all, parsed):
    from swarmfile import task_distribution

    for n in range(20):
        write(workspace, f"T-{n:02d}")
    write(workspace, "T-05-SUB1", extra="**Parent Task:** T-05")
    cold_listing(workspace)
    parsed.clear()
    task_store.clear_cache()
    parent = task_store.load_task(workspace / "tasks" / "active" / "T-05.md")
    assert [s.task_id for s in task_distribution.existing_subtasks(parent, root=workspace)] == ["T-05-SUB1"]
    assert parsed == ["T-05.md"]  # load_task's own read; the listing took the rest from the index


def test_a_task_from_the_index_reads_its_title_line_and_path_from_its_file(workspace, trust_all):
    path = workspace / "tasks" / "active" / "T-1.md"
    path.write_text("\n\n# T-1: title\n\n**Status:** pending\n")  # the heading on line 3
    cold_listing(workspace)
    task = cold_listing(workspace)["T-1"]
    assert task_index.is_summary(task) and "title_line" not in vars(task) and "path" not in vars(task)
    assert task.title_line == 3 == tasks.parse_task(path.read_text(), path).title_line
    assert task.path == path and task_index.path_text(task) == str(path)


def test_a_task_from_the_index_compares_by_identity_and_has_no_order(workspace, trust_all):
    write(workspace, "T-1")
    write(workspace, "T-2")
    cold_listing(workspace)
    found = cold_listing(workspace)
    one, two = found["T-1"], found["T-2"]
    assert task_index.is_summary(one) and isinstance(one, tasks.Task)
    assert one == one and one != two and len({one, two, one}) == 2 and [one, two] != [one, one]
    with pytest.raises(TypeError):
        sorted([one, two])
    assert "T-1" in repr(one)
    held = task_index.restated(one, Status.CLAIMED)
    assert task_index.is_summary(held) and held is not one and held.task_id == "T-1" and held.path == one.path
    assert (held.status, held.status_text, one.status) == (Status.CLAIMED, "claimed", Status.PENDING)
    assert held.field("Priority") == "medium" and tasks.ready_order_key(held) == tasks.ready_order_key(one)


def test_a_full_listing_after_an_indexed_one_parses_the_files(workspace, trust_all):
    write(workspace, "T-1")
    cold_ready(workspace)
    task_store.clear_cache()
    claims.ready_tasks(root=workspace)  # the process's listing came from the index
    listed = task_store.list_tasks(root=workspace)
    assert [type(t) for t in listed] == [tasks.Task]  # not the summary: callers of list_tasks get it all
    assert type(task_store.load_task(listed[0].path)) is tasks.Task


# ---------------------------------------------------------------------------- never wrong, never fatal


@pytest.mark.parametrize("damage", ["deleted", "empty", "truncated", "garbage", "other format", "wrong shapes",
                                    "a directory", "not utf-8", "ragged columns"])
def test_a_damaged_index_is_rebuilt_silently(workspace, trust_all, damage, caplog):
    write(workspace, "T-1")
    write(workspace, "T-2", status="blocked")
    cold_ready(workspace)
    index = index_of(workspace)
    good = index.read_bytes()
    index.unlink()
    if damage == "empty":
        index.write_bytes(b"")
    elif damage == "truncated":
        index.write_bytes(good[:len(good) // 2])
    elif damage == "garbage":
        index.write_bytes(os.urandom(300))
    elif damage == "other format":
        index.write_bytes(good.replace(b" %d " % task_index.FORMAT, b" 999 ", 1))
    elif damage == "wrong shapes":
        index.write_bytes(task_index.encode({"dirs": {str(workspace / "tasks" / "active"):
                                                      {"T-1.md": [1, 2], "T-2.md": "x"}}}))
    elif damage == "a directory":
        index.mkdir()
    elif damage == "not utf-8":
        index.write_bytes(b"\xff\xfe" + good)
    elif damage == "ragged columns":
        document = task_index.decode(good)
        document["dirs"][str(workspace / "tasks" / "active")]["status"].pop()
        index.write_bytes(task_index.encode(document))
    assert set(cold_ready(workspace)) == {"T-1"}
    if damage == "a directory":  # cannot be replaced: the listing still works, the cause is logged once
        assert "cannot write the task index" in caplog.text
        return
    assert task_index.decode(index.read_bytes()) is not None  # rebuilt
    assert set(cold_ready(workspace)) == {"T-1"}


def test_an_old_index_put_back_never_gives_a_wrong_status(workspace, trust_all):
    """A slow writer can replace a newer index with an older one: every entry is still checked."""
    for n in range(5):
        write(workspace, f"T-{n}")
    cold_ready(workspace)
    old = index_of(workspace).read_bytes()
    lease = claims.claim_task("T-0", "agent-1", root=workspace)  # the runtime rewrites T-0 (a new inode)
    write(workspace, "T-1", status="blocked")
    task_store.set_field(workspace / "tasks" / "active" / "T-2.md", "Status", "cancelled", root=workspace)
    assert set(cold_ready(workspace)) == {"T-3", "T-4"}
    index_of(workspace).write_bytes(old)
    assert set(cold_ready(workspace)) == {"T-3", "T-4"}
    claims.release(lease, root=workspace)
    assert set(cold_ready(workspace)) == {"T-0", "T-3", "T-4"}


def test_a_few_changed_files_are_parsed_again_rather_than_the_index_rewritten(workspace, trust_all, parsed):
    for n in range(20):
        write(workspace, f"T-{n:02d}")
    cold_ready(workspace)
    written = index_of(workspace).stat()
    for n in range(task_cache._INDEX_STALE_FILES - 1):
        write(workspace, f"T-{n:02d}", status="blocked")
    parsed.clear()
    assert len(cold_ready(workspace)) == 20 - (task_cache._INDEX_STALE_FILES - 1)
    assert len(parsed) == task_cache._INDEX_STALE_FILES - 1 and index_of(workspace).stat() == written
    write(workspace, "T-19", status="blocked")  # one more: now the index is written again
    cold_ready(workspace)
    assert index_of(workspace).stat() != written
    parsed.clear()
    assert len(cold_ready(workspace)) == 20 - task_cache._INDEX_STALE_FILES and parsed == []


def test_racily_clean_files_are_not_trusted_by_the_index(workspace, parsed):
    """A file changed within RACY_NS of being read can change again with the same stat key: never indexed."""
    old = write(workspace, "T-OLD")
    settled = os.stat(old).st_ctime_ns
    fresh = write(workspace, "T-NEW")
    cold_ready(workspace)
    stored = indexed_names(index_of(workspace))[str(workspace / "tasks" / "active")]
    # Both were written just now (their ctime cannot be set back): neither is in the index yet ...
    assert stored == set() and os.stat(fresh).st_ctime_ns >= settled
    parsed.clear()
    assert set(cold_ready(workspace)) == {"T-OLD", "T-NEW"}
    assert sorted(parsed) == ["T-NEW.md", "T-OLD.md"]  # ... so the next cold listing reads both again


def test_racy_rule_uses_the_time_of_the_read(workspace, monkeypatch):
    """The rule in numbers: an entry is kept only when its ctime is RACY_NS older than its read."""
    monkeypatch.setattr(task_index, "RACY_NS", 1000)
    task = tasks.parse_task("# T-1: x\n", "T-1.md")
    entries = {"a.md": ((1, 2, 3, 5000), task, 6001), "b.md": ((1, 2, 3, 5000), task, 6000),
               "c.md": ((1, 2, 3, 5000), task, task_index.TRUSTED)}
    target = index_of(workspace)
    task_index.save(target, {"/d": (entries, dict.fromkeys(entries, 7), [])}, object(), lambda name: True)
    assert indexed_names(target)["/d"] == {"a.md", "c.md"}


def test_a_claim_listings_stand_in_is_never_written_to_the_index(workspace, trust_all, eager, monkeypatch):
    """claim_next's listing keeps a task another agent holds as a stand-in, unread: the index, which
    vouches for a file's content by its stat key, must not record it."""
    monkeypatch.setattr(task_cache, "_INDEX_SAVE_SECONDS", 0)
    write(workspace, "T-1")
    write(workspace, "T-2")
    assert [t.task_id for t in claims.ready_tasks()] == ["T-1", "T-2"]
    run_elsewhere(f"claims.claim_task('T-1', 'executor-2', {live_holder()})")
    write(workspace, "T-3")  # parsed by the next listing: the index is written again
    assert claims.claim_next("executor-1").task_id == "T-2"
    names = indexed_names(index_of(workspace))[str(workspace / "tasks" / "active")]
    assert "T-1.md" not in names and {"T-2.md", "T-3.md"} <= names
    assert cold_listing(workspace)["T-1"].status is Status.CLAIMED


def test_an_unwritable_index_costs_speed_not_work(workspace, trust_all, caplog):
    write(workspace, "T-1")
    runtime = load_config(root=workspace).runtime_dir
    runtime.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_text("a file where the runtime folder should be\n")  # every write under it fails
    assert set(cold_ready(workspace)) == {"T-1"}
    assert "cannot write the task index" in caplog.text


# ---------------------------------------------------------------------------- real processes


def _hammer(root: str, task_id: str, rounds: int) -> int:
    """Edit one task and list cold, ``rounds`` times: every round writes the index again."""
    from swarmfile import task_index as index_mod

    index_mod.RACY_NS = -10**12  # trust every file (the test is about torn writes, not racy ones)
    task_cache._INDEX_STALE_FILES = 1  # and write the index after every change
    path = Path(root) / "tasks" / "active" / f"{task_id}.md"
    for n in range(rounds):
        text = path.read_text()
        path.write_text(text.rstrip("\n").rsplit("\n", 1)[0] + f"\n- [ ] round {n}\n")
        task_store.clear_cache()
        assert task_id in {t.task_id for t in claims.ready_tasks(root=root)}
    return rounds


def _read_index(root: str, rounds: int) -> int:
    """Read the index while the others write it: it is always whole (or not there yet)."""
    path = task_index.index_file(load_config(root=root).runtime_dir)
    whole = 0
    for _ in range(rounds):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        assert task_index.decode(data) is not None  # a torn index fails its checksum
        whole += 1
    return whole


def test_concurrent_writers_never_leave_a_torn_index(workspace):
    for n in range(8):
        write(workspace, f"T-{n}")
    for n in range(8, 200):  # a bigger index takes longer to write: more overlap
        write(workspace, f"T-{n}", status="blocked")
    jobs = [(_hammer, (str(workspace), f"T-{n}", 15)) for n in range(6)] + [(_read_index, (str(workspace), 300))] * 2
    results = run_together(_call, jobs, timeout=100)
    assert sorted(results)[-2:] != [0, 0]  # the readers saw the index
    assert set(cold_ready(workspace)) == {f"T-{n}" for n in range(8)}
    assert task_index.decode(index_of(workspace).read_bytes()) is not None


def _call(fn, args):
    return fn(*args)


# ---------------------------------------------------------------------------- the command line


def _claims_cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LIB / "claims.py"), *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def test_ready_on_the_command_line(workspace):
    write(workspace, "T-1")
    write(workspace, "T-2", extra="**Depends On:** T-1")
    (workspace / "tasks" / "active" / "T-3.md").write_text("# T-3: urgent\n\n**Priority:** critical\n")
    out = _claims_cli("ready", "--json", root=workspace)
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert [r["task_id"] for r in document["ready"]] == ["T-3", "T-1"] and document["count"] == 2
    assert document["ready"][1]["path"] == str(workspace / "tasks" / "active" / "T-1.md")
    table = _claims_cli("ready", "--limit", "1", root=workspace)
    assert table.returncode == 0 and "T-3" in table.stdout and "... and 1 more" in table.stdout
    missing = _claims_cli("ready", root=workspace / "nowhere")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr


def test_ready_json_is_the_same_from_the_index_and_from_the_files(workspace, trust_all, capsys):
    from swarmfile import claims_cli

    write(workspace, "T-1")
    write(workspace, "T-2", extra="**Depends On:** T-9")
    write(workspace, "T-9", status="completed")
    outputs = []
    for _ in range(2):  # no index yet (every file parsed), then from the index it wrote
        task_store.clear_cache()
        assert claims_cli.main(["ready", "--json", "--root", str(workspace)]) == 0
        outputs.append(capsys.readouterr().out)
    assert index_of(workspace).is_file() and outputs[0] == outputs[1]
    rows = {row["task_id"]: row for row in json.loads(outputs[1])["ready"]}
    assert rows["T-2"] == {"task_id": "T-2", "title": "task T-2", "priority": "medium", "status": "pending",
                           "created": "2026-01-01T00:00:00Z", "depends_on": ["T-9"], "parent": None,
                           "path": str(workspace / "tasks" / "active" / "T-2.md")}


def test_ready_json_is_what_json_dumps_writes_of_the_rows(workspace, trust_all):
    from swarmfile import claims_cli

    active = workspace / "tasks" / "active"
    write(workspace, "T-1")
    (active / "T-2.md").write_text('# T-2: quotes " and \\ backslash\tand tab, é ✅ 日本\n\n**Priority:** 7\n'
                                   "**Depends On:** T-8, T-9\n**Parent Task:** EPIC-1\n")
    (active / "T-3.md").write_text("# T-3: no fields at all\n")
    write(workspace, "T-8", status="completed")
    write(workspace, "T-9", status="done")
    for _ in range(2):  # the files parsed, then the same tasks from the index
        found = cold_ready(workspace).values()
        rows = [{"task_id": t.task_id, "title": t.title, "priority": t.priority_text,
                 "status": t.status.value if t.status else t.status_text, "created": t.created,
                 "depends_on": list(t.depends_on), "parent": t.parent, "path": str(t.path)} for t in found]
        assert {"T-1", "T-2", "T-3"} == {row["task_id"] for row in rows} and any(row["parent"] for row in rows)
        shown = list(found)[:2]
        assert claims_cli._json(list(found), shown) == json.dumps({"ready": rows[:2], "count": 3}, ensure_ascii=False)
        assert claims_cli._json([], []) == json.dumps({"ready": [], "count": 0})
    assert all(task_index.is_summary(t) for t in found)


def _rows_as_json_dumps_writes_them(found) -> list[dict]:
    return [{"task_id": t.task_id, "title": t.title, "priority": t.priority_text,
             "status": t.status.value if t.status else t.status_text, "created": t.created,
             "depends_on": list(t.depends_on), "parent": t.parent, "path": str(t.path)} for t in found]


def test_ready_json_of_many_rows_with_nulls_and_escapes_is_what_json_dumps_writes(workspace, trust_all, monkeypatch):
    """More rows than one part, columns of values, of nulls and of both, values that need escaping
    (quotes, control characters, the null's own stand-in) among plain ones, and a listing of tasks
    from the index and parsed files mixed."""
    from swarmfile import claims_cli

    monkeypatch.setattr(claims_cli, "_ROWS", 7)
    active = workspace / "tasks" / "active"
    odd = ['say "hi"', "back\\slash", "\x01 stand-in", "\x00 nul", "tab\there", "é ✅ 日本", "u\\u0000"]
    for n in range(40):
        fields = "" if n % 3 == 0 else f"**Priority:** {('high', 'low', '7')[n % 3]}\n"
        fields += "" if n % 4 == 0 else "**Created:** 2026-01-01T00:00:%02dZ\n" % n
        fields += f"**Parent Task:** EPIC-{n}\n" if n % 5 == 0 else ""
        title = odd[n // 6] if n % 6 == 0 and n // 6 < len(odd) else f"plain {n}"
        (active / f"T-{n:02d}.md").write_text(f"# T-{n:02d}: {title}\n\n{fields}")
    for attempt in range(3):  # every file parsed; all from the index; two changed since (parsed, the rest indexed)
        if attempt == 2:
            for n in (3, 17):
                path = active / f"T-{n:02d}.md"
                path.write_text(path.read_text() + "\nmore\n")
        found = list(cold_ready(workspace).values())
        assert len(found) == 40 and any(task_index.is_summary(t) for t in found) == (attempt > 0)
        assert all(task_index.is_summary(t) for t in found) == (attempt == 1)
        assert {t.title for t in found} >= set(odd)
        for shown in (found, found[:7], found[:8], found[3:4], []):
            expected = json.dumps({"ready": _rows_as_json_dumps_writes_them(shown), "count": 40}, ensure_ascii=False)
            assert claims_cli._json(found, shown) == expected


def test_columns_and_path_columns_are_the_fields_of_each_task(workspace, trust_all):
    for n in range(3):
        write(workspace, f"T-{n}", extra=f"**Depends On:** T-{n + 5}\n**Parent Task:** E-1" if n else "")
    names = ("task_id", "title", "status", "status_text", "priority", "priority_text", "created", "depends_on",
             "parent", "assigned_to", "sub_tasks", "files_to_modify")
    parsed = list(cold_listing(workspace).values())
    indexed = list(cold_listing(workspace).values())
    assert not any(map(task_index.is_summary, parsed)) and all(map(task_index.is_summary, indexed))
    for found in (parsed, indexed, indexed[:1] + parsed[1:], []):
        assert task_index.columns(found, names) == [[getattr(t, name) for t in found] for name in names]
        prefixes, rest = task_index.path_columns(found)
        assert list(map(str.__add__, prefixes, rest)) == [str(t.path) for t in found]


def test_ready_into_a_pipe_closed_early_exits_quietly(workspace):
    for n in range(300):
        write(workspace, f"T-{n:03d}")
    with subprocess.Popen([sys.executable, str(LIB / "claims.py"), "ready", "--json", "--root", str(workspace)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as reader:
        reader.stdout.read(10)
        reader.stdout.close()  # `... | head -c 10`
        assert reader.wait(timeout=60) == 0 and reader.stderr.read() == b""


def test_ready_from_an_installed_package(workspace):
    write(workspace, "T-1")
    out = subprocess.run([sys.executable, "-m", "swarmfile", "claims", "ready", "--json", "--root", str(workspace)],
                         capture_output=True, text=True, timeout=60, cwd=LIB)
    assert out.returncode == 0 and json.loads(out.stdout)["count"] == 1, out.stderr


def test_ready_on_the_command_line_does_not_import_the_lease_code(workspace):
    write(workspace, "T-1")
    out = subprocess.run([sys.executable, "-X", "importtime", str(LIB / "claims.py"), "ready", "--json",
                          "--root", str(workspace)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "swarmfile.ready_query" in imported
    assert not imported & {"swarmfile.claims", "swarmfile.lease_store", "swarmfile.stores", "swarmfile.liveness"}


def test_ready_on_the_command_line_imports_neither_yaml_nor_the_locks(workspace):
    """Reading tasks needs no lock and, without a swarm.yaml, no YAML: a polling script pays for neither."""
    write(workspace, "T-1")
    for n in range(2):  # the first writes the task index (atomic_write: fileio); the second only reads
        out = subprocess.run([sys.executable, "-X", "importtime", str(LIB / "claims.py"), "ready", "--json",
                              "--root", str(workspace)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and json.loads(out.stdout)["count"] == 1
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "swarmfile.ready_query" in imported
    assert not imported & {"yaml", "portalocker", "swarmfile.fileio", "swarmfile.locks"}
    assert not imported & {"dataclasses", "inspect", "json"}  # 7% of the command (tasks.py); json: claims_cli._bodies
    (workspace / "swarm.yaml").write_text("timeouts:\n  lease_seconds: 60\n")
    out = _claims_cli("ready", "--json", root=workspace)
    assert out.returncode == 0 and json.loads(out.stdout)["count"] == 1
