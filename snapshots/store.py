"""A node's snapshots, in one LMDB environment.

Strategy: one environment file per node (`subdir=False`: the file `snapshots.lmdb` and its
lock file `snapshots.lmdb-lock` in the data folder), one named database, `snapshots`,
keyed by the log index as 8 big-endian bytes (so LMDB's key order is index order), each
value a whole snapshot blob (format.py). A new snapshot and the pruning of the oldest
beyond `keep` are one write transaction: LMDB's copy-on-write pages mean a writer killed
at any point leaves the last committed transaction, and so every older snapshot, intact.

Every option is passed explicitly. `sync` and `metasync` on: a commit is on disk when it
returns (the log is compacted only after that). `writemap` off: a stray write through a
bad pointer cannot reach the file. The map is large and sparse (the file grows only by
what is stored). A reader opens the environment read-only and without the lock file, so
looking never writes, not even a reader slot; such a reader must not race a writer, which
is why `evx snapshot` is for a stopped node's folder or a copy (docs/operations.md).

One process, one open environment: LMDB must not be opened twice in a process, nor used
across fork(). The node opens it only for the moment it needs it (startup, an install
from the leader), and a snapshot writer opens its own in its own process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import lmdb

from . import format as snapshot_format

MAP_SIZE_BYTES = 1 << 40  # address space reserved, not disk used
SNAPSHOTS_KEPT = 3
_DATABASE = b"snapshots"


class StoreError(RuntimeError):
    """The environment cannot be opened or read at all."""


def _key(index: int) -> bytes:
    return index.to_bytes(8, "big")


class SnapshotStore:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise StoreError(f"{self.path}: no snapshot environment here")
        try:
            self._env = lmdb.open(
                str(self.path),
                map_size=MAP_SIZE_BYTES,
                subdir=False,
                readonly=readonly,
                lock=not readonly,
                create=not readonly,
                mode=0o600,
                metasync=True,
                sync=True,
                map_async=False,
                writemap=False,
                readahead=False,
                meminit=False,
                max_readers=16,
                max_dbs=2,
                max_spare_txns=0,
            )
            self._db = self._env.open_db(_DATABASE, create=not readonly)
        except lmdb.Error as error:
            raise StoreError(f"{self.path}: {error}") from None

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, index: int, blob: bytes, keep: int = SNAPSHOTS_KEPT) -> list[int]:
        """Store a snapshot and drop all but the newest `keep`, in one transaction;
        returns the indexes dropped."""
        assert not self.readonly and keep >= 1
        dropped = []
        with self._env.begin(write=True, db=self._db) as txn:
            txn.put(_key(index), blob, db=self._db)
            keys = [bytes(key) for key, _ in txn.cursor(db=self._db)]
            for key in keys[: max(0, len(keys) - keep)]:
                txn.delete(key, db=self._db)
                dropped.append(int.from_bytes(key, "big"))
        return dropped

    def indexes(self) -> list[int]:
        """Stored snapshot indexes, newest first."""
        with self._env.begin(db=self._db) as txn:
            keys = [
                int.from_bytes(key, "big") for key in txn.cursor(db=self._db).iternext(values=False)
            ]
        return sorted(keys, reverse=True)

    @contextlib.contextmanager
    def view(self, index: int) -> Iterator[memoryview]:
        """The stored blob, mapped (no copy), valid inside the `with` only."""
        with self._env.begin(db=self._db, buffers=True) as txn:
            value = txn.get(_key(index), db=self._db)
            if value is None:
                raise KeyError(index)
            yield memoryview(value)

    def get(self, index: int) -> bytes:
        with self.view(index) as blob:
            return bytes(blob)

    def headers(self) -> Iterator[tuple[int, int, snapshot_format.SnapshotHeader | str]]:
        """(index, size, header or the reason it has none), newest first."""
        for index in self.indexes():
            with self.view(index) as blob:
                try:
                    header: snapshot_format.SnapshotHeader | str = snapshot_format.read_header(blob)
                except snapshot_format.SnapshotError as error:
                    header = str(error)
                yield index, len(blob), header
