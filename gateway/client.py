"""The Python client library of evx: what a market maker's program talks to.

    async with Client(nodes, account_id=7, key=read_private_key("trader7.pem")) as client:
        accepted = await client.place(market_id=1, side=Side.BUY_YES, price=40, quantity=10)
        async for report in client.reports():
            print(report)

Strategy: one connection at a time, to any node of the cluster, through the same sans-IO
codec as the server. Every execution report of the account comes through one stream in
account_seq order; the library remembers the last one (from the first accepted login on,
even before any report arrives), so when the connection fails it logs in to the next node
with next_seq = last + 1 and gets exactly the reports it missed, then resends every command
whose outcome it has not seen, with the same client_order_id. The engine answers a resend
either with the original result (already in the stream) or `exists`; never a second order.
A command's coroutine returns its outcome report: OrderAccepted or OrderRejected for
`place`, OrderCancelled or OrderRejected for `cancel`.

Rules: a connection is over when it breaks, when the node is silent for
`heartbeat_intervals_silent_max` heartbeat intervals (docs/protocol.md 3.7), or when the
login exchange takes longer than `login_timeout_s`; the client then moves to the next node.
A node that refuses the connection (full, or not ready) is passed over the same way. A
command or query whose caller stopped waiting (its `request_timeout_s` passed, or it was
cancelled) is forgotten: it is never resent, and if the first send got through, its reports
still arrive in `reports()`.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evx.core import CancelReason, OrderType, SelfTradePrevention, TimeInForce

from . import limits
from . import messages as wire
from .codec import Connection, Signal
from .codes import ErrorCode, RemoteProtocolError
from .keys import public_bytes, sign

_NEW_ORDER, _CANCEL, _REPLACE, _MASS_CANCEL = 1, 2, 3, 4  # engine command codes
_SET_GROUP, _RESET_GROUP, _CONVERT = 5, 6, 7


class ConnectionLostError(Exception):
    """The connection to a node ended; the client moves to the next one."""


_CONNECTION_FAILURES = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    RemoteProtocolError,
)


class ClientError(Exception):
    """The cluster refused something for good (a login, a query), or is unreachable."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{_code_name(code)}: {text}")
        self.code = code
        self.text = text


# Refusals by one node, not by the cluster: a node that answers a connection or a login with
# one of these may take it later, and another node may take it now, so the client moves on.
_REFUSALS_OF_ONE_NODE = (ErrorCode.NODE_MUST_BE_READY, ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX)
_REFUSAL_ROUNDS_MAX = 10  # times around every node, refused each time, before a first login fails


@dataclass
class _Pending:
    """A command sent and not yet answered; resent as is after a failover."""

    message: wire.Message
    key: tuple[Any, ...]
    done: trio.Event
    result: Any = None
    generation: int = 0  # the connection it was last sent on
    waiters: int = 0  # callers still waiting for it; at 0 it is forgotten


