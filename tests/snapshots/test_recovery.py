"""A node's start: the newest snapshot that passes every check plus the log after it; a
damaged one is never loaded, the node falls back to an older one or to a peer, and the
log says so."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from evx.gateway.exchange import ExchangeMachine
from evx.replication.journal import DurableJournal
from evx.snapshots import format as snapshot_format
from evx.snapshots.recovery import recover
from evx.snapshots.store import SnapshotStore
from support.snapshot_logs import apply_through, final_hash, journal_entries, snapshot_at

SEED = 20261125
OLD, NEW = 20, 45


def _damage(blob: bytes, how: str) -> bytes:
    if how == "flipped":
        return blob[:-200] + bytes([blob[-200] ^ 0x10]) + blob[-199:]
    if how == "truncated":
        return blob[: len(blob) // 2]
    assert how == "version"
    body = bytearray(blob[: -snapshot_format.CHECKSUM_BYTES])
    struct.pack_into("<I", body, 8, snapshot_format.FORMAT_VERSION + 9)
    return snapshot_format.seal(bytes(body))


class Node:
    """A node's data folder, as a node that took snapshots at OLD and NEW left it."""

    def __init__(self, folder: Path, journal_from: int) -> None:
        self.entries = journal_entries(SEED, 70)
        self.store_path = folder / "snapshots.lmdb"
        self.transfer_path = folder / "snapshot.evx"
        machine = ExchangeMachine()
        self.blobs = {}
        with SnapshotStore(self.store_path) as store:
            for index in (OLD, NEW):
                apply_through(machine, self.entries, index)
                self.blobs[index] = snapshot_at(machine.engine, self.entries, index)
                store.put(index, self.blobs[index])
        self.transfer_path.write_bytes(self.blobs[NEW])
        self.journal = DurableJournal(str(folder / "raft.journal"))
        for entry in self.entries[journal_from - 1 :]:
            self.journal.add(*entry)
        self.journal.sync()

    def damage(self, index: int, how: str) -> None:
        with SnapshotStore(self.store_path) as store:
            store.put(index, _damage(self.blobs[index], how))
        if index == NEW:
            self.transfer_path.write_bytes(_damage(self.blobs[index], how))

    def finish(self, recovered) -> bytes:
        """Apply what the journal holds after the loaded state; the final hash."""
        index = recovered.header.index if recovered.header else 0
        machine = ExchangeMachine(recovered.engine, index)
        apply_through(machine, list(self.journal), self.journal[-1][1])
        return machine.state_hash

    def close(self) -> None:
        self.journal._destroy()


@pytest.fixture
def make_node(tmp_path: Path):
    nodes = []

    def make(journal_from: int) -> Node:
        node = Node(tmp_path, journal_from)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


def test_the_newest_snapshot_and_the_log_after_it(make_node) -> None:
    node = make_node(journal_from=NEW - 1)
    recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.header is not None and recovered.header.index == NEW
    assert recovered.refused == [] and recovered.journal_dropped == 0
    assert node.journal[0][1] == NEW - 1
    assert node.finish(recovered) == final_hash(node.entries)


@pytest.mark.parametrize("how", ["flipped", "truncated", "version"])
def test_a_damaged_newest_snapshot_falls_back_to_an_older_one(make_node, how: str) -> None:
    node = make_node(journal_from=1)  # the journal still reaches back past OLD
    node.damage(NEW, how)
    with capture_logs() as logs:
        recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.header is not None and recovered.header.index == OLD
    refused = [entry for entry in logs if entry["event"] == "snapshot_refused"]
    assert {entry["index"] for entry in refused} == {NEW}, refused
    assert refused[0]["check"] in ("checksum", "length", "format")
    assert node.journal[0][1] == OLD - 1, "the journal now continues the older snapshot"
    assert node.finish(recovered) == final_hash(node.entries)
    assert snapshot_format.read_header(node.transfer_path.read_bytes()).index == OLD


def test_an_older_snapshot_the_journal_cannot_continue_waits_for_the_leader(make_node) -> None:
    node = make_node(journal_from=NEW - 1)  # compacted at NEW: nothing between OLD and NEW
    node.damage(NEW, "flipped")
    with capture_logs() as logs:
        recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.header is not None and recovered.header.index == OLD
    assert recovered.journal_dropped > 0
    assert any(entry["event"] == "journal_entries_dropped" for entry in logs)
    assert [entry[1] for entry in node.journal] == [OLD - 1, OLD]


def test_no_usable_snapshot_and_a_compacted_journal_starts_empty(make_node) -> None:
    node = make_node(journal_from=NEW - 1)
    node.damage(NEW, "truncated")
    node.damage(OLD, "version")
    with capture_logs() as logs:
        recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.engine is None and recovered.header is None
    assert len(node.journal) == 0
    assert any(entry["event"] == "state_from_peer" for entry in logs)
    assert not node.transfer_path.exists()


def test_no_usable_snapshot_and_a_whole_journal_replays_from_empty(make_node) -> None:
    node = make_node(journal_from=1)
    node.damage(NEW, "flipped")
    node.damage(OLD, "flipped")
    recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.engine is None
    assert node.journal[0][1] == 1
    assert node.finish(recovered) == final_hash(node.entries)


def test_the_transfer_file_alone_is_enough(make_node) -> None:
    node = make_node(journal_from=NEW - 1)
    node.store_path.unlink()
    Path(str(node.store_path) + "-lock").unlink()
    recovered = recover(node.store_path, node.transfer_path, node.journal)
    assert recovered.header is not None and recovered.header.index == NEW
    assert node.finish(recovered) == final_hash(node.entries)
