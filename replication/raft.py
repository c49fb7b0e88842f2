"""One Raft node: pysyncobj, with the gaps evx cannot live with closed in this one module.

Strategy: `RaftNode` is a SyncObj with one replicated method, `apply_entry(entry: bytes)`,
which hands each committed entry, in log order, to a state machine (`StateMachine`: the
exchange engine, or a counter in tests). Everything else pysyncobj does as it does. The
gaps of ../shared/notes/pysyncobj.md, and where each is closed:

1. The journal is never flushed. `DurableJournal` (journal.py) replaces pysyncobj's
   FileJournal, and `_onTick` syncs it before each tick, whose first step on the leader is
   to count its own copy toward a majority. A follower's acknowledgements (`next_node_idx`)
   are held by `_GuardedTransport.send` and sent by `_onTick` right after that sync: every
   message read in one poll is acknowledged after one flush (group commit on followers, as
   batching is on the leader). Committed therefore means on disk on a majority.
2. Followers truncate entries they already hold. `_guard_append` rewrites each incoming
   `append_entries` so that entries the follower has with the same index and term are
   skipped: pysyncobj then truncates only at a real conflict, as Raft says. A message that
   would still cut entries without any conflict is dropped (the leader sends again).
3. An exception in the replicated method is logged and the entry retried forever. Here any
   exception while applying stops the process (exit code 70): every replica fails on the
   same entry, so the cluster halts instead of diverging.
4. A cut-off leader acts as leader for `leaderFallbackTimeout` (30 s by default): set to
   `leader_fallback_s` (2 s).
5. Without `password` the peer port unpickles anything. A node refuses to start without
   a cluster secret, and pysyncobj then authenticates and encrypts every peer message.

6. Membership changes (`change_membership`, dynamicMembershipChange on): pysyncobj never
   sets its one-change-at-a-time guard, so a change is refused here while a membership
   entry is not yet committed (docs/design/membership.md).

pysyncobj builds its journal through the module global `createJournal`; `_journal_factory`
swaps it for the construction of one node only (and can hand over a journal that snapshot
recovery has already opened and fitted). Log compaction is driven by a `SnapshotHooks`
(snapshots/writer.py) through pysyncobj's serializer hooks; without one it is off, since
pysyncobj's default would pickle this object from the tick thread.

Thread rule: pysyncobj's tick thread runs apply_entry, the callbacks and the transport.
Nothing here touches trio; bridge.py is the only place the two meet.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import pickle
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pysyncobj.syncobj as syncobj_module
import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.transport import TCPTransport

from .journal import DurableJournal

logger = structlog.get_logger("evx.replication")

EXIT_APPLY_FAILED = 70
EXIT_JOURNAL_FAILED = 71
EXIT_GATEWAY_FAILED = 73  # handling an applied entry on the trio side failed (72: snapshots)
EXIT_RAFT_PORT_UNAVAILABLE = 74  # the peer port could not be bound
ROLE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}


class StateMachine(Protocol):
    """What Raft replicates: a deterministic function of the entries applied in order."""

    def apply(self, index: int, entry: bytes) -> Any:
        """Apply the entry at this log index; raise only on a bug (the node then stops)."""

    @property
    def applied_index(self) -> int:
        """The log index of the last entry applied (0 before any)."""

    @property
    def state_hash(self) -> bytes:
        """A hash of the state; equal applied indexes must give equal hashes."""


class SnapshotHooks(Protocol):
    """pysyncobj's custom serializer, serializeChecker and deserializer, in one object."""

    def serialize(self, tmp_file: str, raft_data: Any) -> None: ...

    def check(self) -> int: ...

    def deserialize(self, path: str) -> tuple[Any, Any, Any]: ...


