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
_CREATED, _STATUS, _CONFIGURED, _LEVEL, _TRADE, _SETTLED = 32, 33, 34, 35, 36, 37
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
    """A whole book at `market_seq`: levels as (YES price, quantity, orders), best first."""

    market_id: int
    market_seq: int
    status: int
    bids: tuple[tuple[int, int, int], ...]
    asks: tuple[tuple[int, int, int], ...]


def book_image(engine: Engine, market_id: int) -> BookImage | None:
    """The book of `market_id` as it is now (call under ExchangeMachine.lock)."""
    view = queries.book(engine, market_id)
    if view is None:
        return None
    return BookImage(
        market_id,
        engine.markets[market_id].seq,
        view.status,
        tuple((level.price, level.quantity, level.orders) for level in view.bids),
        tuple((level.price, level.quantity, level.orders) for level in view.asks),
    )


class FeedWindows:
    """The recent market events of every market, for subscribers that resume."""

    def __init__(self, window_events: int) -> None:
        assert window_events > 0
        self.window_events = window_events
        self._windows: dict[int, deque[tuple[Any, ...]]] = {}
        self._last: dict[int, int] = {}  # market -> its newest market_seq seen here

    def reset(self, engine: Engine) -> None:
        """Start from the engine's state (at start, or after a snapshot was installed):
        nothing before it can be replayed from here."""
        self._windows = {market_id: deque() for market_id in engine.markets}
        self._last = {market_id: market.seq for market_id, market in engine.markets.items()}

    def publish(self, event: tuple[Any, ...]) -> None:
        """One market event, in log order."""
        market_id, seq = event[1], event[2]
        last = self._last.get(market_id, 0)
        if seq != last + 1:  # the applied stream skipped: a bug upstream, never to serve
            raise ValueError(f"market {market_id} jumped from {last} to {seq}")
        window = self._windows.get(market_id)
        if window is None:
            window = self._windows[market_id] = deque()
        window.append(event)
        if len(window) > self.window_events:
            window.popleft()
        self._last[market_id] = seq

    def last_seq(self, market_id: int) -> int | None:
        return self._last.get(market_id)

    def resume(self, market_id: int, after_seq: int) -> list[tuple[Any, ...]] | None:
        """Every event of the market after `after_seq`, or None if some of them are no
        longer (or not yet) here: the subscriber then needs an image."""
        last = self._last.get(market_id)
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
    outcome: int | None = None
    yes_payout: int | None = None

    @classmethod
    def from_image(cls, image: BookImage) -> LocalBook:
        return cls(
            image.market_id,
            image.market_seq,
            image.status,
            {price: (quantity, orders) for price, quantity, orders in image.bids},
            {price: (quantity, orders) for price, quantity, orders in image.asks},
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
        return True

    def image(self) -> BookImage:
        return BookImage(
            self.market_id,
            self.market_seq,
            self.status,
            tuple((price, *self.bids[price]) for price in sorted(self.bids, reverse=True)),
            tuple((price, *self.asks[price]) for price in sorted(self.asks)),
        )

    def best(self) -> tuple[int | None, int | None]:
        """(best bid, best ask) in YES cents; None for an empty side."""
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)
