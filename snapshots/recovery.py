"""A node's start: the newest snapshot that passes every check, and the log after it.

Strategy: recovery runs before the Raft node exists, so nothing is served and nothing
applied until it is done. Candidates are the snapshots in the node's LMDB store and the
transfer file, newest first; each is loaded and checked (verify.load) and the first that
passes wins. Every one refused is logged with the check it failed.

The journal is then made to agree with the winner, because pysyncobj trusts that the
transfer file and the journal's first two entries describe the same point:

- the journal holds the entries after the snapshot: it becomes the snapshot's two
  entries followed by those (entries the snapshot already holds are dropped);
- the journal starts after the entry following the snapshot (an older snapshot was
  chosen because a newer one is damaged, and the log between was compacted away), or it
  holds the snapshot's index with another term: the journal cannot continue this state,
  so it is emptied to the snapshot's two entries and the leader sends what follows (its
  log, or its own snapshot). Entries dropped this way are logged; term and vote are kept.

The integrity checks (checksum, versions, the running hash, the counts) always run before
the node serves anyone. The full audit of every invariant is O(state), seconds for a
million resting orders, and can only fail if the code that wrote the snapshot had a bug
(the checksum vouches for the bytes): a node runs it in a forked child while it starts
serving (`audit_in_background`), and a failure stops the node and writes the snapshot's
digest to `snapshots.refused`, so that the next start refuses that snapshot at once.

Without a usable snapshot, a journal that starts at index 1 is replayed from an empty
engine; one that was compacted is emptied and the state comes from a peer. Finally the
transfer file is rewritten to the chosen snapshot (or removed), so that pysyncobj's first
tick loads the point recovery chose, and the deserializer (writer.py) recognises it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from evx.core import Engine, audit
from evx.replication.journal import DurableJournal
from evx.tools import logs

from . import format as snapshot_format
from .format import SnapshotError, SnapshotHeader
from .store import SnapshotStore, StoreError
from .verify import load
from .writer import write_file

log = logs.get("evx.snapshots")


@dataclass
class Recovered:
    engine: Engine | None  # None: start from an empty engine
    header: SnapshotHeader | None
    refused: list[tuple[str, str]] = field(default_factory=list)  # (which, why)
    journal_dropped: int = 0  # entries dropped from the journal
    seconds: float = 0.0


REFUSED_NAME = "snapshots.refused"


def recover(
    store_path: Path,
    transfer_path: Path,
    journal: DurableJournal,
    *,
    full_audit: bool = True,
    freeze: bool = False,
) -> Recovered:
    """`full_audit`: audit before returning (else the caller runs audit_in_background);
    `freeze`: move the loaded state out of the collector's reach (a node does)."""
    started = time.perf_counter()
    for stale in (".next", ".tmp", ".1.tmp", ".part", ".next.part"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(transfer_path.with_name(transfer_path.name + stale))
    refused_digests = read_refused(store_path.parent)
    recovered = Recovered(None, None)
    chosen: tuple[SnapshotHeader, Engine, bytes] | None = None
    collecting = gc.isenabled()
    gc.disable()  # a million new objects, none of them garbage: no collections meanwhile
    try:
        for where, index, blob in _candidates(store_path, transfer_path, recovered):
            chosen = _try(where, index, blob, full_audit, refused_digests, recovered)
            if chosen is not None:
                break
    finally:
        if collecting:
            gc.enable()
    if chosen is None:
        _start_without_snapshot(journal, recovered)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(transfer_path)
    else:
        if freeze:
            gc.freeze()  # the loaded state lives on: out of every future collection
        header, engine, blob = chosen
        recovered.engine = engine
        recovered.header = header
        _fit_journal(journal, header, recovered)
        if not _same_snapshot(transfer_path, header):
            write_file(transfer_path, blob)
        log.info(
            "snapshot_loaded",
            index=header.index,
            term=header.term,
            orders=header.orders,
            accounts=header.accounts,
            state_hash=header.state_hash.hex(),
            journal_entries=len(journal),
        )
    recovered.seconds = time.perf_counter() - started
    return recovered


def _try(
    where: str,
    index: int,
    blob: memoryview | bytes,
    full_audit: bool,
    refused_digests: set[bytes],
    recovered: Recovered,
) -> tuple[SnapshotHeader, Engine, bytes] | None:
    try:
        header = snapshot_format.read_header(blob)
        if header.state_digest in refused_digests:
            raise SnapshotError("audit", f"failed its audit before ({REFUSED_NAME})")
        header, engine = load(blob, full_audit=full_audit)
    except SnapshotError as error:
        recovered.refused.append((where, str(error)))
        log.error(
            "snapshot_refused", source=where, index=index, check=error.check, detail=error.detail
        )
        return None
    return header, engine, bytes(blob)


def _candidates(
    store_path: Path, transfer_path: Path, recovered: Recovered
) -> Iterator[tuple[str, int, memoryview | bytes]]:
    """(source, index, blob), newest first: the store's snapshots, and the transfer file
    where the store does not hold its index."""
    transfer: bytes | None = None
    transfer_index = -1
    if transfer_path.exists():
        transfer = transfer_path.read_bytes()
        header = read_file_header(transfer_path)
        transfer_index = header.index if header is not None else 0
    try:
        store = SnapshotStore(store_path) if store_path.exists() else None
    except StoreError as error:
        recovered.refused.append((str(store_path), str(error)))
        log.error("snapshot_store_unreadable", path=str(store_path), error=str(error))
        store = None
    stored = store.indexes() if store is not None else []
    try:
        for index in stored:
            if transfer is not None and transfer_index > index:
                yield str(transfer_path), transfer_index, transfer
                transfer = None
            assert store is not None
            with store.view(index) as blob:
                yield f"{store_path}#{index}", index, blob
        if transfer is not None and transfer_index not in stored:
            yield str(transfer_path), transfer_index, transfer
    finally:
        if store is not None:
            store.close()


def _fit_journal(journal: DurableJournal, header: SnapshotHeader, recovered: Recovered) -> None:
    index = header.index
    head = [header.entry_before, header.entry_last]
    entries = list(journal)
    if not entries:
        journal.rebase(head)
    else:
        first, last = entries[0][1], entries[-1][1]
        if last < index:
            rest: list[tuple[bytes, int, int]] = []  # the snapshot is ahead of all of it
        elif first > index + 1:
            rest = []
            _dropped(recovered, entries, "the journal starts after the snapshot's next entry")
        elif first <= index and entries[index - first][2] != header.term:
            rest = []
            _dropped(recovered, entries, "the journal holds another term at the snapshot")
        else:
            rest = entries[index + 1 - first :]
        wanted = head + rest
        if entries != wanted:
            journal.rebase(wanted)
    if journal.getRaftCommitIndex() < index:
        journal.setRaftCommitIndex(index)  # what a snapshot holds was committed


def _start_without_snapshot(journal: DurableJournal, recovered: Recovered) -> None:
    entries = list(journal)
    if entries and entries[0][1] > 1:
        _dropped(recovered, entries, "the journal was compacted and no snapshot is usable")
        journal.rebase([])
        journal.setRaftCommitIndex(1)
        log.error("state_from_peer", reason="no usable snapshot for a compacted journal")
    elif recovered.refused:
        log.warning("replaying_from_empty", journal_entries=len(entries))


def _dropped(recovered: Recovered, entries: list[tuple[bytes, int, int]], reason: str) -> None:
    recovered.journal_dropped += len(entries)
    log.error(
        "journal_entries_dropped",
        reason=reason,
        first=entries[0][1],
        last=entries[-1][1],
        entries=len(entries),
    )


def read_refused(data_dir: Path) -> set[bytes]:
    """Digests of snapshots whose background audit failed on this node."""
    try:
        lines = (data_dir / REFUSED_NAME).read_text().split()
    except FileNotFoundError:
        return set()
    return {bytes.fromhex(line) for line in lines if len(line) == 64}


def refuse(data_dir: Path, digest: bytes) -> None:
    with open(data_dir / REFUSED_NAME, "a") as file:
        file.write(digest.hex() + "\n")
        file.flush()
        os.fsync(file.fileno())


def audit_in_background(engine: Engine) -> int:
    """Fork a child that audits the engine as loaded and exits 0 (every invariant holds)
    or 1 (it writes the violations to standard error); returns its process id. Call it
    before any other thread can change the engine (the child sees it as of the fork)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.disable()
        violations = audit(engine)
        for violation in violations[:20]:
            sys.stderr.write(f"snapshot audit: {violation.invariant}: {violation.detail}\n")
        sys.stderr.flush()
        code = 0 if not violations else 1
    finally:
        os._exit(code)


def read_file_header(path: Path) -> SnapshotHeader | None:
    """The header of a snapshot file, reading only the front of it."""
    try:
        with open(path, "rb") as file:
            front = file.read(snapshot_format.PREAMBLE.size + snapshot_format.HEADER_BYTES_MAX)
        return snapshot_format.read_header(front)
    except (OSError, SnapshotError):
        return None


def _same_snapshot(path: Path, header: SnapshotHeader) -> bool:
    existing = read_file_header(path)
    return (
        existing is not None
        and existing.index == header.index
        and existing.state_digest == header.state_digest
    )
