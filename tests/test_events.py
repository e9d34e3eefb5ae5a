"""events: one-line appends that never rewrite, backward tail reads, follow, rotation, broadcast, CLI."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

import events
from swarmfile import fileio
from swarmfile import event_log_file, yaml_log
from swarmfile.errors import InvalidIdError, ParseError, ValidationError
from procs import run_together

LIB = Path(__file__).resolve().parent.parent / "lib"
RALF_EVENTS = Path(__file__).resolve().parent / "fixtures" / "ralf" / "communications" / "events.yaml"
FLOW_LINE = re.compile(
    r"- \{timestamp: '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', type: started, agent: executor-1, "
    r"task_id: TASK-1, n: 3, note: two words\}\n"
)


def _flow(seq: int, agent: str = "w0", type: str = "progress", ts: str = "2026-11-22T10:00:00.000Z") -> str:
    return f"- {{timestamp: '{ts}', type: {type}, agent: {agent}, seq: {seq}}}\n"


def _append_many(root: str, writer: int, count: int) -> int:
    for seq in range(count):
        events.append_event("tick", agent=f"w{writer}", root=root, writer=writer, seq=seq)
    return count


def _cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SWARM_ROOT"}
    done = subprocess.run([sys.executable, str(LIB / "events.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)
    if check:
        assert done.returncode == 0, done.stderr
    return done


# ---------------------------------------------------------------------------- append


def test_append_writes_one_flow_line_in_key_order(workspace):
    event = events.append_event("started", agent="executor-1", task_id="TASK-1", n=3, note="two words")
    second = events.append_event("progress", agent="planner")
    lines = (workspace / "events.yaml").read_text().splitlines(keepends=True)
    assert len(lines) == 3 and lines[0] == "events:\n"
    assert FLOW_LINE.fullmatch(lines[1])
    assert list(event) == ["timestamp", "type", "agent", "task_id", "n", "note"]
    assert list(second) == ["timestamp", "type", "agent"] and "task_id" not in lines[2]
    assert events.read_events() == [event, second]


@pytest.mark.parametrize("call", [
    dict(type="Started", agent="a"),
    dict(type="has space", agent="a"),
    dict(type="", agent="a"),
    dict(type="started", agent="../x"),
    dict(type="started", agent="a", task_id="a/b"),
    dict(type="started", agent="a", timestamp="2020-01-01T00:00:00Z"),
    dict(type="started", agent="a", blob=object()),
])
def test_append_rejects_bad_values_and_writes_nothing(workspace, call):
    before = (workspace / "events.yaml").read_bytes()
    with pytest.raises((ValidationError, InvalidIdError)):
        events.append_event(**call)
    assert (workspace / "events.yaml").read_bytes() == before


def test_values_found_valid_before_do_not_let_an_invalid_one_through(workspace):
    """make_event remembers the types and ids it checked: an id is still no type, and a bad value still fails."""
    events.append_event("tick", agent="Planner", task_id="TASK-1")
    with pytest.raises(ValidationError):
        events.append_event("Planner", agent="a")  # a valid agent id, not a valid type
    with pytest.raises(ValidationError):
        events.append_event("TASK-1", agent="a")
    with pytest.raises((ValidationError, InvalidIdError)):
        events.append_event("tick", agent="Planner/x")
    assert [e["agent"] for e in events.read_events()] == ["Planner"]


@pytest.mark.parametrize("content", [None, "", "# the log\n"])
def test_missing_or_empty_log_starts_with_header(workspace, content):
    path = workspace / "events.yaml"
    path.unlink()
    if content is not None:
        path.write_text(content)
    events.append_event("started", agent="a")
    text = path.read_text()
    assert text.startswith((content or "") + "events:\n- {")
    assert len(fileio.load_yaml_file(path)["events"]) == 1


@pytest.mark.parametrize("content", ["events: []\n", "# log\nevents: []  # none yet\n"])
def test_empty_flow_list_becomes_block_header(workspace, content):
    path = workspace / "events.yaml"
    path.write_text(content)
    events.append_event("started", agent="a")
    text = path.read_text()
    assert "[]" not in text and "events:" in text
    assert [e["type"] for e in fileio.load_yaml_file(path)["events"]] == ["started"]


@pytest.mark.parametrize("content", [
    "foo: 1\n",
    "events: []\n- {a: 1}\n",
    "events: [{a: 1}]\n",
    "events:\n  - {a: 1}\n",
    "events:\n- {a: 1}\nmetadata:\n  x: 1\n",
    "\x00\x01 binary\n",
])
def test_unappendable_log_is_refused_and_left_byte_for_byte(workspace, content):
    path = workspace / "events.yaml"
    path.write_bytes(content.encode())
    with pytest.raises(ValidationError) as info:
        events.append_event("started", agent="a")
    assert str(path) in str(info.value) and info.value.line is not None
    assert path.read_bytes() == content.encode()


def test_bare_list_log_gets_appended_to(tmp_path):
    path = tmp_path / "log.yaml"
    path.write_text(_flow(0))
    events.append_event("done", agent="a", root=tmp_path, events_file="log.yaml")
    data = fileio.load_yaml_file(path)
    assert [e["type"] for e in data] == ["progress", "done"]
    assert [e["type"] for e in events.tail(5, root=tmp_path, events_file=path)] == ["progress", "done"]


def test_symlinked_log_is_refused(tmp_path):
    real = tmp_path / "real.yaml"
    real.write_text("events: []\n")
    (tmp_path / "events.yaml").symlink_to(real)
    with pytest.raises(ValidationError, match="symlink"):
        events.append_event("started", agent="a", root=tmp_path)
    assert real.read_text() == "events: []\n" and (tmp_path / "events.yaml").is_symlink()


# ---------------------------------------------------------------------------- RALF


def test_ralf_fixture_reads_all_entries_in_order(ralf):
    expected = fileio.load_yaml_file(RALF_EVENTS)["events"]
    found = events.read_events(root=ralf)
    assert len(found) == 13 and found == expected
    assert found[1]["files_modified"][0] == "2-engine/.autonomous/lib/queue_sync.py"
    assert found[1]["impact"].startswith("Created comprehensive queue synchronization system.")
    assert found[-1]["notes"] == "Claimed task: Implement Feature F-001 (Multi-Agent Coordination System)"
    assert events.tail(3, root=ralf) == expected[-3:]
    completed = [e for e in expected if e["type"] == "completed"]
    assert events.tail(2, root=ralf, types="completed") == completed[-2:]
    assert events.tail(1, root=ralf, task_id="TASK-1769916004") == [expected[3]]


def test_ralf_fixture_append_keeps_old_bytes_as_prefix(ralf):
    path = ralf / "events.yaml"
    original = path.read_bytes()
    first = events.append_event("started", agent="executor-2", task_id="TASK-1769916007", root=ralf)
    second = events.append_event("completed", agent="executor-2", root=ralf, result="success")
    after = path.read_bytes()
    assert after.startswith(original) and after.count(b"\n") == original.count(b"\n") + 2
    parsed = fileio.load_yaml_file(path)["events"]
    assert parsed == fileio.load_yaml_file(RALF_EVENTS)["events"] + [first, second]
    assert events.tail(3, root=ralf) == parsed[-3:]


# ---------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize("torn", ["- {timestamp: '2026-11-22T10:0", "  notes: 'Clai"])
def test_torn_last_line_is_skipped_by_readers_and_reported_by_the_next_append(workspace, caplog, torn):
    path = workspace / "events.yaml"
    path.write_text("events:\n- timestamp: '2026-11-22T09:00:00Z'\n  type: started\n  agent: executor\n"
                    + _flow(1) + torn)
    whole = [{"timestamp": "2026-11-22T09:00:00Z", "type": "started", "agent": "executor"},
             {"timestamp": "2026-11-22T10:00:00.000Z", "type": "progress", "agent": "w0", "seq": 1}]
    assert events.read_events() == whole
    assert events.tail(5) == whole and events.tail(1) == whole[-1:]
    event = events.append_event("completed", agent="executor-2")
    found = events.read_events()
    assert found[:3] == whole + [event]
    repaired = found[3]
    assert repaired["type"] == "repaired" and repaired["agent"] == "executor-2"
    assert repaired["dropped_bytes"] == len(torn) and repaired["dropped_text"] == torn
    assert "recorded as a 'repaired' event" in caplog.text
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize("last", [_flow(1), "- timestamp: '2026-11-22T10:00:00.000Z'\n  type: progress\n"
                                            "  agent: w0\n  seq: 1\n"])
def test_complete_last_line_without_newline_is_read(workspace, last):
    path = workspace / "events.yaml"
    path.write_text("events:\n" + _flow(0) + last.rstrip("\n"))
    expected = [{"timestamp": "2026-11-22T10:00:00.000Z", "type": "progress", "agent": "w0", "seq": seq}
                for seq in (0, 1)]
    assert events.tail(1) == expected[1:] and events.read_events() == expected
    events.append_event("done", agent="w0")
    assert events.read_events()[:2] == expected and path.read_text().startswith("events:\n" + _flow(0) + last)


# ---------------------------------------------------------------------------- reading


def test_tail_of_a_large_log_reads_a_bounded_number_of_bytes(tmp_path, monkeypatch):
    path = tmp_path / "events.yaml"
    with open(path, "w") as handle:
        handle.write("events:\n")
        handle.writelines(_flow(i, agent=f"w{i % 8}") for i in range(50_000))
    read, parsed = [], []
    real_read, real_parse = yaml_log.read_at, yaml_log.load_yaml_text  # the log mechanism under events
    monkeypatch.setattr(yaml_log, "read_at", lambda fd, n, at: read.append(n) or real_read(fd, n, at))
    monkeypatch.setattr(yaml_log, "load_yaml_text", lambda text, *a: parsed.append(len(text)) or real_parse(text, *a))
    assert [e["seq"] for e in events.tail(100, root=tmp_path)] == list(range(49_900, 50_000))
    assert sum(read) < 64 * 1024 and sum(parsed) < 20_000 and len(parsed) <= 2
    read.clear(), parsed.clear()
    assert [e["seq"] for e in events.tail(50, root=tmp_path, agent="w3")] == list(range(49_603, 50_000, 8))
    assert sum(read) < 256 * 1024 and sum(parsed) < 40_000
    assert path.stat().st_size > 3_000_000


BLOCK_ENTRY = "- timestamp: '2026-11-22T10:{m:02d}:00Z'\n  type: {type}\n  agent: {agent}\n  items:\n  - x\n"


def test_limited_reads_match_the_full_read(tmp_path):
    path = tmp_path / "events.yaml"
    parts = ["# log\nevents:\n"]
    for i in range(60):
        agent, type = f"a{i % 3}", ("started", "completed", "progress")[i % 4 % 3]
        parts.append(BLOCK_ENTRY.format(m=i, type=type, agent=agent) if i % 5 == 0
                     else _flow(i, agent=agent, type=type, ts=f"2026-11-22T10:{i:02d}:00Z"))
        if i % 7 == 0:
            parts.append("# a comment\n\n")
    path.write_text("".join(parts))
    full = events.read_events(root=tmp_path)
    assert len(full) == 60
    for filters in [{}, {"agent": "a1"}, {"types": ["completed", "started"]}, {"types": "progress", "agent": "a2"},
                    {"since": "2026-11-22T10:30:00Z"}, {"agent": "nobody"}]:
        matching = events.read_events(root=tmp_path, **filters)
        assert matching == [e for e in full if all(_keep(e, k, v) for k, v in filters.items())]
        for n in (1, 2, 7, 59, 60, 100):
            assert events.read_events(root=tmp_path, limit=n, **filters) == matching[-n:], (filters, n)


def _keep(event, key, value):
    if key == "types":
        return event["type"] in ([value] if isinstance(value, str) else value)
    if key == "since":
        return event["timestamp"] >= value
    return event[key] == value


def test_since_accepts_mixed_timestamp_styles(tmp_path):
    (tmp_path / "events.yaml").write_text(
        "events:\n"
        "- {timestamp: '2026-02-01T12:00:00Z', type: a, agent: x}\n"
        "- {timestamp: '2026-02-01T14:30:00+02:00', type: b, agent: x}\n"  # 12:30 UTC
        "- {timestamp: 2026-02-01 13:00:00, type: c, agent: x}\n"  # naive, unquoted: UTC
        "- {timestamp: not a time, type: d, agent: x}\n"
    )
    cut = datetime(2026, 2, 1, 12, 15, tzinfo=timezone.utc)
    assert [e["type"] for e in events.read_events(root=tmp_path, since=cut)] == ["b", "c"]
    assert [e["type"] for e in events.tail(5, root=tmp_path, since="2026-02-01T12:45:00Z")] == ["c"]
    for bad in (dict(since="yesterday"), dict(limit=-1), dict(limit="3")):
        with pytest.raises(ValidationError):
            events.read_events(root=tmp_path, **bad)


def test_missing_and_header_only_logs_have_no_events(tmp_path):
    assert events.read_events(root=tmp_path) == [] and events.tail(3, root=tmp_path) == []
    for content in ["events:\n", "events: []\n", ""]:
        (tmp_path / "events.yaml").write_text(content)
        assert events.read_events(root=tmp_path) == [] and events.tail(3, root=tmp_path) == []


def test_corrupt_log_raises_parse_error_with_file_and_line(workspace):
    path = workspace / "events.yaml"
    content = "events:\n" + _flow(0) + "- {b: [\n" + _flow(2)
    path.write_text(content)
    for call in (lambda: events.read_events(), lambda: events.tail(5)):
        with pytest.raises(ParseError) as info:
            call()
        assert info.value.path == str(path) and info.value.line in (3, 4)
    path.write_text("events:\n- {a: 1}\n- just text\n")
    with pytest.raises(ValidationError, match="not a mapping"):
        events.tail(5)
    assert path.read_text() == "events:\n- {a: 1}\n- just text\n"


# ---------------------------------------------------------------------------- concurrency and rotation


def test_eight_processes_appending_lose_nothing(workspace):
    before = (workspace / "events.yaml").read_bytes()
    assert sum(run_together(_append_many, [(str(workspace), w, 200) for w in range(8)])) == 1600
    found = events.read_events()
    assert len(found) == 1600
    assert {(e["writer"], e["seq"]) for e in found} == {(w, s) for w in range(8) for s in range(200)}
    assert (workspace / "events.yaml").read_bytes().startswith(before)
    assert len(fileio.load_yaml_file(workspace / "events.yaml")["events"]) == 1600


def test_rotation_under_concurrent_writers_loses_nothing(workspace):
    (workspace / "swarm.yaml").write_text("events:\n  rotate_bytes: 3000\n  fsync: false\n")
    followed: list[dict] = []
    stream = events.follow(interval=0.001, timeout=60, stop=lambda: len(followed) >= 600)
    follower = threading.Thread(target=lambda: followed.extend(stream))
    follower.start()
    try:
        run_together(_append_many, [(str(workspace), w, 100) for w in range(6)])
    finally:
        follower.join(timeout=60)
    found = events.read_events(include_archives=True)
    assert followed == found  # a follower running through every rotation saw each event once, in order
    assert len(found) == 600
    assert {(e["writer"], e["seq"]) for e in found} == {(w, s) for w in range(6) for s in range(100)}
    for writer in range(6):  # archives in stamp order, then the live log: each writer's order survives
        assert [e["seq"] for e in found if e["writer"] == writer] == list(range(100))
    kept = events.archives()
    assert len(kept) > 10 and all(re.fullmatch(r"events-\d{8}T\d{9}Z(-\d+)?\.yaml", p.name) for p in kept)
    assert sum(len(fileio.load_yaml_file(p)["events"]) for p in kept) + len(events.read_events()) == 600
    assert events.tail(150, include_archives=True) == found[-150:]


def test_rotation_names_are_unique_and_ordered_when_stamps_collide(workspace, monkeypatch):
    frozen = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=timezone.utc)
    clock = iter([frozen, frozen, frozen.replace(second=0, microsecond=0)])  # then the clock steps back
    monkeypatch.setattr(event_log_file, "utc_now", lambda: next(clock))
    for seq in range(3):
        events.append_event("tick", agent="a", rotate_bytes=1, seq=seq)
    events.append_event("tick", agent="a", rotate_bytes=0, seq=3)
    assert [p.name for p in events.archives()] == [
        "events-20261122T100000123Z.yaml", "events-20261122T100000123Z-2.yaml", "events-20261122T100000123Z-3.yaml"]
    assert (workspace / "events.yaml").read_text().startswith("events:\n- {")
    assert [e["seq"] for e in events.read_events(include_archives=True)] == [0, 1, 2, 3]
    assert [e["seq"] for e in events.read_events()] == [3]
    assert [e["seq"] for e in events.tail(3, include_archives=True)] == [1, 2, 3]


def _in_another_process(code: str, root: Path) -> None:
    script = f"import sys, os\nsys.path.insert(0, {str(LIB)!r})\nimport events\nroot = {str(root)!r}\n" + code
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _bytes_read_by(monkeypatch, call) -> int:
    read: list[int] = []
    real_read = yaml_log.read_at
    monkeypatch.setattr(yaml_log, "read_at", lambda fd, n, at: read.append(n) or real_read(fd, n, at))
    call()
    monkeypatch.setattr(yaml_log, "read_at", real_read)
    return sum(read)


def test_an_append_checks_the_log_again_unless_it_is_as_the_last_append_left_it(workspace, monkeypatch):
    """The lock's note says how the last append (of any process) left the log; anything else is checked."""
    log = workspace / "events.yaml"
    append = lambda: events.append_event("tick", "w0", root=workspace)  # noqa: E731
    append()
    assert _bytes_read_by(monkeypatch, append) == 0  # as this process left it
    _in_another_process("events.append_event('tick', 'w1', root=root)", workspace)
    assert _bytes_read_by(monkeypatch, append) == 0  # as another process's append left it
    with open(log, "a") as handle:  # written by hand, not by an append: checked, and refused
        handle.write("other: 1\n")
    before = log.read_bytes()
    with pytest.raises(ValidationError, match="not an event entry"):
        append()
    assert log.read_bytes() == before
    log.write_bytes(before[:-len("other: 1\n")] + b"- {type: tick, agent: w9, note: 'to")  # torn by hand
    events.append_event("tick", "w0", root=workspace)
    assert [e["type"] for e in events.read_events(root=workspace)][-2:] == ["tick", "repaired"]
    assert _bytes_read_by(monkeypatch, append) == 0
    assert [(e["type"], e["agent"]) for e in events.read_events(root=workspace)] == \
        [("tick", "w0")] * 2 + [("tick", "w1")] + [("tick", "w0")] * 2 + [("repaired", "w0"), ("tick", "w0")]


