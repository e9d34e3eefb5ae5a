"""fileio: locks between real processes, atomic rewrites, appends with torn-tail repair, safe YAML."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from swarmfile import fileio, flow_text
from swarmfile.errors import LockTimeout, NotFoundError, ParseError, ValidationError
from procs import run_together


def _count_under_lock(path: str, lock_dir: str, rounds: int) -> int:
    """Increment a counter file ``rounds`` times under the lock; detect any second holder."""
    marker = path + ".busy"
    for _ in range(rounds):
        with fileio.locked(path, lock_dir=lock_dir, timeout=30):
            # O_EXCL create fails if another process is inside the lock at the same time.
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            value = int(open(path).read())
            fileio.atomic_write(path, str(value + 1), fsync=False)
            os.unlink(marker)
    return rounds


def test_lock_excludes_processes_exact_count(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock_dir = tmp_path / ".swarm" / "locks"
    results = run_together(_count_under_lock, [(str(counter), str(lock_dir), 100)] * 8)
    assert sum(results) == 800
    assert counter.read_text() == "800"


def test_lock_timeout_names_file_and_holder(tmp_path):
    target = tmp_path / "data.yaml"
    lock_dir = tmp_path / "locks"
    with fileio.locked(target, lock_dir=lock_dir):
        with pytest.raises(LockTimeout) as info:
            with fileio.locked(target, lock_dir=lock_dir, timeout=0.05):
                pass
    message = str(info.value)
    assert str(target) in message
    assert f"pid {os.getpid()}" in message
    assert info.value.holder.startswith(f"pid {os.getpid()}")


def test_lock_excludes_threads_of_one_process(tmp_path):
    target = tmp_path / "data"
    lock_dir = tmp_path / "locks"
    # Taken and let go first: its descriptor is kept for the next lock (locks.py), and one kept
    # descriptor handed to two threads would let both in (a lock is per open file description).
    with fileio.locked(target, lock_dir=lock_dir):
        pass
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with fileio.locked(target, lock_dir=lock_dir):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(LockTimeout):
            with fileio.locked(target, lock_dir=lock_dir, timeout=0.05):
                pass
    finally:
        release.set()
        thread.join()
    with fileio.locked(target, lock_dir=lock_dir, timeout=1):
        pass


def test_lock_sidecar_is_kept_and_shared_by_spellings(tmp_path, monkeypatch):
    target = tmp_path / "a.yaml"
    lock_dir = tmp_path / "locks"
    monkeypatch.chdir(tmp_path)
    assert fileio.lock_path("a.yaml", lock_dir) == fileio.lock_path(target, lock_dir)
    with fileio.locked(target, lock_dir=lock_dir) as sidecar:
        assert sidecar.parent == lock_dir
    assert sidecar.exists(), "lock files are never deleted"
    assert not target.exists(), "locking never creates the data file"


def test_shared_locks_coexist_and_block_exclusive(tmp_path):
    target, lock_dir = tmp_path / "f", tmp_path / "locks"
    with fileio.locked(target, lock_dir=lock_dir, shared=True):
        with fileio.locked(target, lock_dir=lock_dir, shared=True, timeout=0.5):
            with pytest.raises(LockTimeout):
                with fileio.locked(target, lock_dir=lock_dir, timeout=0.05):
                    pass


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "f.yaml"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    fileio.atomic_write(target, "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.yaml"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.yaml"
    target.write_text("old\n")

    def broken_fsync(fd):
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        fileio.atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.yaml"]


def test_atomic_write_replaces_symlink_not_its_target(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    link = tmp_path / "ws" / "heartbeat.yaml"
    link.parent.mkdir()
    link.symlink_to(outside)
    fileio.atomic_write(link, "heartbeats: {}\n")
    assert outside.read_text() == "keep me\n"
    assert not link.is_symlink()


def test_append_creates_with_header(tmp_path):
    log = tmp_path / "events.yaml"
    result = fileio.append_line(log, "- {a: 1}", lock_dir=tmp_path / "locks", header="events:\n")
    assert result.offset == 0 and result.repaired_bytes == 0
    fileio.append_line(log, "- {a: 2}\n", lock_dir=tmp_path / "locks", header="events:\n")
    assert log.read_text() == "events:\n- {a: 1}\n- {a: 2}\n"


def test_append_repairs_torn_tail_and_reports_it(tmp_path, caplog):
    log = tmp_path / "events.yaml"
    log.write_bytes(b"events:\n- {a: 1}\n- {a: 2, b: 'to")
    result = fileio.append_line(log, "- {a: 3}", lock_dir=tmp_path / "locks")
    assert result.repaired_bytes == len(b"- {a: 2, b: 'to")
    assert result.torn_tail == "- {a: 2, b: 'to"
    assert log.read_text() == "events:\n- {a: 1}\n- {a: 3}\n"
    assert "torn last line" in caplog.text


def test_append_keeps_complete_last_line_without_newline(tmp_path):
    log = tmp_path / "events.yaml"
    log.write_bytes(b"events:\n- timestamp: '2026-02-01T12:44:42Z'\n  notes: 'done'")
    result = fileio.append_line(log, "- {a: 3}", lock_dir=tmp_path / "locks")
    assert result.repaired_bytes == 0
    assert log.read_text() == "events:\n- timestamp: '2026-02-01T12:44:42Z'\n  notes: 'done'\n- {a: 3}\n"


def test_append_short_write_is_rolled_back(tmp_path, monkeypatch):
    log = tmp_path / "events.yaml"
    log.write_text("events:\n- {a: 1}\n")
    real_write = os.write
    monkeypatch.setattr(fileio, "_write_all", lambda fd, data: real_write(fd, bytes(data)[:5]))
    with pytest.raises(OSError, match="short write"):
        fileio.append_line(log, "- {a: 2}", lock_dir=tmp_path / "locks")
    assert log.read_text() == "events:\n- {a: 1}\n"
    monkeypatch.undo()
    fileio.append_line(log, "- {a: 3}", lock_dir=tmp_path / "locks")
    assert log.read_text() == "events:\n- {a: 1}\n- {a: 3}\n"


def test_append_refuses_symlink(tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("events:\n")
    link = tmp_path / "events.yaml"
    link.symlink_to(outside)
    with pytest.raises(ValidationError, match="symlink"):
        fileio.append_line(link, "- {a: 1}", lock_dir=tmp_path / "locks")
    assert outside.read_text() == "events:\n"


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        (b"a: [1, 2\nb: 3\n", 2, "does not parse as YAML"),
        (b"a: 1\nb: \xff\xfe\n", 2, "not valid UTF-8"),
        (b"a: !!python/object:os.system x\n", 1, "python/object"),
        (b"a: 1\n\x00\x00\n", 2, "does not parse"),
        (b"a: 'unterminated\n", 2, "does not parse"),
    ],
)
def test_bad_yaml_names_file_and_line(tmp_path, content, line, fragment):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(ParseError) as info:
        fileio.load_yaml_file(bad)
    assert info.value.line == line
    assert str(info.value).startswith(f"{bad}:{line}: ")
    assert fragment in str(info.value)
    assert bad.read_bytes() == content


def test_missing_yaml_file(tmp_path):
    assert fileio.load_yaml_file(tmp_path / "nope.yaml", default={}) == {}
    with pytest.raises(NotFoundError):
        fileio.load_yaml_file(tmp_path / "nope.yaml")


def test_expect_mapping_names_what_belongs(tmp_path):
    with pytest.raises(ValidationError, match="heartbeats must be a mapping, got a list"):
        fileio.expect_mapping([1], tmp_path / "h.yaml", "heartbeats")
    with pytest.raises(ValidationError, match="got nothing"):
        fileio.expect_mapping(None, tmp_path / "h.yaml", "the file")


@pytest.mark.parametrize(
    "value",
    [
        {"a": "two\nlines", "b": "2026-01-01T00:00:00Z", "c": None, "d": [1, "x: y"]},
        {"unicode": "日本語 ü", "quote": "it's \"quoted\"", "colon": "a: b", "hash": "# not a comment"},
        {"long": "word " * 5000, "tabs": "a\tb", "cr": "a\rb"},
    ],
)
def test_flow_line_round_trips_on_one_line(value):
    line = fileio.dump_flow(value)
    assert "\n" not in line
    assert fileio.load_yaml_text(line) == value
    assert fileio.load_yaml_text("- " + line) == [value]


def test_block_dump_keeps_key_order_and_quotes_times():
    text = fileio.dump_yaml({"z": 1, "a": {"last_seen": "2026-02-01T13:37:14Z"}})
    assert text.index("z:") < text.index("a:")
    assert "'2026-02-01T13:37:14Z'" in text
    assert fileio.load_yaml_text(text)["a"]["last_seen"] == "2026-02-01T13:37:14Z"


from hypothesis import given, settings, strategies as st

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=30),
                     st.sampled_from(["yes", "No", "null", "~", "2026-01-01T00:00:00Z", "1e5", "0x1F", "- a",
                                      "a: b", "#x", "it's", "TASK-1", "executor-1", "", " lead", "@x", "*a", "&b"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _values, max_size=6))
def test_flow_line_round_trips_any_event(value):
    # The fast writer must read back exactly as yaml's own: a mistake here corrupts the log.
    line = fileio.dump_flow(value)
    assert "\n" not in line
    assert fileio.load_yaml_text("- " + line) == [value]


def test_fast_flow_writes_plain_words_bare():
    assert fileio.dump_flow({"type": "started", "agent": "executor-1", "n": 3, "ok": True, "x": None}) == \
        "{type: started, agent: executor-1, n: 3, ok: true, x: null}"
    assert fileio.dump_flow({"t": "2026-11-22T10:00:00.123Z", "q": "yes"}) == "{t: '2026-11-22T10:00:00.123Z', q: 'yes'}"


def test_a_flow_line_is_the_same_text_whether_its_keys_and_words_were_seen_before_or_not():
    """dump_flow keeps a template per key order and the plain words it met: the text must not depend on them."""
    event = {"timestamp": "2026-11-22T10:00:00.123Z", "type": "progress", "agent": "executor-1", "count": 3,
             "note": "it's 100%", "ok": True, "x": None, "f": 1.5, "l": [1, "two words", {"k": "No"}]}
    expected = ("{timestamp: '2026-11-22T10:00:00.123Z', type: progress, agent: executor-1, count: 3, "
                "note: 'it''s 100%', ok: true, x: null, f: 1.5, l: [1, 'two words', {k: 'No'}]}")
    flow_text._HEADS.clear()
    flow_text._PLAIN_WORDS.clear()
    assert fileio.dump_flow(event) == expected  # first sight
    assert fileio.dump_flow(event) == expected  # from the template and the remembered words
    same_keys = dict(event, type="yes", agent="%s", count="3")  # same keys, values that need quotes
    assert fileio.load_yaml_text(fileio.dump_flow(same_keys)) == same_keys
    assert fileio.dump_flow({}) == "{}"
    assert fileio.load_yaml_text(fileio.dump_flow({"a b": 1, "n": 2})) == {"a b": 1, "n": 2}  # no template: yaml


def test_lock_holder_record_is_rewritten_in_place_not_appended(tmp_path):
    # Regression: a sidecar opened O_APPEND made every holder record pile up at the end.
    for _ in range(3):
        with fileio.locked(tmp_path / "x", lock_dir=tmp_path / "locks") as sidecar:
            pass
    assert sidecar.read_bytes().count(b"\n") == 1


def test_a_date_that_is_no_date_is_a_parse_error_with_its_line():
    """Regression: libyaml's loader raised a bare ValueError on 2026-13-45 (doctor crashed on such a log)."""
    with pytest.raises(ParseError) as caught:
        fileio.load_yaml_text("a: 1\nb: 2026-13-45\n", "x.yaml")
    assert caught.value.line == 2 and "2026-13-45" in caught.value.reason
    assert fileio.load_yaml_text("b: 2026-12-31\n") == {"b": __import__("datetime").date(2026, 12, 31)}