@dataclass
class TransferTicket:
    """One planned transfer, shared by the trio side and the tick thread: whether the
    target was told to stand (`sent`), and whether the caller gave up (`withdrawn`), both
    changed only under `lock`, so the caller always knows which happened first."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: bool = False
    withdrawn: bool = False

    def withdraw(self) -> bool:
        """Give up; True if the target had already been told to stand."""
        with self.lock:
            self.withdrawn = True
            return self.sent


class SecretRequiredError(ValueError):
    """A node was configured without a cluster secret."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Where a node listens, who its peers are, where its journal lives, and timing."""

    self_address: str  # "host:port" of this node's peer port
    peer_addresses: tuple[str, ...]
    journal_path: str
    secret: str  # the cluster secret: authenticates and encrypts peer traffic
    heartbeat_s: float = 0.05  # appendEntriesPeriod: how often the leader sends
    election_timeout_min_s: float = 0.5
    election_timeout_max_s: float = 1.2
    leader_fallback_s: float = 2.0  # a leader without a majority steps down after this
    connection_timeout_s: float = 3.5
    reconnect_s: float = 0.5
    tick_s: float = 0.02  # the tick thread's longest sleep waiting for sockets
    entry_bytes_max: int = 4 * 1024 * 1024  # larger entries are refused, never split
    flush_journal: bool = True  # False only to measure what durability costs
    bind_attempts_max: int = 10  # one a second; then the node stops (pysyncobj: forever)
    # With SnapshotHooks: the file a follower that fell behind is sent, and when to take
    # a snapshot (more entries than this in the log, or this long since the last one).
    transfer_path: str | None = None
    snapshot_every_entries: int = 20_000
    snapshot_every_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.secret:
            raise SecretRequiredError(
                "a node needs a cluster secret: without one pysyncobj's peer port would "
                "unpickle, and so run, whatever anyone sends it"
            )
        assert self.election_timeout_min_s > 3 * self.heartbeat_s
        assert self.election_timeout_max_s > self.election_timeout_min_s
        assert self.leader_fallback_s > self.election_timeout_max_s
        assert self.connection_timeout_s >= self.election_timeout_max_s

    def syncobj_conf(
        self, on_state_changed: Callable[[int, int], None], hooks: SnapshotHooks | None = None
    ) -> SyncObjConf:
        never = 10**12  # without hooks, compaction is off: see the module comment
        if hooks is not None:
            assert self.transfer_path is not None, "snapshots need a transfer file"
        return SyncObjConf(
            password=self.secret,
            autoTick=True,
            autoTickPeriod=self.tick_s,
            appendEntriesUseBatch=False,  # send each entry at once: latency, not 100 ms
            appendEntriesPeriod=self.heartbeat_s,
            appendEntriesBatchSizeBytes=self.entry_bytes_max,
            raftMinTimeout=self.election_timeout_min_s,
            raftMaxTimeout=self.election_timeout_max_s,
            leaderFallbackTimeout=self.leader_fallback_s,
            connectionTimeout=self.connection_timeout_s,
            connectionRetryTime=self.reconnect_s,
            commandsQueueSize=100_000,
            commandsWaitLeader=True,
            journalFile=self.journal_path,
            fullDumpFile=self.transfer_path if hooks is not None else None,
            serializer=hooks.serialize if hooks is not None else None,
            serializeChecker=hooks.check if hooks is not None else None,
            deserializer=hooks.deserialize if hooks is not None else None,
            logCompactionMinEntries=self.snapshot_every_entries if hooks is not None else never,
            logCompactionMinTime=self.snapshot_every_s if hooks is not None else never,
            logCompactionSplit=False,
            dynamicMembershipChange=True,  # evx admin add-node / remove-node
            onStateChanged=on_state_changed,
            useFork=False,
        )


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """A node's view of the cluster, taken on the tick thread (so it is consistent)."""

    address: str
    role: str
    leader: str | None
    term: int
    commit_index: int
    last_applied: int
    log_entries: int
    connected_peers: tuple[str, ...]
    peers: tuple[str, ...]  # the other members, as the replicated membership has them
    has_quorum: bool
    uptime_s: int
    applied_index: int  # of the state machine: the index its state_hash belongs to
    state_hash: bytes
    journal_syncs: int
    transferring: bool = False  # refusing new entries while leadership moves


