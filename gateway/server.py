"""The order-entry server: the trio shell around the sans-IO codec (docs/protocol.md).

Strategy (hypercorn's tcp_server, around h11's Connection): each client connection is a
`Session` with three tasks: a reader (bytes from the socket into the codec, messages to
their handlers), a writer (frames from the session's bounded queue to the socket), and a
heartbeat. A session never waits on another session or on the log: commands go to the
batcher with a callback, execution reports come from the applied stream, and a session
whose queue passes `outbound_messages_max` or `outbound_bytes_max` (a reader that does not
read) is cut off with `reader_must_keep_up`, so one slow client can never slow the node or
anyone else. Answers are bounded the other way: a session's messages are read only while
its queue is below half of those limits and fewer than `queries_open_max` of its queries
are being answered, so a client that asks faster than it reads is simply read more slowly,
and what one session can hold in memory stays bounded.

Execution reports are encoded once per event, kept per account in a bounded replay window
(`AccountStreams`), and pushed to every live session of that account. Everything here runs
on the trio thread; the engine is read for queries under ExchangeMachine.lock.

Failures, one mechanism each (STYLE.md): the codec raises RemoteProtocolError for garbage,
answered with one Error frame and the end of the session; refusals of single messages
(rate, unknown outcome, a query index not reached) are Error frames and the session goes
on; OSError on a socket ends that session only; nothing a client sends reaches the engine
except as a well-formed command.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from evx.core import COMMANDS, MassCancel, Reject, queries
from evx.replication.batcher import Batcher, Outcome
from evx.replication.control import AdminOutcome, NodeControl
from evx.replication.raft import RaftStatus
from evx.tools import logs
from evx.tools.config import GatewayLimits

from . import messages as wire
from .codec import Connection, Signal
from .codes import ErrorCode, LocalProtocolError, RemoteProtocolError
from .exchange import ExchangeMachine, ExchangeResult, StateInstalled, account_seqs
from .keys import verify

log = logs.get("evx.gateway")

_ENCODER = Connection(wire.SERVER)  # encoding only: a Connection keeps no sending state
_ACCOUNT_EVENTS = range(1, 32)
_OPERATOR_COMMANDS = range(32, 96)
_ROLE_CODES = {"follower": 0, "candidate": 1, "leader": 2}
_READ_BYTES_MAX = 65_536
CANCEL_ON_DISCONNECT_ATTEMPTS = 5
_SOCKET_FAILURES = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def frame(message: wire.Message) -> bytes:
    return _ENCODER.send(message)


# -- Account streams --------------------------------------------------------------------------


class AccountStream:
    """One account's execution reports: the last few, and the sessions that want them."""

    __slots__ = ("frames", "last_seq", "sessions")

    def __init__(self, window_max: int, last_seq: int = 0) -> None:
        self.frames: deque[tuple[int, bytes]] = deque(maxlen=window_max)
        self.last_seq = last_seq
        self.sessions: list[Session] = []

    @property
    def first_seq(self) -> int:
        return self.frames[0][0] if self.frames else self.last_seq + 1


class AccountStreams:
    def __init__(self, window_max: int) -> None:
        self._window_max = window_max
        self._streams: dict[int, AccountStream] = {}
        self._base_seqs: dict[int, int] = {}

    def reset(self, base_seqs: dict[int, int]) -> None:
        """Start over from a loaded state: each account's reports continue after the
        sequence number it has there; nothing before it can be replayed from this node."""
        self._streams.clear()
        self._base_seqs = base_seqs

    def stream(self, account_id: int) -> AccountStream:
        stream = self._streams.get(account_id)
        if stream is None:
            stream = self._streams[account_id] = AccountStream(
                self._window_max, self._base_seqs.get(account_id, 0)
            )
        return stream

    def publish(self, event: tuple[Any, ...], applied_index: int) -> None:
        account_id = event[1]
        stream = self.stream(account_id)
        seq = event[2]
        assert seq == stream.last_seq + 1, f"account {account_id} stream skipped to {seq}"
        data = frame(wire.report_from_event(event, applied_index))
        stream.frames.append((seq, data))
        stream.last_seq = seq
        for session in stream.sessions:
            session.push_report(seq, data)


