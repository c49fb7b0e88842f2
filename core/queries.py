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