class RaftNode(SyncObj):
    """A pysyncobj node that replicates one thing: entries for a `StateMachine`."""

    def __init__(
        self,
        config: RaftConfig,
        machine: StateMachine,
        on_applied: Callable[[int, Any], None] | None = None,
        *,
        snapshots: SnapshotHooks | None = None,
        journal: DurableJournal | None = None,
    ) -> None:
        self._config = config
        self._machine = machine
        self._on_applied = on_applied
        self._journal: DurableJournal | None = journal
        self._status: RaftStatus | None = None
        self._dropped_messages = 0
        self._status_lock = threading.Lock()
        self._transport: _GuardedTransport | None = None  # set by the transport itself
        self._held_acknowledgements: list[tuple[Any, Any]] = []
        self._tick_calls: list[Callable[[], None]] = []  # appended from any thread
        self._transferring = False
        with _journal_factory(self):
            super().__init__(
                config.self_address,
                list(config.peer_addresses),
                config.syncobj_conf(self._on_state_changed, snapshots),
                transportClass=_GuardedTransport,
            )
        assert self._journal is not None
        self.addOnTickCallback(self._take_status)

    # -- The replicated method --------------------------------------------------------------

    @replicated
    def apply_entry(self, entry: bytes) -> Any:
        # While entry i is applied, pysyncobj's last applied index is i - 1.
        index = self.raftLastApplied + 1
        if index <= self._machine.applied_index:
            # Already in the state: a node started from a snapshot, and pysyncobj applies
            # the journal from its start when its port is not yet bound on the first tick,
            # before it has read the snapshot's index (syncobj.py:612-621).
            return None
        try:
            result = self._machine.apply(index, entry)
            if self._on_applied is not None:
                self._on_applied(index, result)
        except BaseException:  # any failure here must stop the node
            stop_node(f"applying log entry {index} failed", EXIT_APPLY_FAILED)
        return result

    def propose(self, entry: bytes, callback: Callable[[Any, int], None]) -> None:
        """Append an entry (from any thread). `callback(result, fail_reason)` runs on the
        tick thread once the entry is applied here (reason 0), or has failed."""
        if len(entry) > self._config.entry_bytes_max:
            callback(None, FAIL_REASON.REQUEST_DENIED)
            return
        self.apply_entry(entry, callback=callback)

    # -- Durability and the message guard ---------------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 - pysyncobj's
        """Each tick opens with the leader counting its own copy of every entry toward a
        majority; whatever was appended since the last tick (commands, or the no-op of a
        new leader, appended while reading the votes) goes to disk first."""
        assert self._journal is not None
        while self._tick_calls:
            call = self._tick_calls.pop(0)
            try:
                call()
            except Exception:  # an admin request that failed: the node goes on
                logger.exception("tick_call_failed")
        self._journal.sync()
        held = self._held_acknowledgements
        if held:
            self._held_acknowledgements = []
            assert self._transport is not None
            for node, message in held:
                self._transport.send_now(node, message)
        super()._onTick(timeToWait)

    def _hold_acknowledgement(self, node: Any, message: Any) -> bool:
        """A follower acknowledges only what is on its disk: hold the acknowledgement until
        the next tick's sync (True: held)."""
        if type(message) is dict and message.get("type") == "next_node_idx":
            self._held_acknowledgements.append((node, message))
            return True
        return False

    def _refuse_forwarded_command(self, node: Any, message: Any) -> bool:
        """While leadership moves, the log is frozen: a command a follower forwards is
        answered NOT_LEADER at once, before anything is appended (its node's batcher
        proposes it again, and it reaches whoever leads next). True: refused."""
        if not self._transferring or type(message) is not dict:
            return False
        if message.get("type") != "apply_command":
            return False
        if "request_id" in message:
            assert self._transport is not None
            self._transport.send_now(
                node,
                {
                    "type": "apply_command_response",
                    "request_id": message["request_id"],
                    "error": FAIL_REASON.NOT_LEADER,
                },
            )
        return True

    def _guard_append(self, message: Any) -> Any:
        assert self._journal is not None
        guarded = guard_append(self._journal, message)
        if guarded is None:
            self._dropped_messages += 1
        return guarded

    # -- Status ----------------------------------------------------------------------------

    def _on_state_changed(self, old: int, new: int) -> None:
        logger.info(
            "raft_role_changed",
            address=self._config.self_address,
            old_role=ROLE_NAMES.get(old),
            new_role=ROLE_NAMES.get(new),
        )

    def _take_status(self) -> None:
        raw = self.getStatus()
        leader = raw.get("leader")
        partners = {
            key.removeprefix("partner_node_status_server_"): value
            for key, value in raw.items()
            if key.startswith("partner_node_status_server_")
        }
        connected = tuple(sorted(address for address, value in partners.items() if value == 2))
        assert self._journal is not None
        status = RaftStatus(
            address=self._config.self_address,
            role=ROLE_NAMES.get(raw["state"], "unknown"),
            leader=leader.id if leader is not None else None,
            term=raw["raft_term"],
            commit_index=raw["commit_idx"],
            last_applied=raw["last_applied"],
            log_entries=raw["log_len"],
            connected_peers=connected,
            peers=tuple(sorted(partners)),
            has_quorum=raw["has_quorum"],
            uptime_s=raw["uptime"],
            applied_index=self._machine.applied_index,
            state_hash=self._machine.state_hash,
            journal_syncs=self._journal.statistics().syncs,
            transferring=self._transferring,
        )
        with self._status_lock:
            self._status = status

    def status(self) -> RaftStatus | None:
        """The status taken at the end of the last tick (any thread may read it)."""
        with self._status_lock:
            return self._status

    def take_snapshot(self) -> None:
        """Take a snapshot (and compact the log) at the next tick, whatever its length."""
        self.forceLogCompaction()

    def change_membership(self, add: bool, address: str, callback: Callable[[int], None]) -> None:
        """Add or remove one node (its peer address), on the leader; `callback(reason)`
        runs on the tick thread when the change is committed (0) or refused. pysyncobj does
        not hold changes to one at a time (its guard is never set): a change is refused here
        while an earlier one is not yet committed."""

        def call() -> None:
            if not self._isLeader() or self._membership_pending():
                callback(FAIL_REASON.REQUEST_DENIED)
                return
            change = self.addNodeToCluster if add else self.removeNodeFromCluster
            change(address, lambda _result, reason: callback(reason))

        self.call_on_tick(call)

    def _membership_pending(self) -> bool:
        """Whether the log holds a membership entry that is not committed yet."""
        assert self._journal is not None
        commit = self.raftCommitIndex
        for command, index, _term in reversed(self._journal):
            if index <= commit:
                return False
            if command and command[0] == _MEMBERSHIP_ENTRY:
                return True
        return False

    def call_on_tick(self, call: Callable[[], None]) -> None:
        """Run `call` on the tick thread at the start of its next tick (from any thread):
        pysyncobj's own methods are not thread-safe."""
        self._tick_calls.append(call)

    def set_transferring(self, transferring: bool) -> None:
        """Freeze (True) or unfreeze the log for a leadership transfer: forwarded
        commands are refused meanwhile (the local batcher is paused by the caller)."""
        self._transferring = transferring

    def transfer_leadership(
        self, target: str | None, callback: Callable[[int], None], ticket: TransferTicket
    ) -> None:
        """Ask pysyncobj to hand leadership to `target` (None: the most caught-up peer);
        `callback(fail_reason)` runs on the tick thread. SUCCESS only means that the target
        was caught up and told to stand: the caller watches the status for the new leader.
        A ticket the caller has withdrawn gets REQUEST_DENIED and nothing is sent."""

        def call() -> None:
            with ticket.lock:
                if ticket.withdrawn:
                    callback(FAIL_REASON.REQUEST_DENIED)
                    return
                reasons: list[int] = []
                self.transferLeadership(target, lambda _result, reason: reasons.append(reason))
                if reasons and reasons[0] == FAIL_REASON.SUCCESS:
                    ticket.sent = True
            callback(reasons[0] if reasons else FAIL_REASON.REQUEST_DENIED)

        self.call_on_tick(call)

    @property
    def journal(self) -> DurableJournal:
        assert self._journal is not None
        return self._journal

    @property
    def dropped_messages(self) -> int:
        return self._dropped_messages