def test_a_log_edited_in_place_to_the_same_size_between_two_appends_is_checked_again(workspace):
    """The note is compared with what this process left without formatting the log's stat: a change that
    keeps the size (an editor writing in place) still changes the ctime, and the next append checks it all."""
    log = workspace / "events.yaml"
    events.append_event("tick", "w0", root=workspace)
    before = log.stat().st_ctime_ns
    broken = log.read_bytes().replace(b"events:", b"evento:", 1)  # same size; appends would not join it
    while True:  # the ctime moves with the kernel's clock tick: write until it has
        with open(log, "r+b") as handle:
            handle.write(broken)
        if log.stat().st_ctime_ns != before:
            break
    with pytest.raises(ValidationError, match="does not start with"):
        events.append_event("tick", "w0", root=workspace)
    assert log.read_bytes() == broken


@pytest.mark.parametrize("how", ["rotated", "replaced"])
def test_a_log_rotated_or_replaced_by_another_process_between_two_appends_gets_the_next(workspace, how):
    log = workspace / "events.yaml"
    events.append_event("tick", "w0", root=workspace, n=1)
    if how == "rotated":
        _in_another_process("events.append_event('tick', 'w1', root=root, rotate_bytes=1)", workspace)
    else:
        _in_another_process("p = os.path.join(root, 'events.yaml')\n"
                            "open(p + '.new', 'w').write('events:\\n- {type: tick, agent: w1}\\n')\n"
                            "os.replace(p + '.new', p)", workspace)
    fresh = log.stat().st_ino
    events.append_event("tick", "w0", root=workspace, n=2)
    live = events.read_events(root=workspace)
    assert [(e["agent"], e.get("n")) for e in live] == ([("w0", 2)] if how == "rotated" else [("w1", None), ("w0", 2)])
    assert log.stat().st_ino == fresh
    if how == "rotated":
        assert [(e["agent"], e.get("n")) for e in events.read_events(root=workspace, include_archives=True)] == \
            [("w0", 1), ("w1", None), ("w0", 2)]