class Client:
    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        account_id: int,
        key: Ed25519PrivateKey,
        next_seq: int = 0,
        cancel_on_disconnect: bool = False,
        connect_timeout_s: float = 5.0,
        login_timeout_s: float = 5.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        assert nodes, "a client needs at least one node"
        self.nodes = list(nodes)
        self.account_id = account_id
        self._key = key
        self._public_key = public_bytes(key)
        assert next_seq >= 0
        self.last_seq = max(next_seq - 1, 0)
        # Login.next_seq 0 means "from now on": right for the first login only. Once a login
        # is accepted, last_seq is known and every later login names the report after it,
        # so a failover before the first report still replays what the client missed.
        self._from_now_on = next_seq == 0
        self._cancel_on_disconnect = cancel_on_disconnect
        self._connect_timeout_s = connect_timeout_s
        self._login_timeout_s = login_timeout_s
        self._request_timeout_s = request_timeout_s
        # Ids increase across runs of the program too: a retry always reuses its own id,
        # and a new order never takes an id an earlier run used (docs/engine.md).
        self._client_order_ids = itertools.count(time.time_ns() // 1_000)
        self._request_ids = itertools.count(1)
        self._pending: dict[tuple[Any, ...], _Pending] = {}
        self._queries: dict[int, _Pending] = {}
        self._reports: deque[wire.ExecutionReport] = deque()
        self._report_arrived = trio.Event()
        self._stream: trio.SocketStream | None = None
        self._connection: Connection | None = None
        self._connected = trio.Event()
        self._node_index = 0
        self.node: tuple[str, int] | None = None
        self.applied_index = 0
        self.failovers = 0
        self._nursery: trio.Nursery | None = None
        self._send_lock = trio.Lock()
        self._generation = 0  # goes up with every connection

    # -- Life ------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        # The nursery lives from here to __aexit__; an ExitStack keeps its nesting right
        # even when the first connection fails inside __aenter__.
        self._exit_stack = contextlib.AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            self._nursery = await self._exit_stack.enter_async_context(trio.open_nursery())
            await self._nursery.start(self._keep_connected)
        except BaseException:
            try:
                if not await self._exit_stack.__aexit__(*sys.exc_info()):
                    raise
            except BaseExceptionGroup as group:
                # A login refused for good (a ClientError) reaches the caller as itself,
                # not wrapped in the nursery's exception group.
                refusal = _only_client_error(group)
                if refusal is None:
                    raise
                raise refusal from None
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._nursery is not None
        if self._stream is not None and exc_info[0] is None:
            with trio.move_on_after(1):
                await self._send_quietly(wire.Logout())
        self._nursery.cancel_scope.cancel()
        return await self._exit_stack.__aexit__(*exc_info)

    async def _keep_connected(self, task_status: trio.TaskStatus[None]) -> None:
        """Connect, serve until the connection fails, move to the next node, again."""
        started: list[bool] = []

        def on_connected() -> None:
            if not started:
                started.append(True)
                task_status.started()

        refusals = 0
        last_refusal: ClientError | None = None
        while True:
            try:
                await self._connect_once(on_connected)
            except (ConnectionLostError, *_CONNECTION_FAILURES):
                pass  # that node is gone, slow, silent or broken: try the next
            except ClientError as error:
                if error.code not in _REFUSALS_OF_ONE_NODE:
                    raise
                refusals += 1  # a node behind the client, or full: another may serve
                last_refusal = error
            if self._connected.is_set():
                self._connected = trio.Event()
                self.failovers += 1
            self._stream = None
            self._connection = None
            self._node_index = (self._node_index + 1) % len(self.nodes)
            if not started and refusals > _REFUSAL_ROUNDS_MAX * len(self.nodes):
                assert last_refusal is not None
                raise ClientError(
                    last_refusal.code, f"no node would take the login: {last_refusal.text}"
                )
            await trio.sleep(0.05)

    async def _connect_once(self, on_connected: Callable[[], None]) -> None:
        host, port = self.nodes[self._node_index]
        with trio.fail_after(self._connect_timeout_s):
            stream = await trio.open_tcp_stream(host, port)
        connection = Connection(wire.CLIENT)
        self._stream, self._connection = stream, connection
        self._generation += 1
        self.node = (host, port)
        try:
            with trio.move_on_after(self._login_timeout_s) as login_wait:
                answer = await self._log_in()
            if login_wait.cancelled_caught:
                raise ConnectionLostError(f"no login answer within {self._login_timeout_s} s")
            if self._from_now_on:
                # The session starts at answer.next_seq: everything before it counts as seen.
                # (An operator session gets no reports, and next_seq 0.)
                self.last_seq = max(answer.next_seq - 1, 0)
                self._from_now_on = False
            self.applied_index = answer.applied_index
            replay_until = answer.last_seq
            silence_s = limits.heartbeat_intervals_silent_max * answer.heartbeat_interval_ms / 1_000
            self._connected.set()
            on_connected()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeats, answer.heartbeat_interval_ms / 1_000)
                    resent = False
                    while True:
                        if not resent and self.last_seq >= replay_until:
                            resent = True
                            nursery.start_soon(self._resend_pending)
                        message = await self._receive(silence_s)
                        self._dispatch(message)
            except* (ConnectionLostError, *_CONNECTION_FAILURES) as failures:
                # The nursery groups what its tasks raised; any of these means this
                # connection is over, and the caller moves to the next node.
                raise ConnectionLostError(str(failures.exceptions[0])) from None
        finally:
            await trio.aclose_forcefully(stream)

    async def _log_in(self) -> wire.LoginAccepted:
        """Challenge, Login, LoginAccepted; a refusal raises ClientError with its reason."""
        first = await self._receive()
        if isinstance(first, wire.LoginRejected):
            # A node past its sessions_max refuses a connection before any Challenge.
            raise ClientError(first.reason, first.text)
        if not isinstance(first, wire.Challenge):
            raise ClientError(ErrorCode.LOGIN_MUST_COME_FIRST, f"expected Challenge: {first}")
        challenge = first
        next_seq = 0 if self._from_now_on else self.last_seq + 1
        login = wire.Login(
            wire.PROTOCOL_VERSION,
            self.account_id,
            self._public_key,
            next_seq,
            int(wire.LoginFlag.CANCEL_ON_DISCONNECT) if self._cancel_on_disconnect else 0,
            bytes(64),
        )
        login = wire.Login(
            *(getattr(login, name) for name in wire.Login.FIELDS[:-1]),
            sign(self._key, wire.login_signed_bytes(challenge.nonce, login)),
        )
        await self._send(login)
        answer = await self._receive()
        while isinstance(answer, wire.Heartbeat | wire.Status):
            answer = await self._receive()
        if isinstance(answer, wire.LoginRejected):
            raise ClientError(answer.reason, answer.text)
        if not isinstance(answer, wire.LoginAccepted):
            raise ClientError(ErrorCode.LOGIN_MUST_COME_FIRST, f"expected LoginAccepted: {answer}")
        return answer

    async def _receive(self, silence_s: float = float("inf")) -> wire.Message:
        """The next message; ConnectionLostError if nothing at all arrives for silence_s."""
        assert self._connection is not None and self._stream is not None
        while True:
            event = self._connection.next_event()
            if event is Signal.NEED_DATA:
                with trio.move_on_after(silence_s) as waited:
                    data = await self._stream.receive_some(65_536)
                if waited.cancelled_caught:
                    raise ConnectionLostError(f"the node was silent for {silence_s} s")
                self._connection.receive_data(data)
                continue
            if event is Signal.CLOSED:
                raise trio.BrokenResourceError("the node closed the connection")
            return event  # type: ignore[return-value]

    async def _send(self, message: wire.Message) -> None:
        assert self._connection is not None and self._stream is not None
        data = self._connection.send(message)
        async with self._send_lock:
            await self._stream.send_all(data)

    async def _heartbeats(self, interval_s: float) -> None:
        while True:
            await trio.sleep(interval_s)
            await self._send(wire.Heartbeat(0))

    async def _resend_pending(self) -> None:
        """After a failover (and the replay of what was missed), resend what was sent on
        an earlier connection and is still unanswered."""
        for pending in [*self._pending.values(), *self._queries.values()]:
            # Checked at each send: a caller may give up while an earlier resend is written.
            # Generation 0: never sent yet; its own caller sends it once connected, so
            # sending it here too would send it twice (a NodeAdmin would run twice).
            # A NodeAdmin acts on the node it was sent to, which may have run it: never
            # resent (its caller times out and looks at the cluster instead).
            if isinstance(pending.message, wire.NodeAdmin):
                continue
            if self._waited_for(pending) and 0 < pending.generation < self._generation:
                pending.generation = self._generation
                await self._send(pending.message)

    def _table_of(self, pending: _Pending) -> tuple[dict[Any, _Pending], Any]:
        """The table that holds `pending` while a caller waits for it, and its key there."""
        if _is_query(pending.message):
            return self._queries, pending.key[0]
        return self._pending, pending.key

    def _waited_for(self, pending: _Pending) -> bool:
        """Whether a caller still waits for `pending`: only then is it ever (re)sent."""
        table, key = self._table_of(pending)
        return table.get(key) is pending and not pending.done.is_set()

    # -- Incoming --------------------------------------------------------------------------

    def _dispatch(self, message: wire.Message) -> None:
        if isinstance(message, wire.ExecutionReport):
            if message.account_seq <= self.last_seq:
                return  # a duplicate after a failover: already processed
            # From the first accepted login on, last_seq is the session's next_seq - 1.
            assert message.account_seq == self.last_seq + 1, (
                f"report {message.account_seq} after {self.last_seq}: a gap"
            )
            self.last_seq = message.account_seq
            self.applied_index = max(self.applied_index, message.applied_index)
            self._resolve_report(message)
            self._reports.append(message)
            self._report_arrived.set()
            self._report_arrived = trio.Event()
        elif isinstance(message, wire.Error):
            self._on_error(message)
        elif isinstance(message, wire.Heartbeat):
            self.applied_index = max(self.applied_index, message.applied_index)
        elif hasattr(message, "request_id"):
            pending = self._queries.pop(message.request_id, None)  # type: ignore[attr-defined]
            if pending is not None:
                pending.result = message
                pending.done.set()

    def _resolve_report(self, report: wire.ExecutionReport) -> None:
        keys: list[tuple[Any, ...]] = []
        if isinstance(report, wire.OrderAccepted):
            keys.append((_NEW_ORDER, report.client_order_id))
        elif isinstance(report, wire.OrderReplaced):
            keys.append((_REPLACE, report.client_order_id))
        elif isinstance(report, wire.OrderCancelled) and report.reason == CancelReason.REQUESTED:
            keys += [(_CANCEL, report.order_id, 0), (_CANCEL, 0, report.client_order_id)]
        elif isinstance(report, wire.MassCancelled):
            keys.append((_MASS_CANCEL, report.market_id))
        elif isinstance(report, wire.OrderGroupUpdated):
            keys += [(_SET_GROUP, report.order_group_id), (_RESET_GROUP, report.order_group_id)]
        elif isinstance(report, wire.PositionsConverted):
            keys.append((_CONVERT, report.client_order_id))
        elif isinstance(report, wire.OrderRejected):
            if report.command_code == _CANCEL:
                keys += [(_CANCEL, report.related_id, 0), (_CANCEL, 0, report.client_order_id)]
            elif report.command_code in (_MASS_CANCEL, _SET_GROUP, _RESET_GROUP):
                keys.append((report.command_code, report.related_id))
            else:
                keys.append((report.command_code, report.client_order_id))
        for key in keys:
            pending = self._pending.get(key)
            if pending is not None and not pending.done.is_set():
                del self._pending[key]
                pending.result = report
                pending.done.set()
                return

    def _on_error(self, error: wire.Error) -> None:
        named = self._pending_named_by(error)
        if error.code == ErrorCode.OUTCOME_UNKNOWN:
            # The node could not tell whether it got through: resend it, unchanged. (An
            # operator command resent is answered `exists` if the first one was applied; an
            # order-entry message resent is safe for the same reason, so when the reference
            # could name several, each is resent.)
            if self._nursery is not None:
                for pending in named:
                    self._nursery.start_soon(self._resend, pending)
            return
        if len(named) != 1:
            # About the session as a whole (the node closes it and the client moves on),
            # about a message no caller waits for any more, or not clear which one.
            return
        [pending] = named
        table, key = self._table_of(pending)
        del table[key]
        pending.result = ClientError(error.code, error.text)
        pending.done.set()

    def _pending_named_by(self, error: wire.Error) -> list[_Pending]:
        """The unanswered messages an Error may concern: by its type first, then by the
        field that type's `reference` carries (docs/protocol.md 5.1). Matching on the type
        first keeps a query's request_id from ever being taken for a client_order_id."""
        named = wire.MESSAGES.get(error.message_type)  # None for 0: the session as a whole
        if named is None:
            return []
        if _is_query(named):
            pending = self._queries.get(error.reference)
            if pending is None or pending.message.TYPE != error.message_type:
                return []
            return [pending]
        candidates = [p for p in self._pending.values() if p.message.TYPE == error.message_type]
        for pending in candidates:
            if _reference(pending.message) == error.reference:
                return [pending]
        # A gateway that names CancelOrder and ReplaceOrder by their client_order_id instead
        # (0 when the order is named by order_id) is still understood where that is clear.
        return [p for p in candidates if _client_order_id_reference(p.message) == error.reference]

    async def _resend(self, pending: _Pending) -> None:
        if self._waited_for(pending):
            await self._send_quietly(pending.message)

    async def _send_quietly(self, message: wire.Message) -> None:
        # If the connection is going, the failover resends it.
        with contextlib.suppress(
            AssertionError, trio.BrokenResourceError, trio.ClosedResourceError, OSError
        ):
            await self._send(message)

    # -- Commands --------------------------------------------------------------------------

    async def _request(self, message: wire.Message, key: tuple[Any, ...]) -> Any:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(message, key, trio.Event())
        return await self._wait_for(pending)

    async def _wait_for(self, pending: _Pending) -> Any:
        """Send `pending` and wait for its answer, within request_timeout_s (TooSlowError).
        When its last caller stops waiting it is forgotten: the application counts it as
        failed, so no later failover may resend it."""
        pending.waiters += 1
        try:
            with trio.fail_after(self._request_timeout_s):
                await self._connected.wait()
                pending.generation = self._generation
                await self._send_quietly(pending.message)
                await pending.done.wait()
        finally:
            pending.waiters -= 1
            table, key = self._table_of(pending)
            if not pending.waiters and table.get(key) is pending:
                del table[key]
        if isinstance(pending.result, ClientError):
            raise pending.result
        return pending.result

    def next_client_order_id(self) -> int:
        return next(self._client_order_ids)

    async def place(
        self,
        market_id: int,
        side: int,
        price: int,
        quantity: int,
        *,
        order_type: int = OrderType.LIMIT,
        time_in_force: int = TimeInForce.GTC,
        flags: int = 0,
        self_trade_prevention: int = SelfTradePrevention.CANCEL_AGGRESSING,
        expire_time_ms: int = 0,
        max_cost: int = 0,
        order_group_id: int = 0,
        client_order_id: int | None = None,
    ) -> wire.OrderAccepted | wire.OrderRejected:
        client_order_id = client_order_id or self.next_client_order_id()
        message = wire.NewOrder(
            client_order_id,
            market_id,
            int(side),
            int(order_type),
            int(time_in_force),
            int(flags),
            int(self_trade_prevention),
            price,
            quantity,
            expire_time_ms,
            max_cost,
            order_group_id,
        )
        return await self._request(message, (_NEW_ORDER, client_order_id))

    async def cancel(
        self, order_id: int = 0, *, client_order_id: int = 0
    ) -> wire.OrderCancelled | wire.OrderRejected:
        message = wire.CancelOrder(order_id, client_order_id)
        key = (_CANCEL, order_id, 0) if order_id else (_CANCEL, 0, client_order_id)
        return await self._request(message, key)

    async def replace(
        self,
        order_id: int,
        price: int,
        quantity: int,
        *,
        client_order_id: int = 0,
        new_client_order_id: int | None = None,
    ) -> wire.OrderReplaced | wire.OrderRejected:
        new_client_order_id = new_client_order_id or self.next_client_order_id()
        message = wire.ReplaceOrder(order_id, client_order_id, new_client_order_id, price, quantity)
        return await self._request(message, (_REPLACE, new_client_order_id))

    async def mass_cancel(self, market_id: int = 0) -> wire.MassCancelled | wire.OrderRejected:
        return await self._request(wire.MassCancel(market_id), (_MASS_CANCEL, market_id))

    async def set_order_group(
        self, order_group_id: int, contract_limit: int, window_ms: int
    ) -> wire.OrderGroupUpdated | wire.OrderRejected:
        """Create the account's order group (a kill switch) or change its limit: when its
        orders fill `contract_limit` contracts within `window_ms`, they are all cancelled
        and new ones refused until `reset_order_group`."""
        message = wire.SetOrderGroup(order_group_id, contract_limit, window_ms)
        return await self._request(message, (_SET_GROUP, order_group_id))

    async def reset_order_group(
        self, order_group_id: int
    ) -> wire.OrderGroupUpdated | wire.OrderRejected:
        message = wire.ResetOrderGroup(order_group_id)
        return await self._request(message, (_RESET_GROUP, order_group_id))

    async def convert_no(
        self, market_id: int, quantity: int, *, client_order_id: int | None = None
    ) -> wire.PositionsConverted | wire.OrderRejected:
        """In an exhaustive event, turn `quantity` NO of `market_id` into a YES of every
        other market of the event (docs/engine.md, conversions). Exactly once: resent
        with the same client_order_id, it is answered `exists`."""
        client_order_id = client_order_id or self.next_client_order_id()
        message = wire.ConvertNo(client_order_id, market_id, quantity)
        return await self._request(message, (_CONVERT, client_order_id))

    # -- Queries ---------------------------------------------------------------------------

    async def _query(self, make: Any) -> Any:
        request_id = next(self._request_ids)
        message = make(request_id)
        pending = self._queries[request_id] = _Pending(message, (request_id,), trio.Event())
        return await self._wait_for(pending)

    async def open_orders(self, min_applied_index: int | None = None) -> wire.OpenOrders:
        index = self.applied_index if min_applied_index is None else min_applied_index
        return await self._query(lambda rid: wire.QueryOpenOrders(rid, index))

    async def positions(self, min_applied_index: int | None = None) -> wire.Positions:
        index = self.applied_index if min_applied_index is None else min_applied_index
        return await self._query(lambda rid: wire.QueryPositions(rid, index))

    async def balance(self, min_applied_index: int | None = None) -> wire.Balance:
        index = self.applied_index if min_applied_index is None else min_applied_index
        return await self._query(lambda rid: wire.QueryBalance(rid, index))

    async def book(self, market_id: int, min_applied_index: int = 0) -> wire.Book:
        return await self._query(lambda rid: wire.QueryBook(rid, min_applied_index, market_id))

    async def event(
        self, event_id: int = 0, *, market_id: int = 0, min_applied_index: int = 0
    ) -> wire.EventInfo:
        """An event's markets and flags (by its id, or as the event of `market_id`), with
        this account's hold and released payout in it."""
        return await self._query(
            lambda rid: wire.QueryEvent(rid, min_applied_index, event_id, market_id)
        )

    async def operate(self, command: Any) -> wire.OperatorResult:
        """An operator command (an engine command, or its canonical tuple); operator
        sessions only. The result's events are canonical tuples, the outcome first."""
        return await self._query(lambda rid: wire.OperatorCommand.of(rid, command))

    async def status(self) -> wire.Status:
        return await self._query(wire.QueryStatus)

    async def node_admin(
        self, action: int, target_node_id: int = 0, address: str = ""
    ) -> wire.NodeAdminResult:
        """An action on the node this session is on (operator sessions only): connect a
        client to that one node to be sure which node it is."""
        return await self._query(lambda rid: wire.NodeAdmin(rid, action, target_node_id, address))

    # -- Reports ---------------------------------------------------------------------------

    async def reports(self) -> AsyncIterator[wire.ExecutionReport]:
        """Every execution report of the account, in account_seq order, as it arrives."""
        while True:
            while self._reports:
                yield self._reports.popleft()
            await self._report_arrived.wait()

    def drain_reports(self) -> list[wire.ExecutionReport]:
        reports = list(self._reports)
        self._reports.clear()
        return reports


