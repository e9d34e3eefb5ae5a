"""The event log on Redis beyond the shared contract (test_event_log.py): the events.yaml mirror, trimming, faults.

Every test runs a private redis-server (conftest's ``redis_server``: AOF ``appendfsync always``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swarmfile import config, event_mirror, events, stores
from swarmfile.errors import BackendUnavailable, ValidationError
from swarmfile.event_log import STREAM_ID, make_event
from conftest import LIB, backend_config
from procs import run_together

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def redis_ws(workspace, redis_server):
    backend_config(workspace, redis_server.url)
    return workspace


def _append(root: Path, count: int, writer: int = 0, start: int = 0) -> list[str]:
    log = stores.event_log(config.load_config(root=root))
    return [log.append(make_event("tick", f"w{writer}", None, {"writer": writer, "seq": seq}))
            for seq in range(start, start + count)]


def _mirrored(root: Path) -> list[dict]:
    """What events.yaml (and its archives) holds that came from the stream, in file order."""
    mirror = stores.event_log(config.load_config(root=root), events_file=root / "events.yaml")
    return [e for e in mirror.read(include_archives=True) if STREAM_ID in e]


def _assert_faithful(root: Path) -> None:
    """The mirror holds every stream event once, in stream order, each with its id, nothing else from it."""
    cfg = config.load_config(root=root)
    stream = stores.event_log(cfg).entries_after(None, 10**9)
    copied = _mirrored(root)
    assert [e[STREAM_ID] for e in copied] == [ident for ident, _ in stream]
    assert [{k: v for k, v in e.items() if k != STREAM_ID} for e in copied] == [event for _, event in stream]


def test_the_redis_backend_keeps_events_in_the_stream_and_mirror_once_copies_them_in_order(redis_ws):
    ids = _append(redis_ws, 5)
    assert (redis_ws / "events.yaml").read_text() == "events:\n"  # nothing written on the host by an append
    assert [e["seq"] for e in events.read_events(root=redis_ws)] == [0, 1, 2, 3, 4]
    cfg = config.load_config(root=redis_ws)
    assert event_mirror.mirror_once(cfg) == 5 and event_mirror.mirror_once(cfg) == 0
    assert [e[STREAM_ID] for e in _mirrored(redis_ws)] == ids
    _append(redis_ws, 3, start=5)
    assert event_mirror.mirror_once(cfg, batch=2) == 3
    _assert_faithful(redis_ws)
    lines = (redis_ws / "events.yaml").read_text().splitlines()
    assert len(lines) == 9 and lines[1].startswith("- {timestamp: '") and f"{STREAM_ID}: '{ids[0]}'" in lines[1]
    with pytest.raises(ValidationError, match=STREAM_ID):  # never in an event's data: the mirror's key
        events.append_event("tick", "w0", root=redis_ws, **{STREAM_ID: "1-0"})


def test_a_mirror_resumes_from_the_file_after_a_torn_write_losing_and_duplicating_nothing(redis_ws):
    cfg = config.load_config(root=redis_ws)
    _append(redis_ws, 4)
    assert event_mirror.mirror_once(cfg) == 4
    _append(redis_ws, 4, start=4)
    stream = stores.event_log(cfg).entries_after(None, 100)
    with open(redis_ws / "events.yaml", "a") as handle:  # a mirror killed in the middle of its write
        handle.write(f"- {{timestamp: '{stream[4][1]['timestamp']}', type: tick, agent: w0, wri")
    assert len(_mirrored(redis_ws)) == 4  # the torn line is not read: the file ends at the 4th event
    assert event_mirror.mirror_once(cfg) == 4
    _assert_faithful(redis_ws)
    kinds = [e["type"] for e in stores.event_log(cfg, events_file=redis_ws / "events.yaml").read()]
    assert kinds == ["tick"] * 8 + ["repaired"]  # the cut is recorded, as on every log


def test_a_mirror_whose_last_stream_id_is_garbled_refuses_and_writes_nothing(redis_ws):
    cfg = config.load_config(root=redis_ws)
    _append(redis_ws, 2)
    (redis_ws / "events.yaml").write_text("events:\n- {timestamp: '2026-11-30T10:00:00Z', type: tick, agent: w0, "
                                          f"{STREAM_ID}: not-an-id}}\n")
    before = (redis_ws / "events.yaml").read_bytes()
    with pytest.raises(ValidationError, match="not a stream id") as caught:
        event_mirror.mirror_once(cfg)
    assert caught.value.path and "events.yaml" in str(caught.value.path)
    assert (redis_ws / "events.yaml").read_bytes() == before


def test_the_mirror_resumes_across_its_own_rotations(redis_ws, redis_server):
    cfg = backend_config(redis_ws, redis_server.url, "events:\n  rotate_bytes: 1\n")  # each write rotates
    _append(redis_ws, 30)
    assert event_mirror.mirror_once(cfg, batch=4) == 30
    mirror = stores.event_log(cfg, events_file=redis_ws / "events.yaml")
    assert len(mirror.archives()) == 8 and mirror.read() == []  # the last id is in the newest archive
    _append(redis_ws, 2, start=30)
    assert event_mirror.mirror_once(cfg) == 2
    _assert_faithful(redis_ws)


def _mirror_until_killed(root: str, queue) -> None:
    cfg = config.load_config(root=root)
    event_mirror.follow_mirror(cfg, batch=7, on_copy=queue.put)


def test_a_mirror_killed_with_sigkill_again_and_again_neither_loses_nor_duplicates(redis_ws):
    ctx = mp.get_context("spawn")
    _append(redis_ws, 1500)
    for round in range(5):
        queue = ctx.Queue()
        child = ctx.Process(target=_mirror_until_killed, args=(str(redis_ws), queue))
        child.start()
        try:
            queue.get(timeout=60)  # it has copied a batch and goes on with the next: kill it there
            os.kill(child.pid, 9)
            child.join(timeout=30)
        finally:
            if child.is_alive():
                child.kill()
                child.join()
        _append(redis_ws, 100, start=1500 + 100 * round)
    copied_before = len(_mirrored(redis_ws))
    assert 0 < copied_before < 2000
    event_mirror.mirror_once(config.load_config(root=redis_ws))
    assert len(_mirrored(redis_ws)) == 2000
    _assert_faithful(redis_ws)


def _race(root: str, rounds: int) -> int:
    cfg = config.load_config(root=root)
    return sum(event_mirror.mirror_once(cfg, batch=3) for _ in range(rounds))


def test_two_mirrors_racing_while_writers_append_copy_each_event_exactly_once(redis_ws):
    _append(redis_ws, 200)
    writer = threading.Thread(target=_append, args=(redis_ws, 300, 1))
    writer.start()
    try:
        copied = run_together(_race, [(str(redis_ws), 40), (str(redis_ws), 40)], timeout=200)
    finally:
        writer.join(timeout=120)
    copied.append(event_mirror.mirror_once(config.load_config(root=redis_ws)))
    assert sum(copied) == 500 and len(_mirrored(redis_ws)) == 500
    _assert_faithful(redis_ws)


def test_only_mirrored_events_are_trimmed_and_a_follow_from_a_trimmed_id_is_refused(redis_ws, redis_server):
    cfg = backend_config(redis_ws, redis_server.url, "events:\n  stream_keep: 5\n")
    log = stores.event_log(cfg)
    ids = _append(redis_ws, 20)
    assert len(log.read()) == 20  # appends never trim: the mirror has not written them yet
    assert event_mirror.mirror_once(cfg) == 20
    assert [e["seq"] for e in log.read()] == [15, 16, 17, 18, 19]  # the last stream_keep mirrored ones
    assert len(_mirrored(redis_ws)) == 20  # every one is in the file
    with pytest.raises(ValidationError, match="trimmed"):
        log.follow(after=ids[0])
    stream = log.follow(after=ids[16], timeout=10)
    try:
        assert next(stream)["seq"] == 17
    finally:
        stream.close()
    assert log.trim(ids[19], 0) == 5 and log.read() == []
    _append(redis_ws, 3, start=20)
    assert log.trim(ids[19], 0) == 0 and len(log.read()) == 3  # nothing after the mirrored id goes


def test_events_cli_tails_the_stream_and_mirrors_it(redis_ws, workspace):
    _append(redis_ws, 3)
    run = lambda *argv: subprocess.run([sys.executable, str(LIB / "events.py"), *argv, "--root", str(redis_ws)],  # noqa: E731
                                       capture_output=True, text=True, timeout=60)
    shown = run("tail", "-n", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [e["seq"] for e in json.loads(shown.stdout)] == [1, 2]
    done = run("mirror", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["mirrored"] == 3, done.stderr
    assert run("mirror").stdout.startswith("mirrored 0 events")
    _assert_faithful(redis_ws)


def test_events_tail_follow_on_the_command_line_prints_stream_events_as_they_come(redis_ws):
    _append(redis_ws, 1)
    follower = subprocess.Popen([sys.executable, str(LIB / "events.py"), "tail", "-f", "-n", "1", "--json",
                                 "--root", str(redis_ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(follower.stdout.readline())["seq"] == 0  # the backlog: it is reading
        _append(redis_ws, 2, start=1)
        assert [json.loads(follower.stdout.readline())["seq"] for _ in range(2)] == [1, 2]
    finally:
        follower.kill()
        follower.wait(timeout=30)
        follower.stdout.close()
        follower.stderr.close()


def test_the_planner_mirrors_every_round(redis_ws):
    from swarmfile.planner import Planner

    _append(redis_ws, 2)
    Planner(root=str(redis_ws)).round()
    copied = _mirrored(redis_ws)
    assert [e["seq"] for e in copied[:2]] == [0, 1]  # then the planner's own events of the round
    _assert_faithful(redis_ws)


def test_doctor_checks_the_stream_and_the_mirror_file(redis_ws):
    from swarmfile import doctor

    _append(redis_ws, 2)
    event_mirror.mirror_once(config.load_config(root=redis_ws))
    with open(redis_ws / "events.yaml", "a") as handle:
        handle.write("- {timestamp: '2026-11-30T10:00:00Z', type: torn")
    found, _ = doctor.check(root=redis_ws)
    assert [f.code for f in found if "events.yaml" in str(f.path)] == ["torn-log"]


# ---------------------------------------------------------------------------- faults


def test_redis_killed_and_restarted_loses_no_acknowledged_event(redis_ws, redis_server):
    ids = _append(redis_ws, 50)
    redis_server.kill()
    with pytest.raises(BackendUnavailable, match="cannot reach Redis"):
        _append(redis_ws, 1, start=50)
    redis_server.restart()
    stream = stores.event_log(config.load_config(root=redis_ws)).entries_after(None, 1000)
    assert [ident for ident, _ in stream] == ids and [e["seq"] for _, e in stream] == list(range(50))
    after = _append(redis_ws, 1, start=50)[0]
    as_pair = lambda ident: tuple(int(part) for part in ident.split("-"))  # noqa: E731
    assert as_pair(after) > as_pair(ids[-1])  # ids go on growing after the replay


class _Heard(logging.Handler):
    """Sets ``event`` when a log message containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_paused_redis_makes_append_fail_cleanly_and_the_mirror_loop_resumes(redis_ws, redis_server, caplog):
    caplog.set_level("WARNING", logger="swarmfile")
    paused = _Heard("mirroring pauses and retries")
    logging.getLogger("swarmfile").addHandler(paused)
    cfg = config.load_config(root=redis_ws)
    _append(redis_ws, 3)
    started, caught_up, stop = threading.Event(), threading.Event(), threading.Event()
    copied: list[int] = []

    def on_copy(count: int) -> None:
        copied.append(count)
        started.set()
        if sum(copied) >= 5:
            caught_up.set()

    mirror = threading.Thread(target=event_mirror.follow_mirror, args=(cfg,),
                              kwargs=dict(stop=stop.is_set, on_copy=on_copy))
    mirror.start()
    try:
        assert started.wait(60)  # the mirror is in its loop
        redis_server.pause()  # longer than one command's timeout: every request in flight fails
        try:
            with pytest.raises(BackendUnavailable, match="cannot reach Redis"):
                stores.event_log(cfg).append(make_event("tick", "w0", None, {"seq": 3}))
            assert paused.event.wait(30)  # the mirror saw it too, and backs off
        finally:
            redis_server.resume()
        _append(redis_ws, 2, start=4)
        assert caught_up.wait(60)
    finally:
        stop.set()
        mirror.join(timeout=30)
        logging.getLogger("swarmfile").removeHandler(paused)
    assert not mirror.is_alive()
    assert "mirroring resumed" in caplog.text
    # The append that timed out was never acknowledged: the paused server may still run it once
    # resumed (its request sat in the socket), so it is there once or not at all, never twice.
    assert [e["seq"] for e in _mirrored(redis_ws)] in ([0, 1, 2, 4, 5], [0, 1, 2, 3, 4, 5])
    _assert_faithful(redis_ws)