def test_a_log_deleted_or_made_a_symlink_between_two_appends_is_not_written_through_a_kept_descriptor(workspace):
    log = workspace / "events.yaml"
    events.append_event("tick", "w0", root=workspace, n=1)
    log.unlink()
    events.append_event("tick", "w0", root=workspace, n=2)
    assert log.read_text().startswith("events:\n") and [e["n"] for e in events.read_events(root=workspace)] == [2]
    outside = workspace / "elsewhere.yaml"
    os.replace(log, outside)
    log.symlink_to(outside)
    with pytest.raises(ValidationError, match="symlink"):
        events.append_event("tick", "w0", root=workspace, n=3)
    assert [e["n"] for e in fileio.load_yaml_file(outside)["events"]] == [2]


def test_threads_of_one_process_appending_at_once_lose_nothing(workspace):
    """Each append takes a kept descriptor of its own (lock sidecar and log): threads never share one."""
    def work(writer: int) -> None:
        for seq in range(50):
            events.append_event("tick", f"t{writer}", root=workspace, writer=writer, seq=seq)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = events.read_events(root=workspace)
    assert len(found) == 400
    for writer in range(8):
        assert [e["seq"] for e in found if e["writer"] == writer] == list(range(50))


# ---------------------------------------------------------------------------- follow


