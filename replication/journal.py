"""A Raft journal that is on disk before anyone counts on it.

Strategy: pysyncobj keeps its log in a Python list and, with its own FileJournal, writes
each entry into an mmap that is never flushed (../shared/notes/pysyncobj.md). This journal
keeps the same list in memory, appends each entry to a plain file with its own checksum,
and makes the file durable with one fdatasync per `sync()` call. replication/raft.py calls
`sync()` exactly where durability matters: before a follower acknowledges entries, and
before the leader counts its own copy toward a majority. Many entries written between two
syncs cost one flush: that is the group commit that batching buys.

File: a 16-byte header (magic, format version), then records
    u32 payload length | u32 crc32 of payload | payload = u64 index | u64 term | command
all little-endian. A record cut short or failing its checksum at the end of the file is a
write that never reached a sync (a crash in the middle of it), so it cannot have been
acknowledged: opening the journal drops it and truncates the file there. A bad record
followed by good ones is not a torn write; the journal refuses to open.

Term and vote live in a small metadata file replaced atomically and synced before the
call returns: Raft requires them durable before any vote is sent. The commit index (it
only saves work after a restart) is saved in the same file at most once a second, also
synced, so that no crash can leave the file half-written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

MAGIC = b"EVXJRNL\x00"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sII")  # magic, version, reserved
RECORD = struct.Struct("<II")  # payload length, crc32
ENTRY = struct.Struct("<QQ")  # index, term
entry_bytes_max = 64 * 1024 * 1024  # a record longer than this is corruption, not an entry

Entry = tuple[bytes, int, int]  # (command, index, term), as pysyncobj keeps them


class JournalCorruptError(RuntimeError):
    """The journal has a damaged record before its end: the node must not start on it."""


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    entries: int
    first_index: int
    last_index: int
    file_bytes: int
    syncs: int
    truncated_tail_records: int
    compactions: int
    last_compaction_ms: float  # rewriting the kept entries: the tick thread waits for it


class DurableJournal:
    """pysyncobj's Journal interface, with explicit durability (`sync`)."""

    def __init__(
        self,
        path: str,
        *,
        flush: bool = True,
        on_io_error: Callable[[str], None] | None = None,
    ) -> None:
        # flush=False is for measuring what durability costs (evx bench cluster
        # --no-flush), never for running an exchange: acknowledgements then mean "in the
        # page cache of a majority", which an operating-system crash can lose.
        self.flush = flush
        # A failed write or flush leaves the file in a state nobody can vouch for (after a
        # failed fsync the page cache may have dropped the data), and pysyncobj would catch
        # the exception and go on: `on_io_error` is called instead, and must stop the node.
        self._on_io_error = on_io_error
        self.path = path
        self.meta_path = path + ".meta"
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._syncs = 0
        self._compactions = 0
        self._last_compaction_s = 0.0
        self._dirty = False
        self._truncated_tail = 0
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._directory = directory
        created = not os.path.exists(path)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if created or os.fstat(self._fd).st_size == 0:
            os.pwrite(self._fd, HEADER.pack(MAGIC, FORMAT_VERSION, 0), 0)
            os.fsync(self._fd)
            _sync_directory(directory)
        self._end = self._load()
        self._meta = self._read_meta()
        self._meta_saved = True

    # -- Loading ---------------------------------------------------------------------------

    def _load(self) -> int:
        size = os.fstat(self._fd).st_size
        header = os.pread(self._fd, HEADER.size, 0)
        if len(header) < HEADER.size:
            raise JournalCorruptError(f"{self.path}: header cut short")
        magic, version, _ = HEADER.unpack(header)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise JournalCorruptError(
                f"{self.path}: not an evx journal of version {FORMAT_VERSION}"
            )
        offset = HEADER.size
        records = _read_records(self._fd, offset, size)
        for position, (record_offset, payload) in enumerate(records):
            if payload is None:
                # Damaged: acceptable only as the last thing in the file (a torn write).
                if any(later is not None for _, later in records[position + 1 :]):
                    raise JournalCorruptError(
                        f"{self.path}: damaged record at byte {record_offset} before good ones"
                    )
                self._truncated_tail = 1
                os.ftruncate(self._fd, record_offset)
                os.fsync(self._fd)
                return record_offset
            index, term = ENTRY.unpack_from(payload)
            if self._entries and index != self._entries[-1][1] + 1:
                raise JournalCorruptError(f"{self.path}: index {index} out of sequence")
            self._entries.append((payload[ENTRY.size :], index, term))
            self._offsets.append(record_offset)
            offset = record_offset + RECORD.size + len(payload)
        return offset

    def _read_meta(self) -> dict[str, Any]:
        try:
            with open(self.meta_path, "rb") as meta_file:
                meta = msgpack.unpackb(meta_file.read(), raw=False)
        except FileNotFoundError:
            return {}
        except Exception as error:  # msgpack raises several types for bad bytes
            meta = error
        if not isinstance(meta, dict):
            # Never start without it: the vote it holds is what keeps this node from
            # voting twice in one term (docs/operations.md, "A damaged journal").
            raise JournalCorruptError(
                f"{self.meta_path}: not a metadata map ({meta!r}); the term and vote it "
                "holds cannot be guessed"
            )
        return meta

    # -- pysyncobj's Journal interface ------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        if len(command) > entry_bytes_max:
            raise ValueError(f"entry of {len(command)} bytes is past entry_bytes_max")
        payload = ENTRY.pack(idx, term) + command
        record = RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        with self._io("appending an entry"):
            written = os.pwrite(self._fd, record, self._end)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._truncate_at(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802, N803 - pysyncobj names
        """Drop entries from position `entryFrom` (a list position, not a Raft index)."""
        self._truncate_at(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802, N803
        """Drop entries before position `entryTo` (log compaction)."""
        started = time.perf_counter()
        self.rebase(self._entries[entryTo:])
        self._compactions += 1
        self._last_compaction_s = time.perf_counter() - started

    def rebase(self, entries: list[Entry]) -> None:
        """Make the log exactly `entries` (consecutive indexes): written to a new file,
        synced, and renamed over the old one, so a crash leaves one or the other whole.
        Log compaction keeps a suffix; recovery from a snapshot puts the snapshot's two
        entries in front of what follows them (snapshots/recovery.py)."""
        kept = list(entries)
        for before, after in itertools.pairwise(kept):
            assert after[1] == before[1] + 1, "a journal's indexes are consecutive"
        temporary = self.path + ".compact"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunks = [HEADER.pack(MAGIC, FORMAT_VERSION, 0)]
            offsets = []
            end = HEADER.size
            for command, index, term in kept:
                payload = ENTRY.pack(index, term) + command
                record = RECORD.pack(len(payload), zlib.crc32(payload)) + payload
                offsets.append(end)
                end += len(record)
                chunks.append(record)
            with self._io("rewriting the journal"):
                os.pwrite(fd, b"".join(chunks), 0)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.replace(temporary, self.path)
        _sync_directory(self._directory)
        os.close(self._fd)
        self._fd = fd
        self._entries = kept
        self._offsets = offsets
        self._end = end
        self._dirty = False

    def __getitem__(self, item: int | slice) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def _destroy(self) -> None:
        self.sync()
        self._save_meta(durable=True)
        os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_saved = False

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        with self._io("saving term and vote"):
            self._save_meta(durable=True)  # before any vote leaves this node

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        # The same file holds the term and vote, so it is always replaced durably: a
        # rename not yet on disk when the power fails must not leave it empty.
        if not self._meta_saved:
            with self._io("saving the commit index"):
                self._save_meta(durable=True)

    # -- Durability ------------------------------------------------------------------------

    def sync(self) -> bool:
        """Make every entry written so far durable; True if there was anything to flush."""
        if not self._dirty:
            return False
        if self.flush:
            with self._io("flushing the journal"):
                os.fdatasync(self._fd)
        self._dirty = False
        self._syncs += 1
        return True

    @property
    def dirty(self) -> bool:
        return self._dirty

    @contextlib.contextmanager
    def _io(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            if self._on_io_error is None:
                raise
            self._on_io_error(f"{doing} in {self.path} failed: {error}")
            raise  # on_io_error stops the process; if it returns, the error still stands

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            entries=len(self._entries),
            first_index=self._entries[0][1] if self._entries else 0,
            last_index=self._entries[-1][1] if self._entries else 0,
            file_bytes=self._end,
            syncs=self._syncs,
            truncated_tail_records=self._truncated_tail,
            compactions=self._compactions,
            last_compaction_ms=round(self._last_compaction_s * 1000, 3),
        )

    def _truncate_at(self, position: int) -> None:
        if position >= len(self._entries):
            return
        offset = self._offsets[position]
        del self._entries[position:]
        del self._offsets[position:]
        with self._io("truncating the journal"):
            os.ftruncate(self._fd, offset)
        self._end = offset
        self._dirty = True

    def _save_meta(self, *, durable: bool) -> None:
        temporary = self.meta_path + ".tmp"
        with open(temporary, "wb") as meta_file:
            meta_file.write(msgpack.packb(self._meta, use_bin_type=True))
            meta_file.flush()
            if durable:
                os.fsync(meta_file.fileno())
        os.replace(temporary, self.meta_path)
        if durable:
            _sync_directory(self._directory)
        self._meta_saved = True


def read_entries(path: str) -> list[Entry]:
    """A journal's entries, read without changing the file (for `evx replay` and tests):
    a damaged tail is left where it is and not returned."""
    fd = os.open(path, os.O_RDONLY)
    try:
        header = os.pread(fd, HEADER.size, 0)
        if len(header) < HEADER.size or HEADER.unpack(header)[:2] != (MAGIC, FORMAT_VERSION):
            raise JournalCorruptError(f"{path}: not an evx journal of version {FORMAT_VERSION}")
        entries: list[Entry] = []
        for _, payload in _read_records(fd, HEADER.size, os.fstat(fd).st_size):
            if payload is None:
                break
            index, term = ENTRY.unpack_from(payload)
            entries.append((payload[ENTRY.size :], index, term))
        return entries
    finally:
        os.close(fd)


def _read_records(fd: int, offset: int, size: int) -> list[tuple[int, bytes | None]]:
    """Every record from `offset`: (offset, payload), payload None where it is damaged
    (cut short or failing its checksum); reading goes on after a damaged record when its
    length field still points inside the file, so a damaged record followed by good ones
    is seen for what it is."""
    records: list[tuple[int, bytes | None]] = []
    while offset < size:
        head = os.pread(fd, RECORD.size, offset)
        if len(head) < RECORD.size:
            records.append((offset, None))
            break
        length, checksum = RECORD.unpack(head)
        if length < ENTRY.size or length > entry_bytes_max or offset + RECORD.size + length > size:
            records.append((offset, None))
            break
        payload = os.pread(fd, length, offset + RECORD.size)
        records.append((offset, payload if zlib.crc32(payload) == checksum else None))
        offset += RECORD.size + length
    return records


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
