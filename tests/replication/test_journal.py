"""The durable journal: what was synced survives, a torn tail is dropped, damage is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evx.replication.journal import HEADER, DurableJournal, JournalCorruptError


def _fill(journal: DurableJournal, count: int, term: int = 1, start: int = 1) -> None:
    for index in range(start, start + count):
        journal.add(f"command {index}".encode(), index, term)


def test_entries_survive_a_reopen_after_sync(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 5)
    assert journal.dirty
    assert journal.sync() is True
    assert journal.sync() is False  # nothing new: no second flush
    reopened = DurableJournal(path)
    assert list(reopened) == list(journal)
    assert reopened[-1] == (b"command 5", 5, 1)
    assert reopened[1:3] == [(b"command 2", 2, 1), (b"command 3", 3, 1)]


def test_truncation_from_a_position_is_on_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 6)
    journal.deleteEntriesFrom(3)
    journal.add(b"new 4", 4, 2)
    journal.sync()
    assert [entry[1:] for entry in DurableJournal(path)] == [(1, 1), (2, 1), (3, 1), (4, 2)]


def test_compaction_keeps_the_tail_and_renames_atomically(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 10)
    journal.sync()
    journal.deleteEntriesTo(7)
    assert [entry[1] for entry in journal] == [8, 9, 10]
    journal.add(b"eleven", 11, 1)
    journal.sync()
    assert [entry[1] for entry in DurableJournal(path)] == [8, 9, 10, 11]
    assert not os.path.exists(path + ".compact")


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_torn_last_record_is_dropped_and_the_file_truncated(tmp_path: Path, cut: int) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 4)
    journal.sync()
    size = os.path.getsize(path)
    last_record = journal._offsets[-1]
    with open(path, "r+b") as raw:
        raw.truncate(last_record + min(cut, size - last_record - 1))
    reopened = DurableJournal(path)
    assert [entry[1] for entry in reopened] == [1, 2, 3]
    assert reopened.statistics().truncated_tail_records == 1
    assert os.path.getsize(path) == last_record
    reopened.add(b"again 4", 4, 1)
    reopened.sync()
    assert DurableJournal(path)[-1] == (b"again 4", 4, 1)


def test_a_flipped_bit_in_the_last_record_is_a_torn_write(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 3)
    journal.sync()
    with open(path, "r+b") as raw:
        raw.seek(-2, os.SEEK_END)
        byte = raw.read(1)
        raw.seek(-2, os.SEEK_END)
        raw.write(bytes([byte[0] ^ 0x10]))
    assert [entry[1] for entry in DurableJournal(path)] == [1, 2]


def test_damage_before_good_records_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    _fill(journal, 3)
    journal.sync()
    second = journal._offsets[1]
    with open(path, "r+b") as raw:
        raw.seek(second + 8 + 16)  # inside the second record's command
        raw.write(b"X")
    with pytest.raises(JournalCorruptError, match="before good ones"):
        DurableJournal(path)


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"PYSYNCOBJ" + bytes(HEADER.size))
    with pytest.raises(JournalCorruptError, match="not an evx journal"):
        DurableJournal(str(path))


def test_term_and_vote_are_durable_at_once_and_commit_index_lazily(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    journal = DurableJournal(path)
    journal.setCurrentTerm(7, "127.0.0.1:7001")
    journal.setRaftCommitIndex(42)
    early = DurableJournal(path)
    assert (early.getCurrentTerm(), early.getVotedForNodeId()) == (7, "127.0.0.1:7001")
    assert early.getRaftCommitIndex() == 1  # not saved yet: it is only a hint
    journal.onOneSecondTimer()
    assert DurableJournal(path).getRaftCommitIndex() == 42


def test_a_failed_flush_is_reported_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[str] = []
    journal = DurableJournal(str(tmp_path / "raft.journal"), on_io_error=reported.append)
    journal.add(b"entry", 1, 1)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"):
        journal.sync()
    assert reported and "flushing the journal" in reported[0]