def test_follow_yields_new_events_only_and_filters(workspace):
    events.append_event("started", agent="a", seq=0)
    stream = events.follow(agent="a", interval=0.005, timeout=10)
    try:
        events.append_event("progress", agent="b", seq=1)
        events.append_event("progress", agent="a", seq=2)
        assert next(stream)["seq"] == 2
    finally:
        stream.close()
    assert list(events.follow(interval=0.005, timeout=0.05)) == []


def test_follow_backlog_then_across_rotation(workspace):
    events.append_event("started", agent="a", seq=0)
    events.append_event("started", agent="a", seq=1)
    stream = events.follow(backlog=1, interval=0.005, timeout=10)
    try:
        assert next(stream)["seq"] == 1
        events.append_event("tick", agent="a", rotate_bytes=1, seq=2)  # written, then rotated away
        events.append_event("tick", agent="a", rotate_bytes=0, seq=3)
        assert [next(stream)["seq"], next(stream)["seq"]] == [2, 3]
    finally:
        stream.close()
    assert len(events.archives()) == 1


def test_follow_waits_for_a_partial_line_and_a_block_entry(workspace):
    path = workspace / "events.yaml"
    written = []

    def finish_the_line() -> bool:  # called after each poll: the first poll saw only half a line
        if not written:
            written.append(True)
            with open(path, "a") as handle:
                handle.write(", agent: x}\n- timestamp: '2026-11-22T10:00:01Z'\n  type: b\n  agent: x\n")
        return False

    stream = events.follow(interval=0.005, timeout=10, stop=finish_the_line)
    try:
        with open(path, "a") as handle:
            handle.write("- {timestamp: '2026-11-22T10:00:00Z', type: a")
        assert [next(stream)["type"], next(stream)] == ["a", {
            "timestamp": "2026-11-22T10:00:01Z", "type": "b", "agent": "x"}]
        assert written
    finally:
        stream.close()


