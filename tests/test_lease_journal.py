"""lease_journal: torn tails, compaction, migration from lease files, kill -9 while appending and compacting."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import random
import signal
from dataclasses import replace
from pathlib import Path

import pytest

import claims
from swarmfile import config
from swarmfile import lease_journal
from swarmfile import task_store
from swarmfile.errors import ParseError, ValidationError
from swarmfile.lease_journal import JournalLeaseTable
from swarmfile.lease_store import FileLeaseTable, Lease, LeaseState
from procs import run_together


def journal_ws(root: Path) -> None:
    (root / "swarm.yaml").write_text("backend: journal\n")
    config._cache.clear()


def fresh_table(root: Path) -> JournalLeaseTable:
    """A table as another process would have it: its own index, nothing cached."""
    return JournalLeaseTable(config.load_config(root=root))


def lease(task_id: str, token: int) -> Lease:
    return Lease(task_id=task_id, agent_id="executor-1", token=token, acquired_at="2026-11-30T10:00:00Z",
                 expires_at="2026-11-30T10:05:00Z")


def put(table: JournalLeaseTable, task_id: str, token: int) -> None:
    with table.lock(task_id):
        table.write(lease(task_id, token))


def test_a_claim_is_one_line_a_person_can_read(workspace):
    journal_ws(workspace)
    task_store.new_task_file("T-1", "Task one", root=workspace, priority="high", created="2026-01-01T00:00:00Z")
    claims.claim_task("T-1", "executor-1")
    journal = workspace / ".swarm" / "leases" / "journal-0.jsonl"
    [line] = journal.read_text().splitlines()
    record = json.loads(line)
    assert (record["task_id"], record["agent_id"], record["token"], record["state"]) == ("T-1", "executor-1", 1, "held")
    assert not (workspace / ".swarm" / "claims").exists()


def test_a_torn_last_line_is_never_read_and_is_cut_before_the_next_append(workspace):
    journal_ws(workspace)
    table = fresh_table(workspace)
    put(table, "T-1", 1)
    journal = Path(table.where("T-1"))
    with open(journal, "ab") as f:
        f.write(b'{"task_id":"T-1","agent_id":"executor-1","token":2,"acq')  # a crash mid-append
    other = fresh_table(workspace)
    assert other.read("T-1").token == 1
    put(other, "T-2", 1)
    assert journal.read_bytes().count(b"\n") == 2 and b'"acq\n' not in journal.read_bytes()
    assert [x.task_id for x in fresh_table(workspace).list()] == ["T-1", "T-2"]


def test_a_bad_whole_line_fails_closed_naming_the_journal_and_line(workspace):
    journal_ws(workspace)
    table = fresh_table(workspace)
    put(table, "T-1", 1)
    journal = Path(table.where("T-1"))
    with open(journal, "ab") as f:
        f.write(b"this is not json\n")
    before = journal.read_bytes()
    with pytest.raises(ParseError) as info:
        fresh_table(workspace).read("T-1")
    assert (info.value.path, info.value.line) == (str(journal), 2) or (Path(info.value.path), info.value.line) == (journal, 2)
    with pytest.raises(ParseError):
        put(fresh_table(workspace), "T-9", 1)  # never appended past a line nobody can read
    assert journal.read_bytes() == before


def test_compaction_keeps_every_lease_and_other_processes_follow_it(workspace, monkeypatch):
    journal_ws(workspace)
    monkeypatch.setattr(lease_journal, "_COMPACT_BYTES", 2000)
    writer, reader = fresh_table(workspace), fresh_table(workspace)
    for token in range(1, 41):
        for task_id in ("T-1", "T-2", "T-3"):
            put(writer, task_id, token)
        assert [x.token for x in reader.list()] == [token] * 3
    header = json.loads((workspace / ".swarm" / "leases" / "snapshot.jsonl").read_text().splitlines()[0])
    assert header["generation"] > 1 and header["leases"] == 3
    names = sorted(os.listdir(workspace / ".swarm" / "leases"))
    assert names == [f"journal-{header['generation']}.jsonl", "snapshot.jsonl"] or names == ["snapshot.jsonl"]
    assert [x.token for x in fresh_table(workspace).list()] == [40, 40, 40]


def old_leases(root: Path, tokens: dict[str, int]) -> None:
    """Lease files as an earlier version left them in .swarm/claims/ (the last one released)."""
    old = FileLeaseTable(config.load_config(root=root))
    for task_id, token in tokens.items():
        with old.lock(task_id):
            old.write(lease(task_id, token))


def test_leases_in_files_migrate_on_first_use_and_tokens_go_on(workspace):
    task_store.new_task_file("T-1", "Task one", root=workspace, priority="high", created="2026-01-01T00:00:00Z")
    old_leases(workspace, {"T-1": 4})
    old = FileLeaseTable(config.load_config(root=workspace))
    with old.lock("T-1"):
        old.write(replace(old.read("T-1"), state=LeaseState.RELEASED))
    second = claims.claim_task("T-1", "executor-2")  # the default backend: the journal
    assert second.token == 5
    assert not (workspace / ".swarm" / "claims").exists()
    assert (workspace / ".swarm" / "claims.migrated" / "T-1.yaml").is_file()
    assert fresh_table(workspace).read("T-1") == second


def test_a_migration_cut_short_after_its_snapshot_is_finished_by_the_next_use(workspace):
    old_leases(workspace, {"T-1": 3, "T-2": 7})
    table = fresh_table(workspace)
    table.read("T-1")
    # The state a crash between the two steps leaves: the snapshot written, the folder not yet renamed.
    os.rename(workspace / ".swarm" / "claims.migrated", workspace / ".swarm" / "claims")
    assert [(x.task_id, x.token) for x in fresh_table(workspace).list()] == [("T-1", 3), ("T-2", 7)]
    assert not (workspace / ".swarm" / "claims").exists()


def test_lease_files_beside_a_journal_in_use_fail_closed(workspace):
    put(fresh_table(workspace), "T-1", 9)  # the journal is in use
    old_leases(workspace, {"T-1": 2})  # e.g. a process of an older version still running
    before = (workspace / ".swarm" / "claims" / "T-1.yaml").read_bytes()
    for action in (lambda t: t.read("T-1"), lambda t: put(t, "T-2", 1)):
        with pytest.raises(ValidationError, match="turned up beside the lease journal"):
            action(fresh_table(workspace))
    assert (workspace / ".swarm" / "claims" / "T-1.yaml").read_bytes() == before


def _first_use(root: str) -> tuple:
    """Bump the token of every migrated task once, the first use of the journal in this process."""
    os.environ["SWARM_ROOT"] = root
    config._cache.clear()
    table = JournalLeaseTable(config.load_config(root=Path(root)))
    bumped = []
    for task_id in ("T-1", "T-2", "T-3"):
        with table.lock(task_id):
            current = table.read(task_id)
            table.write(lease(task_id, current.token + 1))
            bumped.append(current.token + 1)
    return tuple(bumped)


def test_eight_processes_racing_the_first_use_migrate_once_and_lose_no_token(workspace):
    old_leases(workspace, {"T-1": 10, "T-2": 20, "T-3": 30})
    run_together(_first_use, [(str(workspace),)] * 8, timeout=300)
    table = fresh_table(workspace)
    assert [(x.task_id, x.token) for x in table.list()] == [("T-1", 18), ("T-2", 28), ("T-3", 38)]
    header = json.loads((workspace / ".swarm" / "leases" / "snapshot.jsonl").read_text().splitlines()[0])
    assert header["generation"] == 1 and header["leases"] == 3
    assert sorted(os.listdir(workspace / ".swarm" / "claims.migrated")) == ["T-1.yaml", "T-2.yaml", "T-3.yaml"]
    assert not (workspace / ".swarm" / "claims").exists()


def test_a_lease_file_that_does_not_parse_stops_the_migration_and_changes_nothing(workspace):
    old = FileLeaseTable(config.load_config(root=workspace))
    put(old, "T-1", 3)
    bad = workspace / ".swarm" / "claims" / "T-2.yaml"
    bad.write_text("token: [1,\n")
    journal_ws(workspace)
    with pytest.raises(ParseError):
        fresh_table(workspace).read("T-1")
    assert bad.read_text() == "token: [1,\n" and not (workspace / ".swarm" / "leases" / "snapshot.jsonl").exists()


# ---------------------------------------------------------------------------- kill -9


def _writer(root: str, acks: str, compact_bytes: int, start) -> None:
    """Bump T-1's token forever (compacting often), noting each write after it returned."""
    lease_journal._COMPACT_BYTES = compact_bytes
    journal_ws(Path(root))
    table = fresh_table(Path(root))
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    start.set()
    token = table.read("T-1").token if table.read("T-1") else 0
    while True:
        token += 1
        with table.lock("T-1"):
            table.write(lease("T-1", token))
        os.write(fd, f"{token}\n".encode())


