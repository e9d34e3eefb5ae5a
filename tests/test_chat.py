"""chat: append-only messages, RALF layout conversion, ids, read state, help round trip, CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import chat
import events
from swarmfile import fileio
from swarmfile.errors import InvalidIdError, NotFoundError, ParseError, ValidationError
from procs import run_together
from conftest import BACKENDS, backend_config

# The rules run the same on every chat log: chat-log.yaml, and Redis (redis_chat).
ON_BOTH_BACKENDS = pytest.mark.parametrize("backend", BACKENDS, indirect=True)

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "chat.py"
RALF_CHAT = Path(__file__).resolve().parent / "fixtures" / "ralf" / "communications" / "chat-log.yaml"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def log(workspace):
    return workspace / "chat-log.yaml"


def _doc(path: Path):
    return fileio.load_yaml_file(path)


def _lines_after(path: Path, before: bytes) -> list[str]:
    """The lines appended since ``before``; fails when the old bytes were rewritten."""
    now = path.read_bytes()
    assert now.startswith(before), "the log was rewritten, not appended to"
    return now[len(before):].decode().splitlines()


# ---------------------------------------------------------------------------- send and read


def test_send_creates_the_log_and_appends_one_flow_line_per_message(log):
    first = chat.send("executor-1", "planner", "which API?", task_id="TASK-1")
    before = log.read_bytes()
    second = chat.send("planner", "executor-1", "the v2 one", type="answer", reply_to=first.id)
    assert (first.id, second.id) == (1, 2)
    [line] = _lines_after(log, before)
    assert line.startswith("- {id: 2, timestamp: '") and line.endswith("content: 'the v2 one', reply_to: 1}")
    assert TS.fullmatch(second.timestamp)
    assert _doc(log)["messages"] == [first.to_dict(), second.to_dict()]
    assert second.to_dict()["from"] == "planner" and second.type is chat.MessageType.ANSWER
    assert chat.read_messages() == [first, second]


def test_content_with_newlines_and_quotes_stays_one_line(log):
    text = "line one\nline 'two': {not: yaml} - # done"
    sent = chat.send("executor-1", "all", text, type=chat.MessageType.INFO)
    assert len(log.read_text().splitlines()) == 2  # `messages:` and the one entry
    assert chat.read_messages()[0].content == text == sent.content


@ON_BOTH_BACKENDS
def test_read_messages_filters(log, backend):
    chat.send("executor-1", "planner", "q1", task_id="T-1")
    chat.send("planner", "all", "note", type="info")
    chat.send("executor-2", "planner", "q2", task_id="T-2")
    chat.send("planner", "executor-2", "a2", task_id="T-2", type="answer")
    ids = lambda found: [m.id for m in found]  # noqa: E731
    assert ids(chat.read_messages(since_id=2)) == [3, 4]
    assert ids(chat.read_messages(agent="executor-2")) == [2, 3, 4]
    assert ids(chat.read_messages(task_id="T-2")) == [3, 4]
    assert ids(chat.read_messages(type="question")) == [1, 3]
    assert ids(chat.read_messages(limit=2)) == [3, 4]
    assert chat.read_messages(root=log.parent.parent / "nowhere") == []


@pytest.mark.parametrize("kwargs, error", [
    (dict(from_agent="../x", to_agent="planner", content="hi"), InvalidIdError),
    (dict(from_agent="executor-1", to_agent="a b", content="hi"), InvalidIdError),
    (dict(from_agent="executor-1", to_agent="planner", content="hi", task_id="T/1"), InvalidIdError),
    (dict(from_agent="executor-1", to_agent="planner", content="hi", type="gossip"), ValidationError),
    (dict(from_agent="executor-1", to_agent="planner", content="   "), ValidationError),
    (dict(from_agent="executor-1", to_agent="planner", content="hi", reply_to=-1), ValidationError),
])
def test_bad_values_are_refused_before_anything_is_written(log, kwargs, error):
    with pytest.raises(error):
        chat.send(**kwargs)
    assert not log.exists()
    assert "message" not in (log.parent / "events.yaml").read_text()


def test_each_message_is_logged_as_a_message_event(log):
    sent = chat.send("executor-1", "planner", "stuck", task_id="TASK-9", type="help")
    [event] = events.read_events(types="message")
    assert event["agent"] == "executor-1" and event["task_id"] == "TASK-9"
    assert (event["to"], event["message_id"], event["type_"]) == ("planner", sent.id, "help")


# ---------------------------------------------------------------------------- RALF layout


def test_ralf_file_is_converted_once_keeping_header_and_metadata(ralf):
    log = ralf / "chat-log.yaml"
    assert log.read_bytes() == RALF_CHAT.read_bytes()
    first = chat.send("planner", "executor", "start F-005", task_id="TASK-1769952151", type="task", root=ralf)
    inode, after_first = log.stat().st_ino, log.read_bytes()
    more = [chat.send("executor", "planner", f"progress {i}", root=ralf) for i in range(3)]
    assert log.stat().st_ino == inode  # never replaced again
    assert len(_lines_after(log, after_first)) == 3
    text = log.read_text()
    for comment in RALF_CHAT.read_text().splitlines()[:4]:
        assert comment in text.splitlines()
    doc = _doc(log)
    assert doc["metadata"] == {"last_message_id": 0, "last_updated": None}
    assert list(doc) == ["metadata", "messages"]
    assert [m.id for m in chat.read_messages(root=ralf)] == [1, 2, 3, 4]
    assert chat.read_messages(root=ralf) == [first] + more


BLOCK_RALF = """\
# Bidirectional Chat
# =====

