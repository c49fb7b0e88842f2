"""The market-data client: a local copy of the exchange's books, from any node.

    async with trio.open_nursery() as nursery:
        feed = FeedClient(nodes, markets=[1, 2])
        nursery.start_soon(feed.run)
        await feed.wait_for(lambda f: 1 in f.books)
        print(feed.books[1].best())

Strategy: one connection at a time, to any node's feed port, through the same sans-IO codec
as the server. Each market's book is a `LocalBook` (gateway/feed.py): a BookSnapshot, then
every change in market_seq order. The client never trusts a book it cannot prove whole:

- a change that skips a sequence number, or a FeedHeartbeat naming a later sequence than
  the book has, is a gap: the market is marked stale, its frames are ignored, and the
  client subscribes to it again from the book's sequence. The node answers Subscribed, then
  the missing changes from its window, or a fresh BookSnapshot; from that answer on the
  market is current again;
- when the connection ends (the node died, cut it off, or was silent for three heartbeat
  intervals) the client connects to the next node and subscribes with every book's
  sequence, so it gets what it missed there, the same sequences, and no change twice.

`drop` is a test hook: updates it returns True for are thrown away as if lost, so a test can
check that every loss is noticed and repaired.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from evx.core import Reject

from . import limits
from . import messages as wire
from .codec import Connection, Signal
from .codes import ErrorCode, RemoteProtocolError
from .feed import BookImage, FeedGapError, LocalBook

_EVENT_CODES = {
    wire.StatusUpdate: 33,
    wire.ConfigUpdate: 34,
    wire.LevelUpdate: 35,
    wire.TradeUpdate: 36,
    wire.SettledUpdate: 37,
    wire.MarkUpdate: 38,
    wire.MarginUpdate: 39,
}
_FAILURES = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    RemoteProtocolError,
)


class FeedError(Exception):
    """The feed refused what was asked for good (a market that does not exist, too many
    markets); reconnecting would not help."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{_code_name(code)}: {text}")
        self.code = code
        self.text = text


class _Reconnect(Exception):  # noqa: N818 - control flow
    """This connection is over; try the next node."""


@dataclass
class FeedClientStatistics:
    connections: int = 0
    gaps: int = 0  # losses noticed (a skipped sequence, or a heartbeat ahead of a book)
    repairs: int = 0  # markets made current again after a gap
    snapshots: int = 0  # BookSnapshot frames received
    updates: int = 0  # changes applied to a book
    duplicates: int = 0  # changes a book already had (never expected; counted to check)
    dropped: int = 0  # updates thrown away by the `drop` hook