@pytest.mark.parametrize("compact_bytes", [1 << 30, 600], ids=["appending", "compacting"])
def test_kill_nine_while_writing_loses_no_acknowledged_write(workspace, tmp_path, compact_bytes):
    """A writer killed at random moments, 15 times: the table always reads, shows the last
    acknowledged token or the one after it, and the next writer goes on from there."""
    journal_ws(workspace)
    rng = random.Random(20261130)
    acks = tmp_path / "acks"
    ctx = mp.get_context("spawn")
    for _ in range(15):
        start = ctx.Event()
        child = ctx.Process(target=_writer, args=(str(workspace), str(acks), compact_bytes, start))
        child.start()
        try:
            assert start.wait(timeout=60)
            seen = acks.read_text().count("\n") if acks.exists() else 0
            while (acks.read_text().count("\n") if acks.exists() else 0) < seen + rng.randint(1, 30):
                child.join(timeout=0.002)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.join(timeout=30)
        acked = [int(x) for x in acks.read_text().split()]
        stored = fresh_table(workspace).read("T-1")
        assert stored.token in (acked[-1], acked[-1] + 1), (stored.token, acked[-1])
        if stored.token == acked[-1] + 1:
            with open(acks, "a") as f:  # it was written before the kill: the next writer goes on from it
                f.write(f"{stored.token}\n")
    leftovers = [n for n in os.listdir(workspace / ".swarm" / "leases") if n.startswith(".")]
    assert all(n.endswith(".tmp") or "tmp" in n for n in leftovers)  # only temp files of a killed compaction


