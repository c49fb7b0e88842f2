"""Market data, without I/O: what a node keeps to serve the feed, and the book a subscriber
rebuilds from it (issue: a binary feed, snapshot then deltas, gapless across failover).

Strategy: the engine numbers every market event per market (`market_seq`: MarketCreated,
MarketStatusChanged, MarketConfigured, LevelUpdated, TradePrinted, MarketSettled), and
the numbers are the same on every node, since every node applies the same log. So:

- `FeedWindows` keeps, per market, the last `window_events` market events in log order.
  A subscriber that names the last sequence it has gets the events after it if the window
  still holds them (`resume`), and otherwise must start again from an image.
- `book_image(engine, market_id)` is the image: every level of the YES book and the status,
  at the market's current sequence. Read under the engine's lock, it is exactly the state
  after that sequence.
- `LocalBook` is the subscriber's side: an image, then each event after it in order. An
  event older than what it has is a duplicate (ignored); one that skips a number is a gap
  (`FeedGapError`): the subscriber resumes, or starts again from an image. So a book is
  never silently wrong.

The network server and the client library build on these (docs/protocol.md will specify
the frames); the tests here hold them to the engine's own book after every change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from evx.core import Engine, MarketStatus, queries

MARKET_EVENT_CODES = range(32, 64)
_CREATED, _STATUS, _CONFIGURED, _LEVEL, _TRADE, _SETTLED, _MARKED = 32, 33, 34, 35, 36, 37, 38
_BID = 1
TRADES_KEPT = 50  # recent trades a LocalBook keeps for a screen


class FeedGapError(Exception):
    """An event skipped one or more sequence numbers: the book cannot be trusted."""

    def __init__(self, market_id: int, expected: int, got: int) -> None:
        super().__init__(f"market {market_id}: expected market_seq {expected}, got {got}")
        self.market_id = market_id
        self.expected = expected
        self.got = got


@dataclass(frozen=True, slots=True)
class BookImage:
    """A whole market at `market_seq`: levels as (YES price, quantity, orders), best first,
    its status, and once settled its outcome and YES payout."""

    market_id: int
    market_seq: int
    status: int
    bids: tuple[tuple[int, int, int], ...]
    asks: tuple[tuple[int, int, int], ...]
    ticker: str = ""
    outcome: int = 0
    yes_payout: int = 0
    mark: int = 0  # a futures market's mark price; 0 for others


def book_image(engine: Engine, market_id: int) -> BookImage | None:
    """The market `market_id` as it is now (call under ExchangeMachine.lock)."""
    view = queries.book(engine, market_id)
    if view is None:
        return None
    market = engine.markets[market_id]
    return BookImage(
        market_id,
        market.seq,
        view.status,
        tuple((level.price, level.quantity, level.orders) for level in view.bids),
        tuple((level.price, level.quantity, level.orders) for level in view.asks),
        market.ticker,
        market.outcome,
        market.yes_payout,
        market.future.mark if market.future is not None else 0,
    )


class FeedWindows:
    """Every market as the feed has published it: its book (a LocalBook kept from the same
    events the subscribers get, so an image is exactly the state after its sequence) and
    its recent events, for subscribers that resume.

    Memory is bounded twice: at most `window_events` events per market, and at most
    `window_events_total` over all markets (the oldest go first), so ten thousand busy
    markets cannot hold ten thousand windows in full."""

    def __init__(self, window_events: int, window_events_total: int | None = None) -> None:
        if window_events < 1:
            raise ValueError("window_events must be at least 1")
        self.window_events = window_events
        self.window_events_total = window_events_total or window_events * 100
        self._windows: dict[int, deque[tuple[Any, ...]]] = {}
        self._books: dict[int, LocalBook] = {}
        self._order: deque[tuple[int, int]] = deque()  # (market, seq), oldest first

    def reset(self, engine: Engine) -> None:
        """Start from the engine's state (at start, or after a snapshot was installed;
        call under ExchangeMachine.lock): nothing before it can be replayed from here.
        The engine may already be past the applied stream: `publish` then skips the
        events its images already hold."""
        self._windows = {market_id: deque() for market_id in engine.markets}
        self._books = {}
        for market_id in engine.markets:
            image = book_image(engine, market_id)
            assert image is not None
            self._books[market_id] = LocalBook.from_image(image)
        self._order.clear()

    def publish(self, event: tuple[Any, ...]) -> bool:
        """One market event, in log order; False if the books already hold it."""
        market_id, seq = event[1], event[2]
        book = self._books.get(market_id)
        if book is None:
            if event[0] != _CREATED or seq != 1:  # never to serve: a bug upstream
                raise ValueError(f"market {market_id} starts at {event!r}")
            book = self._books[market_id] = LocalBook(market_id, 0, int(MarketStatus.PROPOSED))
            self._windows[market_id] = deque()
        if seq <= book.market_seq:
            return False
        if seq != book.market_seq + 1:
            raise ValueError(f"market {market_id} jumped from {book.market_seq} to {seq}")
        book.apply(event)
        window = self._windows[market_id]
        window.append(event)
        if len(window) > self.window_events:
            window.popleft()
        order = self._order
        order.append((market_id, seq))
        while len(order) > self.window_events_total:
            old_market, old_seq = order.popleft()
            old = self._windows[old_market]
            if old and old[0][2] == old_seq:  # else the market's own bound dropped it
                old.popleft()
        return True

    def last_seq(self, market_id: int) -> int | None:
        book = self._books.get(market_id)
        return None if book is None else book.market_seq

    def markets(self) -> list[int]:
        return sorted(self._books)

    def book(self, market_id: int) -> LocalBook | None:
        return self._books.get(market_id)

    def image(self, market_id: int) -> BookImage | None:
        book = self._books.get(market_id)
        return None if book is None else book.image()

    def resume(self, market_id: int, after_seq: int) -> list[tuple[Any, ...]] | None:
        """Every event of the market after `after_seq`, or None if some of them are no
        longer (or not yet) here: the subscriber then needs an image."""
        last = self.last_seq(market_id)
        if last is None or after_seq > last:
            return None
        if after_seq == last:
            return []
        window = self._windows[market_id]
        if not window or window[0][2] > after_seq + 1:
            return None
        start = after_seq + 1 - window[0][2]
        return [window[position] for position in range(start, len(window))]


@dataclass
class Trade:
    trade_id: int
    price: int  # YES price
    quantity: int
    aggressor_side: int  # BookSide of the taker


@dataclass
class LocalBook:
    """A subscriber's copy of one market's book: an image, then every event after it."""

    market_id: int
    market_seq: int
    status: int
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)  # price -> (qty, orders)
    asks: dict[int, tuple[int, int]] = field(default_factory=dict)
    trades: deque[Trade] = field(default_factory=lambda: deque(maxlen=TRADES_KEPT))
    ticker: str = ""
    outcome: int = 0  # once settled
    yes_payout: int = 0
    mark: int = 0  # a futures market's mark price

    @classmethod
    def from_image(cls, image: BookImage) -> LocalBook:
        return cls(
            image.market_id,
            image.market_seq,
            image.status,
            {price: (quantity, orders) for price, quantity, orders in image.bids},
            {price: (quantity, orders) for price, quantity, orders in image.asks},
            ticker=image.ticker,
            outcome=image.outcome,
            yes_payout=image.yes_payout,
            mark=image.mark,
        )

    def apply(self, event: tuple[Any, ...]) -> bool:
        """Apply one market event of this market; False for a duplicate (already in the
        book), FeedGapError if one is missing before it."""
        code, market_id, seq = event[0], event[1], event[2]
        if market_id != self.market_id or code not in MARKET_EVENT_CODES:
            raise ValueError(f"not an event of market {self.market_id}: {event!r}")
        if seq <= self.market_seq:
            return False
        if seq != self.market_seq + 1:
            raise FeedGapError(market_id, self.market_seq + 1, seq)
        self.market_seq = seq
        if code == _LEVEL:
            _, _, _, book_side, price, quantity, orders = event
            side = self.bids if book_side == _BID else self.asks
            if quantity:
                side[price] = (quantity, orders)
            else:
                side.pop(price, None)
        elif code == _TRADE:
            _, _, _, trade_id, price, quantity, aggressor_side = event
            self.trades.append(Trade(trade_id, price, quantity, aggressor_side))
        elif code == _STATUS:
            self.status = event[3]
        elif code == _SETTLED:
            self.status = int(MarketStatus.SETTLED)
            self.outcome, self.yes_payout = event[3], event[4]
        elif code == _MARKED:
            self.mark = event[3]
        elif code == _CREATED:
            self.ticker = event[3]
        return True

    def image(self) -> BookImage:
        return BookImage(
            self.market_id,
            self.market_seq,
            self.status,
            tuple((price, *self.bids[price]) for price in sorted(self.bids, reverse=True)),
            tuple((price, *self.asks[price]) for price in sorted(self.asks)),
            self.ticker,
            self.outcome,
            self.yes_payout,
            self.mark,
        )

    def best(self) -> tuple[int | None, int | None]:
        """(best bid, best ask) in YES cents; None for an empty side."""
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)
