"""The Python client library of evx: what a market maker's program talks to.

    async with Client(nodes, account_id=7, key=read_private_key("trader7.pem")) as client:
        accepted = await client.place(market_id=1, side=Side.BUY_YES, price=40, quantity=10)
        async for report in client.reports():
            print(report)

Strategy: one connection at a time, to any node of the cluster, through the same sans-IO
codec as the server. Every execution report of the account comes through one stream in
account_seq order; the library remembers the last one, so when the connection fails it
logs in to the next node with next_seq = last + 1 and gets exactly the reports it missed,
then resends every command whose outcome it has not seen, with the same client_order_id.
The engine answers a resend either with the original result (already in the stream) or
`exists`; never a second order. A command's coroutine returns its outcome report:
OrderAccepted or OrderRejected for `place`, OrderCancelled or OrderRejected for `cancel`.
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

from . import messages as wire
from .codec import Connection, Signal
from .codes import ErrorCode, RemoteProtocolError
from .keys import public_bytes, sign

_NEW_ORDER, _CANCEL, _REPLACE, _MASS_CANCEL = 1, 2, 3, 4  # engine command codes


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


@dataclass
class _Pending:
    """A command sent and not yet answered; resent as is after a failover."""

    message: wire.Message
    key: tuple[Any, ...]
    done: trio.Event
    result: Any = None
    generation: int = 0  # the connection it was last sent on


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
        request_timeout_s: float = 30.0,
    ) -> None:
        assert nodes, "a client needs at least one node"
        self.nodes = list(nodes)
        self.account_id = account_id
        self._key = key
        self._public_key = public_bytes(key)
        self.last_seq = next_seq - 1 if next_seq else 0
        self._resume_from = next_seq
        self._cancel_on_disconnect = cancel_on_disconnect
        self._connect_timeout_s = connect_timeout_s
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
        while True:
            try:
                await self._connect_once(on_connected)
            except (ConnectionLostError, *_CONNECTION_FAILURES):
                pass  # that node is gone, slow or broken: try the next
            except ClientError as error:
                if error.code not in (
                    ErrorCode.NODE_MUST_BE_READY,
                    ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX,
                ):
                    raise
                refusals += 1  # a node behind the client, or full: another may serve
            if self._connected.is_set():
                self._connected = trio.Event()
                self.failovers += 1
            self._stream = None
            self._connection = None
            self._node_index = (self._node_index + 1) % len(self.nodes)
            if not started and refusals > 10 * len(self.nodes):
                raise ClientError(ErrorCode.NODE_MUST_BE_READY, "no node would take the login")
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
            challenge = await self._receive()
            if not isinstance(challenge, wire.Challenge):
                raise ClientError(
                    ErrorCode.LOGIN_MUST_COME_FIRST, f"expected Challenge: {challenge}"
                )
            next_seq = self.last_seq + 1 if self.last_seq else self._resume_from
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
                raise ClientError(
                    ErrorCode.LOGIN_MUST_COME_FIRST, f"expected LoginAccepted: {answer}"
                )
            self.applied_index = answer.applied_index
            replay_until = answer.last_seq
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
                        message = await self._receive()
                        self._dispatch(message)
            except* _CONNECTION_FAILURES as failures:
                # The nursery groups what its tasks raised; any of these means this
                # connection is over, and the caller moves to the next node.
                raise ConnectionLostError(str(failures.exceptions[0])) from None
        finally:
            await trio.aclose_forcefully(stream)

    async def _receive(self) -> wire.Message:
        assert self._connection is not None and self._stream is not None
        while True:
            event = self._connection.next_event()
            if event is Signal.NEED_DATA:
                data = await self._stream.receive_some(65_536)
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
        for pending in list(self._pending.values()) + list(self._queries.values()):
            if not pending.done.is_set() and pending.generation < self._generation:
                pending.generation = self._generation
                await self._send(pending.message)

    # -- Incoming --------------------------------------------------------------------------

    def _dispatch(self, message: wire.Message) -> None:
        if isinstance(message, wire.ExecutionReport):
            if message.account_seq <= self.last_seq:
                return  # a duplicate after a failover: already processed
            assert message.account_seq == self.last_seq + 1 or self.last_seq == 0, (
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
        elif isinstance(report, wire.OrderRejected):
            if report.command_code == _CANCEL:
                keys += [(_CANCEL, report.related_id, 0), (_CANCEL, 0, report.client_order_id)]
            elif report.command_code == _MASS_CANCEL:
                keys.append((_MASS_CANCEL, report.related_id))
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
        if error.code == ErrorCode.OUTCOME_UNKNOWN:
            # The node could not tell whether it got through: resend it, unchanged. (An
            # operator command resent is answered `exists` if the first one was applied.)
            for pending in [*self._pending.values(), *self._queries.values()]:
                if (
                    pending.message.TYPE == error.message_type
                    and _reference(pending.message) == error.reference
                ):
                    if self._nursery is not None:
                        self._nursery.start_soon(self._send_quietly, pending.message)
                    return
            return
        pending = self._queries.pop(error.reference, None)
        if pending is None:
            for key, candidate in list(self._pending.items()):
                if (
                    candidate.message.TYPE == error.message_type
                    and _reference(candidate.message) == error.reference
                ):
                    pending = self._pending.pop(key)
                    break
        if pending is not None:
            pending.result = ClientError(error.code, error.text)
            pending.done.set()

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
        with trio.fail_after(self._request_timeout_s):
            await self._connected.wait()
            pending.generation = self._generation
            await self._send_quietly(message)
            await pending.done.wait()
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

    # -- Queries ---------------------------------------------------------------------------

    async def _query(self, make: Any) -> Any:
        request_id = next(self._request_ids)
        message = make(request_id)
        pending = self._queries[request_id] = _Pending(message, (request_id,), trio.Event())
        with trio.fail_after(self._request_timeout_s):
            await self._connected.wait()
            pending.generation = self._generation
            await self._send_quietly(message)
            await pending.done.wait()
        if isinstance(pending.result, ClientError):
            raise pending.result
        return pending.result

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

    async def operate(self, command: Any) -> wire.OperatorResult:
        """An operator command (an engine command, or its canonical tuple); operator
        sessions only. The result's events are canonical tuples, the outcome first."""
        return await self._query(lambda rid: wire.OperatorCommand.of(rid, command))

    async def status(self) -> wire.Status:
        return await self._query(wire.QueryStatus)

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
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        connection = Connection(wire.CLIENT)
        try:
            await stream.send_all(connection.send(wire.QueryStatus(1)))
            while True:
                event = connection.next_event()
                if event is Signal.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65_536))
                    continue
                if event is Signal.CLOSED:
                    raise ClientError(ErrorCode.NODE_MUST_BE_READY, "closed without a status")
                if isinstance(event, wire.Status):
                    return event
        finally:
            await trio.aclose_forcefully(stream)


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


def _reference(message: wire.Message) -> int:
    for name in ("client_order_id", "request_id", "market_id"):
        value = getattr(message, name, None)
        if value is not None:
            return value
    return 0


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).rule
    except ValueError:
        return str(code)
