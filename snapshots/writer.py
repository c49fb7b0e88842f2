"""Taking snapshots on a running node, and installing the ones a leader sends.

Strategy: pysyncobj drives log compaction through three hooks (notes/pysyncobj.md,
"Snapshots and compaction"), all called on its tick thread, the thread that applies
entries; `NodeSnapshots` implements them:

- `serialize(tmp_file, raft_data)` is called when the log is long enough. The state must
  be the one at the last applied entry, and the tick thread must not stop for long, so it
  forks: the child process has the engine exactly as it is at that entry (copy-on-write)
  and all the time it needs to encode it, write the transfer file and commit it to the
  LMDB store, while the parent goes straight back to applying entries. The pause is the
  fork (docs/benchmarks.md). pysyncobj renames `tmp_file` over the transfer file as soon
  as this returns; the previous transfer file is hard-linked there first, so that rename
  changes nothing until the new snapshot is whole.
- `check()` is called every tick. When the child has exited cleanly its snapshot is
  committed: the transfer file is replaced by the new one and SUCCESS lets pysyncobj drop
  the log before it. A child that failed leaves everything as it was.
- `deserialize(path)` is called on the first tick after start (for the snapshot recovery
  already loaded, which it recognises) and when a follower has received the leader's
  snapshot. A received snapshot is loaded and checked in full before it replaces the
  engine; one that fails stops the node (exit 72), because pysyncobj has by then replaced
  its log and would go on as if it had loaded (notes: a failed load is swallowed).

The child only reads the engine, writes files and exits through os._exit: it runs no
cleanup, takes no lock another thread could have held at the fork, and logs nothing
(logging takes locks); what it has to say is its exit status. It dies with its parent
(PR_SET_PDEATHSIG), so killing a node kills its snapshot writer too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pysyncobj.config import SERIALIZER_STATE

from evx.core import STATE_VERSION, Engine, encode_state
from evx.tools import logs

from . import format as snapshot_format
from .format import SnapshotError, SnapshotHeader
from .store import SNAPSHOTS_KEPT, SnapshotStore
from .verify import load

log = logs.get("evx.snapshots")

EXIT_SNAPSHOT_FAILED = 72
_PR_SET_PDEATHSIG = 1


class Machine(Protocol):
    """What a snapshot is taken of: the exchange state machine (gateway/exchange.py)."""

    engine: Engine
    lock: threading.Lock

    def install(self, engine: Engine, index: int) -> None: ...


def snapshot_blob(
    engine: Engine,
    entry_before: tuple[bytes, int, int],
    entry_last: tuple[bytes, int, int],
    cluster: tuple[str, ...],
    node: str,
    created_unix_ms: int,
) -> bytes:
    """The snapshot of an engine whose state includes exactly the log up to entry_last."""
    state = encode_state(engine)
    header = SnapshotHeader(
        index=entry_last[1],
        term=entry_last[2],
        state_version=STATE_VERSION,
        state_bytes=len(state),
        state_digest=snapshot_format.digest(state),
        state_hash=engine.state_hash,
        time_ms=engine.time_ms,
        batches_applied=engine.batches_applied,
        accounts=len(engine.accounts),
        markets=len(engine.markets),
        orders=len(engine.orders),
        entry_before=entry_before,
        entry_last=entry_last,
        cluster=cluster,
        node=node,
        created_unix_ms=created_unix_ms,
    )
    return snapshot_format.encode(header, state)


def write_file(path: Path, data: bytes | memoryview) -> None:
    """Write a file whole and durable, under its final name only once it is complete."""
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Writer:
    pid: int
    index: int
    started: float
    pause_s: float
    superseded: bool = False  # a snapshot from the leader was installed meanwhile


@dataclass(frozen=True, slots=True)
class SnapshotStatistics:
    taken: int
    failed: int
    installed: int
    last_index: int
    last_bytes: int
    last_pause_ms: float  # the fork: how long the tick thread stopped
    last_write_s: float  # the child's whole run, in the background
    writing: bool
    last_created_unix_s: float  # when the newest snapshot was made (0: none)


class NodeSnapshots:
    """pysyncobj's serializer, serializeChecker and deserializer for one node."""

    def __init__(
        self,
        machine: Machine,
        store_path: Path,
        transfer_path: Path,
        *,
        node: str,
        cluster: tuple[str, ...],
        keep: int = SNAPSHOTS_KEPT,
        full_audit: bool = True,
        loaded: SnapshotHeader | None = None,
        on_installed: Callable[[int, Engine], None] | None = None,
        stop: Callable[[str, int], None] | None = None,
    ) -> None:
        self.machine = machine
        self.store_path = store_path
        self.transfer_path = transfer_path
        self.node = node
        self.cluster = cluster
        self.keep = keep
        self.full_audit = full_audit
        self.loaded = loaded  # the snapshot the engine was loaded from at startup
        self.on_installed = on_installed
        self._stop = stop or _stop_process
        self._writer: _Writer | None = None
        self._taken = 0
        self._failed = 0
        self._installed = 0
        self._last_index = loaded.index if loaded is not None else 0
        self._last_created_s = loaded.created_unix_ms / 1000 if loaded is not None else 0.0
        self._last_bytes = 0
        self._last_pause_s = 0.0
        self._last_write_s = 0.0

    @property
    def writer_pid(self) -> int | None:
        """The snapshot writer's process id while one runs."""
        return self._writer.pid if self._writer is not None else None

    @property
    def next_path(self) -> Path:
        return self.transfer_path.with_name(self.transfer_path.name + ".next")

    # -- serializer --------------------------------------------------------------------------

    def serialize(self, tmp_file: str, raft_data: Any) -> None:
        entry_last, entry_before, cluster = raft_data
        entry_last = _entry(entry_last)
        entry_before = _entry(entry_before)
        if self._writer is not None:
            return  # pysyncobj never asks twice at once; nothing to do if it did
        # The members as pysyncobj has them now (membership changes are replicated): what a
        # restart or a follower installing this snapshot takes as its cluster.
        self.cluster = tuple(sorted(getattr(member, "id", member) for member in cluster))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_file)
        if self.transfer_path.exists():
            os.link(self.transfer_path, tmp_file)
        created_unix_ms = int(time.time() * 1000)
        started = time.perf_counter()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads; the child here
            # touches nothing another thread may have held (module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            self._child(entry_before, entry_last, created_unix_ms)  # never returns
        pause_s = time.perf_counter() - started
        self._writer = _Writer(pid, entry_last[1], started, pause_s)

    def _child(
        self,
        entry_before: tuple[bytes, int, int],
        entry_last: tuple[bytes, int, int],
        created_unix_ms: int,
    ) -> None:
        code = 1
        try:
            parent = os.getppid()
            _die_with_parent()
            if os.getppid() != parent:
                os._exit(1)
            gc.disable()  # the engine only grows here; no cycles worth collecting
            with contextlib.suppress(OSError):
                os.nice(10)
            blob = snapshot_blob(
                self.machine.engine,
                entry_before,
                entry_last,
                self.cluster,
                self.node,
                created_unix_ms,
            )
            write_file(self.next_path, blob)
            with SnapshotStore(self.store_path) as store:
                store.put(entry_last[1], blob, self.keep)
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                sys.stderr.write(
                    f"evx snapshot writer failed at index {entry_last[1]}:\n"
                    f"{traceback.format_exc()}\n"
                )
                sys.stderr.flush()
        finally:
            os._exit(code)

    def check(self) -> int:
        writer = self._writer
        if writer is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        pid, status = os.waitpid(writer.pid, os.WNOHANG)
        if pid == 0:
            return SERIALIZER_STATE.SERIALIZING
        self._writer = None
        write_s = time.perf_counter() - writer.started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            self._failed += 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.next_path)
            log.error("snapshot_failed", index=writer.index, exit_code=code)
            return SERIALIZER_STATE.FAILED
        if writer.superseded:
            # The store has it (older than what was installed); the transfer file and the
            # log already belong to the installed snapshot, and compacting to this index
            # would be a no-op for pysyncobj.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.next_path)
            return SERIALIZER_STATE.SUCCESS
        size = self.next_path.stat().st_size
        os.replace(self.next_path, self.transfer_path)
        sync_directory(self.transfer_path.parent)
        self._taken += 1
        self._last_index = writer.index
        self._last_created_s = time.time()
        self._last_bytes = size
        self._last_pause_s = writer.pause_s
        self._last_write_s = write_s
        log.info(
            "snapshot_taken",
            index=writer.index,
            bytes=size,
            pause_ms=round(writer.pause_s * 1000, 2),
            write_s=round(write_s, 3),
        )
        return SERIALIZER_STATE.SUCCESS

    # -- deserializer ------------------------------------------------------------------------

    def deserialize(self, path: str) -> tuple[Any, Any, Any]:
        with open(path, "rb") as file:
            blob = file.read()
        loaded = self.loaded
        try:
            header = snapshot_format.read_header(blob)
        except SnapshotError as error:
            self._refuse(f"the snapshot at {path} is unreadable: {error}")
            raise
        if (
            loaded is not None
            and header.index == loaded.index
            and header.state_digest == loaded.state_digest
        ):
            return _raft_data(loaded, self.node)  # loaded by recovery before the node started
        return _raft_data(self._install(blob), self.node)

    def _install(self, blob: bytes) -> SnapshotHeader:
        started = time.perf_counter()
        try:
            header, engine = load(blob, full_audit=self.full_audit)
        except SnapshotError as error:
            self._refuse(f"the snapshot received from the leader fails {error}")
            raise
        if self._writer is not None:
            self._writer.superseded = True
        try:
            with SnapshotStore(self.store_path) as store:
                store.put(header.index, blob, self.keep)
        except Exception as error:
            self._refuse(f"the snapshot received from the leader cannot be stored: {error}")
            raise
        self.machine.install(engine, header.index)
        self.loaded = header
        self._installed += 1
        self._last_index = header.index
        self._last_created_s = header.created_unix_ms / 1000
        self._last_bytes = len(blob)
        log.warning(
            "snapshot_installed",
            index=header.index,
            term=header.term,
            bytes=len(blob),
            orders=header.orders,
            state_hash=header.state_hash.hex(),
            seconds=round(time.perf_counter() - started, 3),
        )
        if self.on_installed is not None:
            self.on_installed(header.index, engine)
        return header

    def _refuse(self, reason: str) -> None:
        log.critical("snapshot_refused", reason=reason)
        self._stop(reason, EXIT_SNAPSHOT_FAILED)

    # -- Status ------------------------------------------------------------------------------

    def statistics(self) -> SnapshotStatistics:
        return SnapshotStatistics(
            taken=self._taken,
            failed=self._failed,
            installed=self._installed,
            last_index=self._last_index,
            last_bytes=self._last_bytes,
            last_pause_ms=round(self._last_pause_s * 1000, 3),
            last_write_s=round(self._last_write_s, 3),
            writing=self._writer is not None,
            last_created_unix_s=self._last_created_s,
        )

    def stop_writer(self) -> None:
        """Kill a snapshot writer still running (the node is stopping)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(writer.pid, 0)
            self._writer = None


def _entry(value: Any) -> tuple[bytes, int, int]:
    command, index, term = value
    return (bytes(command), int(index), int(term))


def _raft_data(header: SnapshotHeader, node: str) -> tuple[Any, Any, Any]:
    """What pysyncobj expects back from a deserializer: the last entry, the one before,
    and the cluster, which pysyncobj takes as this node's peers: without the node itself
    (pysyncobj compares its own Node with these strings, never equal, so it would become its
    own peer)."""
    return (
        header.entry_last,
        header.entry_before,
        [address for address in header.cluster if address != node],
    )


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stop_process(reason: str, code: int) -> None:
    from evx.replication.raft import stop_node  # noqa: PLC0415 - replication imports us

    stop_node(reason, code)
