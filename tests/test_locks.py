"""locks: descriptors kept between locks must never weaken the lock (deleted sidecars, forks, threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from swarmfile import locks
from swarmfile.errors import LockTimeout

LIB = Path(__file__).resolve().parent.parent / "lib"

# A second process that takes the lock of argv[1] in argv[2], says so, and holds it until told to let go.
_HOLDER = """
import sys
sys.path.insert(0, {lib!r})
from swarmfile import locks
with locks.locked(sys.argv[1], lock_dir=sys.argv[2], timeout=30, many=sys.argv[3] == "many"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _hold_in_another_process(target: Path, lock_dir: Path, many: bool = False) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER.format(lib=str(LIB)), str(target), str(lock_dir),
                              "many" if many else "own"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _let_go(child: subprocess.Popen) -> None:
    child.stdin.write("\n")
    child.stdin.close()
    child.stdout.close()
    assert child.wait(timeout=30) == 0


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sidecar_deleted_or_replaced_and_made_again_still_excludes(tmp_path, how):
    """Regression for the kept descriptors: one opened on the old sidecar would lock an inode nobody else locks."""
    target, lock_dir = tmp_path / "events.yaml", tmp_path / "locks"
    with locks.locked(target, lock_dir=lock_dir) as sidecar:
        pass  # this process now keeps a descriptor of the sidecar
    if how == "deleted":
        sidecar.unlink()
    else:
        other = sidecar.with_name("other.lock")
        other.write_bytes(b"")
        os.replace(other, sidecar)
    child = _hold_in_another_process(target, lock_dir)  # on the sidecar the path names now
    try:
        with pytest.raises(LockTimeout) as caught:
            with locks.locked(target, lock_dir=lock_dir, timeout=0.1):
                pass
        assert f"pid {child.pid}" in str(caught.value)
    finally:
        _let_go(child)
    with locks.locked(target, lock_dir=lock_dir, timeout=5):
        pass


def test_a_forked_child_does_not_share_the_parents_kept_descriptors(tmp_path):
    """A kept descriptor inherited by a fork shares its open file description with the parent's: a lock
    the child took on it would be the parent's lock too, and the parent would walk in."""
    target, lock_dir = tmp_path / "f", tmp_path / "locks"
    with locks.locked(target, lock_dir=lock_dir, shared=True):
        with locks.locked(target, lock_dir=lock_dir, shared=True):
            pass  # two descriptors kept now
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns of a fork in a process with threads (a waiter may be)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            with locks.locked(target, lock_dir=lock_dir, timeout=5):
                os.write(from_child, b"held")
                os.read(to_child, 1)
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(to_parent, 4) == b"held"
        with pytest.raises(LockTimeout):
            with locks.locked(target, lock_dir=lock_dir, timeout=0.1):
                pass
    finally:
        os.write(from_parent, b"x")
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for fd in (to_parent, from_child, to_child, from_parent):
        os.close(fd)


def test_kept_descriptors_are_bounded(tmp_path):
    lock_dir = tmp_path / "locks"
    before = len(os.listdir("/proc/self/fd"))
    for i in range(3 * locks._IDLE_MAX):
        with locks.locked(tmp_path / f"t{i}", lock_dir=lock_dir):
            pass
    assert len(os.listdir("/proc/self/fd")) - before <= locks._IDLE_MAX
    assert len(locks._sidecars.idle) <= 2 * locks._IDLE_MAX  # paths whose descriptors were closed are dropped too


def test_waits_are_made_by_kept_waiter_threads_and_still_exclude(tmp_path):
    """Eight threads queue for one lock 50 times each: exact count, and no more waiter threads than waiters."""
    target, lock_dir = tmp_path / "f", tmp_path / "locks"
    state = {"inside": 0, "count": 0, "overlap": 0}

    def work():
        for _ in range(50):
            with locks.locked(target, lock_dir=lock_dir, timeout=30):
                state["inside"] += 1
                state["overlap"] += state["inside"] > 1
                state["count"] += 1
                os.sched_yield()
                state["inside"] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state == {"inside": 0, "count": 400, "overlap": 0}
    assert sum(t.name == "swarmfile-lock-wait" for t in threading.enumerate()) <= 8


def test_a_note_is_left_for_the_next_holder_and_only_under_the_lock(tmp_path):
    target, lock_dir = tmp_path / "f", tmp_path / "locks"
    with locks.locked(target, lock_dir=lock_dir) as sidecar:
        assert locks.read_note(sidecar) == b""
        locks.leave_note(sidecar, b"append 1 2 3")
        with pytest.raises(ValueError):
            locks.leave_note(sidecar, b"x" * locks.NOTE_WIDTH)
        with pytest.raises(ValueError):
            locks.leave_note(sidecar, b"two\nlines")
    with locks.locked(target, lock_dir=lock_dir) as sidecar:
        assert locks.read_note(sidecar) == b"append 1 2 3"
    with pytest.raises(RuntimeError):
        locks.read_note(sidecar)
    with locks.locked(target, lock_dir=lock_dir, shared=True):
        with pytest.raises(RuntimeError):
            locks.leave_note(sidecar, b"x")


# ---------------------------------------------------------------------------- many=True: byte ranges of one file

needs_ranges = pytest.mark.skipif(not locks._RANGES, reason="open file description locks are Linux-only")


@needs_ranges
def test_many_locks_exclude_other_processes_per_file_without_a_sidecar_each(tmp_path):
    lock_dir = tmp_path / "locks"
    first, second = tmp_path / "T-1.md", tmp_path / "T-2.md"
    child = _hold_in_another_process(first, lock_dir, many=True)
    try:
        with pytest.raises(LockTimeout) as caught:
            with locks.locked(first, lock_dir=lock_dir, timeout=0.2, many=True):
                pass
        assert f"pid {child.pid}" in str(caught.value)  # the holder's record, from its slot
        with locks.locked(second, lock_dir=lock_dir, timeout=0, many=True):  # another file: free
            pass
        # The same file through another spelling is the same lock.
        with pytest.raises(LockTimeout):
            with locks.locked(tmp_path / "." / "T-1.md", lock_dir=lock_dir, timeout=0, many=True):
                pass
    finally:
        _let_go(child)
    with locks.locked(first, lock_dir=lock_dir, timeout=5, many=True):  # free once let go
        pass
    for i in range(50):
        with locks.locked(tmp_path / f"task-{i}.md", lock_dir=lock_dir, many=True):
            pass
    assert sorted(p.name for p in lock_dir.iterdir()) == ["many.lock"]


@needs_ranges
def test_a_many_lock_waited_for_is_taken_when_let_go(tmp_path):
    lock_dir, target = tmp_path / "locks", tmp_path / "T-1.md"
    child = _hold_in_another_process(target, lock_dir, many=True)
    released = threading.Event()

    def let_go_soon() -> None:
        released.wait(30)
        _let_go(child)

    helper = threading.Thread(target=let_go_soon)
    helper.start()
    try:
        released.set()
        with locks.locked(target, lock_dir=lock_dir, timeout=30, many=True):  # waits in a waiter thread
            assert child.wait(timeout=30) == 0  # it let go before we got it
    finally:
        helper.join()


@needs_ranges
def test_many_locks_exclude_threads_of_one_process(tmp_path):
    """An executor's beat thread renews a lease while its main thread ends it: one lock, two holders never."""
    lock_dir, target = tmp_path / "locks", tmp_path / "T-1.md"
    inside, overlaps = [0], []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(200):
            with locks.locked(target, lock_dir=lock_dir, timeout=30, many=True):
                inside[0] += 1
                overlaps.append(inside[0])
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 800 and max(overlaps) == 1


@needs_ranges
def test_a_shared_many_lock_admits_readers_and_excludes_a_writer(tmp_path):
    lock_dir, target = tmp_path / "locks", tmp_path / "T-1.md"
    with locks.locked(target, lock_dir=lock_dir, shared=True, many=True):
        with locks.locked(target, lock_dir=lock_dir, shared=True, many=True, timeout=0):
            pass
        with pytest.raises(LockTimeout):
            with locks.locked(target, lock_dir=lock_dir, many=True, timeout=0.1):
                pass