class FeedClient:
    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        markets: Sequence[int] | None = None,
        *,
        ticker: bool = False,
        connect_timeout_s: float = 2.0,
        retry_delay_s: float = 0.2,
        on_message: Callable[[wire.Message], None] | None = None,
        drop: Callable[[wire.Message], bool] | None = None,
    ) -> None:
        """`markets` None: every market (those created later too). `ticker`: top of book
        and trades of every market as TickerUpdate/TradeUpdate (in `tops`, `on_message`)."""
        assert addresses
        self.addresses = list(addresses)
        self.markets = None if markets is None else list(dict.fromkeys(markets))
        self.ticker = ticker
        self.connect_timeout_s = connect_timeout_s
        self.retry_delay_s = retry_delay_s
        self.on_message = on_message
        self.drop = drop
        self.books: dict[int, LocalBook] = {}
        self.tops: dict[int, wire.TickerUpdate] = {}
        self.stale: dict[int, int] = {}  # market -> the request_id of its repair
        # Markets whose (re)subscription was answered, and whose catch-up frames are known to
        # be all in only at the next FeedHeartbeat (none is sent during a catch-up).
        self.settling: set[int] = set()
        self._pending: set[int] = set()  # request ids not answered yet on this connection
        self._answered = False  # this connection's first subscriptions were all answered
        self.node_id = 0  # the node of the current connection; 0 when there is none
        self.applied_index = 0  # from the latest heartbeat: every change up to it is here
        self.statistics = FeedClientStatistics()
        self._request_ids = itertools.count(1)
        self._next_address = 0
        self._connection: Connection | None = None
        self._stream: trio.abc.Stream | None = None
        self._changed = trio.Event()
        self._send_lock = trio.Lock()

    # -- Running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the books current until cancelled; FeedError if the feed refuses for good.
        With `nursery.start`, returns once the first connection subscribed (or failed)."""
        status: list[trio.TaskStatus[None]] = [task_status]

        def started() -> None:
            if status:
                status.pop().started()

        tried = 0  # nodes tried since the last connection whose subscriptions were answered
        delay_s = self.retry_delay_s
        while True:
            host, port = self.addresses[self._next_address % len(self.addresses)]
            self._next_address += 1
            self._answered = False
            try:
                await self._connection_run(host, port, started)
            except (_Reconnect, *_FAILURES):
                pass
            finally:
                self.node_id = 0
                self._notify()
            started()
            if self._answered:
                tried, delay_s = 1, self.retry_delay_s
            else:
                tried += 1
            if tried >= len(self.addresses):
                # Every node once, straight away; then wait, longer each round (up to 16
                # times the delay, with jitter), so that subscribers refused everywhere (an
                # election under way) do not all hammer the nodes together.
                await trio.sleep(delay_s * (0.5 + random.random()))
                delay_s = min(delay_s * 2, self.retry_delay_s * 16)
                tried = 0

    async def _connection_run(self, host: str, port: int, started: Callable[[], None]) -> None:
        with trio.fail_after(self.connect_timeout_s):
            stream = await trio.open_tcp_stream(host, port)
        connection = Connection(wire.CLIENT, wire.FEED_PORT)
        self._stream, self._connection = stream, connection
        self.stale.clear()
        self._pending.clear()
        self.settling = set(self.books)  # every book held is being resumed
        try:
            with trio.fail_after(self.connect_timeout_s):
                hello = await self._next(stream, connection)
            if isinstance(hello, wire.Error):
                self._error(hello)
            if not isinstance(hello, wire.FeedHello):
                raise _Reconnect(f"the node answered {hello}")
            self.node_id = hello.node_id
            self.statistics.connections += 1
            silence_s = limits.heartbeat_intervals_silent_max * hello.heartbeat_interval_ms / 1000
            await self._subscribe_all()
            started()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeat, hello.heartbeat_interval_ms / 2000)
                    while True:
                        with trio.fail_after(silence_s):
                            message = await self._next(stream, connection)
                        await self._handle(message)
            except BaseExceptionGroup as group:
                raise _one_failure(group) from None
        finally:
            self._stream = self._connection = None
            await trio.aclose_forcefully(stream)

    async def _next(self, stream: trio.abc.Stream, connection: Connection) -> wire.Message:
        while True:
            event = connection.next_event()
            if event is Signal.NEED_DATA:
                connection.receive_data(await stream.receive_some(65_536))
                continue
            if event is Signal.CLOSED:
                raise _Reconnect("the node closed the connection")
            assert isinstance(event, wire.Message)
            return event

    async def _send(self, message: wire.Message) -> None:
        if self._stream is None or self._connection is None:
            raise _Reconnect("no connection")
        data = self._connection.send(message)
        async with self._send_lock:  # the reader and the heartbeat both send
            await self._stream.send_all(data)

    async def _heartbeat(self, every_s: float) -> None:
        while True:
            await trio.sleep(every_s)
            await self._send(wire.Heartbeat(0))

    async def _subscribe_all(self) -> None:
        """Subscribe on a new connection: from every book's sequence, then the rest."""
        known = sorted(self.books)
        wanted = known if self.markets is None else [m for m in self.markets if m in self.books]
        step = limits.subscribe_markets_max
        for start in range(0, len(wanted), step):
            part = wanted[start : start + step]
            await self._subscribe(part, every=False)
        if self.markets is None:
            await self._subscribe([], every=True)
        else:
            new = [m for m in self.markets if m not in self.books]
            for start in range(0, len(new), step):
                await self._subscribe(new[start : start + step], every=False)
        if self.ticker:
            request_id = next(self._request_ids)
            self._pending.add(request_id)
            await self._send(wire.SubscribeTicker(request_id))

    async def _subscribe(self, markets: list[int], *, every: bool) -> int:
        request_id = next(self._request_ids)
        entries = tuple(
            wire.MarketFrom(m, self.books[m].market_seq if m in self.books else 0) for m in markets
        )
        flags = int(wire.SubscribeFlag.ALL_MARKETS) if every else 0
        self._pending.add(request_id)
        await self._send(wire.Subscribe(request_id, flags, entries))
        return request_id

    # -- Frames ----------------------------------------------------------------------------

    async def _handle(self, message: wire.Message) -> None:
        code = _EVENT_CODES.get(type(message))
        if code is not None:
            if self.drop is not None and self.drop(message):
                self.statistics.dropped += 1
                return
            await self._update(code, message)
        elif isinstance(message, wire.BookSnapshot):
            self._snapshot(message)
        elif isinstance(message, wire.FeedHeartbeat):
            self.applied_index = message.applied_index
            if not self._pending:
                self.settling.clear()
            for entry in message.markets:
                book = self.books.get(entry.market_id)
                if entry.market_id in self.stale:
                    continue
                if book is None or book.market_seq < entry.market_seq:
                    await self._gap(entry.market_id)
        elif isinstance(message, wire.Subscribed):
            self._pending.discard(message.request_id)
            if not self._pending:
                self._answered = True
            for market_id, request_id in list(self.stale.items()):
                if request_id == message.request_id:
                    del self.stale[market_id]
                    self.settling.add(market_id)
                    self.statistics.repairs += 1
        elif isinstance(message, wire.TickerUpdate):
            self.tops[message.market_id] = message
        elif isinstance(message, wire.Error):
            self._error(message)
        if self.on_message is not None:
            self.on_message(message)
        self._notify()

    async def _update(self, code: int, message: Any) -> None:
        market_id = message.market_id
        if market_id in self.stale:
            return  # the repair brings it again, in order
        book = self.books.get(market_id)
        if book is None:
            if self.ticker and code == 36:
                return  # a ticker trade of a market this connection does not follow
            await self._gap(market_id)
            return
        event = (code, *(getattr(message, name) for name in message.FIELDS))
        try:
            applied = book.apply(event)
        except FeedGapError:
            await self._gap(market_id)
            return
        if applied:
            self.statistics.updates += 1
        else:
            self.statistics.duplicates += 1

    def _snapshot(self, message: wire.BookSnapshot) -> None:
        self.statistics.snapshots += 1
        self.books[message.market_id] = LocalBook.from_image(
            BookImage(
                message.market_id,
                message.market_seq,
                message.status,
                tuple((lv.price, lv.quantity, lv.orders) for lv in message.bids),
                tuple((lv.price, lv.quantity, lv.orders) for lv in message.asks),
                message.ticker,
                message.outcome,
                message.yes_payout,
                message.mark,
            )
        )

    async def _gap(self, market_id: int) -> None:
        self.statistics.gaps += 1
        self.stale[market_id] = await self._subscribe([market_id], every=False)

    def _error(self, error: wire.Error) -> None:
        if error.message_type == wire.Subscribe.TYPE and error.code in (
            int(Reject.MARKET_MUST_EXIST),
            int(ErrorCode.SUBSCRIPTIONS_MUST_NOT_EXCEED_MAX),
        ):
            raise FeedError(error.code, error.text)
        # Behind our sequences (node_must_be_ready), cut off, or the node's state jumped:
        # another node, or this one again in a moment, resumes from the books.
        raise _Reconnect(f"{_code_name(error.code)}: {error.text}")

    # -- Waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[FeedClient], bool], timeout_s: float = 10
    ) -> None:
        """Until `predicate(self)` holds after some frame; TooSlowError after `timeout_s`."""
        with trio.fail_after(timeout_s):
            while not predicate(self):
                await self._changed.wait()

    def current(self, market_id: int) -> LocalBook | None:
        """The market's book if it is connected and known whole: no repair or resume of it
        under way (after one, from the next FeedHeartbeat on: within one interval)."""
        if self.node_id == 0 or market_id in self.stale or market_id in self.settling:
            return None
        return self.books.get(market_id)


def _one_failure(group: BaseExceptionGroup) -> BaseException:
    """What ended a connection whose reader and heartbeat both failed: a refusal for good
    (FeedError) if there is one, else a reason to reconnect; anything else is a bug."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    for leaf in leaves:
        if isinstance(leaf, FeedError):
            return leaf
    if all(isinstance(leaf, (_Reconnect, *_FAILURES)) for leaf in leaves):
        return _Reconnect("; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves))
    return group


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).rule
    except ValueError:
        try:
            return Reject(code).rule
        except ValueError:
            return str(code)