async def query_status(host: str, port: int, timeout_s: float = 3.0) -> wire.Status:
    """One node's Status, without logging in (what `evx admin status` uses)."""
    status: wire.Status = await _ask_before_login(host, port, wire.QueryStatus(1), timeout_s)
    return status


async def query_hash(host: str, port: int, index: int, timeout_s: float = 3.0) -> wire.HashAt:
    """One node's state hash right after log entry `index`, without logging in."""
    answer: wire.HashAt = await _ask_before_login(host, port, wire.QueryHash(1, index), timeout_s)
    return answer


async def _ask_before_login(
    host: str, port: int, query: wire.QueryStatus | wire.QueryHash, timeout_s: float
) -> Any:
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        connection = Connection(wire.CLIENT)
        try:
            await stream.send_all(connection.send(query))
            while True:
                event = connection.next_event()
                if event is Signal.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65_536))
                    continue
                if event is Signal.CLOSED:
                    raise ClientError(ErrorCode.NODE_MUST_BE_READY, "closed without an answer")
                if isinstance(event, wire.LoginRejected):
                    # A full node refuses the connection before it reads the query.
                    raise ClientError(event.reason, event.text)
                if isinstance(event, wire.Status | wire.HashAt):
                    return event
        finally:
            await trio.aclose_forcefully(stream)


