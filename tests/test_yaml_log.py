"""yaml_log: the append-only YAML log under events, chat, the merge queue's records and doctor."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from swarmfile import yaml_log
from swarmfile.errors import ParseError, SwarmError, ValidationError

LIB = Path(__file__).resolve().parent.parent / "lib"
LOG_MODULES = ("yaml_log", "event_query", "events", "event_follow", "event_check", "chat", "merge_queue", "doctor")


def _flow(i: int, agent: str = "w0") -> str:
    return f"- {{timestamp: '2026-11-22T10:00:00.000Z', type: progress, agent: {agent}, seq: {i}}}\n"


def _fd(path: Path) -> int:
    fd = yaml_log.open_log(path)
    assert fd is not None
    return fd


def _all(path: Path, **kw) -> list[dict]:
    fd = _fd(path)
    try:
        return yaml_log.read_all(fd, path, **kw)
    finally:
        os.close(fd)


def _last(path: Path, want: int, **kw) -> list[dict]:
    fd = _fd(path)
    try:
        return yaml_log.read_last(fd, path, want, lambda e: True, lambda raw: True, **kw)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("text, kind", [
    ("events:\n" + _flow(1), "mapping"),
    ("# a comment\n\nevents:   # the log\n", "mapping"),
    ("\ufeffevents:\n", "mapping"),
    (_flow(1) + _flow(2), "list"),
    ("events: []\n", "flow_empty"),
    ("# only a comment\n\n", "empty"),
    ("", "empty"),
    ("other: 1\n", "other"),
])
def test_layout_names_how_a_log_starts(tmp_path, text, kind):
    path = tmp_path / "log.yaml"
    path.write_text(text, encoding="utf-8")
    fd = _fd(path)
    try:
        assert yaml_log.layout(fd, path.stat().st_size)[0] == kind
    finally:
        os.close(fd)


@pytest.mark.parametrize("key, header", [("events", "events:\n"), ("queue", "queue:\n"), (None, "")])
def test_keyed_and_bare_list_logs_read_the_same_entries(tmp_path, key, header):
    path = tmp_path / "log.yaml"
    path.write_text(header + "".join(_flow(i) for i in range(5)))
    kw = {"key": key} if key else {}
    assert [e["seq"] for e in _all(path, **kw)] == list(range(5))
    assert [e["seq"] for e in _last(path, 2, **kw)] == [4, 3]  # newest first


def test_append_layout_refuses_what_an_appended_line_would_not_join(tmp_path):
    path = tmp_path / "queue.yaml"
    cases = {
        "queue:\n" + _flow(1): None,
        "queue: []\n": None,
        "queue: []\n" + _flow(1): (1, "'queue: []' is followed by entries; refusing to append"),
        "other:\n" + _flow(1): (1, "does not start with 'queue:' or a '- ' list item; refusing to append"),
        "queue:\n" + _flow(1) + "later: 2\n": (3, "an appended line would not join the queue list "
                                              "(a top-level line that is not an item entry)"),
        "queue:\n  " + _flow(1): (2, "(item entries indented under 'queue:')"),
    }
    for text, refusal in cases.items():
        path.write_text(text)
        fd = _fd(path)
        try:
            if refusal is None:
                yaml_log.append_layout(fd, path, path.stat().st_size, key="queue", noun="item")
                continue
            with pytest.raises(ValidationError) as caught:
                yaml_log.append_layout(fd, path, path.stat().st_size, key="queue", noun="item")
            assert caught.value.line == refusal[0] and refusal[1] in str(caught.value), (text, str(caught.value))
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------- torn tail


def test_a_torn_last_line_is_skipped_and_a_whole_one_kept(tmp_path):
    path = tmp_path / "events.yaml"
    path.write_text("events:\n" + _flow(0) + "- {timestamp: '2026-11-22T10:0")  # a crash mid-append
    assert [e["seq"] for e in _all(path)] == [0]
    assert [e["seq"] for e in _last(path, 5)] == [0]
    assert yaml_log.read_kept(path) == "events:\n" + _flow(0)
    assert yaml_log.torn_tail(path) == (8 + len(_flow(0)), b"- {timestamp: '2026-11-22T10:0", 3)
    path.write_text("events:\n" + _flow(0) + _flow(1).rstrip("\n"))  # an editor left no newline
    assert [e["seq"] for e in _all(path)] == [0, 1] and yaml_log.torn_tail(path) is None
    assert yaml_log.read_kept(tmp_path / "missing.yaml") is None


def test_cut_torn_tail_keeps_the_bytes_and_refuses_a_file_that_is_all_torn(tmp_path):
    path, keep, locks = tmp_path / "events.yaml", tmp_path / "kept" / "events.torn", tmp_path / "locks"
    whole = "events:\n" + _flow(0)
    path.write_text(whole + "- {seq: 1, ty")
    assert yaml_log.cut_torn_tail(path, keep, lock_dir=locks, timeout=5) == len("- {seq: 1, ty")
    assert path.read_text() == whole and keep.read_bytes() == b"- {seq: 1, ty"
    assert yaml_log.cut_torn_tail(path, keep, lock_dir=locks, timeout=5) is None  # already whole
    path.write_text("- {seq: 1, ty")
    with pytest.raises(SwarmError, match="the whole file is one torn line"):
        yaml_log.cut_torn_tail(path, keep, lock_dir=locks, timeout=5)
    assert path.read_text() == "- {seq: 1, ty"


# ---------------------------------------------------------------------------- bad lines


@pytest.mark.parametrize("bad, line, whole", [
    ("- {seq: 2, note: 'open quote}\n", 4, True),
    ("- \udcff\n", 4, True),
    ("- just text\n", 4, False),  # parses, but is not a mapping: the whole read names it by number
])
def test_a_bad_line_in_the_middle_is_named_with_its_line(tmp_path, bad, line, whole):
    path = tmp_path / "events.yaml"
    path.write_bytes(("events:\n" + _flow(0) + _flow(1) + bad + _flow(3) + _flow(4)).encode("utf-8", "surrogateescape"))
    for read in [lambda: _last(path, 10)] + ([lambda: _all(path)] if whole else []):
        with pytest.raises((ParseError, ValidationError)) as caught:
            read()
        assert caught.value.line == line and str(caught.value.path) == str(path), str(caught.value)
    assert [e["seq"] for e in _last(path, 2)] == [4, 3]  # what is newer than the bad line still reads
    if not whole:
        with pytest.raises(ValidationError, match="event 3 is not a mapping"):
            _all(path)


def test_parse_range_reports_the_line_in_the_whole_file(tmp_path):
    path = tmp_path / "chat-log.yaml"
    path.write_text("# header\nmessages:\n- {id: 1}\n- {id: 2]\n")
    fd = _fd(path)
    try:
        start = len("# header\nmessages:\n- {id: 1}\n")
        with pytest.raises(ParseError) as caught:
            yaml_log.parse_range(fd, path, start, path.stat().st_size)
        assert caught.value.line == 4
        assert yaml_log.parse_range(fd, path, start - len("- {id: 1}\n"), start) == [{"id": 1}]
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- scans


def test_the_backward_scan_of_a_large_log_reads_a_bounded_number_of_bytes(tmp_path, monkeypatch):
    path = tmp_path / "events.yaml"
    with open(path, "w") as handle:
        handle.write("events:\n")
        handle.writelines(_flow(i, agent=f"w{i % 8}") for i in range(100_000))
    read = []
    real = yaml_log.read_at
    monkeypatch.setattr(yaml_log, "read_at", lambda fd, n, at: read.append(n) or real(fd, n, at))
    assert [e["seq"] for e in _last(path, 20)] == list(range(99_999, 99_979, -1))
    assert sum(read) < 32 * 1024 and path.stat().st_size > 6_000_000
    fd = _fd(path)
    try:
        parts = list(yaml_log.top_level_backward(lambda n, at: os.pread(fd, n, at), 0, path.stat().st_size))
    finally:
        os.close(fd)
    assert len(parts) == 100_001 and parts[-1][0] == 0 and parts[-1][1] == b"events:\n" and parts[-1][2]


BLOCK = "- timestamp: '2026-11-22T10:{m:02d}:00Z'\n  type: {type}\n  agent: a{m}\n  items:\n  - x\n"


def test_ralf_block_style_entries_are_read_among_flow_lines(tmp_path):
    path = tmp_path / "events.yaml"
    parts = ["# RALF log\nevents:\n"]
    for i in range(30):
        parts.append(BLOCK.format(m=i, type="started") if i % 3 == 0 else _flow(i))
        if i % 7 == 0:
            parts.append("# a comment between entries\n\n")
    path.write_text("".join(parts))
    full = _all(path)
    assert len(full) == 30 and full[0] == {"timestamp": "2026-11-22T10:00:00Z", "type": "started", "agent": "a0",
                                           "items": ["x"]}
    for n in (1, 3, 29, 30, 40):
        assert _last(path, n)[::-1] == full[-n:]
    fd = _fd(path)
    try:
        kind, body, _ = yaml_log.layout(fd, path.stat().st_size)
        batches = list(yaml_log.batches_forward(fd, body, path.stat().st_size, 200))
        assert len(batches) > 1
        assert [e for b in batches for e in yaml_log.parse_batch(fd, path, b)[::-1]] == full
    finally:
        os.close(fd)


def test_an_indented_list_is_left_to_the_parser(tmp_path):
    path = tmp_path / "events.yaml"
    path.write_text("events:\n  " + _flow(0) + "  " + _flow(1))
    assert [e["seq"] for e in _last(path, 1)] == [1]
    assert [e["seq"] for e in _all(path)] == [0, 1]


# ---------------------------------------------------------------------------- files


def test_open_log_refuses_a_symlink_only_when_asked(tmp_path):
    target, link = tmp_path / "real.yaml", tmp_path / "events.yaml"
    target.write_text("events:\n")
    link.symlink_to(target)
    assert yaml_log.open_log(tmp_path / "missing.yaml") is None
    with pytest.raises(ValidationError, match="is a symlink; refusing to use it"):
        yaml_log.open_log(link, symlink="refusing to use it")
    fd = yaml_log.open_log(link)
    try:
        assert yaml_log.identity(fd) == yaml_log.path_identity(target)
    finally:
        os.close(fd)


def test_archive_keys_sort_by_stamp_then_number(tmp_path):
    path = tmp_path / "events.yaml"
    for name in ("events-20261122T100000001Z-2.yaml", "events-20261122T100000001Z.yaml",
                 "events-20261121T100000000Z.yaml", "events-notastamp.yaml", "chat-20261122T100000001Z.yaml"):
        (tmp_path / name).write_text("events:\n")
    assert [p.name for _, p in yaml_log.archive_keys(path)] == [
        "events-20261121T100000000Z.yaml", "events-20261122T100000001Z.yaml", "events-20261122T100000001Z-2.yaml"]


# ---------------------------------------------------------------------------- layering


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in ``module``, lazy ones too."""
    tree = ast.parse((LIB / f"{module}.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_log_mechanism_sits_below_the_logs_that_use_it():
    """yaml_log imports only the base; cycles and private names are checked package-wide in test_imports."""
    from test_imports import _graph

    assert _graph()["yaml_log"] <= {"fileio", "config", "clock", "errors"}