def _await(condition, seconds: float = 60) -> None:
    """Wait for another process's doing (no notification crosses processes here): look every 50 ms."""
    pause, deadline = threading.Event(), time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        pause.wait(0.05)


def test_the_planner_loop_survives_a_paused_redis_and_mirrors_again_after(redis_ws, redis_server):
    _append(redis_ws, 1)
    planner = subprocess.Popen([sys.executable, str(LIB / "planner.py"), "--interval", "0.1", "--root", str(redis_ws)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    unreachable = threading.Event()

    def read_stderr() -> None:
        for line in planner.stderr:
            said.append(line)
            if "cannot reach Redis" in line:
                unreachable.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        _await(lambda: len(_mirrored(redis_ws)) >= 1)
        redis_server.pause()
        try:
            assert unreachable.wait(60), said
        finally:
            redis_server.resume()
        _append(redis_ws, 1, start=1)
        _await(lambda: [e["seq"] for e in _mirrored(redis_ws) if "seq" in e] == [0, 1] or planner.poll() is not None)
        assert planner.poll() is None, said  # still running: it paused and went on
    finally:
        planner.terminate()
        planner.wait(timeout=30)
        reader.join(timeout=30)
        planner.stderr.close()
    _assert_faithful(redis_ws)


def test_an_error_never_shows_the_password(tmp_path, workspace):
    from redis_server import RedisServer, require_redis

    require_redis()
    server = RedisServer(tmp_path / "auth", password="s3cret-pw").start()
    try:
        cfg = backend_config(workspace, server.url.replace("s3cret-pw", "wrong-pw"))
        with pytest.raises(BackendUnavailable) as caught:
            stores.event_log(cfg).append(make_event("tick", "w0", None, {}))
        assert "wrong-pw" not in str(caught.value) and "s3cret" not in str(caught.value)
        log = stores.event_log(backend_config(workspace, server.url))
        log.append(make_event("tick", "w0", None, {}))
        server.kill()
        with pytest.raises(BackendUnavailable) as caught:
            log.read()
        assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in repr(log)
    finally:
        server.stop()
