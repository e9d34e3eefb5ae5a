"""The event-log contract: every implementation of event_log.EventLog passes these same tests.

Each implementation is named by a swarm.yaml backend that uses it (IMPLEMENTATIONS); a new one is
added there (with what it needs to start, and how to corrupt it in ``_corrupt``) and is proven by
this file. events.py's own tests cover the public functions and the file format on top.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from swarmfile import config, stores
from swarmfile.errors import SwarmError, ValidationError
from swarmfile.event_log import EventLog, make_event
from conftest import backend_config
from procs import run_together

# One swarm.yaml backend per EventLog implementation.
IMPLEMENTATIONS = ["files", "redis"]


def _make(name: str, root: Path, extra: str = "") -> EventLog:
    """The log ``backend: name`` gives (``name`` is the setting: a Redis URL for redis)."""
    return stores.event_log(backend_config(root, name, extra))


@pytest.fixture(params=IMPLEMENTATIONS)
def log(request, workspace) -> EventLog:
    setting = request.param
    if setting == "redis":
        setting = request.getfixturevalue("redis_server").url
    made = _make(setting, workspace)
    made.backend_name = request.param
    made.setting = setting  # what a child process passes to _make for the same log
    return made


def ev(type: str = "progress", agent: str = "executor-1", task_id: str | None = "T-1", **data) -> dict:
    return make_event(type, agent, task_id, data)


def test_every_implementation_in_stores_is_proven_here():
    assert {b.event_log for b in stores.BACKENDS.values()} == {stores.BACKENDS[n].event_log for n in IMPLEMENTATIONS}


def test_an_empty_log_has_no_events_and_checks_clean(log):
    assert log.read() == [] and log.read(limit=5) == [] and log.read(include_archives=True) == []
    assert log.check()[0] == []
    assert isinstance(log.where(), str) and log.archives() == []


def test_appended_events_read_back_whole_and_in_order_with_distinct_ids(log):
    written = [ev(seq=0, note="two words"), ev("started", "executor-2", None, nested={"a": [1, 2]}, flag=True),
               ev("completed", seq=2, ratio=0.5)]
    ids = [log.append(e) for e in written]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 3
    assert log.read() == written
    assert log.read(limit=2) == written[1:] and log.read(limit=0) == []


def test_filters_select_by_agent_task_type_and_time(log):
    early = dict(ev("started", "a", "T-1"), timestamp="2026-11-30T10:00:00.000Z")
    later = dict(ev("progress", "b", "T-2"), timestamp="2026-11-30T11:00:00.000Z")
    last = dict(ev("completed", "a", "T-2"), timestamp="2026-11-30T12:00:00+00:00")
    for e in (early, later, last):
        log.append(e)
    assert log.read(agent="a") == [early, last]
    assert log.read(task_id="T-2") == [later, last]
    assert log.read(types="progress") == [later] and log.read(types=["started", "completed"]) == [early, last]
    assert log.read(since="2026-11-30T10:30:00Z") == [later, last]
    assert log.read(agent="a", limit=1) == [last]
    with pytest.raises(ValidationError):
        log.read(since="not a time")


def test_rotation_keeps_every_event_readable_in_order(log):
    for seq in range(3):
        log.append(ev(seq=seq), rotate_bytes=1)  # each append rotates the log (where sizes apply)
    log.append(ev(seq=3), rotate_bytes=0)
    assert [e["seq"] for e in log.read(include_archives=True)] == [0, 1, 2, 3]
    assert [e["seq"] for e in log.read(include_archives=True, limit=3)] == [1, 2, 3]
    assert [e["seq"] for e in log.read()][-1] == 3
    assert all(isinstance(a, str) for a in log.archives())
    assert log.check()[0] == []


def test_follow_yields_new_matching_events_once_with_a_backlog_first(log):
    log.append(ev(seq=0, agent="a"))
    log.append(ev(seq=1, agent="a"))
    stream = log.follow(agent="a", backlog=1, interval=0.005, timeout=10)
    try:
        log.append(ev(seq=2, agent="b"))
        log.append(ev(seq=3, agent="a"))
        assert [next(stream)["seq"], next(stream)["seq"]] == [1, 3]
    finally:
        stream.close()
    assert list(log.follow(interval=0.005, timeout=0.05)) == []


def test_follow_after_an_id_resumes_right_after_that_event_across_rotations(log):
    first = log.append(ev(seq=0))
    log.append(ev(seq=1), rotate_bytes=1)
    middle = log.append(ev(seq=2), rotate_bytes=1)
    log.append(ev(seq=3), rotate_bytes=0)
    got: list = []
    stream = log.follow(after=first, interval=0.005, timeout=10, stop=lambda: len(got) >= 3)
    got.extend(stream)
    assert [e["seq"] for e in got] == [1, 2, 3]
    stream = log.follow(after=middle, interval=0.005, timeout=10)
    try:
        assert next(stream)["seq"] == 3
        log.append(ev(seq=4))
        assert next(stream)["seq"] == 4
    finally:
        stream.close()
    with pytest.raises(ValidationError):
        log.follow(after="no such id")


def test_create_starts_a_log_once(log, workspace):
    (workspace / "events.yaml").unlink()
    _make(log.setting, workspace, "paths:\n  events: other-events.yaml\n")
    fresh = stores.event_log(config.load_config(root=workspace))
    assert fresh.create() is not None
    assert fresh.create() is None
    assert fresh.read() == []


def _corrupt(log: EventLog, workspace: Path) -> None:
    """Store an event that cannot be read, as a crash, a bad disk or a person would."""
    if log.backend_name == "files":
        with open(log.where(), "a") as handle:
            handle.write("- {timestamp: '2026-11-30T10:00:00Z', type: [unclosed\n")
    elif log.backend_name == "redis":
        log.client.xadd(log.stream, {"e": "{timestamp: '2026-11-30T10:00:00Z', type: [unclosed"})


def test_an_event_that_cannot_be_read_raises_and_check_names_it(log, workspace):
    log.append(ev(seq=0))
    _corrupt(log, workspace)
    with pytest.raises(SwarmError):
        log.read()
    with pytest.raises(SwarmError):
        log.read(limit=5)
    problems, parts = log.check()
    assert parts >= 1 and [p.severity for p in problems] == ["ERROR"] and problems[0].where


# ---------------------------------------------------------------------------- many processes


def _append_many(name: str, root: str, writer: int, count: int) -> int:
    log = _make(name, Path(root), "events:\n  rotate_bytes: 4000\n  fsync: false\n")
    for seq in range(count):
        log.append(make_event("tick", f"w{writer}", None, {"writer": writer, "seq": seq}))
    return count


def test_eight_processes_appending_across_rotations_lose_nothing_and_a_follower_sees_each_once(log, workspace):
    name = log.setting
    log = _make(name, workspace, "events:\n  rotate_bytes: 4000\n  fsync: false\n")
    followed: list[dict] = []
    stream = log.follow(interval=0.001, timeout=120, stop=lambda: len(followed) >= 800)
    follower = threading.Thread(target=lambda: followed.extend(stream))
    follower.start()
    try:
        done = run_together(_append_many, [(name, str(workspace), w, 100) for w in range(8)], timeout=300)
    finally:
        follower.join(timeout=120)
    assert sum(done) == 800
    found = log.read(include_archives=True)
    assert len(found) == 800 and followed == found
    assert {(e["writer"], e["seq"]) for e in found} == {(w, s) for w in range(8) for s in range(100)}
    for writer in range(8):  # each appender's events keep their order
        assert [e["seq"] for e in found if e["writer"] == writer] == list(range(100))
    if name == "files":
        assert len(log.archives()) > 5  # it did rotate, many times, under the race


def test_a_backend_url_picks_the_backend_its_scheme_names_and_an_unknown_one_is_refused(workspace, monkeypatch):
    made: list = []
    files = stores.BACKENDS["files"]
    monkeypatch.setitem(stores.BACKENDS, "memo", stores.Backend(
        files.lease_table, lambda cfg: made.append(cfg.settings["backend"]) or files.event_log(cfg),
        files.agent_registry))
    (workspace / "swarm.yaml").write_text("backend: memo://127.0.0.1:6379/0\n")
    config._cache.clear()
    cfg = config.load_config(root=workspace)
    assert stores.event_log(cfg) is stores.event_log(cfg)  # one per workspace and process
    assert made == ["memo://127.0.0.1:6379/0"]
    (workspace / "swarm.yaml").write_text("backend: nope://127.0.0.1/0\n")
    config._cache.clear()
    with pytest.raises(ValidationError, match="nope"):
        stores.event_log(config.load_config(root=workspace))


def test_events_follow_resumes_after_an_id_the_store_returned(log, workspace):
    from swarmfile import events

    mark = log.append(ev(seq=0))
    events.append_event("progress", "executor-1", "T-1", root=workspace, seq=1)
    stream = events.follow(after=mark, root=workspace, interval=0.005, timeout=10)
    try:
        assert next(stream)["seq"] == 1
    finally:
        stream.close()