def guard_append(journal: Any, message: Any) -> Any:
    """An append_entries rewritten so that pysyncobj truncates the follower's log only at a
    real conflict (same index, other term); None if it must be dropped. `journal` is the
    follower's log: a sequence of (command, index, term) with consecutive indexes."""
    if type(message) is not dict or message.get("type") != "append_entries":
        return message
    if "prevLogIdx" not in message or "transmission" in message or not len(journal):
        return message
    first = journal[0][1]
    last = journal[-1][1]
    previous = message["prevLogIdx"]
    if previous is None or previous >= last or previous < first:
        return message  # nothing after it to cut, or pysyncobj resets the follower anyway
    entries = list(message.get("entries") or [])
    previous_term = message["prevLogTerm"]
    skipped = 0
    for _, index, term in entries:
        if index > last or journal[index - first][2] != term:
            break  # beyond the log, or a real conflict: pysyncobj may cut from here
        previous, previous_term = index, term
        skipped += 1
    rest = entries[skipped:]
    if not rest and previous < last:
        # Every entry is one the follower has, and it has more after them: cutting those
        # would drop entries it may already have acknowledged. Raft would keep them and
        # answer; pysyncobj cannot do one without the other, so the message is dropped.
        return None
    if skipped:
        message = dict(message)
        message["prevLogIdx"] = previous
        message["prevLogTerm"] = previous_term
        message["entries"] = rest
    return message


