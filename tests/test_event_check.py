"""A log broken in the middle, a log appends cannot join, and doctor streaming a big log
(issue 10, items 9, 18 and 19), on copies of the real RALF event log."""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import doctor
from swarmfile import event_check
import events
from conftest import LIB
from swarmfile.errors import ParseError

LONG = bool(os.environ.get("SWARM_LONG_TESTS"))


def _line(i: int, kind: str = "progress") -> str:
    return (f"- {{timestamp: '2026-02-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z', type: {kind}, agent: executor-{i % 3}, "
            f"task_id: TASK-{i % 50}, note: 'step {i} of the run, with some words to make it a real line'}}\n")


def _grow(path: Path, size: int, bad_at: int | None = None) -> int:
    """Append flow entries to the log at ``path`` (the RALF block entries stay first) up to ``size``
    bytes; with ``bad_at``, entry number ``bad_at`` is torn in half. Returns the bad line's number."""
    text = path.read_text()
    lines, i, total, bad_line = [], 0, len(text), 0
    while total < size:
        line = _line(i, "failed" if i % 997 == 0 else "progress")
        if i == bad_at:
            line, bad_line = line[:40] + "\n", text.count("\n") + len(lines) + 1
        lines.append(line)
        total += len(line)
        i += 1
    path.write_text(text + "".join(lines))
    return bad_line


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LIB / "events.py"), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------- item 9


def test_a_reader_that_meets_a_bad_line_says_so_with_file_and_line(ralf):
    log = ralf / "events.yaml"
    bad = _grow(log, 400_000, bad_at=1500)
    before = log.read_bytes()
    for args in (["tail", "--type", "failed"], ["tail", "--task", "TASK-7", "-n", "1000"], ["tail", "-n", "5000"]):
        out = _cli(*args, root=ralf)
        assert out.returncode == 2 and out.stdout == "", (args, out.stdout[-300:])
        assert out.stderr.startswith(f"error: {log}:{bad}: does not parse as YAML"), (args, out.stderr)
    # The newest events are read without meeting it: those readers answer.
    assert _cli("tail", "-n", "5", root=ralf).returncode == 0
    assert log.read_bytes() == before
    with pytest.raises(ParseError) as caught:
        events.read_events(types=["failed"], root=ralf)
    assert caught.value.line == bad


def test_appends_go_on_past_a_bad_line_in_the_middle(ralf):
    """Decided: an append joins the list at the end whatever is wrong further up, so the loops do
    not stop for a damaged history; readers that meet the line and doctor report it."""
    log = ralf / "events.yaml"
    bad = _grow(log, 50_000, bad_at=100)
    before = log.read_bytes()
    out = _cli("append", "progress", "--agent", "executor-1", "--task", "TASK-1", root=ralf)
    assert out.returncode == 0, out.stderr
    after = log.read_bytes()
    assert after.startswith(before) and after[len(before):].count(b"\n") == 1
    assert events.tail(1, root=ralf)[0]["agent"] == "executor-1"
    [finding] = [f for f in doctor.diagnose(root=ralf).findings if f.path == log]
    assert (finding.code, finding.line) == ("parse", bad)


# ---------------------------------------------------------------------------- item 18