# -- The gateway ------------------------------------------------------------------------------


@dataclass
class GatewayStatistics:
    sessions: int = 0
    sessions_opened: int = 0
    throttled_messages: int = 0
    sessions_throttled: int = 0  # sessions throttled at least once
    slow_consumers_cut: int = 0
    protocol_errors: int = 0
    outcome_unknown: int = 0
    entries_applied: int = 0


@dataclass
class NodeView:
    """What the gateway needs to know about its node, given by whoever runs it."""

    node_id: int
    node_ids_by_address: dict[str, int] = field(default_factory=dict)
    raft_status: Callable[[], RaftStatus | None] = lambda: None
    ready: Callable[[], bool] = lambda: False
    last_snapshot_index: Callable[[], int] = lambda: 0
    control: NodeControl | None = None  # snapshot now, planned transfer (NodeAdmin)


class Gateway:
    def __init__(
        self,
        machine: ExchangeMachine,
        batcher: Batcher,
        node: NodeView,
        limits: GatewayLimits,
        operator_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.machine = machine
        self.batcher = batcher
        self.node = node
        self.limits = limits
        self.operator_keys = frozenset(operator_keys)
        self.streams = AccountStreams(limits.replay_window_events_per_account_max)
        self.streams.reset(account_seqs(machine.engine))  # a node may start from a snapshot
        self.sessions: set[Session] = set()
        self.statistics = GatewayStatistics()
        self.applied_index = machine.applied_index
        self._applied = trio.Event()
        self._started = time.monotonic()

    # Called on the trio thread for every applied entry, in log order (Bridge.on_applied).
    def on_applied(self, index: int, result: Any) -> None:
        self.applied_index = index
        self.statistics.entries_applied += 1
        if isinstance(result, StateInstalled):
            self._state_installed(result)
        elif isinstance(result, ExchangeResult):
            for event in result.applied.events:
                if event[0] in _ACCOUNT_EVENTS and event[1]:
                    self.streams.publish(event, index)
            commands = len(result.applied.outcome_offsets)
            # The canonical line per applied batch; the leader's time-only batches (one per
            # clock tick on an idle exchange) only at debug level.
            (log.info if commands else log.debug)(
                "batch_applied",
                index=index,
                origin_node=result.origin[0],
                commands=commands,
                events=len(result.applied.events),
                time_ms=result.applied.time_ms,
            )
        self._applied.set()
        self._applied = trio.Event()

    def cancel_on_disconnect(self, account_id: int, peer: str, attempt: int = 1) -> None:
        """Cancel every order of the account; resent while its outcome is unknown (a
        mass cancel is idempotent), up to CANCEL_ON_DISCONNECT_ATTEMPTS times."""

        def done(outcome: Any) -> None:
            if outcome.known:
                log.info(
                    "cancelled_on_disconnect",
                    account_id=account_id,
                    peer=peer,
                    attempt=attempt,
                    index=outcome.index,
                    events=len(outcome.events),
                )
            elif attempt < CANCEL_ON_DISCONNECT_ATTEMPTS:
                log.warning("cancel_on_disconnect_unknown", account_id=account_id, attempt=attempt)
                self.cancel_on_disconnect(account_id, peer, attempt + 1)
            else:
                log.error(
                    "cancel_on_disconnect_not_confirmed", account_id=account_id, attempts=attempt
                )

        self.batcher.submit(MassCancel(account_id, 0).to_canonical(), done)

    def _state_installed(self, installed: StateInstalled) -> None:
        """The engine jumped to a snapshot's state: the reports in between were never
        published here, so every session ends (its client resumes elsewhere or here, from
        what this node can still replay) and the streams start again."""
        self.streams.reset(installed.account_seqs)
        log.warning("sessions_ended_by_install", index=installed.index, sessions=len(self.sessions))
        for session in list(self.sessions):
            session.end(
                ErrorCode.REPORTS_MUST_BE_CONTINUOUS,
                "this node caught up from a snapshot; log in again to resume",
            )

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        with trio.move_on_after(timeout_s):
            while self.applied_index < index:
                await self._applied.wait()
            return True
        return False

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        raw = getattr(stream, "socket", None)
        if raw is not None:
            raw.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.socket_send_buffer_bytes
            )
        session = Session(self, stream)
        try:
            await session.run()
        finally:
            await trio.aclose_forcefully(stream)

    def status_message(self, request_id: int) -> wire.Status:
        status = self.node.raft_status()
        applied_index, state_hash = self.machine.applied_point()
        role = _ROLE_CODES.get(status.role, 0) if status else 0
        leader = self.node.node_ids_by_address.get(status.leader or "", 0) if status else 0
        return wire.Status(
            request_id=request_id,
            node_id=self.node.node_id,
            role=role,
            leader_node_id=leader,
            term=status.term if status else 0,
            commit_index=status.commit_index if status else 0,
            applied_index=applied_index,
            state_hash=state_hash,
            uptime_s=int(time.monotonic() - self._started),
            last_snapshot_index=self.node.last_snapshot_index(),
            log_entries=status.log_entries if status else 0,
            peers_connected=min(len(status.connected_peers), 255) if status else 0,
            peers_total=min(len(status.peers), 255) if status else 0,
            flags=int(wire.StatusFlag.TRANSFERRING) if status and status.transferring else 0,
        )

    def hash_message(self, request_id: int, index: int) -> wire.HashAt:
        state_hash = self.machine.hash_at(index)
        return wire.HashAt(
            request_id=request_id,
            index=index,
            kept=int(state_hash is not None),
            state_hash=state_hash or bytes(32),
            applied_index=self.machine.applied_index,
        )


