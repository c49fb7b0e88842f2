"""The LMDB store: newest few kept, a writer killed at any moment damages nothing, and a
reader changes nothing it reads."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evx.snapshots import format as snapshot_format
from evx.snapshots.store import SnapshotStore, StoreError

SEED = 20261125


def test_the_newest_are_kept_in_index_order(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path / "s.lmdb") as store:
        dropped = [store.put(index, bytes([index]) * index, keep=3) for index in (5, 9, 7, 12)]
        assert dropped == [[], [], [], [5]]
        assert store.indexes() == [12, 9, 7]
        assert store.get(9) == bytes([9]) * 9
        with pytest.raises(KeyError):
            store.get(5)


def _fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.iterdir())
    }


def test_a_reader_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    with SnapshotStore(folder / "s.lmdb") as store:
        store.put(3, b"three")
    (folder / "s.lmdb-lock").unlink()  # a copied store: the data file alone
    before = _fingerprint(folder)
    with SnapshotStore(folder / "s.lmdb", readonly=True) as reader:
        assert reader.indexes() == [3]
        assert reader.get(3) == b"three"
    assert _fingerprint(folder) == before
    with pytest.raises(StoreError):
        SnapshotStore(folder / "missing.lmdb", readonly=True)


_WRITER = textwrap.dedent(
    """
    import os, sys
    from evx.snapshots import format as snapshot_format
    from evx.snapshots.store import SnapshotStore
    store = SnapshotStore(sys.argv[1])
    index = (store.indexes() or [0])[0] + 1
    while True:
        # big enough that the kill lands inside a write as often as between two
        body = bytes([index % 251]) * (8 << 20) + index.to_bytes(8, "big")
        store.put(index, snapshot_format.seal(body), keep=3)
        print(index, flush=True)
        index += 1
    """
)


def test_a_writer_killed_at_any_moment_leaves_every_committed_snapshot(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    path = tmp_path / "s.lmdb"
    committed: list[int] = []
    for _round in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(rng.uniform(0.3, 1.2))
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            out, _ = writer.communicate(timeout=10)
        # What it printed was committed before the kill.
        committed = [int(line) for line in out.split()]
        with SnapshotStore(path) as store:
            indexes = store.indexes()
            if committed:
                assert committed[-1] in indexes, (committed[-1], indexes)
            for index in indexes:
                blob = store.get(index)
                sealed = snapshot_format.seal(blob[: -snapshot_format.CHECKSUM_BYTES])
                assert sealed == blob, f"snapshot {index} damaged"
    assert committed, "the writer never committed: the test proved nothing"
