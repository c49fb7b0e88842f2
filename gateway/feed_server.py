"""The market-data server: each node's feed port (docs/protocol.md section 11).

Strategy: the same shell as the order-entry server (gateway/server.py), with the codec on
the feed port and no login: public data. `FeedServer.on_applied` sees every applied log
entry in order on the trio thread, publishes its market events to `FeedWindows` (the
node's own copy of every book, kept from the same events, and a bounded window of recent
events per market), encodes each event once, joins one entry's frames per market into one
chunk, and hands that chunk to every connection subscribed to the market. So a market's
frames reach every subscriber in log order with the engine's sequence numbers, identical
on every node, and an image (BookSnapshot) is the feed's book at exactly its sequence.

A connection subscribes with, per market, the last sequence it has: it gets the events
after it from the window, or a BookSnapshot when the window no longer holds them (never a
silently wrong book). Its queue is bounded in bytes (`outbound_bytes_max`): a subscriber
that falls that far behind is told `reader_must_keep_up` and cut off, and nothing it does
slows the engine, the order path or another subscriber, since handing a chunk over is an
append. Reading a connection's requests waits while its queue is over half full, so a
client that subscribes faster than it reads is read more slowly rather than cut off.

Every `heartbeat_interval_ms` a FeedHeartbeat names the applied index and the latest
sequence of each subscribed market that moved since the previous one: a subscriber that
lost the last change of a market that then went quiet learns of it within one interval.
A node that installs a snapshot (its state jumps) ends every feed connection; their
clients resume, here or elsewhere, from the sequences they have.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from evx.core import MarketStatus, Reject
from evx.tools import logs
from evx.tools.config import FeedLimits

from . import limits
from . import messages as wire
from .codec import Connection, Signal
from .codes import ErrorCode, RemoteProtocolError
from .exchange import ExchangeMachine, ExchangeResult, StateInstalled
from .feed import MARKET_EVENT_CODES, BookImage, FeedWindows, LocalBook
from .server import SessionClosed

log = logs.get("evx.feed")

_ENCODER = Connection(wire.SERVER, wire.FEED_PORT)
_CREATED, _STATUS, _CONFIGURED, _LEVEL, _TRADE, _SETTLED = 32, 33, 34, 35, 36, 37
_MARKED, _MARGINS = 38, 39
_READ_BYTES_MAX = 65_536
_WRITE_BYTES_MAX = 262_144
_SOCKET_FAILURES = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_RESUME_SLICE_EVENTS = 512  # about 16 KB of changes
# What one queued chunk costs beyond its bytes (the tuple, the float, the deque slot): counted
# in the queue's bound, so that many small chunks cannot hold several times the bound.
_QUEUE_ENTRY_OVERHEAD_BYTES = 100


def frame(message: wire.Message) -> bytes:
    return _ENCODER.send(message)


def snapshot_frame(image: BookImage) -> bytes:
    return frame(
        wire.BookSnapshot(
            image.market_id,
            image.market_seq,
            image.status,
            image.outcome,
            image.yes_payout,
            image.mark,
            image.ticker,
            tuple(wire.BookLevel(*level) for level in image.bids),
            tuple(wire.BookLevel(*level) for level in image.asks),
        )
    )


def update_frame(event: tuple[Any, ...]) -> bytes:
    """The frame of one market event. A MarketCreated is the new market's first image."""
    code = event[0]
    if code == _LEVEL:
        return frame(wire.LevelUpdate(*event[1:]))
    if code == _TRADE:
        return frame(wire.TradeUpdate(*event[1:]))
    if code == _STATUS:
        return frame(wire.StatusUpdate(*event[1:]))
    if code == _SETTLED:
        return frame(wire.SettledUpdate(*event[1:]))
    if code == _CONFIGURED:
        return frame(wire.ConfigUpdate(*event[1:]))
    if code == _MARKED:
        return frame(wire.MarkUpdate(*event[1:]))
    if code == _MARGINS:
        return frame(wire.MarginUpdate(*event[1:]))
    assert code == _CREATED, event
    _, market_id, seq, ticker = event[:4]
    return snapshot_frame(BookImage(market_id, seq, int(MarketStatus.PROPOSED), (), (), ticker))