def test_doctor_reports_a_log_that_appends_cannot_join(ralf):
    log = ralf / "events.yaml"
    # What an editor's reindent makes of the RALF log: valid YAML, but a line appended at column 0
    # would not join the list.
    indented = "events:\n" + "".join("  " + line + "\n" for line in log.read_text().splitlines()[1:])
    log.write_text(indented)
    assert len(events.read_events(root=ralf)) > 10  # it still reads
    report = doctor.diagnose(root=ralf)
    [finding] = [f for f in report.findings if f.code == "log-not-appendable"]
    assert finding.path == log and finding.line == 2 and "appends fail" in finding.problem
    assert not report.ok and "clean" not in report.summary()
    assert log.read_text() == indented
    out = subprocess.run([sys.executable, str(LIB / "doctor.py"), "--root", str(ralf)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "events.yaml:2" in out.stdout and "appends fail" in out.stdout


# ---------------------------------------------------------------------------- item 19


def _peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_doctor_streams_the_log_in_bounded_memory(ralf):
    log = ralf / "events.yaml"
    _grow(log, 250_000)
    doctor.check(root=ralf)  # imports and caches out of the way
    small = _peak(lambda: doctor.check(root=ralf))
    _grow(log, 1_250_000)
    assert event_check.scan_log(log) == len(events.read_events(root=ralf))
    big = _peak(lambda: doctor.check(root=ralf))
    # Five times the log, about the same memory: a batch of entries and its parse (reading the
    # log whole took about ten times the file: 12 MB here).
    assert big < small * 1.5 and big < 4 * 1024 * 1024, (small, big, log.stat().st_size)


def test_doctor_finds_a_bad_line_deep_in_a_streamed_log(ralf):
    log = ralf / "events.yaml"
    bad = _grow(log, 1_500_000, bad_at=9000)
    with pytest.raises(ParseError) as caught:
        event_check.scan_log(log)
    assert caught.value.line == bad and caught.value.path == str(log)
    [finding] = [f for f in doctor.diagnose(root=ralf).findings if f.path == log]
    assert finding.line == bad


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long tier: set SWARM_LONG_TESTS=1")
def test_doctor_on_a_50_mb_log_takes_about_as_long_as_tail_over_it(ralf, capsys):
    log = ralf / "events.yaml"
    _grow(log, 50 * 1024 * 1024)
    size = log.stat().st_size

    def timed(args: list[str]) -> float:
        start = time.monotonic()
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode in (0, 1), done.stderr
        return time.monotonic() - start

    tail = [timed([str(LIB / "events.py"), "--root", str(ralf), "tail", "-n", "100000000"]) for _ in range(3)]
    check = [timed([str(LIB / "doctor.py"), "--root", str(ralf)]) for _ in range(3)]
    peak = _peak(lambda: event_check.scan_log(log))
    with capsys.disabled():
        print(f"\n{size / 2**20:.0f} MB log: doctor median {statistics.median(check):.1f}s, "
              f"tail over the whole file median {statistics.median(tail):.1f}s, scan peak {peak / 2**20:.1f} MB")
    assert statistics.median(check) < 1.5 * statistics.median(tail)
    assert peak < 4 * 1024 * 1024


def _flood(path: Path, count: int, odd: dict[int, str]) -> None:
    """A log of ``count`` entries of one shape (a flood of one kind of event); line numbers in
    ``odd`` (1 = the first entry) hold the text given instead."""
    lines = [odd.get(i, f"- {{timestamp: '2026-02-01T10:00:00Z', type: progress, agent: a, step: {i % 9 + 1}}}\n")
             for i in range(1, count + 1)]
    path.write_text("events:\n" + "".join(lines))


def test_a_flood_of_one_shape_is_counted_and_an_odd_line_deep_in_it_is_still_checked(tmp_path):
    # The scan counts a block made of one already checked shape without splitting it into lines:
    # whatever differs from that shape, however deep, must still be seen, even at the same length.
    log = tmp_path / "events.yaml"
    n = 3 * event_check.BLOCK_BYTES // 60  # several blocks
    _flood(log, n, {})
    assert event_check.scan_log(log) == n
    same = len("- {timestamp: '2026-02-01T10:00:00Z', type: progress, agent: a, step: 1}")
    _flood(log, n, {n - 7: " " * same + "\n",  # blank: no entry
                    n - 5: "- {timestamp: '2026-02-01T10:00:00Z', type: progress, agent: a, step: x}\n"})
    assert event_check.scan_log(log) == n - 1
    _flood(log, n, {n - 5: "- {timestamp: '2026-02-01T10:00:00Z', type: progress, agent: a, step: [}\n"})
    with pytest.raises(ParseError) as caught:
        event_check.scan_log(log)
    assert caught.value.line == n - 5 + 1  # + the events: line
