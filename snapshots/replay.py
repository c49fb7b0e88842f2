"""`evx replay`: a node's log applied again, offline, with the state hash at each index.

Strategy: the same code a node runs, fed from files: the journal read without changing
it (replication/journal.py `read_entries`), each entry's payload taken out of pysyncobj's
framing (replication/raft.py `entry_payload`) and applied by an ExchangeMachine, the
starting state a snapshot loaded and checked exactly as a node loads it. Since every node
applies the same log to the same start, the hash printed for an index must equal the
`state_hash` a live node reports at that `applied_index` (evx admin status); a difference
is a divergence, and the first index where two replays differ is where it began.

The start is the newest snapshot of the node's store that the journal continues (its
next entry is in the journal), or the snapshot asked for, or the empty engine, which
needs a journal that was never compacted. The journal's last entries may not have been
committed yet when the files were copied; a live node applies only committed ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evx.gateway.exchange import ExchangeMachine
from evx.replication.journal import read_entries
from evx.replication.raft import entry_payload

from .format import SnapshotError, SnapshotHeader
from .inspect import STORE_NAME
from .store import SnapshotStore
from .verify import load

JOURNAL_NAME = "raft.journal"


class ReplayError(ValueError):
    """The files cannot be replayed as asked (and why)."""


@dataclass(frozen=True, slots=True)
class Start:
    index: int  # 0: the empty engine
    header: SnapshotHeader | None
    journal_first: int
    journal_last: int


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    state_hash: bytes
    applied: bool  # False for pysyncobj's own entries (a new leader's no-op)
    time_ms: int  # exchange time after the entry
    origin_node: int  # the node that proposed it (0: pysyncobj's own entry, or not evx's)


def replay(
    data_dir: Path, *, start: int | None = None, to: int | None = None
) -> tuple[Start, Iterator[Step]]:
    """`start`: None for the newest snapshot the journal continues, 0 for empty, or a
    snapshot's index."""
    journal_path = data_dir / JOURNAL_NAME
    if not journal_path.is_file():
        raise ReplayError(f"{data_dir}: no {JOURNAL_NAME} here")
    entries = read_entries(str(journal_path))
    if not entries:
        raise ReplayError(f"{journal_path}: the journal holds no entries")
    first, last = entries[0][1], entries[-1][1]
    header, machine = _starting_state(data_dir, start, first)
    start_index = header.index if header is not None else 0
    if start_index < first - 1:
        raise ReplayError(
            f"the journal starts at {first}: it does not continue the state at {start_index}"
        )

    def steps() -> Iterator[Step]:
        for command, index, _term in entries:
            if index <= start_index:
                continue
            if to is not None and index > to:
                return
            try:
                payload = entry_payload(command)
            except ValueError as error:
                raise ReplayError(f"entry {index}: {error}") from None
            origin = 0
            if payload is not None:
                origin = machine.apply(index, payload).origin[0]
            yield Step(
                index, machine.state_hash, payload is not None, machine.engine.time_ms, origin
            )

    return Start(start_index, header, first, last), steps()


def _starting_state(
    data_dir: Path, start: int | None, journal_first: int
) -> tuple[SnapshotHeader | None, ExchangeMachine]:
    if start == 0:
        if journal_first > 1:
            raise ReplayError(
                f"the journal was compacted (it starts at {journal_first}): replay from a snapshot"
            )
        return None, ExchangeMachine()
    store_path = data_dir / STORE_NAME
    indexes: list[int] = []
    if store_path.is_file():
        with SnapshotStore(store_path, readonly=True) as store:
            indexes = store.indexes()
            if start is not None:
                if start not in indexes:
                    raise ReplayError(f"no snapshot at index {start}; the store has {indexes}")
                indexes = [start]
            problems = []
            for index in indexes:
                if index + 1 < journal_first:
                    continue  # the journal does not continue it
                with store.view(index) as blob:
                    try:
                        header, engine = load(blob, full_audit=False)
                    except SnapshotError as error:
                        problems.append(f"{index}: {error}")
                        continue
                return header, ExchangeMachine(engine, header.index)
        if start is not None:
            raise ReplayError(f"snapshot {start} cannot be used: {problems or 'not continued'}")
    if journal_first > 1:
        raise ReplayError(
            f"the journal starts at {journal_first} and no stored snapshot it continues loads"
        )
    return None, ExchangeMachine()