# -- Sessions ---------------------------------------------------------------------------------


class SessionClosed(Exception):  # noqa: N818 - control flow, not an error
    """End this session after sending `frame` (if any)."""

    def __init__(self, reason: str, frame: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame = frame


class Session:
    def __init__(self, gateway: Gateway, stream: trio.abc.Stream) -> None:
        self.gateway = gateway
        self.stream = stream
        self.connection = Connection(wire.SERVER)
        self.account_id: int | None = None  # 0 for an operator session
        self.cancel_on_disconnect = False
        self.next_seq = 0  # the account_seq of the next report this session sends
        self._outbound: deque[bytes] = deque()
        self._outbound_bytes = 0
        self._wake_writer = trio.Event()
        self._drained = trio.Event()
        self._high_water = max(2, gateway.limits.outbound_messages_max // 2)
        self._queries_open = 0  # answers on their way: they count as queued
        self._closing: SessionClosed | None = None
        self._last_sent = time.monotonic()
        self._last_received = time.monotonic()
        self._tokens = float(gateway.limits.message_burst_max)
        self._tokens_at = time.monotonic()
        self._throttled = False
        self.messages_in = 0
        self.messages_out = 0
        self._opened = time.monotonic()
        self._nonce = os.urandom(wire.NONCE_SIZE)
        self._nursery: trio.Nursery | None = None
        self._write_interrupted = False
        try:
            peer = stream.socket.getpeername()  # type: ignore[attr-defined]
            self.peer = f"{peer[0]}:{peer[1]}"
        except (AttributeError, OSError):
            self.peer = "memory"

    # -- Life ------------------------------------------------------------------------------

    async def run(self) -> None:
        gateway = self.gateway
        gateway.statistics.sessions_opened += 1
        reason = "closed"
        try:
            if len(gateway.sessions) >= gateway.limits.sessions_max:
                await self._send_now(
                    wire.LoginRejected(ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX, "node is full")
                )
                reason = "sessions_max"
                return
            gateway.sessions.add(self)
            gateway.statistics.sessions = len(gateway.sessions)
            self.send(
                wire.Challenge(
                    wire.PROTOCOL_VERSION,
                    gateway.node.node_id,
                    self._nonce,
                    gateway.machine.applied_index,
                )
            )
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._heartbeat)
                    try:
                        if self._closing is None:  # not ended before it got this far
                            await self._read()
                    except SessionClosed as closed:
                        if self._closing is None:
                            self._closing = closed
                    nursery.cancel_scope.cancel()
            except* _SOCKET_FAILURES as failures:
                # The writer or the reader lost the socket: this session is over, no one
                # else's. (The nursery groups what its tasks raised.)
                self._closing = SessionClosed(f"socket: {type(failures.exceptions[0]).__name__}")
            if self._closing is not None:
                reason = self._closing.reason
                # After a write abandoned halfway (a client cut off for not reading) the
                # stream ends mid-frame: another frame after it would be read as garbage.
                if self._closing.frame is not None and not self._write_interrupted:
                    with trio.move_on_after(1):
                        await self._send_raw(self._closing.frame)
        except _SOCKET_FAILURES as error:
            reason = f"socket: {type(error).__name__}"
        finally:
            self._leave()
            log.info(
                "session_closed",
                peer=self.peer,
                account_id=self.account_id,
                reason=reason,
                duration_s=round(time.monotonic() - self._opened, 3),
                messages_in=self.messages_in,
                messages_out=self.messages_out,
            )

    def _leave(self) -> None:
        gateway = self.gateway
        gateway.sessions.discard(self)
        gateway.statistics.sessions = len(gateway.sessions)
        if self.account_id:
            stream = gateway.streams.stream(self.account_id)
            if self in stream.sessions:
                stream.sessions.remove(self)
            if self.cancel_on_disconnect:
                gateway.cancel_on_disconnect(self.account_id, self.peer)

    def close(self, code: ErrorCode, text: str, message_type: int = 0, reference: int = 0) -> None:
        """End the session with one Error frame, from any handler."""
        raise SessionClosed(code.rule, frame(wire.Error(int(code), message_type, reference, text)))

    # -- Reading ---------------------------------------------------------------------------

    async def _read(self) -> None:
        limits = self.gateway.limits
        # Before login the bound is a deadline from the connection's start, whatever
        # arrives meanwhile (heartbeats and status queries do not keep a slot); after it,
        # silence for three heartbeat intervals.
        login_deadline = self._opened + limits.login_timeout_s
        while True:
            if self.account_id is not None:
                silence_s = 3 * limits.heartbeat_interval_ms / 1_000
                deadline = time.monotonic() + silence_s
                problem = f"nothing received for {silence_s} s"
            else:
                deadline = login_deadline
                problem = f"no login within {limits.login_timeout_s} s"
            with trio.move_on_at(_trio_time(deadline)) as waited:
                data = await self.stream.receive_some(_READ_BYTES_MAX)
            if waited.cancelled_caught:
                self.close(ErrorCode.HEARTBEAT_MUST_ARRIVE, problem)
            self.connection.receive_data(data)
            while True:
                try:
                    event = self.connection.next_event()
                except RemoteProtocolError as error:
                    self.gateway.statistics.protocol_errors += 1
                    raise SessionClosed(error.code.rule, frame(wire.Error.about(error))) from None
                if event is Signal.NEED_DATA:
                    break
                if event is Signal.CLOSED:
                    raise SessionClosed("peer_closed")
                self.messages_in += 1
                self._handle(event)
                if self._reading_must_wait():
                    # Backpressure: a client sending faster than it reads its answers is
                    # simply read more slowly. Only reports pushed to a client that does not
                    # read at all make the queue overflow (and cut it off).
                    await self._wait_drained()

    def _handle(self, message: wire.Message) -> None:
        if isinstance(message, wire.QueryStatus):
            self.send(self.gateway.status_message(message.request_id))
            return
        if isinstance(message, wire.QueryHash):
            self.send(self.gateway.hash_message(message.request_id, message.index))
            return
        if isinstance(message, wire.Heartbeat):
            return
        if isinstance(message, wire.Logout):
            raise SessionClosed("logout")
        if self.account_id is None:
            if isinstance(message, wire.Login):
                self._login(message)
                return
            self.close(ErrorCode.LOGIN_MUST_COME_FIRST, "log in first", message.TYPE)
        if isinstance(message, wire.Login):
            self.close(ErrorCode.LOGIN_MUST_COME_ONCE, "already logged in", message.TYPE)
        if not self._take_token():
            self.gateway.statistics.throttled_messages += 1
            if not self._throttled:
                self._throttled = True
                self.gateway.statistics.sessions_throttled += 1
            self._refuse(message, ErrorCode.MESSAGES_MUST_NOT_EXCEED_RATE, "throttled")
            return
        if isinstance(message, wire.ORDER_ENTRY):
            self._order_entry(message)
        elif isinstance(message, wire.OperatorCommand):
            self._operator_command(message)
        elif isinstance(message, wire.NodeAdmin):
            if self.account_id != 0:
                self._refuse(message, ErrorCode.OPERATOR_KEY_REQUIRED, "operator sessions only")
                return
            self._start(self._node_admin, message)
        elif isinstance(message, wire.QueryBook | wire.QueryEvent):
            self._start(self._query, message)
        elif isinstance(message, (wire.QueryOpenOrders, wire.QueryPositions, wire.QueryBalance)):
            if not self.account_id:
                self._refuse(message, ErrorCode.ACCOUNT_LOGIN_REQUIRED, "an account query")
                return
            self._start(self._query, message)
        else:  # the codec lets only client messages through; a new one needs a handler
            raise LocalProtocolError(
                ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN, f"no handler for {message}"
            )

    def _take_token(self) -> bool:
        limits = self.gateway.limits
        now = time.monotonic()
        self._tokens = min(
            float(limits.message_burst_max),
            self._tokens + (now - self._tokens_at) * limits.messages_per_s_max,
        )
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _refuse(self, message: wire.Message, code: ErrorCode, text: str) -> None:
        self.send(wire.Error(int(code), message.TYPE, _reference(message), text))

    # -- Login ---------------------------------------------------------------------------

    def _login(self, login: wire.Login) -> None:
        gateway = self.gateway
        if login.protocol_version != wire.PROTOCOL_VERSION:
            self._reject_login(ErrorCode.VERSION_MUST_BE_SUPPORTED, "protocol version 1 only")
        if not gateway.node.ready():
            self._reject_login(ErrorCode.NODE_MUST_BE_READY, "the node is still starting")
        if not verify(
            login.public_key, login.signature, wire.login_signed_bytes(self._nonce, login)
        ):
            self._reject_login(ErrorCode.SIGNATURE_MUST_VERIFY, "bad signature")
        account_id = login.account_id
        if account_id == 0:
            if login.public_key not in gateway.operator_keys:
                self._reject_login(ErrorCode.OPERATOR_KEY_REQUIRED, "not an operator key")
            self.account_id = 0
            self.send(
                wire.LoginAccepted(
                    0, 0, 0, gateway.applied_index, gateway.limits.heartbeat_interval_ms
                )
            )
            return
        with gateway.machine.lock:
            key = queries.account_public_key(gateway.machine.engine, account_id)
        if key is None:
            self._reject_login(ErrorCode.ACCOUNT_MUST_EXIST_FOR_LOGIN, f"no account {account_id}")
        if key != login.public_key:
            self._reject_login(ErrorCode.PUBLIC_KEY_MUST_MATCH_ACCOUNT, "not this account's key")
        stream = gateway.streams.stream(account_id)
        if len(stream.sessions) >= gateway.limits.sessions_per_account_max:
            self._reject_login(ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX, "too many sessions")
        next_seq = login.next_seq or stream.last_seq + 1
        if next_seq < stream.first_seq:
            self._reject_login(
                ErrorCode.REPLAY_MUST_BE_WITHIN_WINDOW,
                f"this node keeps reports from {stream.first_seq}",
            )
        if next_seq > stream.last_seq + 1:
            self._reject_login(
                ErrorCode.NODE_MUST_BE_READY,
                f"this node has reports up to {stream.last_seq} only",
            )
        self.account_id = account_id
        self.cancel_on_disconnect = bool(login.flags & wire.LoginFlag.CANCEL_ON_DISCONNECT)
        self.next_seq = next_seq
        self.send(
            wire.LoginAccepted(
                account_id,
                next_seq,
                stream.last_seq,
                gateway.applied_index,
                gateway.limits.heartbeat_interval_ms,
            )
        )
        for seq, data in stream.frames:
            if seq >= next_seq:
                self.push_report(seq, data)
        stream.sessions.append(self)

    def _reject_login(self, code: ErrorCode, text: str) -> None:
        raise SessionClosed(code.rule, frame(wire.LoginRejected(int(code), text)))

    # -- Commands --------------------------------------------------------------------------

    def _order_entry(self, message: wire.Message) -> None:
        if not self.account_id:
            self._refuse(message, ErrorCode.ACCOUNT_LOGIN_REQUIRED, "order entry needs an account")
            return
        command = wire.command_from_order_entry(message, self.account_id)
        self._submit(command, message, None)

    def _operator_command(self, message: wire.OperatorCommand) -> None:
        if self.account_id != 0:
            self._refuse(message, ErrorCode.OPERATOR_KEY_REQUIRED, "operator sessions only")
            return
        command = message.command_value()
        code = command[0] if command else None
        if type(code) is not int or code not in _OPERATOR_COMMANDS or code not in COMMANDS.by_code:
            self._refuse(message, ErrorCode.ACCOUNT_LOGIN_REQUIRED, "not an operator command code")
            return

        def answer(outcome: Outcome) -> None:
            if outcome.known:
                self.send(wire.OperatorResult.of(message.request_id, outcome.index, outcome.events))

        self._submit(command, message, answer)

    def _submit(
        self,
        command: tuple[Any, ...],
        message: wire.Message,
        on_known: Callable[[Outcome], None] | None,
    ) -> None:
        gateway = self.gateway
        if not gateway.node.ready():
            self._refuse(message, ErrorCode.NODE_MUST_BE_READY, "the node is not ready")
            return
        if gateway.batcher.waiting >= gateway.limits.pending_commands_max:
            self._refuse(message, ErrorCode.NODE_MUST_BE_READY, "too many commands waiting")
            return

        def done(outcome: Outcome) -> None:
            if outcome.known:
                if on_known is not None:
                    on_known(outcome)
            else:
                gateway.statistics.outcome_unknown += 1
                self._refuse(message, ErrorCode.OUTCOME_UNKNOWN, "resend it unchanged")

        gateway.batcher.submit(command, done)

    # -- Queries ---------------------------------------------------------------------------

    def _start(self, handler: Callable[..., Any], message: wire.Message) -> None:
        """Answer a query in a task of its own: it may wait for an index to be applied."""
        assert self._nursery is not None
        self._queries_open += 1

        async def answer() -> None:
            try:
                await handler(message)
            finally:
                self._queries_open -= 1
                if self._reading_may_resume():
                    self._drained.set()

        self._nursery.start_soon(answer)

    async def _query(self, message: Any) -> None:
        gateway = self.gateway
        if not await gateway.wait_applied(
            message.min_applied_index, gateway.limits.query_wait_s_max
        ):
            self._refuse(message, ErrorCode.QUERY_INDEX_NOT_REACHED, "index not reached")
            return
        engine = gateway.machine.engine
        account_id = self.account_id or 0
        with gateway.machine.lock:
            index = gateway.machine.applied_index
            if isinstance(message, wire.QueryOpenOrders):
                answer: wire.Message = wire.OpenOrders(
                    message.request_id,
                    index,
                    tuple(
                        wire.OpenOrder(*_values(view))
                        for view in queries.open_orders(engine, account_id)
                    ),
                )
            elif isinstance(message, wire.QueryPositions):
                answer = wire.Positions(
                    message.request_id,
                    index,
                    tuple(
                        wire.Position(market_id, position)
                        for market_id, position in queries.positions(engine, account_id)
                    ),
                )
            elif isinstance(message, wire.QueryBalance):
                cash, held = queries.balance(engine, account_id) or (0, 0)
                answer = wire.Balance(message.request_id, index, cash, held)
            elif isinstance(message, wire.QueryEvent):
                event_id = message.event_id or queries.event_of_market(engine, message.market_id)
                event = queries.event(engine, event_id, account_id)
                if event is None:
                    self.send(
                        wire.Error(
                            int(Reject.EVENT_MUST_EXIST),
                            message.TYPE,
                            message.request_id,
                            "no such event",
                        )
                    )
                    return
                answer = wire.EventInfo(
                    message.request_id,
                    index,
                    event.event_id,
                    int(event.mutually_exclusive),
                    int(event.exhaustive),
                    int(event.settled),
                    event.winner_market_id,
                    event.house_sets,
                    event.hold,
                    event.released,
                    event.ticker,
                    tuple(wire.EventMarket(market_id) for market_id in event.market_ids),
                )
            else:
                view = queries.book(engine, message.market_id)
                if view is None:
                    self.send(
                        wire.Error(
                            int(Reject.MARKET_MUST_EXIST),
                            message.TYPE,
                            message.request_id,
                            "no such market",
                        )
                    )
                    return
                answer = wire.Book(
                    message.request_id,
                    index,
                    view.market_id,
                    view.status,
                    tuple(wire.BookLevel(lv.price, lv.quantity, lv.orders) for lv in view.bids),
                    tuple(wire.BookLevel(lv.price, lv.quantity, lv.orders) for lv in view.asks),
                )
        self.send(answer)

    async def _node_admin(self, message: wire.NodeAdmin) -> None:
        control = self.gateway.node.control
        action = wire.AdminAction(message.action)
        if control is None:
            outcome = AdminOutcome(False, "this node takes no admin actions")
        elif action is wire.AdminAction.SNAPSHOT:
            outcome = await control.take_snapshot()
        elif action is wire.AdminAction.TRANSFER:
            outcome = await control.transfer(message.target_node_id)
        else:
            outcome = await control.change_membership(
                action is wire.AdminAction.ADD_NODE, message.address
            )
        log.info(
            "node_admin",
            action=action.name.lower(),
            target_node_id=message.target_node_id,
            address=message.address or None,
            done=outcome.done,
            text=outcome.text,
            peer=self.peer,
        )
        self.send(
            wire.NodeAdminResult(
                request_id=message.request_id,
                action=message.action,
                done=int(outcome.done),
                node_id=outcome.node_id,
                index=outcome.index,
                elapsed_us=outcome.elapsed_us,
                text=wire.fit_string(outcome.text),
            )
        )

    # -- Writing ---------------------------------------------------------------------------

    def send(self, message: wire.Message) -> None:
        """An answer, an error or a heartbeat: bounded by reading (a session is read only
        while its queue is below half its limits and few of its queries are open), so only
        the message count can cut it off, never the bytes of answers it asked for."""
        self._queue(frame(message), answer=True)

    def push_report(self, seq: int, data: bytes) -> None:
        if seq < self.next_seq:
            return  # the client already has it (it named a later next_seq)
        assert seq == self.next_seq, f"session stream skipped from {self.next_seq} to {seq}"
        self.next_seq = seq + 1
        self._queue(data)

    def end(self, code: ErrorCode, text: str) -> None:
        """End the session from outside its handlers: run() sends one Error frame."""
        if self._closing is not None:
            return
        self._closing = SessionClosed(code.rule, frame(wire.Error(int(code), 0, 0, text)))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()  # the reader stops; run() sends the frame

    def _queue(self, data: bytes, *, answer: bool = False) -> None:
        if self._closing is not None:
            return
        limits = self.gateway.limits
        if len(self._outbound) >= limits.outbound_messages_max or (
            not answer and self._outbound_bytes + len(data) > limits.outbound_bytes_max
        ):
            self.gateway.statistics.slow_consumers_cut += 1
            self.end(ErrorCode.READER_MUST_KEEP_UP, "the client does not read")
            return
        self._outbound.append(data)
        self._outbound_bytes += len(data)
        self._wake_writer.set()

    def _reading_must_wait(self) -> bool:
        limits = self.gateway.limits
        return (
            len(self._outbound) + self._queries_open >= self._high_water
            or self._outbound_bytes >= limits.outbound_bytes_max // 2
            or self._queries_open >= limits.queries_open_max
        )

    def _reading_may_resume(self) -> bool:
        limits = self.gateway.limits
        return (
            len(self._outbound) + self._queries_open < self._high_water // 2
            and self._outbound_bytes < limits.outbound_bytes_max // 4
            and self._queries_open < limits.queries_open_max
        )

    async def _write(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            while self._outbound:
                chunk = []
                size = 0
                while self._outbound and size < _READ_BYTES_MAX:
                    data = self._outbound.popleft()
                    chunk.append(data)
                    size += len(data)
                self.messages_out += len(chunk)
                await self._send_raw(b"".join(chunk))
                # Counted until written: a write the client does not read is still held.
                self._outbound_bytes -= size
                if self._reading_may_resume():
                    self._drained.set()

    async def _wait_drained(self) -> None:
        self._drained = trio.Event()
        while not self._reading_may_resume():
            await self._drained.wait()
            self._drained = trio.Event()

    async def _send_raw(self, data: bytes) -> None:
        self._write_interrupted = True  # until send_all returns: it may stop partway
        await self.stream.send_all(data)
        self._write_interrupted = False
        self._last_sent = time.monotonic()

    async def _send_now(self, message: wire.Message) -> None:
        with trio.move_on_after(1):
            await self._send_raw(frame(message))

    async def _heartbeat(self) -> None:
        interval_s = self.gateway.limits.heartbeat_interval_ms / 1_000
        while True:
            await trio.sleep(interval_s / 2)
            if self.account_id is not None and time.monotonic() - self._last_sent >= interval_s:
                self.send(wire.Heartbeat(self.gateway.applied_index))


def _trio_time(monotonic_s: float) -> float:
    """A time.monotonic() instant on trio's clock."""
    return trio.current_time() + (monotonic_s - time.monotonic())


def _reference(message: wire.Message) -> int:
    """The field that names the message in an Error (protocol.md section 5.1)."""
    if isinstance(message, wire.ReplaceOrder):
        return message.new_client_order_id
    if isinstance(message, wire.CancelOrder):
        return message.order_id or message.client_order_id
    for name in ("client_order_id", "request_id", "market_id", "order_group_id"):
        value = getattr(message, name, None)
        if value is not None:
            return value
    return 0


def _values(view: Any) -> tuple[Any, ...]:
    return tuple(getattr(view, name) for name in view.__dataclass_fields__)
