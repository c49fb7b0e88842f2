"""The exchange as a replicated state machine: log entries in, engine events out.

Strategy: an entry is what replication/batcher.py proposes,
msgpack [node_id, batch_seq, time_ms, [command, ...]]; `ExchangeMachine.apply` decodes it
and applies one engine batch. An entry that does not decode applies as a batch with no
time and no commands, so every replica still moves its hash the same way. The engine is
touched from two threads: pysyncobj's tick thread applies entries, the gateway's trio
thread answers queries; `lock` serialises them (a query waits at most one entry).
A follower that fell behind the leader's compacted log is sent a snapshot instead:
`install` swaps the whole engine at once (snapshots/writer.py), and `StateInstalled` goes
down the applied stream in its place, so the gateway knows its reports have a gap.

The state hash after each of the last `HASHES_KEPT` entries is kept, so that
`evx admin verify` can compare every node at one common index while they move on.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgpack

from evx.core import AppliedBatch, Batch, Engine

HASHES_KEPT = 65_536  # recent (index, state hash) pairs a node can answer QueryHash with


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    """One applied entry: where it came from, its log index, and what the engine did."""

    index: int
    origin: tuple[int, int]  # (node_id, batch_seq); (0, 0) for an entry that did not decode
    applied: AppliedBatch
    apply_s: float = 0.0  # the engine's time on it (wall clock: for metrics, never state)
    applied_at: float = 0.0  # time.monotonic() when it was applied (for the feed's metrics)

    def command_events(self, position: int) -> tuple[tuple[Any, ...], ...]:
        return self.applied.command_events(position)


@dataclass(frozen=True, slots=True)
class StateInstalled:
    """In the applied stream: the engine was replaced by a snapshot's at `index`; each
    account's report sequence continues from `account_seqs`."""

    index: int
    account_seqs: dict[int, int]


def account_seqs(engine: Engine) -> dict[int, int]:
    return {account_id: account.seq for account_id, account in engine.accounts.items()}


class ExchangeMachine:
    def __init__(self, engine: Engine | None = None, applied_index: int = 0) -> None:
        self.engine = engine or Engine()
        self.lock = threading.Lock()
        self._applied_index = applied_index
        self._hashes: OrderedDict[int, bytes] = OrderedDict()
        self._keep_hash(applied_index, self.engine.state_hash)

    def install(self, engine: Engine, index: int) -> None:
        with self.lock:
            self.engine = engine
            self._applied_index = index
            self._hashes.clear()
            self._keep_hash(index, engine.state_hash)

    def apply(self, index: int, entry: bytes) -> ExchangeResult:
        origin, batch = decode_entry(entry)
        with self.lock:
            started = time.perf_counter()
            applied = self.engine.apply(batch)
            apply_s = time.perf_counter() - started
            self._applied_index = index
            self._keep_hash(index, self.engine.state_hash)
        return ExchangeResult(index, origin, applied, apply_s, time.monotonic())

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def applied_point(self) -> tuple[int, bytes]:
        """The applied index and the state hash at it, read together (any thread)."""
        with self.lock:
            return self._applied_index, self.engine.state_hash

    @property
    def state_hash(self) -> bytes:
        return self.engine.state_hash

    def hash_at(self, index: int) -> bytes | None:
        """The state hash right after entry `index` was applied, if still kept here."""
        with self.lock:
            return self._hashes.get(index)

    def _keep_hash(self, index: int, state_hash: bytes) -> None:
        self._hashes[index] = state_hash
        if len(self._hashes) > HASHES_KEPT:
            self._hashes.popitem(last=False)


def encode_entry(node_id: int, batch_seq: int, time_ms: int, commands: list[Any]) -> bytes:
    return msgpack.packb([node_id, batch_seq, time_ms, commands], use_bin_type=True)


def decode_entry(entry: bytes) -> tuple[tuple[int, int], Batch]:
    try:
        value = msgpack.unpackb(entry, raw=False, strict_map_key=False, use_list=False)
    except Exception:  # msgpack raises several types for bad bytes
        return (0, 0), Batch(-1, ())
    if (
        type(value) is not tuple
        or len(value) != 4
        or type(value[0]) is not int
        or type(value[1]) is not int
        or type(value[3]) is not tuple
    ):
        return (0, 0), Batch(-1, ())
    return (value[0], value[1]), Batch(value[2], value[3])