# ---------------------------------------------------------------------------- index staleness


def _write_in_child(root: str, task_id: str, token: int, compact: bool) -> int:
    table = JournalLeaseTable(config.load_config(root=Path(root)))
    put(table, task_id, token)
    if compact:
        table.compact()
    return token


def test_an_index_follows_appends_and_compactions_of_other_processes(workspace):
    journal_ws(workspace)
    mine = fresh_table(workspace)
    put(mine, "T-1", 1)
    assert mine.read("T-1").token == 1
    run_together(_write_in_child, [(str(workspace), "T-1", 2, False)])
    assert mine.read("T-1").token == 2  # read the line appended since it last looked
    run_together(_write_in_child, [(str(workspace), "T-2", 1, True)])
    assert [(x.task_id, x.token) for x in mine.list()] == [("T-1", 2), ("T-2", 1)]  # reloaded the new snapshot
    run_together(_write_in_child, [(str(workspace), "T-1", 3, False)])
    assert mine.read("T-1").token == 3  # and reads the new generation's journal
    put(mine, "T-3", 1)
    assert [(x.task_id, x.token) for x in fresh_table(workspace).list()] == [("T-1", 3), ("T-2", 1), ("T-3", 1)]


def test_a_line_deleted_by_hand_is_seen_by_an_index_that_read_it(workspace):
    """The fix a bad line's error asks for: a person deletes it (the editor replaces the file)."""
    journal_ws(workspace)
    mine = fresh_table(workspace)
    put(mine, "T-1", 1)
    journal = Path(mine.where("T-1"))
    with open(journal, "a") as f:
        f.write('{"task_id": "T-1", "token": [2,\n')
    with pytest.raises(ParseError, match="does not parse"):
        mine.read("T-1")
    assert mine.read("T-2") is None  # only T-1's claim is unknown: the bad line names it
    kept = journal.read_text().splitlines()[:1]
    edited = journal.with_name("edited")
    edited.write_text(kept[0] + "\n")
    os.replace(edited, journal)
    assert mine.read("T-1").token == 1
    put(mine, "T-1", 2)
    assert fresh_table(workspace).read("T-1").token == 2