def sole_exception(error: BaseException) -> BaseException:
    """The one exception inside nested exception groups (as a nursery wraps what its task
    raised), or `error` itself when it holds more than one or is not a group."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _only_client_error(group: BaseExceptionGroup) -> ClientError | None:
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    return leaves[0] if len(leaves) == 1 and isinstance(leaves[0], ClientError) else None


def _is_query(message: wire.Message | type[wire.Message]) -> bool:
    """Queries, operator commands and QueryStatus: named by a request_id, kept in _queries."""
    return "request_id" in message.FIELDS


def _reference(message: wire.Message) -> int:
    """The id an Error names `message` by (docs/protocol.md 5.1, Error)."""
    if isinstance(message, wire.NewOrder | wire.ConvertNo):
        return message.client_order_id
    if isinstance(message, wire.ReplaceOrder):
        return message.new_client_order_id
    if isinstance(message, wire.CancelOrder):
        return message.order_id or message.client_order_id
    if isinstance(message, wire.MassCancel):
        return message.market_id
    if isinstance(message, wire.SetOrderGroup | wire.ResetOrderGroup):
        return message.order_group_id
    assert _is_query(message), message
    return message.request_id  # type: ignore[attr-defined]


def _client_order_id_reference(message: wire.Message) -> int | None:
    """The reference a gateway that names every order-entry message by its client_order_id
    gives CancelOrder and ReplaceOrder; None for the others (named the same either way)."""
    if isinstance(message, wire.CancelOrder | wire.ReplaceOrder):
        return message.client_order_id
    return None


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).rule
    except ValueError:
        return str(code)
