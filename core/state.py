"""The canonical form of an engine's whole state: what a snapshot stores.

Strategy: only primary facts are stored (cash, positions, orders with their fee sums, the
counters, the running hash); everything derived (holds, level totals, indexes, heaps) is
rebuilt on load, and the loaded engine is audited by whoever loads it. Every collection is
written in a defined order (ids ascending; resting orders in book priority), so two
engines in the same state give the same bytes, and `state_digest` is a hash of the state
itself. The first element is the format version; a reader refuses any other.

    [version, header, bank_references, accounts, markets, orders, events]
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from .codes import MarketStatus, TimeInForce
from .engine import Engine
from .model import (
    Account,
    AccountMarket,
    Event,
    FutureTerms,
    Level,
    Market,
    Order,
    OrderGroup,
    event_risk,
    join_event,
    market_hold,
    resting_orders,
)

STATE_VERSION = 3  # 2: order groups (accounts' groups, orders' group ids); 3: events, futures
# The names of each row's fields, in order, for readers of the raw form (the snapshot
# export): the header, a bank reference, an account, a market, an order.
HEADER_FIELDS = (
    "time_ms",
    "batches_applied",
    "state_hash",
    "next_account_id",
    "next_market_id",
    "next_order_id",
    "next_trade_id",
    "fees_collected",
    "deposits_total",
    "withdrawals_total",
    "next_event_id",
)
BANK_REFERENCE_FIELDS = ("reference", "account_id")
ACCOUNT_FIELDS = (
    "account_id",
    "name",
    "public_key",
    "cash",
    "seq",
    "recent_client_order_ids",
    "order_groups",  # [order_group_id, contract_limit, window_ms, triggered, [[time_ms, n]]]
)
MARKET_FIELDS = (
    "market_id",
    "ticker",
    "kind",
    "status",
    "close_time_ms",
    "taker_bps",
    "maker_bps",
    "position_limit",
    "floor",
    "cap",
    "seq",
    "escrow",
    "outcome",
    "yes_payout",
    "positions",
    "event_id",
    # a futures market's [mark, initial_margin, maintenance_margin, mark_band,
    # mark_interval_ms, next_mark_ms, last_price]; [] for others
    "future",
    "margins",  # a futures market's [[account_id, margin]] (margin is a primary fact there)
)
ORDER_FIELDS = (
    "order_id",
    "client_order_id",
    "account_id",
    "market_id",
    "side",
    "price",
    "quantity",
    "remaining",
    "order_type",
    "time_in_force",
    "flags",
    "self_trade_prevention",
    "expire_time_ms",
    "taker_bps",
    "maker_bps",
    "taker_basis",
    "taker_fee",
    "maker_basis",
    "maker_fee",
    "order_group_id",
)
EVENT_FIELDS = (
    "event_id",
    "ticker",
    "mutually_exclusive",
    "exhaustive",
    "seq",
    "settled",
    "winner_market_id",
    "house_sets",
)
_CLOSABLE = (MarketStatus.PROPOSED, MarketStatus.OPEN, MarketStatus.HALTED)


class StateError(ValueError):
    """A state that this version cannot load."""


def to_state(engine: Engine) -> list[Any]:
    header = [
        engine.time_ms,
        engine.batches_applied,
        engine.state_hash,
        engine.next_account_id,
        engine.next_market_id,
        engine.next_order_id,
        engine.next_trade_id,
        engine.fees_collected,
        engine.deposits_total,
        engine.withdrawals_total,
        engine.next_event_id,
    ]
    accounts = [
        [
            account.account_id,
            account.name,
            account.public_key,
            account.cash,
            account.seq,
            [list(entry) for entry in account.recent_queue],
            [
                [
                    group.group_id,
                    group.contract_limit,
                    group.window_ms,
                    int(group.triggered),
                    [list(fill) for fill in group.fills],
                ]
                for group in sorted(account.groups.values(), key=lambda g: g.group_id)
            ],
        ]
        for account in sorted(engine.accounts.values(), key=lambda a: a.account_id)
    ]
    markets = []
    orders = []
    for market in sorted(engine.markets.values(), key=lambda m: m.market_id):
        positions = [
            [account_id, market.ams[account_id].position]
            for account_id in sorted(market.ams)
            if market.ams[account_id].position
        ]
        markets.append(
            [
                market.market_id,
                market.ticker,
                market.kind,
                market.status,
                market.close_time_ms,
                market.taker_bps,
                market.maker_bps,
                market.position_limit,
                market.floor,
                market.cap,
                market.seq,
                market.escrow,
                market.outcome,
                market.yes_payout,
                positions,
                market.event.event_id if market.event is not None else 0,
                _future_row(market.future),
                [
                    [account_id, market.ams[account_id].hold]
                    for account_id in sorted(market.ams)
                    if market.future is not None and market.ams[account_id].hold
                ],
            ]
        )
        for order in resting_orders(market):
            orders.append(
                [
                    order.order_id,
                    order.client_order_id,
                    order.account.account_id,
                    market.market_id,
                    order.side,
                    order.price,
                    order.quantity,
                    order.remaining,
                    order.order_type,
                    order.time_in_force,
                    order.flags,
                    order.self_trade_prevention,
                    order.expire_time_ms,
                    order.taker_bps,
                    order.maker_bps,
                    order.taker_basis,
                    order.taker_fee,
                    order.maker_basis,
                    order.maker_fee,
                    order.group.group_id if order.group is not None else 0,
                ]
            )
    bank_references = [
        [reference, engine.bank_references[reference]]
        for reference in sorted(engine.bank_references)
    ]
    events = [
        [
            event.event_id,
            event.ticker,
            int(event.mutually_exclusive),
            int(event.exhaustive),
            event.seq,
            int(event.settled),
            event.winner,
            event.house_sets,
        ]
        for event in sorted(engine.events.values(), key=lambda e: e.event_id)
    ]
    return [STATE_VERSION, header, bank_references, accounts, markets, orders, events]


def _future_row(terms: FutureTerms | None) -> list[int]:
    if terms is None:
        return []
    return [
        terms.mark,
        terms.initial_margin,
        terms.maintenance_margin,
        terms.mark_band,
        terms.mark_interval_ms,
        terms.next_mark_ms,
        terms.last_price,
    ]


def encode_state(engine: Engine) -> bytes:
    return msgpack.packb(to_state(engine), use_bin_type=True)


def state_digest(engine: Engine) -> bytes:
    """A hash of the state itself (not of its history, which `state_hash` is)."""
    return hashlib.blake2b(encode_state(engine), digest_size=32).digest()


def decode_state(data: bytes) -> Engine:
    try:
        state = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several types for bad bytes
        raise StateError(f"state is not msgpack: {error}") from None
    return from_state(state)


def from_state(state: Any) -> Engine:
    """Rebuild an engine; raises StateError for a state of another version or shape."""
    if type(state) not in (list, tuple) or not state or state[0] != STATE_VERSION:
        found = state[0] if type(state) in (list, tuple) and state else None
        raise StateError(f"state version {found!r} is not {STATE_VERSION}")
    try:
        return _build(state)
    except (TypeError, ValueError, KeyError, IndexError) as error:
        raise StateError(
            f"state does not have the version {STATE_VERSION} shape: {error}"
        ) from None


def _build(state: Any) -> Engine:
    _, header, bank_references, accounts, markets, orders, events = state
    engine = Engine()
    (
        engine.time_ms,
        engine.batches_applied,
        engine.state_hash,
        engine.next_account_id,
        engine.next_market_id,
        engine.next_order_id,
        engine.next_trade_id,
        engine.fees_collected,
        engine.deposits_total,
        engine.withdrawals_total,
        engine.next_event_id,
    ) = header
    engine.state_hash = bytes(engine.state_hash)
    engine.bank_references = {reference: account_id for reference, account_id in bank_references}
    for (
        event_id,
        ticker,
        mutually_exclusive,
        exhaustive,
        seq,
        settled,
        winner,
        house_sets,
    ) in events:
        event = Event(event_id, ticker, bool(mutually_exclusive), bool(exhaustive))
        event.seq = seq
        event.settled = bool(settled)
        event.winner = winner
        event.house_sets = house_sets
        engine.events[event_id] = event
        engine.event_ids_by_ticker[ticker] = event_id
    for account_id, name, public_key, cash, seq, recent, groups in accounts:
        account = Account(account_id, name, bytes(public_key))
        account.cash = cash
        account.seq = seq
        for group_id, contract_limit, window_ms, triggered, fills in groups:
            group = account.groups[group_id] = OrderGroup(group_id, contract_limit, window_ms)
            group.triggered = bool(triggered)
            for time_ms, contracts in fills:
                group.fills.append((time_ms, contracts))
                group.filled += contracts
        for client_order_id, order_id in recent:
            account.recent_queue.append((client_order_id, order_id))
            account.recent_client_ids[client_order_id] = order_id
        engine.accounts[account_id] = account
        engine.account_ids_by_name[name] = account_id
    for (
        market_id,
        ticker,
        kind,
        status,
        close_time_ms,
        taker_bps,
        maker_bps,
        position_limit,
        floor,
        cap,
        seq,
        escrow,
        outcome,
        yes_payout,
        positions,
        event_id,
        future,
        margins,
    ) in markets:
        market = Market(
            market_id, ticker, kind, close_time_ms, taker_bps, maker_bps, position_limit, floor, cap
        )
        market.status = status
        market.seq = seq
        market.escrow = escrow
        market.outcome = outcome
        market.yes_payout = yes_payout
        engine.markets[market_id] = market
        engine.market_ids_by_ticker[ticker] = market_id
        if future:
            terms = market.future = FutureTerms()
            (
                terms.mark,
                terms.initial_margin,
                terms.maintenance_margin,
                terms.mark_band,
                terms.mark_interval_ms,
                terms.next_mark_ms,
                terms.last_price,
            ) = future
            if terms.next_mark_ms:  # 0 once closed
                engine.mark_heap.append((terms.next_mark_ms, market_id))
        if event_id:
            event = engine.events[event_id]
            market.event = event
            if event.mutually_exclusive:
                market.exclusive = event
            event.markets.append(market)
        if close_time_ms and status in _CLOSABLE:
            engine.close_heap.append((close_time_ms, market_id))
        for account_id, position in positions:
            am = _account_market(engine, account_id, market)
            am.position = position
            if position > 0:
                market.open_interest += position
        for account_id, margin in margins:
            _account_market(engine, account_id, market).hold = margin
    _place_orders(engine, orders)
    for account in engine.accounts.values():
        for am in account.markets.values():
            if am.market.future is not None:
                account.held += am.hold  # as stored
            elif am.account_event is None:
                am.hold = market_hold(am)
                account.held += am.hold
        for ae in account.events.values():
            ae.hold, ae.released = event_risk(ae.event, ae.ams.values(), len(ae.ams))
            account.held += ae.hold
            ae.event.released += ae.released
    for event in engine.events.values():
        event.released += event.house_released()
    engine.gtd_heap.sort()
    engine.close_heap.sort()
    engine.mark_heap.sort()
    return engine


def _place_orders(engine: Engine, orders: Any) -> None:
    """Orders come in book priority (market by market, bids best first then asks, each
    level in queue order), so each level's queue is linked as the rows arrive. They are
    then added to their accounts in id order, which is the order they were accepted in.
    The loop is written out (no method calls per order) because it is what a node's
    recovery time is made of: docs/benchmarks.md, snapshot recovery."""
    markets = engine.markets
    accounts = engine.accounts
    engine_orders = engine.orders
    gtd = TimeInForce.GTD
    level: Level | None = None
    tail: Order | None = None
    level_key: tuple[int, bool, int] = (0, False, 0)
    placed: list[Order] = []
    place = placed.append
    for (
        order_id,
        client_order_id,
        account_id,
        market_id,
        side,
        price,
        quantity,
        remaining,
        order_type,
        time_in_force,
        flags,
        stp,
        expire_time_ms,
        taker_bps,
        maker_bps,
        taker_basis,
        taker_fee,
        maker_basis,
        maker_fee,
        order_group_id,
    ) in orders:
        market = markets[market_id]
        am = market.ams.get(account_id)
        if am is None:
            am = _account_market(engine, account_id, market)
        is_bid = side == 1 or side == 4
        order = Order(
            order_id,
            client_order_id,
            accounts[account_id],
            am,
            market,
            side,
            is_bid,
            price,
            quantity,
            order_type,
            time_in_force,
            flags,
            stp,
            expire_time_ms,
            taker_bps,
            maker_bps,
        )
        order.remaining = remaining
        order.taker_basis = taker_basis
        order.taker_fee = taker_fee
        order.maker_basis = maker_basis
        order.maker_fee = maker_fee
        if order_group_id:
            order.group = accounts[account_id].groups[order_group_id]
        if maker_bps:
            order.maker_bound = order.maker_fee_bound()
        key = (market_id, is_bid, price)
        if key != level_key or level is None or tail is None:
            levels = market.bid_levels if is_bid else market.ask_levels
            level = levels[price]
            if level is None:
                level = levels[price] = Level(market, is_bid, price)
                if is_bid:
                    market.bid_mask |= 1 << price
                else:
                    market.ask_mask |= 1 << price
                level.head = order
            else:  # a level seen before: the rows were not in book order
                raise ValueError(f"order {order_id} is out of book order")
            level_key = key
        else:
            tail.next = order
            order.prev = tail
        order.level = level
        level.tail = order
        level.quantity += remaining
        level.count += 1
        tail = order
        market.open_orders += 1
        engine_orders[order_id] = order
        place(order)
        if time_in_force == gtd:
            engine.gtd_open += 1
            engine.gtd_heap.append((expire_time_ms, order_id))
    placed.sort(key=_order_id)
    for order in placed:
        account = order.account
        account.orders[order.order_id] = order
        account.open_by_client_id[order.client_order_id] = order
        order.am.add(order)


def _order_id(order: Order) -> int:
    return order.order_id


def _account_market(engine: Engine, account_id: int, market: Market) -> AccountMarket:
    am = market.ams.get(account_id)
    if am is None:
        account = engine.accounts[account_id]
        am = AccountMarket(account, market)
        market.ams[account_id] = am
        account.markets[market.market_id] = am
        if market.exclusive is not None:
            join_event(market.exclusive, am)
    return am