# ---------------------------------------------------------------------------- compaction under load


def _claim_and_compact(root: str, index: int, rounds: int) -> int:
    """Bump the token of one of four tasks ``rounds`` times, compacting now and then, as claims would."""
    lease_journal._COMPACT_BYTES = 1500
    table = JournalLeaseTable(config.load_config(root=Path(root)))
    task_id = f"T-{index % 4}"
    for n in range(rounds):
        with table.lock(task_id, timeout=60):
            current = table.read(task_id)
            table.write(lease(task_id, current.token + 1))
        if n % 7 == index % 7:
            table.compact()
    return rounds


def test_compactions_racing_the_claims_of_eight_processes_lose_no_update(workspace):
    journal_ws(workspace)
    table = fresh_table(workspace)
    for n in range(4):
        put(table, f"T-{n}", 0)
    done = run_together(_claim_and_compact, [(str(workspace), i, 40) for i in range(8)], timeout=300)
    assert sum(done) == 320
    assert [(x.task_id, x.token) for x in fresh_table(workspace).list()] == [(f"T-{n}", 80) for n in range(4)]
    header = json.loads((workspace / ".swarm" / "leases" / "snapshot.jsonl").read_text().splitlines()[0])
    assert header["generation"] > 8  # every process compacted, some many times
    assert sorted(os.listdir(workspace / ".swarm" / "leases")) in (
        ["snapshot.jsonl"], [f"journal-{header['generation']}.jsonl", "snapshot.jsonl"])


# ---------------------------------------------------------------------------- the fsync after the lock