messages:
  - id: 3
    timestamp: '2026-02-01T12:00:00Z'
    from: planner
    to: executor
    type: task
    content: |
      Do F-005.
      Then F-006.
    read: true
  # planner's second note
  - {id: 4, from: planner, to: all, type: info, content: hi}

# Written by the planner
metadata:
  last_message_id: 4
  last_updated: '2026-02-01T12:00:00Z'
owner: planner
"""


def test_indented_block_entries_are_kept_and_keys_after_messages_move_up(log):
    log.write_text(BLOCK_RALF)
    old = _doc(log)
    sent = chat.send("executor", "planner", "ok", root=log.parent)
    assert sent.id == 5
    doc = _doc(log)
    assert {k: v for k, v in doc.items() if k != "messages"} == {k: v for k, v in old.items() if k != "messages"}
    assert doc["messages"] == old["messages"] + [sent.to_dict()]
    assert chat.read_messages()[0].extra == {"read": True}
    text = log.read_text()
    assert "# Written by the planner\nmetadata:" in text and "# planner's second note" in text
    assert text.startswith("# Bidirectional Chat\n# =====\n")
    assert "- id: 3\n  timestamp: '2026-02-01T12:00:00Z'\n" in text  # block style, kept


def test_flow_list_and_metadata_floor_set_the_next_id(log):
    log.write_text("messages: [{id: 2, from: a, to: b, type: info, content: x}]\n"
                   "metadata: {last_message_id: 9}\n")
    assert chat.send("a", "b", "y").id == 10
    assert [m.id for m in chat.read_messages()] == [2, 10]
    assert _doc(log)["metadata"] == {"last_message_id": 9}


def test_next_id_comes_from_a_block_style_last_entry(log):
    log.write_text("messages:\n- {id: 1, from: a, to: b, type: info, content: x}\n"
                   "- id: 41\n  from: b\n  to: a\n  type: answer\n  content: |\n    - id: 99\n")
    before = log.read_bytes()
    assert chat.send("a", "b", "next").id == 42
    assert len(_lines_after(log, before)) == 1


def test_the_last_entry_decides_the_id_and_must_be_a_message(log):
    log.write_text("messages:\n- {id: 7, from: a, to: b, type: info, content: x}\n"
                   "- {id: 3, from: a, to: b, type: info, content: y}\n")
    assert chat.send("a", "b", "z").id == 4  # only the tail is read on append
    bad = b"messages:\n- {id: 7, from: a, to: b, type: info, content: x}\n- {from: a}\n"
    log.write_bytes(bad)
    with pytest.raises(ValidationError, match=r"chat-log.yaml:3: last message: 'id'"):
        chat.send("a", "b", "z")
    assert log.read_bytes() == bad


def test_torn_last_line_is_repaired_on_append(log):
    chat.send("a", "b", "one")
    good = log.read_bytes()
    with open(log, "ab") as handle:
        handle.write(b"- {id: 2, timestamp: '2026-11-2")  # a crash mid-write
    assert [m.id for m in chat.read_messages()] == [1]  # readers skip the torn line
    sent = chat.send("a", "b", "two")
    assert sent.id == 2
    assert log.read_bytes() == good + ("- " + fileio.dump_flow(sent.to_dict()) + "\n").encode()


# ---------------------------------------------------------------------------- fail closed


CORRUPT = {
    "unparseable": ("messages:\n- {id: 1, from: a, to: b, type: info, content: x}\n- {id: 2, from: @a}\n", 3),
    "not_a_list": ("# chat\nmessages: {id: 1}\nmetadata: {}\n", 2),
    "top_level_list": ("- {id: 1}\n", 1),
    "empty": ("", 1),
    "comments_only": ("# nothing here\n", 1),
    "no_messages_key": ("metadata: {last_message_id: 0}\n", 1),
    "bad_head": ("metadata: {a: 1}}\nmessages:\n", 1),
    "bad_message": ("metadata: {}\nmessages:\n- {id: 1, from: a, to: b, type: gossip, content: x}\n", 3),
    "bad_utf8": ("messages:\n- {id: 1, from: a, to: b, type: info, content: x}\n", 2),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_log_raises_with_file_and_line_and_stays_byte_for_byte(log, name):
    text, line = CORRUPT[name]
    data = text.encode()
    if name == "bad_utf8":
        data = data.replace(b"content: x", b"content: \xff")
    log.write_bytes(data)
    for action in (lambda: chat.send("a", "b", "hi"), chat.read_messages, lambda: chat.inbox("b")):
        with pytest.raises((ParseError, ValidationError)) as caught:
            action()
        assert caught.value.path == str(log) and caught.value.line == line, str(caught.value)
        assert f"chat-log.yaml:{line}: " in str(caught.value)
    assert log.read_bytes() == data
    assert list(log.parent.glob(".chat-log.yaml.tmp-*")) == []


def test_symlinked_log_is_refused(log, tmp_path):
    real = tmp_path / "elsewhere.yaml"
    real.write_text("messages:\n")
    log.symlink_to(real)
    with pytest.raises(ValidationError, match="symlink"):
        chat.send("a", "b", "hi")
    assert real.read_text() == "messages:\n"


# ---------------------------------------------------------------------------- inbox and read state


def test_inbox_broadcasts_and_read_state_never_touch_the_log(log, workspace):
    one = chat.send("planner", "executor-1", "do A")
    two = chat.send("planner", "all", "everyone: pause")
    chat.send("executor-2", "planner", "done B")
    assert chat.inbox("executor-1") == [one, two]
    assert chat.inbox("executor-2") == [two]
    assert chat.inbox("planner") == [chat.read_messages()[2]]  # its own broadcast is not news
    before = log.read_bytes()
    assert chat.mark_read("executor-1", [two.id]) == 1
    assert chat.inbox("executor-1") == [one]
    assert chat.inbox("executor-1", unread=False) == [one, two]
    assert chat.mark_read("executor-1", [one.id, two.id]) == 1
    assert chat.inbox("executor-1") == []
    assert chat.inbox("executor-2") == [two]  # read state is per agent
    assert log.read_bytes() == before
    state = fileio.load_yaml_file(workspace / ".swarm" / "chat-read" / "executor-1.yaml")
    assert state["read_through"] == 3 and state["read"] == []


@ON_BOTH_BACKENDS
def test_read_state_keeps_ids_above_the_first_unread_one(log, workspace, backend):
    sent = [chat.send("planner", "executor-1", f"m{i}") for i in range(4)]
    chat.mark_read("executor-1", [sent[0].id, sent[2].id])
    path = workspace / ".swarm" / "chat-read" / "executor-1.yaml"
    state = fileio.load_yaml_file(path)
    assert (state["read_through"], state["read"]) == (1, [3])
    assert chat.inbox("executor-1") == [sent[1], sent[3]]
    assert chat.mark_read("executor-1", [3]) == 0  # already read: nothing written
    with pytest.raises(NotFoundError):
        chat.mark_read("executor-1", [2, 99])
    assert fileio.load_yaml_file(path) == state


def test_corrupt_read_state_fails_closed(log, workspace):
    chat.send("planner", "executor-1", "hi")
    path = workspace / ".swarm" / "chat-read" / "executor-1.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("read_through: [\n")
    with pytest.raises(ParseError):
        chat.inbox("executor-1")
    with pytest.raises(ParseError):
        chat.mark_read("executor-1", [1])
    assert path.read_text() == "read_through: [\n"


@ON_BOTH_BACKENDS
def test_reply_and_thread(log, backend):
    question = chat.send("executor-1", "planner", "which DB?", task_id="T-1")
    chat.send("executor-2", "planner", "unrelated")
    answer = chat.reply(question.id, "planner", "sqlite")
    assert (answer.to, answer.task_id, answer.reply_to, answer.type) == ("executor-1", "T-1", 1, "answer")
    follow_up = chat.reply(answer, "executor-1", "thanks", type="info")
    assert follow_up.to == "planner"
    assert [m.id for m in chat.thread(follow_up.id)] == [1, 3, 4]
    assert [m.id for m in chat.thread(question.id)] == [1, 3, 4]
    with pytest.raises(NotFoundError):
        chat.reply(77, "planner", "?")


@ON_BOTH_BACKENDS
def test_help_round_trip_with_planner_and_operator(log, backend):
    planner = "swarm-planner"  # the planner's default id (not RALF's own "planner" key)
    asked = chat.ask_for_help("executor-1", "TASK-7", "tests hang on the lock; what now?")
    assert asked.type is chat.MessageType.HELP and asked.to == planner
    [pending] = chat.inbox(planner)
    assert pending == asked
    assert chat.answers_for("executor-1", "TASK-7") == []
    answer = chat.reply(pending, planner, "shrink the lock timeout")
    chat.mark_read(planner, [pending.id])
    operator = chat.send("operator", "executor-1", "also see DESIGN.md", task_id="TASK-7", type="answer")
    chat.send(planner, "executor-1", "answer about another task", task_id="TASK-8", type="answer")
    assert chat.answers_for("executor-1", "TASK-7") == [answer, operator]
    assert chat.answers_for("executor-2", "TASK-7") == []
    assert chat.inbox(planner) == []
    assert [e["type_"] for e in events.read_events(types="message")] == ["help", "answer", "answer", "answer"]


# ---------------------------------------------------------------------------- many writers


def _send_many(root: str, agent: str, count: int) -> list[int]:
    return [chat.send(agent, "planner", f"{agent} #{i}", root=root).id for i in range(count)]


@pytest.mark.parametrize("kind", BACKENDS)
def test_eight_processes_lose_no_message(ralf, kind, request):
    setting = "files" if kind == "files" else request.getfixturevalue("redis_server").url
    backend_config(ralf, setting, "events: {fsync: false}\n")  # speed; locking is what is tested
    results = run_together(_send_many, [(str(ralf), f"executor-{n}", 50) for n in range(8)])
    messages = chat.read_messages(root=ralf)
    assert len(messages) == 400 and [m.id for m in messages] == list(range(1, 401))
    assert sorted(i for ids in results for i in ids) == list(range(1, 401))
    for ids in results:
        assert ids == sorted(ids)  # each writer sees its ids increase
    for n in range(8):
        mine = [m.content for m in messages if m.from_agent == f"executor-{n}"]
        assert mine == [f"executor-{n} #{i}" for i in range(50)]
    chat_file = _doc(ralf / "chat-log.yaml")
    assert chat_file["metadata"]["last_message_id"] == 0  # the file is not rewritten for an id (nor used, on Redis)
    assert (chat_file["messages"] == []) == (kind == "redis")
    assert len(events.read_events(root=ralf, types="message")) == 400


# ---------------------------------------------------------------------------- CLI


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=30, env={**os.environ, "SWARM_ROOT": ""})


def test_cli_round_trip(ralf, tmp_path):
    root = ["--root", str(ralf)]
    sent = _cli(*root, "--json", "send", "executor-1", "planner", "blocked on X", "--task", "TASK-1",
                "--type", "help", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["id"] == 1
    out = _cli("inbox", "planner", "--mark-read", *root)
    assert out.returncode == 0 and "blocked on X" in out.stdout and "executor-1 -> planner" in out.stdout
    assert "blocked on X" not in _cli("inbox", "planner", *root).stdout
    assert "blocked on X" in _cli("inbox", "planner", "--all", *root).stdout
    out = _cli("reply", "1", "planner", "use Y", "--json", *root)
    assert out.returncode == 0 and json.loads(out.stdout)["reply_to"] == 1
    assert _cli("read", "executor-1", "2", *root).stdout.strip() == "marked 1 read"
    logged = json.loads(_cli("log", "-n", "1", "--json", *root).stdout)
    assert [m["content"] for m in logged] == ["use Y"]
    assert [m.id for m in chat.answers_for("executor-1", "TASK-1", root=ralf)] == [2]


def test_cli_help_from_any_directory(tmp_path):
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and "inbox" in out.stdout


@pytest.mark.parametrize("args", [("log",), ("send", "a", "b", "hi"), ("inbox", "b")])
def test_cli_corrupt_log_exits_2_with_one_line(tmp_path, args):
    log = tmp_path / "chat-log.yaml"
    log.write_text("messages:\n- {id: 1, from: @a}\n")
    out = _cli("--root", str(tmp_path), *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {log}:2: ")
    assert log.read_text() == "messages:\n- {id: 1, from: @a}\n"


def test_cli_bad_input_exits_2(tmp_path):
    (tmp_path / "events.yaml").write_text("events:\n")
    out = _cli("--root", str(tmp_path), "send", "../a", "b", "hi")
    assert out.returncode == 2 and out.stderr.startswith("error: invalid agent id")
    out = _cli("--root", str(tmp_path), "read", "a", "5")
    assert out.returncode == 2 and "no message with id 5" in out.stderr