def ticker_message(book: LocalBook) -> wire.TickerUpdate:
    bid, ask = book.best()
    bid_quantity = book.bids[bid][0] if bid is not None else 0
    ask_quantity = book.asks[ask][0] if ask is not None else 0
    last = book.trades[-1] if book.trades else None
    return wire.TickerUpdate(
        book.market_id,
        book.market_seq,
        book.status,
        bid or 0,
        bid_quantity,
        ask or 0,
        ask_quantity,
        last.price if last else 0,
        last.quantity if last else 0,
    )


@dataclass
class FeedStatistics:
    subscribers: int = 0
    connections_opened: int = 0
    slow_consumers_cut: int = 0
    silent_cut: int = 0  # connections ended for sending nothing for 3 heartbeat intervals
    protocol_errors: int = 0
    snapshots_sent: int = 0  # BookSnapshot frames for subscribes and resumes
    resumes_served: int = 0  # markets resumed from the window, without an image
    bytes_queued: int = 0


class FeedServer:
    def __init__(
        self,
        machine: ExchangeMachine,
        node_id: int,
        limits: FeedLimits,
        on_delivery: Callable[[float], None] | None = None,
    ) -> None:
        self.machine = machine
        self.node_id = node_id
        self.limits = limits
        self.windows = FeedWindows(limits.window_events_per_market, limits.window_events_total)
        with machine.lock:
            self.windows.reset(machine.engine)
        self.applied_index = machine.applied_index
        self.sessions: set[FeedSession] = set()
        self.by_market: dict[int, set[FeedSession]] = {}
        self.all_markets: set[FeedSession] = set()
        self.tickers: set[FeedSession] = set()
        self._tops: dict[int, wire.TickerUpdate] = {}
        self.statistics = FeedStatistics()
        self.on_delivery = on_delivery  # each delivery delay, for the metrics

    # -- The applied stream (trio thread, every entry in log order) ------------------------

    def on_applied(self, index: int, result: Any) -> None:
        self.applied_index = index
        if isinstance(result, StateInstalled):
            self._state_installed(result)
            return
        if not isinstance(result, ExchangeResult):
            return
        windows = self.windows
        chunks: dict[int, list[bytes]] = {}
        firsts: dict[int, int] = {}
        trades: list[tuple[int, bytes]] = []
        by_market = self.by_market
        for event in result.applied.events:
            if event[0] not in MARKET_EVENT_CODES or not windows.publish(event):
                continue
            market_id = event[1]
            if event[0] == _CREATED:
                self._market_created(market_id)
            frames = chunks.get(market_id)
            if frames is None:
                frames = chunks[market_id] = []
                firsts[market_id] = event[2]
            # Encoded only for someone: a market nobody follows costs the node nothing more
            # than its window (every event of a followed market is encoded, in order).
            data = None
            if by_market.get(market_id):
                data = update_frame(event)
                frames.append(data)
            if event[0] == _TRADE and self.tickers:
                trades.append((market_id, data or update_frame(event)))
        if not chunks:
            return
        applied_at = result.applied_at
        for market_id, frames in chunks.items():
            sessions = by_market.get(market_id)
            if not sessions or not frames:
                continue
            chunk = b"".join(frames)
            first = firsts[market_id]
            last = first + len(frames) - 1
            for session in list(sessions):
                session.push_market(market_id, first, last, chunk, applied_at)
        if self.tickers:
            self._push_tickers(chunks, trades, applied_at)

    def _market_created(self, market_id: int) -> None:
        if self.all_markets:
            subscribers = self.by_market.setdefault(market_id, set())
            for session in self.all_markets:
                session.positions[market_id] = 0
                session.joined.add(market_id)
                subscribers.add(session)

    def _push_tickers(
        self, chunks: dict[int, list[bytes]], trades: list[tuple[int, bytes]], applied_at: float
    ) -> None:
        """One TickerUpdate per market whose top moved, and every trade; a connection that
        also subscribes to a market gets its trades once, with the market's own frames."""
        changed = []
        for market_id in chunks:
            book = self.windows.book(market_id)
            assert book is not None
            top = ticker_message(book)
            before = self._tops.get(market_id)
            if _top_changed(before, top):
                self._tops[market_id] = top
                changed.append(frame(top))
        tops = b"".join(changed)
        every_trade = b"".join(data for _, data in trades)
        for session in list(self.tickers):
            if session.joined and any(market_id in session.joined for market_id, _ in trades):
                data = tops + b"".join(d for m, d in trades if m not in session.joined)
            else:
                data = tops + every_trade
            if data:
                session.push(data, applied_at)

    def refresh_tops(self) -> list[bytes]:
        """Every market's top of book now, as TickerUpdate frames (a new ticker subscriber's
        image), and the cache the changes are compared with."""
        frames = []
        for market_id in self.windows.markets():
            book = self.windows.book(market_id)
            assert book is not None
            top = self._tops[market_id] = ticker_message(book)
            frames.append(frame(top))
        return frames

    def _state_installed(self, installed: StateInstalled) -> None:
        with self.machine.lock:
            self.windows.reset(self.machine.engine)
        self._tops.clear()
        log.warning("feed_ended_by_install", index=installed.index, connections=len(self.sessions))
        for session in list(self.sessions):
            session.end(
                ErrorCode.REPORTS_MUST_BE_CONTINUOUS,
                "this node caught up from a snapshot; subscribe again to resume",
            )

    # -- Connections -----------------------------------------------------------------------

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        raw = getattr(stream, "socket", None)
        if raw is not None:
            raw.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.socket_send_buffer_bytes
            )
        session = FeedSession(self, stream)
        try:
            await session.run()
        except Exception:
            # A bug in serving one connection: that connection ends, loudly, and the node and
            # every other subscriber go on (the feed is public: no client may stop a node).
            log.exception("feed_connection_failed", peer=session.peer)
            self.forget(session)
        finally:
            await trio.aclose_forcefully(stream)

    def forget(self, session: FeedSession) -> None:
        self.sessions.discard(session)
        self.all_markets.discard(session)
        self.tickers.discard(session)
        for market_id in session.joined:
            subscribers = self.by_market.get(market_id)
            if subscribers is not None:
                subscribers.discard(session)
        self.statistics.subscribers = len(self.sessions)