def test_follow_survives_the_empty_list_conversion(workspace):
    (workspace / "events.yaml").write_text("events: []\n")
    stream = events.follow(interval=0.005, timeout=10)
    try:
        events.append_event("started", agent="a", seq=0)
        events.append_event("started", agent="a", seq=1)
        assert [next(stream)["seq"], next(stream)["seq"]] == [0, 1]
    finally:
        stream.close()


# ---------------------------------------------------------------------------- broadcast


def test_status_broadcaster_maps_states_to_types(workspace):
    status = events.StatusBroadcaster("executor-1")
    status.start("TASK-1", "claimed", meta={"run": 1})
    status.done("TASK-1", message="ok", files=2)
    status.wait(message="blocked", meta={"on": "TASK-0"}, retry=True)
    status.error("TASK-1")
    status.help()
    status.skip("TASK-2", "duplicate")
    found = events.read_events(agent="executor-1")
    assert [e["type"] for e in found] == ["started", "completed", "waiting", "failed", "help", "skipped"]
    assert found[0]["message"] == "claimed" and found[0]["meta"] == {"run": 1}
    assert found[1]["meta"] == {"files": 2} and found[2]["meta"] == {"on": "TASK-0", "retry": True}
    assert found[3]["message"] is None and found[3]["meta"] == {} and "task_id" not in found[4]
    assert status.broadcast("DONE")["type"] == "completed"
    with pytest.raises(InvalidIdError):
        events.StatusBroadcaster("bad/id")