def test_a_failed_fsync_takes_its_record_back_unless_another_record_follows_it(workspace, monkeypatch):
    """The fsync runs after the journal lock is let go (other writers append meanwhile and share
    the flush): a record whose fsync fails is taken back while it is the last; once another
    follows it, others may have acted on it, so it stays, and the writer hears of the failure."""
    journal_ws(workspace)
    table, other = fresh_table(workspace), fresh_table(workspace)
    put(table, "T-1", 1)
    journal = Path(table.where("T-1"))
    before = journal.read_bytes()
    real_fsync = os.fsync

    def failing(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        put(table, "T-1", 2)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert journal.read_bytes() == before
    assert table.read("T-1").token == 1 and other.read("T-1").token == 1

    def followed(fd):
        monkeypatch.setattr(os, "fsync", real_fsync)
        put(other, "T-2", 1)  # takes the journal lock: it is free while the first fsync runs
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", followed)
    with pytest.raises(OSError):
        put(table, "T-1", 3)
    assert [(x.task_id, x.token) for x in fresh_table(workspace).list()] == [("T-1", 3), ("T-2", 1)]
    assert [(x.task_id, x.token) for x in table.list()] == [("T-1", 3), ("T-2", 1)]


def test_a_process_working_in_many_workspaces_keeps_few_journals_open(tmp_path):
    """Each table reads its journal through a descriptor it keeps; a process that touches many
    workspaces (a test run, an MCP server) must not keep one per workspace until it runs out."""
    def journals_open() -> int:
        return sum("/.swarm/leases/journal-" in os.readlink(f"/proc/self/fd/{fd}")
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    before = journals_open()
    tables = []
    for i in range(3 * lease_journal._KEPT_OPEN):
        root = tmp_path / f"ws-{i}"
        root.mkdir()
        journal_ws(root)
        table = fresh_table(root)
        put(table, "T-1", 1)
        assert table.read("T-1").token == 1  # read through the kept descriptor
        tables.append(table)
    assert journals_open() - before <= lease_journal._KEPT_OPEN
    for table in tables:  # one closed to keep the bound reopens its journal when it looks again
        put(table, "T-1", 2)
        assert fresh_table(table.cfg.root).read("T-1").token == 2 and table.read("T-1").token == 2
    assert journals_open() - before <= lease_journal._KEPT_OPEN


def test_held_view_judges_each_record_as_the_decoded_lease_does(workspace):
    """held_view reads an undecoded record's few fields without making a Lease: it must say "leased"
    exactly when the decoded lease binds (held, not expired, holder alive), for every kind of record."""
    journal_ws(workspace)
    me = claims.my_identity()
    live = dict(pid=me["pid"], host=me["host"], proc_start=me["proc_start"])
    table = fresh_table(workspace)
    records = {
        "T-LIVE": replace(lease("T-LIVE", 1), expires_at="2999-01-01T00:00:00.000Z", **live),
        "T-OFFSET": replace(lease("T-OFFSET", 1), expires_at="2999-01-01T00:00:00+00:00", **live),
        "T-PAST": replace(lease("T-PAST", 1), **live),
        "T-ENDED": replace(lease("T-ENDED", 1), expires_at="2999-01-01T00:00:00.000Z", state=LeaseState.COMPLETED,
                           **live),
        "T-DEAD": replace(lease("T-DEAD", 1), expires_at="2999-01-01T00:00:00.000Z", pid=2 ** 22 + 7,
                          host=me["host"], proc_start=1),
    }
    for record in records.values():
        with table.lock(record.task_id):
            table.write(record)
    reader = fresh_table(workspace)
    now = reader.now()
    view = reader.held_view(now)
    for task_id in records:
        assert view(task_id) is (reader.read(task_id).free_reason(now) is None), task_id
    assert [t for t in records if view(t)] == ["T-LIVE", "T-OFFSET"]
    assert view("T-NEVER") is False


def test_held_view_decodes_a_record_whose_fields_are_not_plainly_whole(workspace):
    """A record with a field of the wrong type is decoded in full: it is broken, read as not leased, and
    the table's next view gives up (None) so each claim reads the table and meets the error."""
    journal_ws(workspace)
    table = fresh_table(workspace)
    put(table, "T-1", 1)
    journal = workspace / ".swarm" / "leases" / "journal-0.jsonl"
    record = json.loads(journal.read_text())
    record.update(task_id="T-2", token="two", expires_at="2999-01-01T00:00:00.000Z")
    odd_state = dict(record, task_id="T-3", token=1, state=["held"])
    with journal.open("a") as handle:
        for line in (record, odd_state):  # as written: decoded only when asked
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
    reader = fresh_table(workspace)
    view = reader.held_view(reader.now())
    assert view("T-2") is False and view("T-3") is False
    assert reader.held_view(reader.now()) is None
    with pytest.raises(ParseError):
        reader.read("T-2")


def move_aside_and_put_back(journal: Path) -> Path:
    """What a person may do: rename the journal to a backup (still linked) and copy it back; the backup."""
    backup = journal.with_name("journal-backup.jsonl")
    os.rename(journal, backup)
    journal.write_bytes(backup.read_bytes())  # a copy: a new file under the journal's name
    return backup


def test_a_journal_moved_aside_and_put_back_by_hand_gets_the_next_record(workspace):
    """A process appends through the descriptor it keeps of the journal: it must append to the file the
    journal's name holds now, not to the one a person moved aside (still linked, as a backup) and copied back."""
    journal_ws(workspace)
    table = fresh_table(workspace)
    put(table, "T-1", 1)
    backup = move_aside_and_put_back(Path(table.where("T-1")))
    backup_bytes = backup.read_bytes()
    put(table, "T-2", 1)
    assert backup.read_bytes() == backup_bytes
    assert [x.task_id for x in fresh_table(workspace).list()] == ["T-1", "T-2"]


def test_a_reader_sees_records_appended_to_a_journal_put_back_by_hand(workspace):
    """A process reads through the descriptor it keeps: after a person moved the journal aside (still linked)
    and put a copy back, it must read the file the name holds, where the others append."""
    journal_ws(workspace)
    reader = fresh_table(workspace)
    put(reader, "T-1", 1)
    move_aside_and_put_back(Path(reader.where("T-1")))
    put(fresh_table(workspace), "T-2", 1)
    assert reader.read("T-2") is not None and reader.read("T-2").token == 1