def _top_changed(before: wire.TickerUpdate | None, top: wire.TickerUpdate) -> bool:
    """A new top of book, status or last trade (the sequence alone moving is not news)."""
    if before is None:
        return True
    return (
        before.status != top.status
        or before.bid_price != top.bid_price
        or before.bid_quantity != top.bid_quantity
        or before.ask_price != top.ask_price
        or before.ask_quantity != top.ask_quantity
        or before.last_price != top.last_price
        or before.last_quantity != top.last_quantity
    )


class FeedSession:
    def __init__(self, server: FeedServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        self.connection = Connection(wire.SERVER, wire.FEED_PORT)
        self.positions: dict[int, int] = {}  # market -> the last market_seq queued
        self.joined: set[int] = set()  # markets whose subscriber sets this connection is in
        self.catching_up = False  # a Subscribe's markets are being queued
        self.changed: set[int] = set()  # markets whose sequence moved since the heartbeat
        self._outbound: deque[tuple[bytes, float]] = deque()  # (frames, applied_at or 0)
        self._outbound_bytes = 0
        self._wake_writer = trio.Event()
        self._drained = trio.Event()
        self._closing: SessionClosed | None = None
        self._nursery: trio.Nursery | None = None
        self._write_interrupted = False
        self._opened = time.monotonic()
        self.writes = 0  # socket writes (each of one or more queued chunks of frames)
        try:
            peer = stream.socket.getpeername()  # type: ignore[attr-defined]
            self.peer = f"{peer[0]}:{peer[1]}"
        except (AttributeError, OSError):
            self.peer = "memory"

    async def run(self) -> None:
        server = self.server
        server.statistics.connections_opened += 1
        reason = "closed"
        try:
            if len(server.sessions) >= server.limits.subscribers_max:
                with trio.move_on_after(1):
                    await self._send_raw(
                        frame(
                            wire.Error(
                                int(ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX), 0, 0, "feed is full"
                            )
                        )
                    )
                reason = "subscribers_max"
                return
            server.sessions.add(self)
            server.statistics.subscribers = len(server.sessions)
            limits = server.limits
            self.push(
                frame(
                    wire.FeedHello(
                        wire.PROTOCOL_VERSION,
                        server.node_id,
                        server.applied_index,
                        limits.heartbeat_interval_ms,
                        limits.window_events_per_market,
                        limits.markets_per_subscriber_max,
                    )
                )
            )
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._heartbeat)
                    try:
                        if self._closing is None:
                            await self._read()
                    except SessionClosed as closed:
                        if self._closing is None:
                            self._closing = closed
                    nursery.cancel_scope.cancel()
            except* _SOCKET_FAILURES as failures:
                if self._closing is None:  # a cut (end()) keeps its own reason and frame
                    self._closing = SessionClosed(
                        f"socket: {type(failures.exceptions[0]).__name__}"
                    )
            if self._closing is not None:
                reason = self._closing.reason
                if self._closing.frame is not None and not self._write_interrupted:
                    with trio.move_on_after(1):
                        await self._send_raw(self._closing.frame)
        except _SOCKET_FAILURES as error:
            reason = f"socket: {type(error).__name__}"
        finally:
            server.forget(self)
            log.info(
                "feed_closed",
                peer=self.peer,
                reason=reason,
                markets=len(self.positions),
                duration_s=round(time.monotonic() - self._opened, 3),
                writes=self.writes,
            )

    def end(self, code: ErrorCode, text: str) -> None:
        """End the connection from outside its reader: run() sends one Error frame."""
        if self._closing is not None:
            return
        self._closing = SessionClosed(code.rule, frame(wire.Error(int(code), 0, 0, text)))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- Reading ---------------------------------------------------------------------------

    async def _read(self) -> None:
        silence_s = 3 * self.server.limits.heartbeat_interval_ms / 1_000
        while True:
            with trio.move_on_after(silence_s) as waited:
                data = await self.stream.receive_some(_READ_BYTES_MAX)
            if waited.cancelled_caught:
                self.server.statistics.silent_cut += 1
                self._close(ErrorCode.HEARTBEAT_MUST_ARRIVE, f"nothing received for {silence_s} s")
            self.connection.receive_data(data)
            while True:
                try:
                    event = self.connection.next_event()
                except RemoteProtocolError as error:
                    self.server.statistics.protocol_errors += 1
                    raise SessionClosed(error.code.rule, frame(wire.Error.about(error))) from None
                if event is Signal.NEED_DATA:
                    break
                if event is Signal.CLOSED:
                    raise SessionClosed("peer_closed")
                await self._handle(event)
                await self._wait_drained()

    def _close(self, code: ErrorCode, text: str) -> None:
        raise SessionClosed(code.rule, frame(wire.Error(int(code), 0, 0, text)))

    def _refuse(self, message: Any, code: int, text: str) -> None:
        self.push(frame(wire.Error(code, message.TYPE, message.request_id, wire.fit_string(text))))

    async def _handle(self, message: wire.Message) -> None:
        if isinstance(message, wire.Heartbeat):
            return
        if isinstance(message, wire.Subscribe):
            await self._subscribe(message)
        elif isinstance(message, wire.SubscribeTicker):
            self._subscribe_ticker(message)
        elif isinstance(message, wire.Unsubscribe):
            self._unsubscribe(message)
        else:  # the codec lets only client messages of the feed port through
            raise AssertionError(f"no handler for {message}")

    async def _subscribe(self, message: wire.Subscribe) -> None:
        server = self.server
        windows = server.windows
        every = bool(message.flags & wire.SubscribeFlag.ALL_MARKETS)
        after = {market.market_id: market.after_seq for market in message.markets}
        for market_id, after_seq in after.items():
            last = windows.last_seq(market_id)
            if last is None and after_seq:
                # The client has seen this market elsewhere: this node has not applied its
                # creation yet (it is behind), which is not the same as no such market.
                self._refuse(
                    message,
                    int(ErrorCode.NODE_MUST_BE_READY),
                    f"this node has not applied market {market_id} yet",
                )
                return
            if last is None:
                self._refuse(message, int(Reject.MARKET_MUST_EXIST), f"no market {market_id}")
                return
            if after_seq > last:
                self._refuse(
                    message,
                    int(ErrorCode.NODE_MUST_BE_READY),
                    f"this node has market {market_id} up to market_seq {last} only",
                )
                return
        # ALL_MARKETS adds every market this connection is not subscribed to yet (a client
        # resuming many markets names them in earlier Subscribes, then asks for the rest).
        markets = sorted(after)
        if every:
            markets = sorted(set(after) | {m for m in windows.markets() if m not in self.positions})
        # Only markets new to this connection count: a repair of one it follows always goes
        # (ALL_MARKETS connections may follow more than the limit, as markets are created).
        total = len(self.positions) + len(set(markets) - set(self.positions))
        if set(markets) - set(self.positions) and total > server.limits.markets_per_subscriber_max:
            self._refuse(
                message,
                int(ErrorCode.SUBSCRIPTIONS_MUST_NOT_EXCEED_MAX),
                f"{total} markets, more than {server.limits.markets_per_subscriber_max}",
            )
            return
        if every:
            server.all_markets.add(self)
        for market_id in markets:
            self.positions.pop(market_id, None)  # a repair starts the market again
        self.push(
            frame(self._subscribed(message.request_id, len(set(self.positions) | set(markets))))
        )
        # Market by market, each from the feed's book as it is when its turn comes (from
        # then on the market's live changes follow it), waiting for the queue to drain in
        # between: an image of every market may not fit the queue at once.
        # No FeedHeartbeat while markets are being caught up: its applied index would claim
        # they were sent up to it.
        self.catching_up = True
        try:
            for market_id in markets:
                await self._catch_up(market_id, after.get(market_id, 0))
        finally:
            self.catching_up = False

    async def _catch_up(self, market_id: int, after_seq: int) -> None:
        """Queue what the subscriber misses of one market, then follow it live: the changes
        after `after_seq` from the window, in slices with the queue drained in between (a
        long resume never passes the queue's bound at once), or an image when the window
        does not hold them (any more). No await between the last slice and following it."""
        server = self.server
        windows = server.windows
        sent = after_seq
        resumed = bool(after_seq)
        while True:
            missing = windows.resume(market_id, sent) if resumed else None
            if missing is None:
                image = windows.image(market_id)
                assert image is not None
                self.push(snapshot_frame(image))
                server.statistics.snapshots_sent += 1
                sent = image.market_seq
                resumed = False
                break
            if not missing:
                break
            part = missing[:_RESUME_SLICE_EVENTS]
            self.push(b"".join(update_frame(event) for event in part))
            sent += len(part)
            await self._wait_drained()
        if resumed:
            server.statistics.resumes_served += 1
        self.positions[market_id] = sent
        self.changed.add(market_id)
        self.joined.add(market_id)
        server.by_market.setdefault(market_id, set()).add(self)
        await self._wait_drained()
        # Let the node's other work run between two markets: a subscription to every market
        # must not hold the event loop (order entry shares it) while it builds its images.
        await trio.lowlevel.checkpoint()

    def _subscribe_ticker(self, message: wire.SubscribeTicker) -> None:
        self.server.tickers.add(self)
        tops = self.server.refresh_tops()
        self.push(frame(self._subscribed(message.request_id)) + b"".join(tops))

    def _unsubscribe(self, message: wire.Unsubscribe) -> None:
        server = self.server
        markets = list(self.positions) if message.market_id == 0 else [message.market_id]
        for market_id in markets:
            self.positions.pop(market_id, None)
            self.changed.discard(market_id)
            self.joined.discard(market_id)
            subscribers = server.by_market.get(market_id)
            if subscribers is not None:
                subscribers.discard(self)
        if message.market_id == 0:
            server.all_markets.discard(self)
            server.tickers.discard(self)
        self.push(frame(self._subscribed(message.request_id)))

    def _subscribed(self, request_id: int, markets: int | None = None) -> wire.Subscribed:
        server = self.server
        flags = wire.SubscribedFlag.NONE
        if self in server.all_markets:
            flags |= wire.SubscribedFlag.ALL_MARKETS
        if self in server.tickers:
            flags |= wire.SubscribedFlag.TICKER
        count = len(self.positions) if markets is None else markets
        return wire.Subscribed(request_id, count, int(flags), server.applied_index)

    # -- Writing ---------------------------------------------------------------------------

    def push_market(
        self, market_id: int, first: int, last: int, chunk: bytes, applied_at: float
    ) -> None:
        position = self.positions.get(market_id)
        if position is None:
            return
        if first != position + 1:  # never to happen: say so rather than serve a gap
            log.error("feed_gap", market_id=market_id, position=position, first=first)
            self.end(ErrorCode.REPORTS_MUST_BE_CONTINUOUS, "the feed skipped; subscribe again")
            return
        self.positions[market_id] = last
        self.changed.add(market_id)
        self.push(chunk, applied_at)

    def push(self, data: bytes, applied_at: float = 0.0) -> None:
        if self._closing is not None:
            return
        limits = self.server.limits
        if (
            self._outbound_bytes + len(data) + _QUEUE_ENTRY_OVERHEAD_BYTES
            > limits.outbound_bytes_max
        ):
            self.server.statistics.slow_consumers_cut += 1
            log.warning("feed_slow_consumer", peer=self.peer, queued_bytes=self._outbound_bytes)
            self.end(
                ErrorCode.READER_MUST_KEEP_UP,
                f"more than {limits.outbound_bytes_max} bytes waiting: read faster, "
                "then subscribe again from your sequences",
            )
            return
        self._outbound.append((data, applied_at))
        self._outbound_bytes += len(data) + _QUEUE_ENTRY_OVERHEAD_BYTES
        self.server.statistics.bytes_queued += len(data)
        self._wake_writer.set()

    async def _write(self) -> None:
        on_delivery = self.server.on_delivery
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            while self._outbound:
                chunk = []
                oldest = 0.0  # the apply time of the oldest market data in this write
                size = 0
                while self._outbound and size < _WRITE_BYTES_MAX:
                    data, applied_at = self._outbound.popleft()
                    chunk.append(data)
                    if applied_at and not oldest:
                        oldest = applied_at
                    size += len(data) + _QUEUE_ENTRY_OVERHEAD_BYTES
                self.writes += 1
                await self._send_raw(b"".join(chunk))
                # Counted until written, so bytes in flight are within the bound too.
                self._outbound_bytes -= size
                if oldest and on_delivery is not None:
                    # One sample per write: the delay of its oldest data (the others in
                    # it waited less). Cheap enough for every write of every subscriber.
                    on_delivery(time.monotonic() - oldest)
                if self._outbound_bytes < self.server.limits.outbound_bytes_max // 4:
                    self._drained.set()

    async def _wait_drained(self) -> None:
        """Return once the queue is under half full (at once if it is); a subscriber that
        does not read it down to a quarter within three heartbeat intervals is cut off."""
        limits = self.server.limits
        if self._outbound_bytes < limits.outbound_bytes_max // 2:
            return
        with trio.move_on_after(3 * limits.heartbeat_interval_ms / 1_000):
            while self._outbound_bytes >= limits.outbound_bytes_max // 4:
                self._drained = trio.Event()
                await self._drained.wait()
            return
        self.server.statistics.slow_consumers_cut += 1
        self._close(ErrorCode.READER_MUST_KEEP_UP, "the subscriber does not read")

    async def _send_raw(self, data: bytes) -> None:
        self._write_interrupted = True
        await self.stream.send_all(data)
        self._write_interrupted = False

    async def _heartbeat(self) -> None:
        interval_s = self.server.limits.heartbeat_interval_ms / 1_000
        # At most a quarter of the queue's bound per heartbeat (12 bytes a market); the
        # rest go in the next one.
        heartbeat_markets = min(
            limits.heartbeat_markets_max, self.server.limits.outbound_bytes_max // 4 // 12
        )
        while True:
            await trio.sleep(interval_s)
            if self.catching_up:
                continue
            # (a market being caught up again has no position until its frames are queued)
            changed = sorted(m for m in self.changed if m in self.positions)[:heartbeat_markets]
            self.changed.difference_update(changed)
            self.push(
                frame(
                    wire.FeedHeartbeat(
                        self.server.applied_index,
                        tuple(wire.MarketSeq(m, self.positions[m]) for m in changed),
                    )
                )
            )