# ---------------------------------------------------------------------------- CLI


def test_cli_append_and_tail_from_another_directory(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = str(workspace)
    out = _cli("append", "started", "--agent", "executor-1", "--task", "TASK-1", "--root", root,
               "--data", "n=3", "ok=true", "note=two words", "when=2026-01-01", cwd=elsewhere).stdout
    assert out.startswith("- {timestamp: ") and "n: 3" in out
    _cli("--root", root, "append", "completed", "--agent", "planner", cwd=elsewhere)
    found = events.read_events()
    assert found[0]["n"] == 3 and found[0]["ok"] is True and found[0]["when"] == "2026-01-01"
    listed = json.loads(_cli("tail", "-n", "1", "--json", "--root", root, cwd=elsewhere).stdout)
    assert listed == [json.loads(json.dumps(found[1]))]
    table = _cli("tail", "--type", "started", "--agent", "executor-1", "--root", root, cwd=elsewhere).stdout
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "TYPE", "AGENT", "TASK", "SUMMARY"] and len(lines) == 2
    assert "TASK-1" in lines[1] and "n=3" in lines[1]
    (elsewhere / "mine.yaml").write_text("events:\n" + _flow(7))
    mine = json.loads(_cli("tail", "--events-file", "mine.yaml", "--json", "--root", root, cwd=elsewhere).stdout)
    assert [e["seq"] for e in mine] == [7]
    assert _cli("--help", cwd=elsewhere).stdout.startswith("usage:")


