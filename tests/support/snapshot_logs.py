"""Journals and snapshots built without a cluster: the same bytes a node writes.

A journal entry here is what pysyncobj appends for `RaftNode.apply_entry(payload)`: the
REGULAR type byte and the pickle (pysyncobj's own pickler) of (method id 0, (payload,)).
Index 1 is the no-op pysyncobj puts at the head of a new log.
"""

from __future__ import annotations

from pysyncobj import pickle as pysyncobj_pickle

from evx.core import Engine
from evx.gateway.exchange import ExchangeMachine, encode_entry
from evx.snapshots.writer import snapshot_blob

from .logs import random_log

Entry = tuple[bytes, int, int]
NO_OP = b"\x01"
CLUSTER = ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")


def pysyncobj_command(payload: bytes) -> bytes:
    return b"\x00" + pysyncobj_pickle.dumps((0, (payload,)))


def journal_entries(seed: int, batches: int, term: int = 1) -> list[Entry]:
    entries: list[Entry] = [(NO_OP, 1, term)]
    for number, batch in enumerate(random_log(seed, batches=batches), 2):
        payload = encode_entry(1, number, batch.time_ms, list(batch.commands))
        entries.append((pysyncobj_command(payload), number, term))
    return entries


def apply_through(machine: ExchangeMachine, entries: list[Entry], last: int) -> None:
    """Apply the entries after the machine's index, up to index `last`, as a node does."""
    from evx.replication.raft import entry_payload

    for command, index, _ in entries:
        if machine.applied_index < index <= last:
            payload = entry_payload(command)
            if payload is not None:
                machine.apply(index, payload)


def snapshot_at(engine: Engine, entries: list[Entry], index: int) -> bytes:
    """The snapshot a node writes once entry `index` is applied (engine must be there)."""
    by_index = {entry[1]: entry for entry in entries}
    return snapshot_blob(engine, by_index[index - 1], by_index[index], CLUSTER, CLUSTER[0], 0)


def final_hash(entries: list[Entry]) -> bytes:
    machine = ExchangeMachine()
    apply_through(machine, entries, entries[-1][1])
    return machine.state_hash
