"""A snapshot as bytes: the engine's canonical state at one applied log index.

Strategy: one self-contained blob, the same bytes whether it sits in a node's LMDB
environment, in the file pysyncobj sends to a follower that fell behind, or in a copy an
operator took:

    magic "EVXSNAP\\0" | u32 format version | u32 header length | header | state | checksum

all integers little-endian. The header is a msgpack map (fields of `SnapshotHeader`); the
state is core/state.py's canonical encoding of the engine; the checksum is a BLAKE2b-256
of every byte before it. Reading checks, in order: the magic, the format version, the
lengths, the checksum, the header's shape, the state's version. `parse` does those cheap
checks only; loading the state and checking it is verify.py's work.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, fields
from typing import Any

import msgpack

from evx.core import STATE_VERSION

MAGIC = b"EVXSNAP\x00"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sII")  # magic, format version, header length
CHECKSUM_BYTES = 32
HEADER_BYTES_MAX = 1 << 20  # a header longer than this is damage, not a header

RaftEntry = tuple[bytes, int, int]  # pysyncobj's (command, index, term)


class SnapshotError(ValueError):
    """A snapshot that must not be loaded; `check` names the check it failed."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    index: int  # the Raft log index of the last entry the state includes
    term: int  # that entry's term
    state_version: int
    state_bytes: int
    state_digest: bytes  # BLAKE2b-256 of the state bytes (core/state.py `state_digest`)
    state_hash: bytes  # the engine's running hash of everything it applied
    time_ms: int  # the engine's clock: the time of the last batch applied
    batches_applied: int
    accounts: int
    markets: int
    orders: int
    # The two log entries pysyncobj keeps in front of a compacted log, the entry at `index`
    # and the one before it, as (command, index, term): a node that loads this snapshot
    # puts them back at the head of its journal.
    entry_before: RaftEntry
    entry_last: RaftEntry
    cluster: tuple[str, ...]  # the peer addresses of the cluster that took it
    node: str  # the node that wrote it
    created_unix_ms: int  # when, by that node's clock (for people; never compared)

    def to_map(self) -> dict[str, Any]:
        value = {field.name: getattr(self, field.name) for field in fields(self)}
        value["entry_before"] = list(self.entry_before)
        value["entry_last"] = list(self.entry_last)
        value["cluster"] = list(self.cluster)
        return value

    @classmethod
    def from_map(cls, value: Any) -> SnapshotHeader:
        if not isinstance(value, dict):
            raise SnapshotError("header", "not a map")
        try:
            arguments = {field.name: value[field.name] for field in fields(cls)}
        except KeyError as missing:
            raise SnapshotError("header", f"field {missing} missing") from None
        for name in (
            "index",
            "term",
            "state_version",
            "state_bytes",
            "time_ms",
            "batches_applied",
            "accounts",
            "markets",
            "orders",
            "created_unix_ms",
        ):
            if type(arguments[name]) is not int or arguments[name] < 0:
                raise SnapshotError("header", f"{name} is not a count")
        for name in ("state_digest", "state_hash"):
            if type(arguments[name]) is not bytes:
                raise SnapshotError("header", f"{name} is not bytes")
        for name in ("entry_before", "entry_last"):
            arguments[name] = _raft_entry(name, arguments[name])
        cluster = arguments["cluster"]
        if type(cluster) is not list or not all(type(peer) is str for peer in cluster):
            raise SnapshotError("header", "cluster is not a list of addresses")
        arguments["cluster"] = tuple(cluster)
        if type(arguments["node"]) is not str:
            raise SnapshotError("header", "node is not an address")
        header = cls(**arguments)
        if header.entry_last[1] != header.index or header.entry_before[1] != header.index - 1:
            raise SnapshotError("header", "its log entries are not the two at its index")
        if header.entry_last[2] != header.term:
            raise SnapshotError("header", "its last log entry is not of its term")
        return header


def _raft_entry(name: str, value: Any) -> RaftEntry:
    if (
        type(value) is not list
        or len(value) != 3
        or type(value[0]) is not bytes
        or type(value[1]) is not int
        or type(value[2]) is not int
    ):
        raise SnapshotError("header", f"{name} is not a log entry")
    return (value[0], value[1], value[2])


def encode(header: SnapshotHeader, state: bytes) -> bytes:
    assert len(state) == header.state_bytes
    packed = msgpack.packb(header.to_map(), use_bin_type=True)
    return seal(PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(packed)) + packed + state)


def seal(body: bytes) -> bytes:
    """The body followed by its checksum."""
    return body + hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest()


def digest(state: bytes | memoryview) -> bytes:
    return hashlib.blake2b(state, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class Snapshot:
    header: SnapshotHeader
    state: memoryview  # a view into the blob it was parsed from


def read_header(blob: bytes | memoryview) -> SnapshotHeader:
    """The header alone, checked for shape but not against the checksum: for listing,
    and for recognising a snapshot already loaded. Never load a state on this alone."""
    view = memoryview(blob)
    header_length = _preamble(view)
    return _header(view, header_length)


def parse(blob: bytes | memoryview, *, check_sum: bool = True) -> Snapshot:
    """Every check that does not need the state loaded; raises SnapshotError."""
    view = memoryview(blob)
    header_length = _preamble(view)
    if check_sum:
        body = view[: len(view) - CHECKSUM_BYTES]
        expected = hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest()
        if expected != bytes(view[len(view) - CHECKSUM_BYTES :]):
            raise SnapshotError("checksum", "the bytes are not the ones written")
    header = _header(view, header_length)
    start = PREAMBLE.size + header_length
    if start + header.state_bytes + CHECKSUM_BYTES != len(view):
        raise SnapshotError("header", "state_bytes does not match the length")
    if header.state_version != STATE_VERSION:
        raise SnapshotError(
            "state_version", f"state version {header.state_version}, not {STATE_VERSION}"
        )
    return Snapshot(header, view[start : start + header.state_bytes])


def _preamble(view: memoryview) -> int:
    if len(view) < PREAMBLE.size + CHECKSUM_BYTES:
        if bytes(view[: len(MAGIC)]) != MAGIC[: len(view)]:
            raise SnapshotError("format", "not an evx snapshot")
        raise SnapshotError("length", f"{len(view)} bytes: cut short")
    magic, version, header_length = PREAMBLE.unpack_from(view)
    if magic != MAGIC:
        raise SnapshotError("format", "not an evx snapshot")
    if version != FORMAT_VERSION:
        raise SnapshotError("format", f"format version {version}, not {FORMAT_VERSION}")
    if header_length > HEADER_BYTES_MAX or PREAMBLE.size + header_length > len(view):
        raise SnapshotError("length", "the header runs past the end: cut short")
    return header_length


def _header(view: memoryview, header_length: int) -> SnapshotHeader:
    try:
        value = msgpack.unpackb(
            view[PREAMBLE.size : PREAMBLE.size + header_length], raw=False, strict_map_key=True
        )
    except Exception as error:  # msgpack raises several types for bad bytes
        raise SnapshotError("header", f"not msgpack: {error}") from None
    return SnapshotHeader.from_map(value)