def test_cli_corrupt_log_exits_2_with_one_line(workspace, tmp_path):
    path = workspace / "events.yaml"
    path.write_text("events:\n- {a: [\n")
    done = _cli("tail", "--root", str(workspace), cwd=tmp_path, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {path}:")
    done = _cli("append", "x", "--agent", "Bad/Id", "--root", str(workspace), cwd=tmp_path, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: invalid agent id")
    assert path.read_text() == "events:\n- {a: [\n"


def test_cli_follow_prints_new_events_and_ends_cleanly_on_ctrl_c(workspace, tmp_path):
    events.append_event("started", agent="a", seq=0)
    env = {k: v for k, v in os.environ.items() if k != "SWARM_ROOT"}
    proc = subprocess.Popen([sys.executable, str(LIB / "events.py"), "tail", "-n", "1", "--follow", "--json",
                             "--root", str(workspace)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["seq"] == 0  # the backlog: the follower is watching
        events.append_event("progress", agent="a", seq=1)
        assert json.loads(proc.stdout.readline())["seq"] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_follow_reads_archives_rotated_between_polls(workspace):
    stream = events.follow(interval=0.005, timeout=10)
    try:
        for seq in range(3):
            events.append_event("tick", agent="a", rotate_bytes=1, seq=seq)
        events.append_event("tick", agent="a", rotate_bytes=0, seq=3)
        assert [next(stream)["seq"] for _ in range(4)] == [0, 1, 2, 3]
    finally:
        stream.close()


def test_the_fsync_of_an_append_runs_after_the_lock_and_a_failed_one_takes_the_line_back(workspace, monkeypatch):
    """The fsync comes after the log's lock is let go (other writers append meanwhile and their
    fsyncs share one flush): a line whose fsync fails is taken back while it is the last; once
    another line follows it, others may have read it, so it stays, and the writer hears of it."""
    events.append_event("tick", "a", root=workspace, n=1)
    log = workspace / "events.yaml"
    before = log.read_bytes()
    real_fsync = os.fsync

    def failing(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError) as info:
        events.append_event("tick", "a", root=workspace, n=2)
    assert info.value.filename == str(log)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert log.read_bytes() == before

    def followed(fd):
        monkeypatch.setattr(os, "fsync", real_fsync)
        events.append_event("tick", "b", root=workspace, n=4)  # takes the lock: it is free during the fsync
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", followed)
    with pytest.raises(OSError):
        events.append_event("tick", "a", root=workspace, n=3)
    assert [e["n"] for e in events.read_events(root=workspace, types="tick")] == [1, 3, 4]