class _GuardedTransport(TCPTransport):
    """pysyncobj's TCP transport, with the journal synced before acknowledgements and
    incoming append_entries rewritten by `RaftNode._guard_append`."""

    def __init__(self, syncObj: RaftNode, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        self._evx_node = syncObj
        syncObj._transport = self
        super().__init__(syncObj, selfNode, otherNodes)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if self._evx_node._refuse_forwarded_command(node, message):
            return
        message = self._evx_node._guard_append(message)
        if message is not None:
            super()._onMessageReceived(node, message)

    def send(self, node: Any, message: Any) -> bool:
        if self._evx_node._hold_acknowledgement(node, message):
            return True
        return super().send(node, message)

    def send_now(self, node: Any, message: Any) -> bool:
        return super().send(node, message)

    def _maybeBind(self) -> None:  # noqa: N802 - pysyncobj's
        """pysyncobj retries a peer port it cannot bind forever, silently: here each
        failure is logged, and after `bind_attempts_max` the node stops (exit 74)."""
        attempts = self._bindAttempts
        super()._maybeBind()
        if self._bindAttempts == attempts:
            return
        config = self._evx_node._config
        logger.warning(
            "raft_port_bind_failed", address=config.self_address, attempt=self._bindAttempts
        )
        if self._bindAttempts >= config.bind_attempts_max:
            stop_node(
                f"cannot listen on the peer port {config.self_address} (in use, or not an "
                "address of this machine)",
                EXIT_RAFT_PORT_UNAVAILABLE,
            )


_factory_lock = threading.Lock()


@contextlib.contextmanager
def _journal_factory(node: RaftNode) -> Iterator[None]:
    """While one RaftNode is built, pysyncobj's `createJournal` makes a DurableJournal."""

    def create(journal_file: str | None) -> DurableJournal:
        assert journal_file is not None, "an evx node always has a journal file"
        if node._journal is not None:  # opened (and fitted to a snapshot) by recovery
            assert os.path.abspath(node._journal.path) == os.path.abspath(journal_file)
            return node._journal
        node._journal = open_journal(node._config)
        return node._journal

    with _factory_lock:
        original = syncobj_module.createJournal
        syncobj_module.createJournal = create
        try:
            yield
        finally:
            syncobj_module.createJournal = original


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # pysyncobj pickles with protocol 2, which writes bytes as a call of
        # _codecs.encode(text, "latin1"): that one function, and nothing else.
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        raise pickle.UnpicklingError(f"a log entry names {module}.{name}: not evx data")


def entry_payload(command: bytes) -> bytes | None:
    """What a journal entry carries for the state machine: the bytes given to
    `propose`, or None for pysyncobj's own entries (the no-op a new leader appends).
    pysyncobj stores a call as a type byte (0) and the pickle of (method id, arguments);
    the unpickler here builds plain data only, so reading a copied journal runs nothing."""
    if not command or command[0] != _REGULAR_ENTRY:
        return None
    try:
        call = _DataOnly(io.BytesIO(command[1:])).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError) as error:
        raise ValueError(f"a log entry that does not unpickle as data: {error}") from None
    if type(call) is not tuple or len(call) < 2 or type(call[1]) is not tuple or not call[1]:
        raise ValueError("a log entry that is not a call of apply_entry")
    payload = call[1][0]
    if type(payload) is not bytes:
        raise ValueError("a log entry whose argument is not bytes")
    return payload


_REGULAR_ENTRY = 0  # pysyncobj's _COMMAND_TYPE.REGULAR
_MEMBERSHIP_ENTRY = 2  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP


def open_journal(config: RaftConfig) -> DurableJournal:
    """A node's journal, which stops the node on any I/O error."""
    return DurableJournal(
        config.journal_path,
        flush=config.flush_journal,
        on_io_error=lambda what: stop_node(what, EXIT_JOURNAL_FAILED),
    )


def stop_node(reason: str, code: int) -> None:
    """Stop this process now, from any thread: log once, flush, exit without cleanup."""
    details = traceback.format_exc()
    try:
        logger.critical("node_stopped", reason=reason, exit_code=code)
        sys.stderr.write(f"evx node stopping: {reason}\n{details}\n")
        sys.stderr.flush()
    finally:
        os._exit(code)
