"""Read-only views of an engine's state, for answering clients: plain frozen values.

Strategy: the gateway answers queries from a node's applied state; it reads through these
functions only, never the engine's internal objects, so the engine can change its layout
freely. Every list comes in a defined order (ids ascending, book levels best first).
Callers hold whatever lock keeps the engine still while they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True, slots=True)
class OpenOrderView:
    order_id: int
    client_order_id: int
    market_id: int
    side: int
    price: int  # in the order's own terms
    remaining: int
    quantity: int
    time_in_force: int
    flags: int
    expire_time_ms: int


@dataclass(frozen=True, slots=True)
class LevelView:
    price: int  # YES price
    quantity: int
    orders: int


@dataclass(frozen=True, slots=True)
class BookView:
    market_id: int
    status: int
    bids: tuple[LevelView, ...]  # best (highest) first
    asks: tuple[LevelView, ...]  # best (lowest) first


@dataclass(frozen=True, slots=True)
class EventView:
    event_id: int
    ticker: str
    mutually_exclusive: bool
    exhaustive: bool
    settled: bool
    winner_market_id: int
    house_sets: int
    market_ids: tuple[int, ...]
    hold: int  # the account's, in a mutually exclusive event; else 0
    released: int


def event(engine: Engine, event_id: int, account_id: int = 0) -> EventView | None:
    """An event (or, for event_id 0 and a market_id, use `event_of_market`)."""
    kept = engine.events.get(event_id)
    if kept is None:
        return None
    account = engine.accounts.get(account_id)
    ae = account.events.get(event_id) if account is not None else None
    return EventView(
        kept.event_id,
        kept.ticker,
        kept.mutually_exclusive,
        kept.exhaustive,
        kept.settled,
        kept.winner,
        kept.house_sets,
        tuple(market.market_id for market in kept.markets),
        ae.hold if ae is not None else 0,
        ae.released if ae is not None else 0,
    )


def event_of_market(engine: Engine, market_id: int) -> int:
    """The id of the event a market belongs to; 0 if none (or no such market)."""
    market = engine.markets.get(market_id)
    return market.event.event_id if market is not None and market.event is not None else 0


def open_orders(engine: Engine, account_id: int) -> list[OpenOrderView]:
    account = engine.accounts.get(account_id)
    if account is None:
        return []
    return [
        OpenOrderView(
            order.order_id,
            order.client_order_id,
            order.market.market_id,
            order.side,
            order.own_price(order.price),
            order.remaining,
            order.quantity,
            order.time_in_force,
            order.flags,
            order.expire_time_ms,
        )
        for order in sorted(account.orders.values(), key=lambda o: o.order_id)
    ]


def positions(engine: Engine, account_id: int) -> list[tuple[int, int]]:
    """(market_id, position) for every market where the account holds a position."""
    account = engine.accounts.get(account_id)
    if account is None:
        return []
    return sorted(
        (market_id, am.position) for market_id, am in account.markets.items() if am.position
    )


def balance(engine: Engine, account_id: int) -> tuple[int, int] | None:
    """(cash, held) of an account, or None if there is no such account."""
    account = engine.accounts.get(account_id)
    return None if account is None else (account.cash, account.held)


def book(engine: Engine, market_id: int) -> BookView | None:
    market = engine.markets.get(market_id)
    if market is None:
        return None
    bids = tuple(
        LevelView(level.price, level.quantity, level.count)
        for level in reversed(market.bid_levels)
        if level is not None and level.count
    )
    asks = tuple(
        LevelView(level.price, level.quantity, level.count)
        for level in market.ask_levels
        if level is not None and level.count
    )
    return BookView(market_id, market.status, bids, asks)


def account_public_key(engine: Engine, account_id: int) -> bytes | None:
    account = engine.accounts.get(account_id)
    return None if account is None else account.public_key
