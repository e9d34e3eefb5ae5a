"""dir_watch: the kernel names what changed in a folder; anything it cannot vouch for reads as None."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmfile import dir_watch, task_store, tasks as taskmod
from swarmfile.config import load_config
from swarmfile import task_cache
from procs import run_elsewhere

pytestmark = pytest.mark.skipif(not dir_watch.available(), reason="no inotify here (Linux only)")


def _watched(folder) -> str:
    key = os.fspath(folder)
    assert dir_watch.watch(key)
    return key


def test_changes_name_the_files_created_written_replaced_and_removed(tmp_path):
    (tmp_path / "kept.md").write_text("a")
    (tmp_path / "edited.md").write_text("a")
    (tmp_path / "gone.md").write_text("a")
    key = _watched(tmp_path)
    try:
        assert dir_watch.changes(key) == set()
        (tmp_path / "new.md").write_text("b")
        with open(tmp_path / "edited.md", "r+") as handle:  # in place: same inode, as an editor may save
            handle.write("b")
        (tmp_path / ".tmp").write_text("c")
        os.replace(tmp_path / ".tmp", tmp_path / "kept.md")
        (tmp_path / "gone.md").unlink()
        assert dir_watch.changes(key) == {"new.md", "edited.md", "kept.md", "gone.md"}  # not the dot file
        assert dir_watch.changes(key) == set()  # each change is told once
        os.utime(tmp_path / "edited.md", ns=(1, 1))  # touched: a stat key changes
        assert dir_watch.changes(key) == {"edited.md"}
    finally:
        dir_watch.unwatch(key)


def test_a_subfolder_coming_or_the_folder_going_is_not_known(tmp_path):
    folder = tmp_path / "active"
    folder.mkdir()
    key = _watched(folder)
    (folder / "epic").mkdir()
    assert dir_watch.changes(key) is None  # the caller lists in full: a new folder of tasks
    assert dir_watch.changes(key) == set()  # and the watch goes on
    os.rename(folder, tmp_path / "moved")
    assert dir_watch.changes(key) is None
    assert not dir_watch.watched(key)


def test_an_overflowed_queue_is_not_known(tmp_path):
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "b.md").write_text("b")
    key = _watched(tmp_path)
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        if limit > 100_000:
            pytest.skip(f"an event queue of {limit} takes too long to fill")
        for i in range(limit // 2 + 10):  # two files in turn: the kernel merges only repeats of the last event
            os.utime(tmp_path / "a.md", ns=(i, i))
            os.utime(tmp_path / "b.md", ns=(i, i))
        assert dir_watch.changes(key) is None
        os.utime(tmp_path / "a.md")
        assert dir_watch.changes(key) == {"a.md"}
    finally:
        dir_watch.unwatch(key)


def test_a_forked_child_does_not_read_its_parents_events(tmp_path):
    """The child shares the parent's event queue: reading it would take the parent's events away."""
    key = _watched(tmp_path)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0 if not dir_watch.watched(key) and dir_watch.changes(key) is None else 1
            (tmp_path / "made-by-child.md").write_text("x")
            os.write(write, bytes([code]))
            os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"\0"
        os.waitpid(pid, 0)
        os.close(read)
        assert dir_watch.changes(key) == {"made-by-child.md"}
    finally:
        dir_watch.unwatch(key)


def _spec(tmp_path):
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir()
    return root


def test_a_watched_listing_sees_an_edit_in_place_at_once(tmp_path, monkeypatch):
    """Before watches, a fast listing could show an editor's save in place up to a second late."""
    root = _spec(tmp_path)
    cfg = load_config(root=root)
    path = task_store.new_task_file("T-1", "one", root=root, priority="low")
    task_store.new_task_file("T-2", "two", root=root, priority="high")

    def ready_ids():
        [active] = task_store.list_indexed(cfg, [cfg.tasks_active])
        return [t.task_id for t in active if t.status is taskmod.Status.PENDING]

    assert sorted(ready_ids()) == ["T-1", "T-2"]
    assert sorted(ready_ids()) == ["T-1", "T-2"]  # the second listing starts the watch
    assert dir_watch.watched(os.fspath(cfg.tasks_active))
    monkeypatch.setattr(task_cache, "_FULL_SCAN_SECONDS", 3600.0)  # no periodic full scan can hide a miss
    monkeypatch.setattr(task_cache, "_WATCHED_FULL_SCAN_SECONDS", 3600.0)
    ino = path.stat().st_ino
    mtime = os.stat(cfg.tasks_active).st_mtime_ns
    run_elsewhere(f"""
import os
path = {str(path)!r}
text = open(path).read().replace("**Status:** pending", "**Status:** blocked")
with open(path, "r+") as handle:  # in place, as some editors save: no rename, the folder unchanged
    handle.write(text)
    handle.truncate()
""")
    assert path.stat().st_ino == ino and os.stat(cfg.tasks_active).st_mtime_ns == mtime
    assert ready_ids() == ["T-2"]
