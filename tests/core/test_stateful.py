"""Hypothesis stateful tests over the whole command set of the engine, garbage included.

Strategy: a RuleBasedStateMachine drives one engine through the support harness, which runs
the full audit after every command. On top of that the machine keeps a mirror of the
exchange rebuilt only from the events (open orders and what is left of them, every price
level's queue in time priority, the book from LevelUpdated, positions from fills and
settlements, each order's fee sums, market states and settings) and compares it with the
engine after every batch: whatever the engine keeps, its events must have said, and every
maker fill must be the head of the best level. Each rule also checks what its command
promises the sender (a fill-or-kill order fills completely, a post-only order never takes, a
market order spends no more than its max_cost, a retry is answered `exists`, a reject names
the rule the docs give), invariants check that the canonical state form round-trips
exactly, and every fifth command a restored copy of the engine must apply it with the same
events and hash. A plain test applies the same random commands to two fresh engines.

Values are drawn close together on purpose: a few accounts with little cash, prices around
50, small quantities and position limits, most orders in one market, so orders cross,
positions net, collateral and limits bind and reduce-only orders get trimmed. Every rule
also draws values that must be rejected, and three rules send garbage: commands of the
wrong shape or types, batches that are no batches, and log entries that are no msgpack.

The engine bugs the machine found were fixed; the smallest reproduction of each is kept as a
plain test at the end of the module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from evx.core import (
    COMMANDS,
    AccountCreated,
    AppliedBatch,
    Batch,
    BookSide,
    CancelOrder,
    CancelReason,
    CommandRejected,
    ConfigureMarket,
    ConvertNo,
    CreateAccount,
    CreateEvent,
    CreateMarket,
    Deposit,
    Deposited,
    Engine,
    EventCreated,
    EventSettled,
    LevelUpdated,
    Liquidity,
    MarginsSet,
    MarketConfigured,
    MarketCreated,
    MarketKind,
    MarketMarked,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkMarket,
    MassCancel,
    MassCancelled,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderFlag,
    OrderGroupUpdated,
    OrderReplaced,
    OrderType,
    PayoutReleased,
    PositionReduced,
    PositionsConverted,
    PositionSettled,
    Record,
    Reject,
    ReplaceOrder,
    ResetOrderGroup,
    SelfTradePrevention,
    SetMargins,
    SetMarketStatus,
    SetOrderGroup,
    SettleEvent,
    SettleMarket,
    Side,
    TimeInForce,
    TradePrinted,
    VariationMargin,
    Withdraw,
    Withdrawn,
    check_invariants,
    constants,
    event_from_canonical,
    fee_cents,
    from_state,
    scalar_yes_payout,
    to_state,
)
from support.engine_harness import OUTCOME_TYPES, Harness, comparable_state

PAYOUT = constants.contract_payout_cents
ID_LIMIT = 2**63  # ids, counters, quantities and money in events stay below this
RESTORE_EVERY_COMMANDS = 5  # a restored copy replays every fifth command (it is slow)
MAX_COMMANDS = constants.batch_commands_max
DEPOSIT_MAX = constants.deposit_amount_max_cents
# What the garbage_log rule sends; the batch of too many commands is the slow one.
GARBAGE_LOG_KINDS = ("bad_time", "bad_time", "no_commands", "not_a_batch", "bytes", "entry")
GARBAGE_LOG_KINDS += ("entry", "cut", "too_many")
ALLOWED_TRANSITIONS = {
    (MarketStatus.PROPOSED, MarketStatus.OPEN),
    (MarketStatus.PROPOSED, MarketStatus.CLOSED),
    (MarketStatus.OPEN, MarketStatus.HALTED),
    (MarketStatus.OPEN, MarketStatus.CLOSED),
    (MarketStatus.HALTED, MarketStatus.OPEN),
    (MarketStatus.HALTED, MarketStatus.CLOSED),
}
# Event fields that are signed by design; every other int field of an event is a count,
# an id, a price or money and must fit the unsigned 63-bit range of the wire formats.
SIGNED_EVENT_FIELDS = frozenset({"position", "floor", "cap", "outcome", "variation"})

KEY = b"k" * constants.public_key_length


# -- Strategies -------------------------------------------------------------------------------

# Picks of existing things are small non-negative numbers (they shrink to the first one);
# negative picks name things that do not exist.
ACCOUNT_PICKS = st.integers(-3, 30)
MARKET_PICKS = st.integers(-3, 30)
YES_PRICES = st.one_of(
    st.integers(45, 55), st.integers(45, 55), st.integers(1, 99), st.sampled_from([-1, 0, 100])
)
QUANTITIES = st.one_of(
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 40),
    st.sampled_from([0, -1, constants.order_quantity_max, constants.order_quantity_max + 1]),
)
# Lists repeat the values that should come up more often; the odd ones must be rejected.
SIDES = st.sampled_from([1, 2, 3, 4, 1, 2, 3, 4, 0, 5])
ORDER_TYPES = st.sampled_from([1, 1, 1, 1, 2, 2, 0, 3])
TIMES_IN_FORCE = st.sampled_from([1, 1, 1, 2, 2, 3, 3, 4, 4, 0, 5])
FLAGS = st.sampled_from([0, 0, 0, 0, 1, 2, 2, 3, 4, -1])
SELF_TRADE_PREVENTIONS = st.sampled_from([1, 1, 2, 2, 3, 3, 0, 4])
# Offsets from the batch time; -100 puts an expiry on an order that is not GTD.
EXPIRE_OFFSETS = st.one_of(
    st.integers(1, 30),
    st.integers(1, 30),
    st.sampled_from([0, -1, -100, constants.gtd_horizon_ms_max + 1]),
)
MAX_COSTS = st.one_of(
    st.just(0),
    st.just(0),
    st.integers(1, 600),
    st.sampled_from([-1, constants.market_order_max_cost_cents_max + 1]),
)
CLIENT_PICKS = st.sampled_from(["fresh"] * 6 + ["open", "remembered", "zero", "huge", "negative"])

# Values of every type the canonical form does not have, for fields of the wrong type.
WRONG_TYPED_VALUES = st.one_of(
    st.text(max_size=4),
    st.binary(max_size=4),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.tuples(st.integers(-2, 2)),
    st.tuples(st.tuples(st.integers(0, 2))),
    st.lists(st.integers(0, 2), max_size=2),
    st.integers(0, 3),
)
OUT_OF_RANGE_INTS = st.sampled_from(
    [-1, -(2**63), -(2**64), 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100, -(2**100)]
)
UNKNOWN_CODES = st.sampled_from([0, 8, 31, 35, 63, 72, 127, -1, 2**63, 2**64, True, False])
NOT_COMMANDS = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.floats(),
    st.dictionaries(st.integers(0, 3), st.integers(0, 3), max_size=2),
    st.frozensets(st.integers(0, 3), max_size=2),
)
BAD_BATCH_TIMES = st.sampled_from(
    [-1, -(2**63), 2**63, 2**64, 2**100, None, 1.5, float("nan"), True, "5", b"5", (5,)]
)


def own_price(side: int, yes_price: int) -> int:
    """A YES price in the terms of the side: BUY_NO at 40 pays 40 per NO contract."""
    return yes_price if side in (Side.BUY_YES, Side.SELL_YES) else PAYOUT - yes_price


def is_bid_side(side: int) -> bool:
    return side in (Side.BUY_YES, Side.SELL_NO)


def canonical(command: Any) -> Any:
    return command.to_canonical() if isinstance(command, Record) else command


def level_snapshot(engine: Engine) -> dict[tuple[int, int, int], tuple[int, int]]:
    """Every level of every book: (market, book side, YES price) -> (quantity, orders)."""
    levels = {}
    for market_id, market in engine.markets.items():
        for book_side, book in (
            (BookSide.BID, market.bid_levels),
            (BookSide.ASK, market.ask_levels),
        ):
            for price, level in enumerate(book):
                if level is not None:
                    levels[market_id, int(book_side), price] = (level.quantity, level.count)
    return levels


# -- The mirror: the exchange as its events describe it ---------------------------------------


@dataclass
class MirrorOrder:
    account_id: int
    market_id: int
    client_order_id: int
    side: int
    is_bid: bool
    is_market: bool
    limit: int  # the YES price it trades up (bids) or down (asks) to, and rests at
    remaining: int  # what the events leave of it: quantity less fills and cancels
    taker_bps: int
    maker_bps: int
    taker_basis: int = 0
    taker_fees: int = 0
    maker_basis: int = 0
    maker_fees: int = 0
    queue: tuple[int, bool, int] | None = None  # (market, is bid, YES price) while it rests
    expire_time_ms: int = 0


@dataclass
class MirrorMarket:
    kind: int
    floor: int
    cap: int
    status: int
    taker_bps: int
    maker_bps: int
    position_limit: int
    position_limit_max: int  # the largest limit it ever had: no position may exceed it
    yes_payout: int = -1
    event_id: int = 0
    mark: int = constants.futures_mark_price_default  # futures only
    mark_band: int = constants.futures_mark_band_default


@dataclass
class MirrorEvent:
    mutually_exclusive: bool
    exhaustive: bool
    markets: list[int]
    winner: int | None = None  # once settled


def guaranteed_payout(positions: list[int], exhaustive: bool) -> int:
    """The least positions (one per market of a mutually exclusive event) pay over its
    scenarios, worked out scenario by scenario: what PayoutReleased must say."""
    no_total = sum(-q for q in positions if q < 0)
    payouts = [PAYOUT * (max(q, 0) + no_total - max(-q, 0)) for q in positions]
    if not exhaustive:
        payouts.append(PAYOUT * no_total)
    return min(payouts) if payouts else 0


class EventMirror:
    """Rebuilds orders, books, positions and markets from events alone, checks each event
    against what came before it, and compares the result with the engine after a batch.

    It also keeps every price level's queue, in time priority, from what the events imply:
    an incoming (or replaced) order that has quantity left when its command ends rests at
    the back of its level, a replace that keeps priority stays where it was, and an order
    leaves its queue when nothing of it is left. So each maker fill can be checked against
    price-time priority (it is the head of the best level) and the queues against the
    engine's, order by order."""

    def __init__(self) -> None:
        self.orders: dict[int, MirrorOrder] = {}
        self.queues: dict[tuple[int, bool, int], list[int]] = {}
        self.incoming: int | None = None  # the order a command brought, until it ends
        self.gave_up: list[tuple[OrderCancelled, Any]] = []  # IOC remainders to check
        self.finished: dict[int, int] = {}  # order_id -> account_id of orders no longer open
        self.levels: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.positions: dict[tuple[int, int], int] = {}
        self.markets: dict[int, MirrorMarket] = {}
        self.events: dict[int, MirrorEvent] = {}
        self.released: dict[tuple[int, int], int] = {}  # (account, event) -> released payout
        self.last_trade_id = 0
        self.last_move = 0  # of the last futures mark read
        self.time_ms = 0  # of the batch being read

    def consume(self, applied: AppliedBatch, engine: Engine) -> None:
        self.time_ms = applied.time_ms
        bounds = [0, *applied.outcome_offsets, len(applied.events)]
        for start, end in pairwise(bounds):
            if start < end:
                group = [event_from_canonical(event) for event in applied.events[start:end]]
                self._consume_group(group)
        self._compare(engine)

    # -- Events -----------------------------------------------------------------------------

    def _consume_group(self, group: list[Any]) -> None:
        """The events of one command (or of time passing), in order."""
        trades: dict[int, TradePrinted] = {}
        fills: dict[int, list[OrderFilled]] = {}
        touched_levels: dict[tuple[int, int, int], LevelUpdated] = {}
        mass_cancels: list[MassCancelled] = []
        mass_cancelled = 0
        self.incoming = None
        self.gave_up = []
        for event in group:
            check_event_ranges(event)
            if isinstance(event, OrderAccepted):
                self._accepted(event)
            elif isinstance(event, OrderFilled):
                self._filled(event)
                fills.setdefault(event.trade_id, []).append(event)
            elif isinstance(event, OrderCancelled):
                self._cancelled(event)
                if event.reason == CancelReason.MASS_CANCEL:
                    mass_cancelled += 1
            elif isinstance(event, OrderReplaced):
                self._replaced(event)
            elif isinstance(event, MassCancelled):
                mass_cancels.append(event)
            elif isinstance(event, TradePrinted):
                assert event.trade_id == self.last_trade_id + 1, "trade ids have a gap"
                self.last_trade_id = event.trade_id
                trades[event.trade_id] = event
            elif isinstance(event, LevelUpdated):
                key = (event.market_id, event.book_side, event.price)
                assert key not in touched_levels, f"two LevelUpdated for {key} in one command"
                touched_levels[key] = event
                assert (event.quantity == 0) == (event.orders == 0), event
                if event.quantity:
                    self.levels[key] = (event.quantity, event.orders)
                else:
                    assert key in self.levels, f"{event} removes a level that was never there"
                    del self.levels[key]
            elif isinstance(event, PositionSettled):
                self._position_settled(event)
            elif isinstance(event, MarketCreated | MarketConfigured | MarketStatusChanged):
                self._market_event(event)
            elif isinstance(event, MarketMarked):
                self._marked(event)
            elif isinstance(event, MarginsSet):
                kept = self.markets[event.market_id]
                assert kept.kind == MarketKind.FUTURE, event
                assert (
                    1
                    <= event.mark_band
                    <= event.maintenance_margin
                    <= event.initial_margin
                    <= PAYOUT
                ), event
                kept.mark_band = event.mark_band
            elif isinstance(event, VariationMargin):
                position = self.positions.get((event.account_id, event.market_id), 0)
                assert event.variation == position * self.last_move, (
                    f"{event}: a position of {position} and a move of {self.last_move}"
                )
                assert position and event.margin >= 0, event
            elif isinstance(event, PositionReduced):
                self._reduced(event)
            elif isinstance(event, MarketSettled):
                market = self.markets[event.market_id]
                if market.kind == MarketKind.BINARY:
                    expected = PAYOUT * event.outcome
                else:
                    expected = scalar_yes_payout(event.outcome, market.floor, market.cap)
                assert event.yes_payout == expected, event
                market.yes_payout = event.yes_payout
                market.status = MarketStatus.SETTLED
            elif isinstance(event, CommandRejected):
                assert event.reason in Reject.__members__.values(), event
            elif isinstance(event, OrderGroupUpdated):
                assert event.triggered in (0, 1) and 0 < event.contract_limit, event
            elif isinstance(event, PositionsConverted):
                self._converted(event)
            elif isinstance(event, PayoutReleased):
                self._released(event)
            elif isinstance(event, EventCreated):
                assert event.event_id not in self.events and event.event_seq == 1, event
                self.events[event.event_id] = MirrorEvent(
                    bool(event.mutually_exclusive), bool(event.exhaustive), []
                )
            elif isinstance(event, EventSettled):
                kept = self.events[event.event_id]
                assert kept.mutually_exclusive and kept.winner is None, event
                assert event.winner_market_id in (0, *kept.markets), event
                assert event.winner_market_id or not kept.exhaustive, event
                kept.winner = event.winner_market_id
            else:
                assert isinstance(event, AccountCreated | Deposited | Withdrawn), event
        for event, order in self.gave_up:
            best = self.best(order.market_id, not order.is_bid)
            reachable = best >= 0 and (best <= order.limit if order.is_bid else best >= order.limit)
            assert not reachable, f"{event} while the book still has {best} within its limit"
        if self.incoming is not None:
            order = self.orders[self.incoming]
            if order.remaining:
                order.queue = (order.market_id, order.is_bid, order.limit)
                self.queues.setdefault(order.queue, []).append(self.incoming)
        for trade_id, trade in trades.items():
            self._check_trade(trade, fills.pop(trade_id, []))
        assert not fills, f"fills without a trade: {fills}"
        assert len(mass_cancels) <= 1, "one mass cancel per command"
        if mass_cancels:
            assert mass_cancels[0].cancelled_orders == mass_cancelled, (
                f"{mass_cancels[0]} announced, {mass_cancelled} cancelled"
            )

    def _accepted(self, event: OrderAccepted) -> None:
        assert event.order_id not in self.orders and event.order_id not in self.finished
        market = self.markets[event.market_id]
        assert market.status == MarketStatus.OPEN, f"{event} in a market that is not open"
        is_market = event.order_type == OrderType.MARKET
        # A market order without a worst price accepts anything up to 99 cents a contract.
        price = event.price or (99 if event.side in (Side.BUY_YES, Side.BUY_NO) else 1)
        self.orders[event.order_id] = MirrorOrder(
            event.account_id,
            event.market_id,
            event.client_order_id,
            event.side,
            is_bid_side(event.side),
            is_market,
            own_price(event.side, price),
            event.quantity,
            market.taker_bps,
            market.maker_bps,
        )
        self.orders[event.order_id].expire_time_ms = event.expire_time_ms
        self.incoming = event.order_id

    def _filled(self, event: OrderFilled) -> None:
        order = self.orders[event.order_id]
        assert (order.account_id, order.market_id, order.client_order_id, order.side) == (
            event.account_id,
            event.market_id,
            event.client_order_id,
            event.side,
        ), f"{event} does not match its order {order}"
        assert event.quantity > 0
        yes_price = own_price(event.side, event.price)
        basis = event.quantity * yes_price * (PAYOUT - yes_price)
        if event.liquidity == Liquidity.TAKER:
            assert yes_price <= order.limit if order.is_bid else yes_price >= order.limit, (
                f"{event} trades beyond its limit {order.limit}"
            )
            order.taker_basis += basis
            order.taker_fees += event.fee
            expected_fees = fee_cents(order.taker_bps, order.taker_basis)
            assert order.taker_fees == expected_fees, f"{event}: taker fees {order.taker_fees}"
        else:
            assert event.liquidity == Liquidity.MAKER
            assert yes_price == order.limit, f"{event} fills a resting order off its price"
            queue = self.queues.get(order.queue) if order.queue is not None else None
            assert queue and queue[0] == event.order_id, (
                f"{event} is not first in its queue {queue}: price-time priority"
            )
            assert yes_price == self.best(order.market_id, order.is_bid), (
                f"{event} fills at {yes_price} while a better level rests"
            )
            order.maker_basis += basis
            order.maker_fees += event.fee
            expected_fees = fee_cents(order.maker_bps, order.maker_basis)
            assert order.maker_fees == expected_fees, f"{event}: maker fees {order.maker_fees}"
        order.remaining -= event.quantity
        assert order.remaining >= 0, f"{event} fills more than the order had"
        self._leave_queue_if_done(event.order_id)
        assert event.leaves_quantity == order.remaining, (
            f"{event} leaves {event.leaves_quantity}, the order has {order.remaining} left"
        )
        key = (event.account_id, event.market_id)
        before = self.positions.get(key, 0)
        change = event.quantity if order.is_bid else -event.quantity
        assert event.position == before + change, f"{event} after a position of {before}"
        self.positions[key] = event.position

    def _cancelled(self, event: OrderCancelled) -> None:
        order = self.orders[event.order_id]
        assert (order.account_id, order.market_id, order.client_order_id) == (
            event.account_id,
            event.market_id,
            event.client_order_id,
        ), f"{event} does not match its order {order}"
        assert event.reason in CancelReason.__members__.values(), event
        assert 0 < event.cancelled_quantity <= order.remaining, (
            f"{event} cancels more than the {order.remaining} left"
        )
        if event.reason == CancelReason.IMMEDIATE_REMAINDER:
            # An order that gives up what it cannot fill now must have met all it could:
            # checked once the command's events are all in, since reduce-only orders its
            # fills left without a position to close are trimmed after it.
            assert event.order_id == self.incoming, f"{event} is not the incoming order"
            self.gave_up.append((event, order))
        if event.reason == CancelReason.EXPIRED:
            assert 0 < order.expire_time_ms <= self.time_ms, f"{event} at {self.time_ms}"
        if event.reason == CancelReason.MARKET_CLOSED:
            assert self.markets[order.market_id].status == MarketStatus.CLOSED, event
        order.remaining -= event.cancelled_quantity
        self._leave_queue_if_done(event.order_id)

    def _replaced(self, event: OrderReplaced) -> None:
        order = self.orders[event.order_id]
        assert (order.account_id, order.market_id, order.client_order_id) == (
            event.account_id,
            event.market_id,
            event.previous_client_order_id,
        ), f"{event} does not match its order {order}"
        assert order.remaining > 0, f"{event} replaces an order that was done"
        assert order.queue is not None, f"{event} replaces an order that does not rest"
        order.client_order_id = event.client_order_id
        order.limit = own_price(order.side, event.price)
        order.remaining = event.quantity
        if not event.priority_kept:
            # out of its queue now; it trades as a taker and rests again at the end
            self.queues[order.queue].remove(event.order_id)
            order.queue = None
            self.incoming = event.order_id

    def _leave_queue_if_done(self, order_id: int) -> None:
        order = self.orders[order_id]
        if not order.remaining and order.queue is not None:
            self.queues[order.queue].remove(order_id)
            order.queue = None

    def best(self, market_id: int, bids: bool) -> int:
        """The best YES price resting on one side, as the queues have it; -1 if none."""
        prices = [
            price
            for (queue_market, is_bid, price), queue in self.queues.items()
            if queue and queue_market == market_id and is_bid == bids
        ]
        if not prices:
            return -1
        return max(prices) if bids else min(prices)

    def _marked(self, event: MarketMarked) -> None:
        kept = self.markets[event.market_id]
        assert kept.kind == MarketKind.FUTURE, event
        open_interest = sum(
            q
            for (_, market_id), q in self.positions.items()
            if market_id == event.market_id and q > 0
        )
        if open_interest:
            assert abs(event.mark - kept.mark) <= kept.mark_band, f"{event} from {kept.mark}"
        assert 0 <= event.mark <= PAYOUT, event
        self.last_move = event.mark - kept.mark
        kept.mark = event.mark

    def _reduced(self, event: PositionReduced) -> None:
        key = (event.account_id, event.market_id)
        before = self.positions.get(key, 0)
        assert event.quantity > 0 and event.reason in (1, 2), event
        assert abs(event.position) == abs(before) - event.quantity, f"{event} from {before}"
        assert event.position * before >= 0, f"{event} flips a position of {before}"
        self.positions[key] = event.position

    def _position_settled(self, event: PositionSettled) -> None:
        key = (event.account_id, event.market_id)
        position = self.positions.get(key, 0)
        assert event.position == position, f"{event} settles a position of {position}"
        yes_payout = self.markets[event.market_id].yes_payout
        expected = yes_payout * position if position > 0 else (PAYOUT - yes_payout) * -position
        if self.markets[event.market_id].kind == MarketKind.FUTURE:
            expected = 0  # a future's gains and losses came as variation margin
        assert event.payout == expected, event
        self.positions.pop(key, None)

    def _converted(self, event: PositionsConverted) -> None:
        kept = self.events[event.event_id]
        assert kept.exhaustive and kept.winner is None, event
        assert event.market_id in kept.markets, event
        before = self.positions.get((event.account_id, event.market_id), 0)
        assert before <= -event.quantity, f"{event} converts more NO than {before} held"
        for market_id in kept.markets:
            key = (event.account_id, market_id)
            self.positions[key] = self.positions.get(key, 0) + event.quantity

    def _released(self, event: PayoutReleased) -> None:
        kept = self.events[event.event_id]
        assert kept.mutually_exclusive, event
        positions = [self.positions.get((event.account_id, m), 0) for m in kept.markets]
        expected = guaranteed_payout(positions, kept.exhaustive) if kept.winner is None else 0
        assert event.released == expected, f"{event}: the positions {positions} pay {expected}"
        self.released[(event.account_id, event.event_id)] = event.released

    def _market_event(self, event: MarketCreated | MarketConfigured | MarketStatusChanged) -> None:
        if isinstance(event, MarketCreated):
            self.markets[event.market_id] = MirrorMarket(
                event.kind,
                event.floor,
                event.cap,
                MarketStatus.PROPOSED,
                event.taker_fee_bps,
                event.maker_fee_bps,
                event.position_limit,
                event.position_limit,
                event_id=event.event_id,
            )
            if event.event_id:
                self.events[event.event_id].markets.append(event.market_id)
            return
        market = self.markets[event.market_id]
        if isinstance(event, MarketStatusChanged):
            assert (market.status, event.status) in ALLOWED_TRANSITIONS, event
            market.status = event.status
            return
        market.taker_bps = event.taker_fee_bps
        market.maker_bps = event.maker_fee_bps
        market.position_limit = event.position_limit
        market.position_limit_max = max(market.position_limit_max, event.position_limit)

    def _check_trade(self, trade: TradePrinted, fills: list[OrderFilled]) -> None:
        assert sorted(fill.liquidity for fill in fills) == [Liquidity.MAKER, Liquidity.TAKER], (
            f"{trade} has fills {fills}"
        )
        taker, maker = sorted(fills, key=lambda fill: -fill.liquidity)
        taker_order, maker_order = self.orders[taker.order_id], self.orders[maker.order_id]
        assert taker.quantity == maker.quantity == trade.quantity, f"{trade}: {fills}"
        assert own_price(maker.side, maker.price) == trade.price, f"{trade}: {maker}"
        assert taker.account_id != maker.account_id, f"{trade} is a self-trade"
        assert taker_order.is_bid != maker_order.is_bid, f"{trade}: both sides are the same"
        assert taker_order.is_bid == (trade.aggressor_side == BookSide.BID), trade
        assert taker.market_id == maker.market_id == trade.market_id, trade

    # -- The engine against its events -------------------------------------------------------

    def _compare(self, engine: Engine) -> None:
        for order_id in [
            order_id for order_id, order in self.orders.items() if not order.remaining
        ]:
            self.finished[order_id] = self.orders.pop(order_id).account_id
        assert set(self.orders) == set(engine.orders), (
            f"open by events {sorted(self.orders)}, open in the engine {sorted(engine.orders)}"
        )
        for order_id, order in self.orders.items():
            kept = engine.orders[order_id]
            assert (kept.remaining, kept.price, kept.client_order_id) == (
                order.remaining,
                order.limit,
                order.client_order_id,
            ), f"order {order_id}: engine {kept.remaining}@{kept.price}, events {order}"
        assert self.levels == level_snapshot(engine), "the book differs from its LevelUpdated"
        queues = {key: queue for key, queue in self.queues.items() if queue}
        kept_queues = {
            (market_id, book_side == BookSide.BID, price): [
                order.order_id for order in levels[price].orders()
            ]
            for market_id, market in engine.markets.items()
            for book_side, levels in (
                (BookSide.BID, market.bid_levels),
                (BookSide.ASK, market.ask_levels),
            )
            for price in range(PAYOUT)
            if levels[price] is not None
        }
        assert queues == kept_queues, f"queues by events {queues}, in the engine {kept_queues}"
        positions = {
            (account_id, market_id): account_market.position
            for account_id, account in engine.accounts.items()
            for market_id, account_market in account.markets.items()
            if account_market.position
        }
        reported = {key: position for key, position in self.positions.items() if position}
        assert positions == reported, f"positions {positions}, by fills {reported}"
        for market_id, market in self.markets.items():
            kept = engine.markets[market_id]
            assert (kept.status, kept.taker_bps, kept.maker_bps, kept.position_limit) == (
                market.status,
                market.taker_bps,
                market.maker_bps,
                market.position_limit,
            ), f"market {market_id} differs from its events"
        for (account_id, market_id), position in reported.items():
            assert abs(position) <= self.markets[market_id].position_limit_max, (
                f"account {account_id} holds {position} in market {market_id}, past its limit"
            )
        released = {
            (account_id, event_id): ae.released
            for account_id, account in engine.accounts.items()
            for event_id, ae in account.events.items()
            if ae.released
        }
        told = {key: value for key, value in self.released.items() if value}
        assert released == told, f"released {released}, by PayoutReleased {told}"
        for event_id, kept in self.events.items():
            if not kept.mutually_exclusive or kept.winner is not None:
                continue
            for account_id in engine.accounts:
                positions = [self.positions.get((account_id, m), 0) for m in kept.markets]
                expected = guaranteed_payout(positions, kept.exhaustive)
                assert told.get((account_id, event_id), 0) == expected, (
                    f"account {account_id} event {event_id}: positions {positions} pay "
                    f"{expected}, released {told.get((account_id, event_id), 0)}"
                )


def check_event_ranges(event: Record) -> None:
    """Every int of an event fits the wire: unsigned 63 bits, or signed where it may be."""
    for name in event.FIELDS:
        value = getattr(event, name)
        if type(value) is not int:
            continue
        if name in SIGNED_EVENT_FIELDS:
            assert -ID_LIMIT <= value < ID_LIMIT, f"{event}: {name} out of range"
        else:
            assert 0 <= value < ID_LIMIT, f"{event}: {name} out of range"


# -- The machine ------------------------------------------------------------------------------


def now_and_then(machine: EngineMachine) -> bool:
    """Operator, money and whole-batch garbage rules are enabled every third command only.

    Hypothesis picks among the enabled rules evenly; without this, half of the steps would
    open, close and settle markets or move money, and books would stay thin."""
    return machine.commands_applied % 3 == 0


class EngineMachine(RuleBasedStateMachine):
    """One engine, a few accounts with little cash, markets that open, close and settle."""

    def __init__(self) -> None:
        super().__init__()
        self.harness = Harness()
        self.mirror = EventMirror()
        self.next_client_order_id: dict[int, int] = {}
        self.bank_references: list[str] = []
        self.commands_applied = 0
        self.names_used = 0
        self.tickers_used = 0

    @property
    def engine(self) -> Engine:
        return self.harness.engine

    # -- Applying -----------------------------------------------------------------------------

    def apply(self, command: Any) -> list[Any]:
        """One command in its own batch through the harness; return its typed events."""
        self.pass_due_times()
        batch_time_ms = self.harness.time_ms + 1
        copy = self.restored_copy()
        events = self.harness.do(command)
        applied = self.harness.applied[-1]
        assert applied.time_ms == batch_time_ms
        self.mirror.consume(applied, self.engine)
        if copy is not None:
            self.check_copy(copy, Batch(batch_time_ms, (canonical(command),)), applied)
        return events

    def apply_directly(self, batch: Batch | bytes | Any) -> AppliedBatch:
        """A batch the harness cannot build (several commands, a bad batch, a log entry as
        bytes): applied to the engine directly, then the same audit and sequence checks."""
        self.pass_due_times()
        copy = self.restored_copy()
        if isinstance(batch, bytes):
            applied = self.engine.apply_entry(batch)
        else:
            applied = self.engine.apply(batch)
        check_invariants(self.engine)
        self.harness.applied.append(applied)
        # The harness numbers every stream across all batches, so these go through its
        # sequence check too (it has no public method for a batch it did not build).
        self.harness._check_sequences(applied)
        self.mirror.consume(applied, self.engine)
        if copy is not None:
            self.check_copy(copy, batch, applied)
        self.harness.time_ms = self.engine.time_ms
        return applied

    def restored_copy(self) -> Engine | None:
        """Every few commands, a copy of the engine restored from its canonical state."""
        self.commands_applied += 1
        if self.commands_applied % RESTORE_EVERY_COMMANDS:
            return None
        return from_state(to_state(self.engine))

    def check_copy(self, copy: Engine, batch: Batch | bytes | Any, applied: AppliedBatch) -> None:
        """The restored copy must apply the same batch exactly as the original did."""
        replayed = copy.apply_entry(batch) if isinstance(batch, bytes) else copy.apply(batch)
        assert replayed.events == applied.events, "a restored engine applied it differently"
        assert replayed.outcome_offsets == applied.outcome_offsets
        assert replayed.state_hash == applied.state_hash
        assert to_state(copy) == to_state(self.engine)

    def time_events_due(self, time_ms: int) -> bool:
        """Whether a batch at this time would expire an order or close a market."""
        if any(
            order.time_in_force == TimeInForce.GTD and order.expire_time_ms <= time_ms
            for order in self.engine.orders.values()
        ):
            return True
        if any(
            market.future is not None
            and market.future.next_mark_ms
            and market.future.next_mark_ms <= time_ms
            and market.status in (MarketStatus.OPEN, MarketStatus.HALTED)
            for market in self.engine.markets.values()
        ):
            return True  # a futures mark by time
        return any(
            market.close_time_ms
            and market.close_time_ms <= time_ms
            and market.status < MarketStatus.CLOSED
            for market in self.engine.markets.values()
        )

    def tick_to(self, time_ms: int) -> None:
        applied = self.harness.tick(time_ms)
        assert not applied.outcome_offsets
        self.mirror.consume(applied, self.engine)

    def pass_due_times(self) -> None:
        """Let expiries and closes due in the next millisecond happen in batches of their own.

        The harness counts every event of a batch as its command's when it checks that a
        rejected command changed no other account, so no batch it builds may carry time
        events (commands and time events meet in the command_batch rule instead). Every
        rule calls this first and `apply` before each command, so a rule reads the state it
        acts on, and after its command the state that command left, without time passing
        in between."""
        while self.time_events_due(self.harness.time_ms + 1):
            self.tick_to(self.harness.time_ms + 1)

    # -- Picking what exists ------------------------------------------------------------------

    def account_id(self, pick: int) -> int:
        """An existing account for a pick >= 0; no account (in several ways) for < 0."""
        accounts = sorted(self.engine.accounts)
        if pick >= 0 and accounts:
            return accounts[pick % len(accounts)]
        return {-1: 0, -2: self.engine.next_account_id}.get(pick, ID_LIMIT - 1)

    def market_id(self, pick: int) -> int:
        """Mostly an open market; any market for large picks; no market for picks < 0."""
        markets = sorted(self.engine.markets)
        open_markets = [
            market_id
            for market_id in markets
            if self.engine.markets[market_id].status == MarketStatus.OPEN
        ]
        if 0 <= pick < 20 and open_markets:
            return open_markets[pick % len(open_markets)]
        if pick >= 0 and markets:
            return markets[pick % len(markets)]
        return {-1: 0, -2: self.engine.next_market_id}.get(pick, ID_LIMIT - 1)

    def trading_market(self, pick: int) -> int:
        """An open market for the trading rules; if every market has closed, a new one is
        created and opened first (the other rules still send orders to closed ones)."""
        if not any(market.status == MarketStatus.OPEN for market in self.engine.markets.values()):
            self.tickers_used += 1
            events = self.apply(
                CreateMarket(f"TRADE-{self.tickers_used}", MarketKind.BINARY, 0, 700, 175, 30)
            )
            self.apply(SetMarketStatus(events[0].market_id, MarketStatus.OPEN))
        open_markets = sorted(
            market_id
            for market_id, market in self.engine.markets.items()
            if market.status == MarketStatus.OPEN
        )
        # Most trading goes to one market, so that books fill and positions build; or to
        # the markets of its event, where positions across markets net.
        first = self.engine.markets[open_markets[0]]
        if first.exclusive is not None and pick % 3:
            hot = [m.market_id for m in first.exclusive.markets if m.status == MarketStatus.OPEN]
            return hot[pick % len(hot)]
        return open_markets[0 if pick % 3 else pick % len(open_markets)]

    def trader(self, pick: int) -> int:
        """An account with money or a position to trade with, if there is one."""
        traders = sorted(
            account_id
            for account_id, account in self.engine.accounts.items()
            if account.cash + account.held >= 200 or account.markets
        )
        return traders[pick % len(traders)] if traders else self.account_id(pick)

    def holding(self, pick: int) -> tuple[int, int]:
        """An (account, market) with a position in an open market, if there is one."""
        holdings = sorted(
            (account_id, market_id)
            for account_id, account in self.engine.accounts.items()
            for market_id, account_market in account.markets.items()
            if account_market.position
            and self.engine.markets[market_id].status == MarketStatus.OPEN
        )
        if holdings:
            return holdings[pick % len(holdings)]
        return self.account_id(pick), self.trading_market(pick)

    def fresh_client_order_id(self, account_id: int) -> int:
        client_order_id = self.next_client_order_id.get(account_id, 1)
        self.next_client_order_id[account_id] = client_order_id + 1
        return client_order_id

    def client_order_id(self, account_id: int, pick: str) -> int:
        """A fresh id, one in use by an open order, one remembered, or one out of range."""
        account = self.engine.accounts.get(account_id)
        if account is not None and pick == "open" and account.open_by_client_id:
            return min(account.open_by_client_id)
        if account is not None and pick == "remembered":
            remembered = set(account.recent_client_ids) - set(account.open_by_client_id)
            if remembered:
                return max(remembered)
        special = {"zero": 0, "huge": ID_LIMIT, "negative": -1}
        if pick in special:
            return special[pick]
        return self.fresh_client_order_id(account_id)

    def position(self, account_id: int, market_id: int) -> int:
        account = self.engine.accounts.get(account_id)
        account_market = account.markets.get(market_id) if account is not None else None
        return account_market.position if account_market is not None else 0

    def open_orders(self, account_id: int, *, other: bool = False) -> list[int]:
        """The account's open orders, or (other) everyone else's."""
        return sorted(
            order_id
            for order_id, order in self.engine.orders.items()
            if (order.account.account_id == account_id) != other
        )

    def sweep(
        self,
        account_id: int,
        market_id: int,
        is_bid: bool,
        yes_limit: int,
        self_trade_prevention: int,
    ) -> tuple[int, int]:
        """What taking everything an order could meet now would give: (contracts, cost
        with the taker fee), walking the book as matching does, up to the YES limit."""
        market = self.engine.markets.get(market_id)
        if market is None:
            return 0, 0
        levels = market.ask_levels if is_bid else list(reversed(market.bid_levels))
        contracts = paid = basis = 0
        for level in levels:
            if level is None:
                continue
            price = level.price
            if (price > yes_limit) if is_bid else (price < yes_limit):
                break
            for order in level.orders():
                if order.account.account_id == account_id:
                    if self_trade_prevention != SelfTradePrevention.CANCEL_RESTING:
                        return contracts, paid + fee_cents(market.taker_bps, basis)
                    continue
                contracts += order.remaining
                paid += order.remaining * (price if is_bid else PAYOUT - price)
                basis += order.remaining * price * (PAYOUT - price)
        return contracts, paid + fee_cents(market.taker_bps, basis)

    def best_opposite(self, market_id: int, is_bid: bool) -> int:
        """The best YES price an order on this side would meet, or 50 if there is none."""
        market = self.engine.markets.get(market_id)
        if market is None:
            return 50
        best = market.best_ask() if is_bid else market.best_bid()
        return best if best > 0 else 50

    # -- Set-up -------------------------------------------------------------------------------

    @initialize(
        cash=st.lists(st.sampled_from([300, 1_000, 2_500, 20_000, 0]), min_size=3, max_size=4),
        taker_bps=st.sampled_from([700, 0, 175, constants.fee_bps_max]),
        maker_bps=st.sampled_from([175, 0, 700]),
        position_limit=st.sampled_from([20, 5, 50, constants.position_limit_default]),
        scalar=st.booleans(),
        event=st.sampled_from(["exhaustive", "exhaustive", "exclusive", "none", "future"]),
        margins=st.sampled_from(
            [(20, 10, 5), (10, 5, 5), (50, 20, 10), (100, 100, 100), (3, 1, 1)]
        ),
        mark_interval_ms=st.sampled_from([0, 0, 7, 40]),
    )
    def set_up(
        self,
        cash: list[int],
        taker_bps: int,
        maker_bps: int,
        position_limit: int,
        scalar: bool,
        event: str,
        margins: tuple[int, int, int],
        mark_interval_ms: int,
    ) -> None:
        """Three or four accounts, some with little or no cash, and one open market; or
        (most often) an event of three open markets, FIRST among them, where collateral
        nets, payouts are released and NO convert; or FIRST a futures market on margin,
        marked by the engine every few milliseconds or only when told."""
        self.set_up_exchange(
            cash, taker_bps, maker_bps, position_limit, scalar, event, margins, mark_interval_ms
        )

    def set_up_exchange(
        self,
        cash: list[int],
        taker_bps: int,
        maker_bps: int,
        position_limit: int,
        scalar: bool,
        event: str,
        margins: tuple[int, int, int],
        mark_interval_ms: int,
    ) -> None:
        self.pass_due_times()
        for number, amount in enumerate(cash):
            events = self.apply(CreateAccount(f"trader{number}", KEY))
            assert isinstance(events[0], AccountCreated)
            if amount:
                self.apply(Deposit(events[0].account_id, amount, f"seed-{number}"))
        kind, floor, cap = (MarketKind.SCALAR, -500, 1_500) if scalar else (MarketKind.BINARY, 0, 0)
        event_id = 0
        tickers = ["FIRST"]
        if event in ("exhaustive", "exclusive"):
            created = self.apply(CreateEvent("EVENT", 1, int(event == "exhaustive")))
            assert isinstance(created[0], EventCreated), created
            event_id = created[0].event_id
            kind, floor, cap = MarketKind.BINARY, 0, 0
            tickers += ["SECOND", "THIRD"]
        if event == "future":
            kind = MarketKind.FUTURE
            floor, cap = (-500, 1_500) if scalar else (0, 100)
        market_ids = []
        for ticker in tickers:
            events = self.apply(
                CreateMarket(
                    ticker, kind, 0, taker_bps, maker_bps, position_limit, floor, cap, event_id
                )
            )
            assert isinstance(events[0], MarketCreated)
            market_ids.append(events[0].market_id)
        if event == "future":
            self.apply(SetMargins(market_ids[0], *margins, mark_interval_ms))
        for market_id in market_ids:
            self.apply(SetMarketStatus(market_id, MarketStatus.OPEN))

    # -- Accounts and money -------------------------------------------------------------------

    @precondition(now_and_then)
    @rule(
        name=st.sampled_from(["fresh", "fresh", "taken", "", "-dash", "has space", "é", "x" * 65]),
        key_length=st.sampled_from([32, 32, 32, 31, 33, 0]),
    )
    def create_account(self, name: str, key_length: int) -> None:
        """New names, taken ones, invalid ones; keys of 32 bytes and of other lengths."""
        self.pass_due_times()
        names = sorted(account.name for account in self.engine.accounts.values())
        if name == "fresh":
            self.names_used += 1
            name = f"user.{self.names_used}@evx"
        elif name == "taken":
            name = names[0] if names else "nobody"
        existed = name in names
        events = self.apply(CreateAccount(name, b"p" * key_length))
        if isinstance(events[0], AccountCreated):
            assert not existed and key_length == constants.public_key_length
        elif existed:
            assert events[0].reason == Reject.EXISTS

    @precondition(now_and_then)
    @rule(
        withdraw=st.booleans(),
        account=ACCOUNT_PICKS,
        amount=st.one_of(
            st.integers(1, 3_000),
            st.sampled_from(["all", "more", 0, -5, DEPOSIT_MAX + 1, 10**30]),
        ),
        reference=st.sampled_from(["fresh", "fresh", "reused", "", "has space", "x" * 65, "é"]),
    )
    def transfer(self, withdraw: bool, account: int, amount: int | str, reference: str) -> None:
        """A deposit or a withdrawal: fresh, reused or invalid bank references, all the
        cash or a cent more than it, amounts that are not positive or too large."""
        self.pass_due_times()
        account_id = self.account_id(account)
        kept = self.engine.accounts.get(account_id)
        cash_before = kept.cash if kept is not None else 0
        if amount == "all":
            amount = cash_before or 1
        elif amount == "more":
            amount = cash_before + 1
        assert isinstance(amount, int)
        if reference == "fresh":
            reference = f"bank/{len(self.bank_references) + 1}"
        elif reference == "reused":
            reference = self.bank_references[-1] if self.bank_references else "seed-0"
        expected = self.transfer_reject(withdraw, account_id, amount, reference)
        kind = Withdraw if withdraw else Deposit
        events = self.apply(kind(account_id, amount, reference))
        first = events[0]
        if isinstance(first, CommandRejected):
            assert (first.account_id, first.reason) == (0, expected), first
            return
        assert kept is not None and expected is None, first
        self.bank_references.append(reference)
        change = -amount if withdraw else amount
        assert kept.cash == cash_before + change == first.cash, first

    def transfer_reject(
        self, withdraw: bool, account_id: int, amount: int, reference: str
    ) -> Reject | None:
        """The reject a deposit or withdrawal must get, in the documented precedence."""
        account = self.engine.accounts.get(account_id)
        amount_max = constants.account_cash_max_cents if withdraw else DEPOSIT_MAX
        if account is None:
            return Reject.ACCOUNT_MUST_EXIST
        if amount <= 0:
            return Reject.AMOUNT_MUST_BE_POSITIVE
        if amount > amount_max:
            return Reject.AMOUNT_MUST_NOT_EXCEED_MAX
        printable = all(0x21 <= ord(character) <= 0x7E for character in reference)
        if not 0 < len(reference) <= constants.bank_reference_length_max or not printable:
            return Reject.BANK_REFERENCE_MUST_BE_VALID
        if reference in self.engine.bank_references:
            return Reject.EXISTS
        if withdraw and amount > account.cash:
            return Reject.WITHDRAWAL_MUST_NOT_EXCEED_AVAILABLE_CASH
        return None

    # -- Markets ------------------------------------------------------------------------------

    @precondition(now_and_then)
    @rule(
        ticker=st.sampled_from(["fresh", "fresh", "fresh", "taken", "", "lower", "-X", "X" * 33]),
        kind=st.sampled_from([1, 1, 2, 2, 0, 3]),
        close_in_ms=st.sampled_from([0, 0, 10, 60, 250, -1]),
        taker_bps=st.sampled_from([700, 0, 175, constants.fee_bps_max, constants.fee_bps_max + 1]),
        maker_bps=st.sampled_from([0, 175, constants.fee_bps_max, -1]),
        position_limit=st.sampled_from(
            [5, 20, 50, constants.position_limit_default, 0, constants.position_limit_max + 1]
        ),
        scalar_range=st.sampled_from(
            [(0, 1_000), (-50, 50), (0, 1), (10, 10), (5, 0), (-(10**15), 10**15), (0, 0)]
        ),
        open_now=st.sampled_from([True, True, False]),
        event=st.sampled_from([0, 0, 0, 1, 2, -1]),
    )
    def create_market(
        self,
        ticker: str,
        kind: int,
        close_in_ms: int,
        taker_bps: int,
        maker_bps: int,
        position_limit: int,
        scalar_range: tuple[int, int],
        open_now: bool,
        event: int,
    ) -> None:
        """Binary and scalar markets, with and without close times, most of them opened;
        some in an event (the first or second, or one that does not exist)."""
        self.pass_due_times()
        if ticker == "fresh":
            self.tickers_used += 1
            ticker = f"MKT-{self.tickers_used}.A"
        elif ticker == "taken":
            ticker = min(self.engine.market_ids_by_ticker, default="NONE")
        floor, cap = scalar_range if kind == MarketKind.SCALAR else (0, 0)
        # 0 is no close time; an offset of -1 gives a time already past, which is rejected.
        close_time_ms = self.harness.time_ms + 1 + close_in_ms if close_in_ms else 0
        event_ids = sorted(self.engine.events)
        if event > 0:
            event_id = event_ids[(event - 1) % len(event_ids)] if event_ids else event
        else:
            event_id = -event * self.engine.next_event_id
        events = self.apply(
            CreateMarket(
                ticker,
                kind,
                close_time_ms,
                taker_bps,
                maker_bps,
                position_limit,
                floor,
                cap,
                event_id,
            )
        )
        if isinstance(events[0], MarketCreated) and open_now:
            self.apply(SetMarketStatus(events[0].market_id, MarketStatus.OPEN))

    # -- Events -------------------------------------------------------------------------------

    @precondition(now_and_then)
    @rule(
        ticker=st.sampled_from(["fresh", "fresh", "taken", "lower"]),
        flags=st.sampled_from([(1, 1), (1, 1), (1, 0), (0, 0), (0, 1), (2, 0)]),
        markets=st.integers(0, 3),
        open_now=st.sampled_from([True, True, False]),
    )
    def create_event(
        self, ticker: str, flags: tuple[int, int], markets: int, open_now: bool
    ) -> None:
        """An event and its markets, made before any of them opens (as an exhaustive
        event needs), then most often opened."""
        self.pass_due_times()
        if ticker == "fresh":
            self.tickers_used += 1
            ticker = f"EV-{self.tickers_used}"
        elif ticker == "taken":
            ticker = min(self.engine.event_ids_by_ticker, default="NONE")
        else:
            ticker = "ev"
        events = self.apply(CreateEvent(ticker, *flags))
        if not isinstance(events[0], EventCreated):
            assert isinstance(events[0], CommandRejected), events[0]
            return
        assert flags in ((1, 1), (1, 0), (0, 0)), flags
        market_ids = []
        for number in range(markets):
            created = self.apply(
                CreateMarket(f"{ticker}-{number}", MarketKind.BINARY, 0, 700, 0, 30, 0, 0,
                             events[0].event_id)
            )  # fmt: skip
            assert isinstance(created[0], MarketCreated), created[0]
            market_ids.append(created[0].market_id)
        for market_id in market_ids if open_now else []:
            self.apply(SetMarketStatus(market_id, MarketStatus.OPEN))

    @precondition(now_and_then)
    @rule(
        event=st.integers(-1, 5),
        winner=st.sampled_from(["first", "last", "first", "none", "other"]),
        close_first=st.sampled_from([True, True, False]),
    )
    def settle_event(self, event: int, winner: str, close_first: bool) -> None:
        """Settle an event with one of its markets, none, or a market of another event;
        mostly after closing every market of it. Each position is paid in full, then
        every released payout goes back, leaving the escrows and releases at 0."""
        self.pass_due_times()
        event_ids = sorted(self.engine.events)
        event_id = event_ids[event % len(event_ids)] if event >= 0 and event_ids else 999
        kept = self.engine.events.get(event_id)
        markets = list(kept.markets) if kept is not None else []
        if close_first:
            for market in markets:
                if market.status < MarketStatus.CLOSED:
                    self.apply(SetMarketStatus(market.market_id, MarketStatus.CLOSED))
        winner_id = {
            "first": markets[0].market_id if markets else 0,
            "last": markets[-1].market_id if markets else 0,
            "none": 0,
            "other": min(self.engine.markets, default=1),
        }[winner]
        holders = {m.market_id: sorted(m.ams) for m in markets}
        releases = (
            {aid: ae.released for aid, ae in kept.accounts.items()} if kept is not None else {}
        )
        events = self.apply(SettleEvent(event_id, winner_id))
        if isinstance(events[0], CommandRejected):
            return
        assert kept is not None and kept.settled and kept.winner == winner_id
        assert winner_id == 0 or winner_id in [m.market_id for m in markets]
        for market in markets:
            assert market.status == MarketStatus.SETTLED and not market.ams
            assert market.escrow == 0 and market.open_interest == 0
            assert market.yes_payout == (PAYOUT if market.market_id == winner_id else 0)
        settled = [(e.market_id, e.account_id) for e in events if isinstance(e, PositionSettled)]
        assert settled == [(mid, aid) for mid, aids in holders.items() for aid in aids]
        back = [e for e in events if isinstance(e, PayoutReleased)]
        assert [e.account_id for e in back] == sorted(a for a, r in releases.items() if r)
        for e in back:
            assert e.released == 0 and self.engine.accounts[e.account_id].cash == e.cash, e
        assert kept.released == 0 and not kept.accounts and kept.house_sets == 0

    @rule(
        account=st.integers(0, 30),
        event=st.integers(0, 3),
        side=st.sampled_from([Side.BUY_NO, Side.BUY_NO, Side.BUY_YES, Side.SELL_NO]),
        prices=st.lists(st.integers(1, 99), min_size=1, max_size=4),
        quantity=st.integers(1, 4),
        style=st.sampled_from(["rest", "rest", "take"]),
    )
    def event_orders(
        self, account: int, event: int, side: int, prices: list[int], quantity: int, style: str
    ) -> None:
        """One account's orders on one side in every open market of a mutually exclusive
        event, as a market maker quotes a whole event (resting), or as a taker buys NO on
        every candidate (IOC at the best price there): positions across the markets of an
        event are what netting, released payouts and conversions act on."""
        self.pass_due_times()
        events = sorted(
            event_id for event_id, kept in self.engine.events.items() if kept.mutually_exclusive
        )
        if not events:
            return
        kept = self.engine.events[events[event % len(events)]]
        account_id = self.trader(account)
        is_bid = is_bid_side(side)
        for number, market in enumerate(kept.markets):
            if market.status != MarketStatus.OPEN:
                continue
            yes_price = prices[number % len(prices)]
            if style == "take":
                best = self.best_opposite(market.market_id, is_bid)
                yes_price = best
            self.place(
                account_id,
                market.market_id,
                side,
                own_price(side, yes_price),
                quantity,
                OrderType.LIMIT,
                TimeInForce.IOC if style == "take" else TimeInForce.GTC,
                0,
                SelfTradePrevention.CANCEL_AGGRESSING,
                0,
                0,
                "fresh",
            )

    @rule(
        account=st.integers(0, 30),
        quantity=st.sampled_from(["all", "one", "one", "more", "zero"]),
        client=st.sampled_from(["fresh"] * 4 + ["open", "remembered", "zero"]),
        market=st.integers(-1, 30),
        retry=st.booleans(),
    )
    def convert_no(
        self, account: int, quantity: str, client: str, market: int, retry: bool
    ) -> None:
        """Convert NO an account holds in an exhaustive event (or, for a pick below 0, a
        market where it may hold none): its positions in every market of the event move
        by the quantity, and its cash and hold stay as they were (reduce-only orders a
        smaller NO no longer covers are trimmed, which can only free money)."""
        self.pass_due_times()
        candidates = sorted(
            (account_id, market_id)
            for account_id, kept_account in self.engine.accounts.items()
            for market_id, account_market in kept_account.markets.items()
            if account_market.position < 0
            and account_market.market.exclusive is not None
            and account_market.market.exclusive.exhaustive
        )
        if candidates and market >= 0:
            account_id, market_id = candidates[account % len(candidates)]
        else:
            account_id, market_id = self.trader(account), self.market_id(market)
        held = -self.position(account_id, market_id)
        amount = {"all": held, "one": 1, "more": held + 1, "zero": 0}[quantity]
        client_order_id = self.client_order_id(account_id, client)
        kept = self.engine.markets.get(market_id)
        event = kept.exclusive if kept is not None else None
        tickers = [m.market_id for m in event.markets] if event is not None else [market_id]
        before = [self.position(account_id, m) for m in tickers]
        kept_account = self.engine.accounts.get(account_id)
        money = (kept_account.cash, kept_account.held) if kept_account is not None else (0, 0)
        command = ConvertNo(account_id, client_order_id, market_id, amount)
        events = self.apply(command)
        first = events[0]
        if isinstance(first, CommandRejected):
            if first.reason == Reject.NO_POSITION_MUST_COVER_CONVERSION:
                assert held < amount, first
            if first.reason == Reject.EXISTS:
                assert client in ("open", "remembered"), first
            return
        assert isinstance(first, PositionsConverted), first
        assert event is not None and event.exhaustive and 0 < amount <= held
        after = [self.position(account_id, m) for m in tickers]
        assert after == [q + amount for q in before], f"{before} -> {after}"
        assert kept_account is not None
        trimmed = any(isinstance(e, OrderCancelled) for e in events)
        if trimmed:
            assert kept_account.held <= money[1] and kept_account.cash >= money[0]
        else:
            assert (kept_account.cash, kept_account.held) == money, "a conversion moved cash"
        if retry:
            again = self.apply(command)[0]
            assert isinstance(again, CommandRejected) and again.reason == Reject.EXISTS, again

    @precondition(now_and_then)
    @rule(market=MARKET_PICKS, status=st.sampled_from([2, 3, 3, 2, 4, 1, 5, 0, 6]))
    def set_market_status(self, market: int, status: int) -> None:
        """Every target status, from every status: only the documented moves happen."""
        self.pass_due_times()
        market_id = self.market_id(market)
        kept = self.engine.markets.get(market_id)
        before = kept.status if kept is not None else None
        events = self.apply(SetMarketStatus(market_id, status))
        if isinstance(events[0], CommandRejected):
            if events[0].reason == Reject.EXHAUSTIVE_EVENT_MUST_HAVE_TWO_MARKETS:
                event = kept.exclusive if kept is not None else None
                assert event is not None and event.exhaustive and len(event.markets) < 2
                return
            assert before is None or (before, status) not in ALLOWED_TRANSITIONS, events[0]
            return
        assert (before, status) in ALLOWED_TRANSITIONS, f"{before} -> {status} was allowed"
        if status == MarketStatus.CLOSED:
            assert not any(order.market is kept for order in self.engine.orders.values())

    @precondition(now_and_then)
    @rule(
        market=MARKET_PICKS,
        outcome=st.sampled_from(["yes", "no", "floor", "cap", "middle", "below", "above", "two"]),
        close_first=st.sampled_from([False, False, True]),
    )
    def settle_market(self, market: int, outcome: str, close_first: bool) -> None:
        """Binary outcomes, scalar values at and past the range, on markets in any state."""
        self.pass_due_times()
        market_id = self.market_id(market)
        kept = self.engine.markets.get(market_id)
        if kept is not None and close_first and kept.status < MarketStatus.CLOSED:
            self.apply(SetMarketStatus(market_id, MarketStatus.CLOSED))
        floor, cap = (kept.floor, kept.cap) if kept is not None else (0, 0)
        value = {
            "yes": 1,
            "no": 0,
            "floor": floor,
            "cap": cap,
            "middle": (floor + cap) // 2,
            "below": floor - 1,
            "above": cap + 1,
            "two": 2,
        }[outcome]
        holders = sorted(kept.ams) if kept is not None else []
        events = self.apply(SettleMarket(market_id, value))
        if isinstance(events[0], CommandRejected):
            return
        assert kept is not None and kept.status == MarketStatus.SETTLED
        settled = [event for event in events if isinstance(event, PositionSettled)]
        if kept.future is not None:
            # a future is marked to its price first, and marks may liquidate positions
            assert set(event.account_id for event in settled) <= set(holders)
        else:
            assert [event.account_id for event in settled] == holders
        for event in settled:
            assert self.engine.accounts[event.account_id].cash == event.cash, event
        assert not kept.ams and kept.escrow == 0 and kept.open_interest == 0

    @precondition(now_and_then)
    @rule(
        market=MARKET_PICKS,
        taker_bps=st.sampled_from([700, 0, 175, constants.fee_bps_max, constants.fee_bps_max + 1]),
        maker_bps=st.sampled_from([0, 175, constants.fee_bps_max, -1]),
        position_limit=st.sampled_from([5, 20, 50, 3, 0, -1, constants.position_limit_max + 1]),
    )
    def configure_market(
        self, market: int, taker_bps: int, maker_bps: int, position_limit: int
    ) -> None:
        """New fee rates and limits; orders already open keep their own rates."""
        self.pass_due_times()
        self.apply(ConfigureMarket(self.market_id(market), taker_bps, maker_bps, position_limit))

    # -- Orders -------------------------------------------------------------------------------

    @rule(
        account=ACCOUNT_PICKS,
        market=MARKET_PICKS,
        side=SIDES,
        yes_price=YES_PRICES,
        quantity=QUANTITIES,
        order_type=ORDER_TYPES,
        time_in_force=TIMES_IN_FORCE,
        flags=FLAGS,
        self_trade_prevention=SELF_TRADE_PREVENTIONS,
        expire_offset=EXPIRE_OFFSETS,
        max_cost=MAX_COSTS,
        client=CLIENT_PICKS,
        worst_price=st.booleans(),
        group=st.sampled_from([0, 0, 0, 0, 1, 2, 3]),
    )
    def new_order(
        self,
        account: int,
        market: int,
        side: int,
        yes_price: int,
        quantity: int,
        order_type: int,
        time_in_force: int,
        flags: int,
        self_trade_prevention: int,
        expire_offset: int,
        max_cost: int,
        client: str,
        worst_price: bool,
        group: int,
    ) -> None:
        """Any order, valid or not, every field drawn on its own (in order group 1, 2 or 3
        of its account, which may not exist or may have triggered, or in none)."""
        self.pass_due_times()
        if order_type == OrderType.MARKET:
            # mostly immediate, as market orders must be; a GTD draw stands for a GTC one
            time_in_force = {1: 2, 2: 2, 3: 3, 4: 1}.get(time_in_force, time_in_force)
        elif 0 < max_cost <= 600 and max_cost != 1:
            max_cost = 0  # mostly none on limit orders, where it must be; 1 stands for wrong
        price = own_price(side, yes_price)
        if order_type == OrderType.MARKET and not worst_price:
            price = 0
        self.place(
            self.account_id(account),
            self.market_id(market),
            side,
            price,
            quantity,
            order_type,
            time_in_force,
            flags,
            self_trade_prevention,
            expire_offset,
            max_cost,
            client,
            order_group_id=group,
        )

    @rule(
        account=ACCOUNT_PICKS,
        group=st.integers(0, 3),
        contract_limit=st.sampled_from([1, 3, 10, 60, 0]),
        window_ms=st.sampled_from([1, 10, 1_000, 0]),
        reset=st.booleans(),
    )
    def order_group(
        self, account: int, group: int, contract_limit: int, window_ms: int, reset: bool
    ) -> None:
        """Set (or change) an order group, or reset one; some of them are not valid."""
        account_id = self.account_id(account)
        if reset:
            self.apply(ResetOrderGroup(account_id, group))
        else:
            self.apply(SetOrderGroup(account_id, group, contract_limit, window_ms))

    @rule(
        orders=st.lists(
            st.tuples(
                st.integers(0, 30),  # account
                st.integers(0, 30),  # market
                st.sampled_from(list(Side)),
                st.integers(46, 54),  # YES price
                st.integers(1, 8),  # quantity
                st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.GTD]),
                st.integers(1, 200),  # expiry offset for GTD
                st.sampled_from([0, 0, OrderFlag.POST_ONLY, OrderFlag.REDUCE_ONLY]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def resting_orders(self, orders: list[tuple[int, ...]]) -> None:
        """Plain limit orders near the middle of open markets: books for others to meet."""
        self.pass_due_times()
        for account, market, side, yes_price, quantity, time_in_force, expiry, flags in orders:
            self.place(
                self.trader(account),
                self.trading_market(market),
                side,
                own_price(side, yes_price),
                quantity,
                OrderType.LIMIT,
                time_in_force,
                flags,
                SelfTradePrevention.CANCEL_AGGRESSING,
                expiry,
                0,
                "fresh",
            )

    @rule(
        account=st.integers(0, 30),
        market=st.integers(0, 30),
        side=st.sampled_from(list(Side)),
        reach=st.integers(-1, 4),
        quantity=st.one_of(st.integers(1, 6), st.integers(1, 25), st.just(0), st.just(0)),
        style=st.sampled_from(["ioc", "fok", "fok", "gtc", "market", "market_fok", "max_cost"]),
        self_trade_prevention=st.sampled_from(list(SelfTradePrevention)),
        max_cost=st.one_of(st.integers(1, 900), st.just(0)),
        reduce_only=st.sampled_from([False, False, False, True]),
        retry=st.booleans(),
    )
    def taking_order(
        self,
        account: int,
        market: int,
        side: int,
        reach: int,
        quantity: int,
        style: str,
        self_trade_prevention: int,
        max_cost: int,
        reduce_only: bool,
        retry: bool,
    ) -> None:
        """An order aimed at the other side of the book, `reach` cents past its best price
        (-1: one short of it): IOC, FOK, GTC, market, or market with a max_cost. Quantity 0
        sweeps exactly what the book shows within the limit, and max_cost 0 is exactly what
        that costs, fees included: the edge every fill-or-kill and budget check must hold.
        A retry sends it again, as a client that lost its connection would: `exists`."""
        self.pass_due_times()
        account_id, market_id = self.trader(account), self.trading_market(market)
        is_bid = is_bid_side(side)
        best = self.best_opposite(market_id, is_bid)
        yes_limit = min(max(best + reach if is_bid else best - reach, 1), 99)
        order_type = OrderType.MARKET if style.startswith("market") or style == "max_cost" else 1
        time_in_force = {"fok": TimeInForce.FOK, "gtc": TimeInForce.GTC, "market_fok": 3}.get(
            style, TimeInForce.IOC
        )
        if style == "market":
            yes_limit = 99 if is_bid else 1
        sweep_quantity, sweep_cost = self.sweep(
            account_id, market_id, is_bid, yes_limit, self_trade_prevention
        )
        quantity = quantity or max(sweep_quantity, 1)
        max_cost = max_cost or max(sweep_cost, 1)
        self.place(
            account_id,
            market_id,
            side,
            0 if style == "market" else own_price(side, yes_limit),
            quantity,
            order_type,
            time_in_force,
            OrderFlag.REDUCE_ONLY if reduce_only else 0,
            self_trade_prevention,
            0,
            max_cost if style == "max_cost" else 0,
            "fresh",
            retry=retry,
        )

    @rule(
        account=st.integers(0, 30),
        orders=st.lists(
            st.tuples(
                st.sampled_from(["close", "close", "half", "flip", "limit", "reduce", "reduce"]),
                st.booleans(),  # sell (YES) rather than buy (NO), or the other way round
                st.one_of(st.integers(47, 53), st.integers(40, 60)),  # YES price
                st.sampled_from([OrderType.LIMIT] * 3 + [OrderType.MARKET]),
                st.sampled_from([1, 1, 1, 2, 3, 4]),  # time in force
            ),
            min_size=1,
            max_size=3,
        ),
        self_trade_prevention=st.sampled_from(list(SelfTradePrevention)),
    )
    def position_orders(
        self, account: int, orders: list[tuple[Any, ...]], self_trade_prevention: int
    ) -> None:
        """Orders on the side that closes one account's position (YES and NO net out): all
        of it, half, one contract past it (it flips), as much as the position limit lets
        that side hold, or reduce-only for what its reduce-only orders do not cover yet.
        Several resting together are what reduce-only trims and position limits act on."""
        self.pass_due_times()
        account_id, market_id = self.holding(account)
        for intent, sell, yes_price, order_type, time_in_force_drawn in orders:
            position = self.position(account_id, market_id)
            market = self.engine.markets.get(market_id)
            account_market = self.engine.accounts[account_id].markets.get(market_id)
            with_bids = position < 0 or (position == 0 and sell)
            if position > 0:
                side = Side.SELL_YES if sell else Side.BUY_NO
            elif position < 0:
                side = Side.SELL_NO if sell else Side.BUY_YES
            else:
                side = Side.SELL_NO if sell else Side.BUY_NO
            size = abs(position) or 1
            quantity = {"close": size, "half": max(size // 2, 1), "flip": size + 1}.get(
                intent, size
            )
            if intent == "limit" and market is not None:
                resting = 0
                if account_market is not None:
                    resting = account_market.bid_qty if with_bids else account_market.ask_qty
                exposure = position + resting if with_bids else resting - position
                quantity = max(market.position_limit - exposure, 1)
            elif intent == "reduce" and account_market is not None:
                reducing = (
                    account_market.reduce_bid_qty if with_bids else account_market.reduce_ask_qty
                )
                quantity = max(size - reducing, 1)
            time_in_force = time_in_force_drawn
            if order_type == OrderType.MARKET:
                is_fok = time_in_force == TimeInForce.FOK
                time_in_force = TimeInForce.FOK if is_fok else TimeInForce.IOC
            self.place(
                account_id,
                market_id,
                side,
                own_price(side, yes_price),
                quantity,
                order_type,
                time_in_force,
                OrderFlag.REDUCE_ONLY if intent == "reduce" else 0,
                self_trade_prevention,
                50,
                0,
                "fresh",
            )

    def place(
        self,
        account_id: int,
        market_id: int,
        side: int,
        price: int,
        quantity: int,
        order_type: int,
        time_in_force: int,
        flags: int,
        self_trade_prevention: int,
        expire_offset: int,
        max_cost: int,
        client: str,
        *,
        retry: bool = False,
        order_group_id: int = 0,
    ) -> None:
        """Send a NewOrder, then check what an accepted order promises its sender."""
        batch_time_ms = self.harness.time_ms + 1
        if time_in_force == TimeInForce.GTD:
            expire_time_ms = batch_time_ms + (0 if expire_offset == -100 else expire_offset)
        else:
            expire_time_ms = 5 if expire_offset == -100 else 0
        client_order_id = self.client_order_id(account_id, client)
        command = NewOrder(
            account_id,
            client_order_id,
            market_id,
            side,
            price,
            quantity,
            order_type,
            time_in_force,
            flags,
            self_trade_prevention,
            expire_time_ms,
            max_cost,
            order_group_id,
        )
        events = self.apply(command)
        first = events[0]
        if isinstance(first, CommandRejected):
            if first.reason == Reject.EXISTS:
                # answered with the order that has the id: open, or accepted not long ago
                account = self.engine.accounts[account_id]
                kept = account.open_by_client_id.get(client_order_id)
                used_by = kept.order_id if kept else account.recent_client_ids[client_order_id]
                assert client in ("open", "remembered") and first.related_id == used_by, first
            return
        assert isinstance(first, OrderAccepted), first
        assert (first.account_id, first.client_order_id, first.market_id, first.side) == (
            account_id,
            client_order_id,
            market_id,
            side,
        ), first
        assert (first.price, first.quantity, first.flags, first.expire_time_ms) == (
            price,
            quantity,
            flags,
            expire_time_ms,
        ), first
        order_id = first.order_id
        own_fills = [
            event
            for event in events
            if isinstance(event, OrderFilled) and event.order_id == order_id
        ]
        filled = sum(fill.quantity for fill in own_fills)
        assert all(fill.liquidity == Liquidity.TAKER for fill in own_fills)
        if time_in_force == TimeInForce.FOK:
            assert filled == quantity, f"fill-or-kill filled {filled}/{quantity}"
        if order_type == OrderType.MARKET and max_cost:
            spent = 0
            for fill in own_fills:
                yes_price = own_price(side, fill.price)
                paid = yes_price if is_bid_side(side) else PAYOUT - yes_price
                spent += paid * fill.quantity + fill.fee
            assert spent <= max_cost, f"spent {spent}, max_cost {max_cost}"
        if flags & OrderFlag.POST_ONLY:
            assert not own_fills, "a post-only order took liquidity"
        if time_in_force not in (TimeInForce.GTC, TimeInForce.GTD):
            assert order_id not in self.engine.orders, "an immediate order rests"
        if flags & OrderFlag.REDUCE_ONLY and filled:
            position = self.position(account_id, market_id)
            assert position == 0 or (position > 0) != is_bid_side(side), (
                "a reduce-only order flipped the position"
            )
        if retry:
            again = self.apply(command)[0]
            assert isinstance(again, CommandRejected) and again.reason == Reject.EXISTS, again
            assert again.related_id == order_id, again

    @rule(
        account=ACCOUNT_PICKS,
        named=st.sampled_from(
            ["own", "own", "own_client_id", "other", "finished", "unknown", "unknown_client_id"]
        ),
        pick=st.integers(0, 20),
    )
    def cancel_order(self, account: int, named: str, pick: int) -> None:
        """Cancel by order id or client order id: own orders, other accounts' orders,
        orders no longer open, ids never used."""
        self.pass_due_times()
        account_id = self.owner(account, named)
        order_id, client_order_id, expected = self.named_order(account_id, named, pick)
        kept = self.engine.orders.get(order_id) if order_id else None
        if not order_id and account_id in self.engine.accounts:
            kept = self.engine.accounts[account_id].open_by_client_id.get(client_order_id)
        remaining = kept.remaining if kept is not None else 0
        events = self.apply(CancelOrder(account_id, order_id, client_order_id))
        first = events[0]
        if expected is not None:
            assert isinstance(first, CommandRejected) and first.reason == expected, first
            return
        assert isinstance(first, OrderCancelled), first
        assert first.reason == CancelReason.REQUESTED
        assert first.cancelled_quantity == remaining
        assert kept is not None and kept.order_id not in self.engine.orders

    def owner(self, pick: int, named: str) -> int:
        """The account a cancel or replace comes from: for one that names its own order, an
        account with open orders (the richest account places one if nobody has any)."""
        if named.startswith("own") and not self.engine.orders and self.engine.accounts:
            richest = max(self.engine.accounts.values(), key=lambda account: account.cash)
            market_id = self.trading_market(pick)
            yes_price = self.best_opposite(market_id, is_bid=True) - 1 - pick % 3
            self.place(
                richest.account_id,
                market_id,
                Side.BUY_YES,
                max(yes_price, 1),
                1 + pick % 4,
                OrderType.LIMIT,
                TimeInForce.GTC,
                0,
                SelfTradePrevention.CANCEL_AGGRESSING,
                0,
                0,
                "fresh",
            )
        owners = sorted({order.account.account_id for order in self.engine.orders.values()})
        if named.startswith("own") and owners and pick >= 0:
            return owners[pick % len(owners)]
        return self.account_id(pick)

    def named_order(self, account_id: int, named: str, pick: int) -> tuple[int, int, Reject | None]:
        """The order a cancel or replace names: (order_id, client_order_id, the reject it
        must get, or None when it names an open order of the account)."""
        if account_id not in self.engine.accounts:
            return pick, 0, Reject.ACCOUNT_MUST_EXIST
        own = self.open_orders(account_id)
        others = self.open_orders(account_id, other=True)
        finished = sorted(self.mirror.finished)
        if named in ("own", "own_client_id") and own:
            order = self.engine.orders[own[pick % len(own)]]
            if named == "own":
                return order.order_id, 0, None
            return 0, order.client_order_id, None
        if named == "other" and others:
            return others[pick % len(others)], 0, Reject.ORDER_MUST_BELONG_TO_ACCOUNT
        if named == "finished" and finished:
            return finished[pick % len(finished)], 0, Reject.ORDER_MUST_EXIST
        if named == "unknown_client_id":
            return 0, 10**12 + pick, Reject.ORDER_MUST_EXIST
        return self.engine.next_order_id + pick, 0, Reject.ORDER_MUST_EXIST

    @rule(
        account=ACCOUNT_PICKS,
        named=st.sampled_from(
            ["own", "own", "own", "own_client_id", "other", "finished", "unknown"]
        ),
        pick=st.integers(0, 20),
        new_client=st.sampled_from(["fresh"] * 6 + ["same", "open", "remembered", "zero"]),
        price_move=st.one_of(st.integers(-4, 4), st.integers(-1, 1), st.sampled_from([99, -99])),
        quantity_move=st.one_of(
            st.integers(-3, 3), st.integers(-1, 0), st.sampled_from([-1000, 10**6])
        ),
        retry=st.booleans(),
    )
    def replace_order(
        self,
        account: int,
        named: str,
        pick: int,
        new_client: str,
        price_move: int,
        quantity_move: int,
        retry: bool,
    ) -> None:
        """Shrink in place, move the price, grow, or cross the book (price move 99); a
        price move of -99 asks for no price at all. The new client order id must be new,
        so the same one, or one in use, is answered `exists`, as is a retry."""
        self.pass_due_times()
        account_id = self.owner(account, named)
        order_id, client_order_id, expected = self.named_order(account_id, named, pick)
        kept = self.engine.orders.get(order_id) if order_id else None
        if not order_id and account_id in self.engine.accounts:
            kept = self.engine.accounts[account_id].open_by_client_id.get(client_order_id)
        side, yes_price, remaining = (
            (kept.side, kept.price, kept.remaining) if kept is not None else (1, 50, 1)
        )
        new_yes_price = yes_price + price_move
        if price_move == 99 and kept is not None:
            new_yes_price = self.best_opposite(kept.market.market_id, kept.is_bid)
        elif price_move == -99:
            new_yes_price = 0
        quantity = {-1000: 0, 10**6: constants.order_quantity_max + 1}.get(
            quantity_move, remaining + quantity_move
        )
        if new_client == "same":
            new_client_order_id = kept.client_order_id if kept is not None else 1
        else:
            new_client_order_id = self.client_order_id(account_id, new_client)
        account_kept = self.engine.accounts.get(account_id)
        if account_kept is not None and 0 < new_client_order_id < ID_LIMIT:
            # the new id is checked before the order is looked up (docs/engine.md, 5)
            taken = (
                new_client_order_id in account_kept.open_by_client_id
                or new_client_order_id in account_kept.recent_client_ids
            )
            expected = Reject.EXISTS if taken else expected
        elif account_kept is not None:
            expected = Reject.CLIENT_ORDER_ID_MUST_BE_IN_RANGE
        level = kept.level if kept is not None else None
        queue_before = [order.order_id for order in level.orders()] if level is not None else []
        command = ReplaceOrder(
            account_id,
            order_id,
            client_order_id,
            new_client_order_id,
            own_price(side, new_yes_price),
            quantity,
        )
        events = self.apply(command)
        first = events[0]
        if not isinstance(first, OrderReplaced):
            assert isinstance(first, CommandRejected), first
            if expected is not None:
                assert first.reason == expected, first
            return
        assert expected is None and kept is not None, first
        kept_priority = new_yes_price == yes_price and quantity <= remaining
        assert first.priority_kept == int(kept_priority), first
        assert first.quantity == quantity and first.order_id == kept.order_id
        if kept_priority:
            assert kept.level is not None and kept.remaining == quantity
            assert [order.order_id for order in kept.level.orders()] == queue_before
        elif kept.level is not None and not any(isinstance(event, OrderFilled) for event in events):
            assert kept.level.tail is kept, "a replaced order goes to the back of its queue"
        if retry:
            again = self.apply(command)[0]
            assert isinstance(again, CommandRejected) and again.reason == Reject.EXISTS, again
            assert again.related_id == kept.order_id, again

    @precondition(now_and_then)
    @rule(account=ACCOUNT_PICKS, market=MARKET_PICKS, everywhere=st.booleans())
    def mass_cancel(self, account: int, market: int, everywhere: bool) -> None:
        """All of an account's orders in one market, or everywhere."""
        self.pass_due_times()
        account_id = self.account_id(account)
        market_id = 0 if everywhere else self.market_id(market)
        in_scope = [
            order_id
            for order_id, order in self.engine.orders.items()
            if order.account.account_id == account_id
            and (not market_id or order.market.market_id == market_id)
        ]
        events = self.apply(MassCancel(account_id, market_id))
        if isinstance(events[0], CommandRejected):
            assert account_id not in self.engine.accounts or market_id not in self.engine.markets
            return
        assert events[0].cancelled_orders == len(in_scope)
        assert not set(in_scope) & set(self.engine.orders)

    # -- Futures ------------------------------------------------------------------------------

    @rule(
        market=st.integers(-1, 30),
        move=st.sampled_from(["book", "book", "up", "down", "far", "same", "bad"]),
        times=st.sampled_from([1, 1, 1, 4, 8]),
    )
    def mark_market(self, market: int, move: str, times: int) -> None:
        """Mark a futures market: from its book, by the band up or down (the moves that
        liquidate; several in a row squeeze one side until its margin runs out), past the
        band (refused while anyone holds a position), to its mark again, or to a price
        that is no price."""
        for _ in range(times):
            self.mark_once(market, move)

    def mark_once(self, market: int, move: str) -> None:
        self.pass_due_times()
        futures = sorted(
            market_id
            for market_id, kept in self.engine.markets.items()
            if kept.future is not None and kept.status != MarketStatus.SETTLED
        )
        if futures and market >= 0:
            market_id = futures[market % len(futures)]
        else:
            market_id = self.market_id(market)
        kept = self.engine.markets.get(market_id)
        terms = kept.future if kept is not None else None
        mark, band = (terms.mark, terms.mark_band) if terms is not None else (50, 5)
        price = {
            "book": 0,
            "up": min(mark + band, 99),
            "down": max(mark - band, 1),
            "far": min(mark + band + 1, 99),
            "same": mark if 1 <= mark <= 99 else 50,
            "bad": 100,
        }[move]
        events = self.apply(MarkMarket(market_id, price))
        if isinstance(events[0], CommandRejected):
            return
        assert terms is not None and isinstance(events[0], MarketMarked)
        assert events[0].mark == terms.mark == (price or events[0].mark)
        for account_market in kept.ams.values():
            assert account_market.hold >= terms.maintenance_margin * abs(account_market.position)

    @precondition(now_and_then)
    @rule(
        market=st.integers(-1, 30),
        margins=st.sampled_from(
            [(20, 10, 5), (40, 30, 5), (10, 5, 5), (100, 100, 100), (5, 10, 1), (20, 10, 11)]
        ),
        mark_interval_ms=st.sampled_from([0, 5, 30, -1]),
    )
    def set_margins(
        self, market: int, margins: tuple[int, int, int], mark_interval_ms: int
    ) -> None:
        """New margins for a futures market (higher ones liquidate at once), some of them
        out of order."""
        self.pass_due_times()
        futures = sorted(m for m, kept in self.engine.markets.items() if kept.future is not None)
        market_id = futures[market % len(futures)] if futures and market >= 0 else 1
        self.apply(SetMargins(market_id, *margins, mark_interval_ms))

    # -- Time ---------------------------------------------------------------------------------

    @rule(elapsed_ms=st.one_of(st.integers(1, 12), st.integers(1, 120)))
    def tick(self, elapsed_ms: int) -> None:
        """Time passes: GTD orders expire and markets reach their close times."""
        self.pass_due_times()
        self.tick_to(self.harness.time_ms + elapsed_ms)

    @rule(
        elapsed_ms=st.integers(0, 30),
        commands=st.lists(
            st.tuples(
                st.sampled_from(["order", "order", "order", "cancel", "deposit", "garbage"]),
                st.integers(0, 30),  # account
                st.integers(0, 30),  # market, or which order to cancel
                st.sampled_from(list(Side)),
                st.integers(46, 54),  # YES price
                st.integers(1, 6),  # quantity
                st.sampled_from(list(TimeInForce)),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def command_batch(self, elapsed_ms: int, commands: list[tuple[Any, ...]]) -> None:
        """Several commands in one batch, whose time may also expire orders and close
        markets before them: each command gets its outcome first, in order."""
        self.pass_due_times()
        time_ms = self.harness.time_ms + elapsed_ms
        built: list[tuple[Any, ...]] = []
        for kind, account, target, side, yes_price, quantity, time_in_force in commands:
            account_id = self.trader(account)
            if kind == "order":
                command: Any = NewOrder(
                    account_id,
                    self.fresh_client_order_id(account_id),
                    self.trading_market(target),
                    side,
                    own_price(side, yes_price),
                    quantity,
                    time_in_force=time_in_force,
                    expire_time_ms=time_ms + quantity if time_in_force == TimeInForce.GTD else 0,
                )
            elif kind == "cancel":
                own = self.open_orders(account_id)
                command = CancelOrder(account_id, own[target % len(own)] if own else target)
            elif kind == "deposit":
                self.bank_references.append(f"batch/{len(self.bank_references) + 1}")
                command = Deposit(account_id, 100 * quantity, self.bank_references[-1])
            else:
                command = (NewOrder.CODE, account_id, "not an int")
            built.append(command.to_canonical() if isinstance(command, Record) else command)
        applied = self.apply_directly(Batch(time_ms, tuple(built)))
        assert len(applied.outcome_offsets) == len(built)
        for position in range(len(built)):
            outcome = event_from_canonical(applied.command_events(position)[0])
            assert type(outcome).__name__ in OUTCOME_TYPES, outcome
        for event in applied.events[: applied.outcome_offsets[0]]:
            assert event[0] in (
                OrderCancelled.CODE,
                LevelUpdated.CODE,
                MarketStatusChanged.CODE,
                MarketMarked.CODE,  # futures marked by time, with what follows a mark
                VariationMargin.CODE,
                PositionReduced.CODE,
            )

    # -- Garbage ------------------------------------------------------------------------------

    def template(self, code: int) -> tuple[Any, ...]:
        """A plausible command of each code, for garbage to be made of."""
        account_id = self.account_id(0)
        market_id = self.market_id(0)
        order_id = min(self.engine.orders, default=1)
        self.names_used += 1
        unique = self.names_used
        commands = {
            NewOrder.CODE: NewOrder(account_id, 10**9 + unique, market_id, 1, 50, 1),
            CancelOrder.CODE: CancelOrder(account_id, order_id),
            ReplaceOrder.CODE: ReplaceOrder(account_id, order_id, 0, 10**9 + unique, 50, 1),
            MassCancel.CODE: MassCancel(account_id, market_id),
            CreateAccount.CODE: CreateAccount(f"garbage{unique}", KEY),
            Deposit.CODE: Deposit(account_id, 100, f"garbage/{unique}"),
            Withdraw.CODE: Withdraw(account_id, 1, f"garbage/{unique}"),
            CreateMarket.CODE: CreateMarket(f"GARBAGE{unique}", 1),
            SetMarketStatus.CODE: SetMarketStatus(market_id, MarketStatus.HALTED),
            SettleMarket.CODE: SettleMarket(market_id, 1),
            ConfigureMarket.CODE: ConfigureMarket(market_id, 700, 0, 100),
            ConvertNo.CODE: ConvertNo(account_id, 10**9 + unique, market_id, 1),
            SetMargins.CODE: SetMargins(market_id, 20, 10, 5, 0),
            MarkMarket.CODE: MarkMarket(market_id, 0),
            CreateEvent.CODE: CreateEvent(f"GARBAGE{unique}", 1, 0),
            SettleEvent.CODE: SettleEvent(min(self.engine.events, default=1), 0),
        }
        return commands[code].to_canonical()

    @rule(
        code=st.sampled_from([1, 2, 3, 4, 7, 32, 33, 34, 64, 65, 66, 67, 68, 69, 70, 71]),
        mutation=st.sampled_from(
            ["type", "type", "range", "range", "short", "long", "code", "empty", "other", "list"]
        ),
        field=st.integers(0, 11),
        wrong=WRONG_TYPED_VALUES,
        out_of_range=OUT_OF_RANGE_INTS,
        unknown_code=UNKNOWN_CODES,
        not_a_command=NOT_COMMANDS,
    )
    def garbage_command(
        self,
        code: int,
        mutation: str,
        field: int,
        wrong: Any,
        out_of_range: int,
        unknown_code: Any,
        not_a_command: Any,
    ) -> None:
        """A command that is not one: a field of the wrong type or out of every range, too
        few or too many fields, an unknown code, nothing at all, something that is not a
        tuple; or (list) a plausible command as a list, as msgpack may hand it over."""
        self.pass_due_times()
        command: Any = list(self.template(code))
        position = 1 + field % (len(command) - 1)
        reported_code = code
        expected: set[Reject] = set()
        if mutation == "type":
            if type(wrong) is type(command[position]):
                wrong = None
            command[position] = wrong
            expected = {Reject.FIELDS_MUST_HAVE_DECLARED_TYPES}
        elif mutation == "range" and type(command[position]) is int:
            command[position] = out_of_range
        elif mutation == "short":
            command = command[:position]
            expected = {Reject.COMMAND_MUST_BE_WELL_FORMED}
        elif mutation == "long":
            command += [0] * (1 + field % 3)
            expected = {Reject.COMMAND_MUST_BE_WELL_FORMED}
        elif mutation == "code":
            command[0] = unknown_code
            expected = {Reject.COMMAND_CODE_MUST_BE_KNOWN}
            known = type(unknown_code) is int and 0 <= unknown_code < ID_LIMIT
            reported_code = unknown_code if known else 0
        elif mutation == "empty":
            # no code and no fields: either shape reason describes it
            command, reported_code = [], 0
            expected = {Reject.COMMAND_MUST_BE_WELL_FORMED, Reject.COMMAND_CODE_MUST_BE_KNOWN}
        elif mutation == "other":
            command, reported_code = not_a_command, 0
            expected = {Reject.COMMAND_MUST_BE_WELL_FORMED}
        events = self.apply(command if mutation in ("list", "other") else tuple(command))
        if expected:
            assert len(events) == 1 and isinstance(events[0], CommandRejected), events
            assert events[0].account_id == 0 and events[0].reason in expected, events[0]
            assert events[0].command_code == reported_code, events[0]

    @precondition(now_and_then)
    @rule(
        kind=st.sampled_from(GARBAGE_LOG_KINDS),
        time_ms=BAD_BATCH_TIMES,
        count=st.integers(0, 3),
        not_a_command=NOT_COMMANDS,
        raw=st.binary(max_size=24),
        nonsense=st.lists(
            st.one_of(
                st.tuples(st.integers(0, 70)), st.text(max_size=3), st.none(), st.binary(max_size=3)
            ),
            max_size=3,
        ),
    )
    def garbage_log(
        self,
        kind: str,
        time_ms: Any,
        count: int,
        not_a_command: Any,
        raw: bytes,
        nonsense: list[Any],
    ) -> None:
        """Batches that are wrong as a whole (a bad time, too many commands, no command
        list, no batch at all) and log entries as bytes: random bytes, batches of nonsense,
        batches cut short. Each command in them is rejected, and nothing else changes."""
        self.pass_due_times()
        now = self.engine.time_ms
        commands = tuple(self.template(code) for code in (33, 1, 64)[:count])
        expected = Reject.BATCH_TIME_MUST_BE_VALID
        encoded = Batch(now, tuple(nonsense)).encode()
        batch: Any = {
            "bad_time": Batch(time_ms, commands),
            "no_commands": Batch(now, not_a_command),
            "not_a_batch": (time_ms, commands),
            "bytes": raw,
            "entry": encoded,
            "cut": encoded[: len(encoded) // 2] + raw,
            # at the current time nothing expires, so only the rejects show
            "too_many": Batch(now, (self.template(Deposit.CODE),) * (MAX_COMMANDS + 1)),
        }[kind]
        if kind == "too_many":
            commands, expected = batch.commands, Reject.BATCH_MUST_NOT_EXCEED_COMMANDS_MAX
        elif kind == "entry":
            commands, expected = tuple(nonsense), Reject.COMMAND_MUST_BE_WELL_FORMED
        elif kind != "bad_time":
            commands = ()
        if isinstance(batch, bytes):
            try:
                decoded = Batch.decode(batch)
            except ValueError:
                decoded = None
            if decoded is not None and type(decoded.time_ms) is int and decoded.time_ms > now:
                return  # time jumping ahead belongs to the tick rule
        before = comparable_state(self.engine)
        batches_before = self.engine.batches_applied
        applied = self.apply_directly(batch)
        assert self.engine.batches_applied == batches_before + 1
        assert self.engine.time_ms == now
        if kind in ("bytes", "cut"):
            # whatever the bytes held, if it was anything, must have been rejected
            assert all(event[0] == CommandRejected.CODE for event in applied.events)
        else:
            assert len(applied.outcome_offsets) == len(commands) == len(applied.events)
            for event in applied.events:
                assert event[0] == CommandRejected.CODE and event[1] == 0, event
                if kind != "entry":
                    assert event[-1] == expected, event
        if all(not event[1] for event in applied.events):
            assert comparable_state(self.engine) == before

    # -- Invariants ---------------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        engine = self.engine
        cash = sum(account.cash + account.held for account in engine.accounts.values())
        escrow = sum(market.escrow for market in engine.markets.values())
        # paid out of the escrows ahead of settlement: in cash already
        released = sum(event.released for event in engine.events.values())
        money = cash + escrow - released + engine.fees_collected
        assert money == engine.deposits_total - engine.withdrawals_total

    @invariant()
    def canonical_state_round_trips(self) -> None:
        state = to_state(self.engine)
        restored = from_state(state)
        assert to_state(restored) == state
        check_invariants(restored)

    @invariant()
    def time_has_done_its_work(self) -> None:
        """Nothing open outlives its time: GTD orders, markets with a close time."""
        now = self.engine.time_ms
        for order in self.engine.orders.values():
            if order.time_in_force == TimeInForce.GTD:
                assert order.expire_time_ms > now, f"order {order.order_id} outlived its time"
        for market in self.engine.markets.values():
            if market.close_time_ms and market.close_time_ms <= now:
                assert market.status >= MarketStatus.CLOSED, f"market {market.market_id} open"


class FuturesMachine(EngineMachine):
    """The same machine on a futures market: accounts with little cash and positions on
    low margins, so that marks drain margins, cancel orders that can no longer be covered,
    and liquidate (deleveraging the other side)."""

    @initialize(
        cash=st.lists(st.sampled_from([300, 1_000, 2_500, 0]), min_size=3, max_size=4),
        taker_bps=st.sampled_from([700, 0, 175]),
        maker_bps=st.sampled_from([0, 175]),
        position_limit=st.sampled_from([20, 50, 200]),
        scalar=st.booleans(),
        margins=st.sampled_from([(20, 10, 5), (10, 5, 5), (6, 3, 3), (40, 20, 10)]),
        mark_interval_ms=st.sampled_from([0, 0, 7, 40]),
    )
    def set_up(  # type: ignore[override]
        self,
        cash: list[int],
        taker_bps: int,
        maker_bps: int,
        position_limit: int,
        scalar: bool,
        margins: tuple[int, int, int],
        mark_interval_ms: int,
    ) -> None:
        self.set_up_exchange(
            cash, taker_bps, maker_bps, position_limit, scalar, "future", margins, mark_interval_ms
        )

    @rule(buyer=st.integers(0, 30), seller=st.integers(0, 30), share=st.sampled_from([1, 2, 4]))
    def leveraged_trade(self, buyer: int, seller: int, share: int) -> None:
        """Two accounts trade as many contracts at the mark as the poorer one's cash
        margins (or a share of that): positions that a few marks against them drain."""
        self.pass_due_times()
        market = self.engine.markets.get(1)
        if market is None or market.future is None or market.status != MarketStatus.OPEN:
            return
        accounts = sorted(self.engine.accounts)
        buyer_id = accounts[buyer % len(accounts)]
        seller_id = accounts[seller % len(accounts)]
        if buyer_id == seller_id:
            return
        terms = market.future
        cash = min(self.engine.accounts[a].cash for a in (buyer_id, seller_id))
        # the initial margin and a taker fee of up to 2 cents a contract (7 % at 50)
        quantity = min(cash // (terms.initial_margin + 2) // share, market.position_limit)
        price = terms.mark if 1 <= terms.mark <= 99 else 50
        if quantity < 1:
            return
        for account_id, side in ((buyer_id, Side.BUY_YES), (seller_id, Side.SELL_YES)):
            self.place(
                account_id,
                1,
                side,
                price,
                quantity,
                OrderType.LIMIT,
                TimeInForce.GTC,
                0,
                SelfTradePrevention.CANCEL_AGGRESSING,
                0,
                0,
                "fresh",
            )

    @rule(
        buyer=st.integers(0, 30),
        seller=st.integers(0, 30),
        direction=st.sampled_from(["up", "down"]),
        marks=st.integers(2, 8),
    )
    def squeeze(self, buyer: int, seller: int, direction: str, marks: int) -> None:
        """A leveraged trade (the two accounts' orders cancelled first, so that their cash
        is free), then marks the band at a time against one side: its margin runs out, its
        position is liquidated and the other side's deleveraged."""
        accounts = sorted(self.engine.accounts)
        for pick in (buyer, seller):
            self.apply(MassCancel(accounts[pick % len(accounts)], 0))
        self.leveraged_trade(buyer, seller, 1)
        self.mark_market(0, direction, marks)


TestEngineMachine = EngineMachine.TestCase
TestFuturesMachine = FuturesMachine.TestCase
TestFuturesMachine.settings = settings(
    max_examples=1_000 if os.environ.get("EVX_HYPOTHESIS_PROFILE") == "explore" else 100,
    stateful_step_count=80,
)
# About 25 s on a 2-core machine (300 runs of up to 80 steps, ~23,000 commands, each audited);
# EVX_HYPOTHESIS_PROFILE=explore searches with fresh seeds and far more runs.
TestEngineMachine.settings = settings(
    max_examples=3_000 if os.environ.get("EVX_HYPOTHESIS_PROFILE") == "explore" else 300,
    stateful_step_count=80,
)


# -- The same commands, twice -----------------------------------------------------------------

LOOSE_ACCOUNTS = st.integers(0, 4)  # 1-3 exist after SET_UP; 0 and 4 do not
LOOSE_MARKETS = st.integers(0, 3)  # 1 and 2 exist after SET_UP
SET_UP = tuple(
    command.to_canonical()
    for command in (
        *(CreateAccount(f"trader{number}", KEY) for number in (1, 2, 3)),
        *(Deposit(number, 5_000, f"seed-{number}") for number in (1, 2, 3)),
        CreateMarket("FIRST", MarketKind.BINARY, 0, 700, 175, 20),
        CreateMarket("SECOND", MarketKind.SCALAR, 60, 700, 0, 1_000, -100, 100),
        SetMarketStatus(1, MarketStatus.OPEN),
        SetMarketStatus(2, MarketStatus.OPEN),
    )
)
LOOSE_ORDERS = st.builds(
    NewOrder,
    LOOSE_ACCOUNTS,
    st.integers(-1, 12),
    LOOSE_MARKETS,
    SIDES,
    st.one_of(st.integers(45, 55), st.integers(-1, 101)),
    QUANTITIES,
    ORDER_TYPES,
    TIMES_IN_FORCE,
    FLAGS,
    SELF_TRADE_PREVENTIONS,
    st.sampled_from([0, 0, 5, 40, 10**6]),
    st.sampled_from([0, 0, 0, 1, 300]),
)


def plausible_order(
    account_id: int,
    client_order_id: int,
    market_id: int,
    side: int,
    yes_price: int,
    quantity: int,
    kind: str,
    self_trade_prevention: int,
) -> tuple[Any, ...]:
    """A NewOrder that passes every field check: limit GTC, IOC, FOK, GTD (expiring at 1 s),
    post-only, reduce-only, or market."""
    flags = {"post_only": OrderFlag.POST_ONLY, "reduce_only": OrderFlag.REDUCE_ONLY}.get(kind, 0)
    time_in_force = {"ioc": 2, "fok": 3, "gtd": 4, "market": 2}.get(kind, 1)
    order_type = OrderType.MARKET if kind == "market" else OrderType.LIMIT
    price = 0 if kind == "market" else own_price(side, yes_price)
    expire_time_ms = 1_000 if kind == "gtd" else 0
    return NewOrder(
        account_id,
        client_order_id,
        market_id,
        side,
        price,
        quantity,
        order_type,
        time_in_force,
        flags,
        self_trade_prevention,
        expire_time_ms,
    ).to_canonical()


PLAUSIBLE_ORDERS = st.builds(
    plausible_order,
    st.integers(1, 3),
    st.integers(1, 40),
    st.integers(1, 2),
    st.sampled_from(list(Side)),
    st.integers(44, 56),
    st.integers(1, 8),
    st.sampled_from(["gtc", "gtc", "ioc", "fok", "gtd", "post_only", "reduce_only", "market"]),
    st.sampled_from(list(SelfTradePrevention)),
)
OTHER_COMMANDS = st.one_of(
    LOOSE_ORDERS.map(canonical),
    st.builds(CancelOrder, LOOSE_ACCOUNTS, st.integers(0, 30), st.integers(0, 12)).map(canonical),
    st.builds(
        ReplaceOrder,
        LOOSE_ACCOUNTS,
        st.integers(0, 30),
        st.integers(0, 12),
        st.integers(0, 20),
        st.integers(0, 100),
        st.integers(0, 10),
    ).map(canonical),
    st.builds(MassCancel, LOOSE_ACCOUNTS, LOOSE_MARKETS).map(canonical),
    *(
        st.builds(
            kind,
            LOOSE_ACCOUNTS,
            st.integers(-1, 3_000),
            st.sampled_from(["bank/1", "bank/2", "seed-1", "", "has space"]),
        ).map(canonical)
        for kind in (Deposit, Withdraw)
    ),
    st.builds(SetMarketStatus, LOOSE_MARKETS, st.integers(0, 6)).map(canonical),
    st.builds(SettleMarket, LOOSE_MARKETS, st.integers(-1, 2)).map(canonical),
    st.builds(
        ConfigureMarket,
        LOOSE_MARKETS,
        st.sampled_from([0, 700, constants.fee_bps_max + 1]),
        st.sampled_from([0, 175]),
        st.sampled_from([5, 50, 0]),
    ).map(canonical),
    st.builds(CreateMarket, st.sampled_from(["THIRD", "FIRST", "bad"]), st.integers(0, 3)).map(
        canonical
    ),
    st.builds(
        CreateAccount, st.sampled_from(["trader1", "trader9", ""]), st.sampled_from([KEY, b""])
    ).map(canonical),
    NOT_COMMANDS,
    st.tuples(UNKNOWN_CODES, st.integers()),
    st.tuples(st.sampled_from(sorted(COMMANDS.by_code)), WRONG_TYPED_VALUES, WRONG_TYPED_VALUES),
    # ids past every range, which rejects must not repeat back as they are
    st.builds(lambda value: (CancelOrder.CODE, 1, value, value), OUT_OF_RANGE_INTS),
    st.builds(lambda value: (ReplaceOrder.CODE, 1, value, value, 7, 50, 1), OUT_OF_RANGE_INTS),
    st.builds(lambda value: (MassCancel.CODE, 1, value), OUT_OF_RANGE_INTS),
)
# Half of the commands are orders that pass their field checks, so that books build and
# trade (a coin, because one_of would merge OTHER_COMMANDS' branches with this one).
LOOSE_COMMANDS = st.booleans().flatmap(
    lambda plausible: PLAUSIBLE_ORDERS if plausible else OTHER_COMMANDS
)


def codec_round_trip(batch: Batch) -> bytes | None:
    """The batch as a log entry, if it comes back from the log codec unchanged; None for a
    batch msgpack cannot carry (an int past 64 bits, a lone surrogate) or gives back
    otherwise (a list as a tuple, a map with int keys, which decode refuses)."""
    try:
        entry = batch.encode()
        return entry if Batch.decode(entry) == batch else None
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        return None


@given(
    commands=st.lists(LOOSE_COMMANDS, min_size=10, max_size=60),
    cuts=st.lists(st.tuples(st.integers(0, 15), st.integers(1, 8)), max_size=12),
)
def test_the_same_commands_give_the_same_events_and_hashes(
    commands: list[Any], cuts: list[tuple[int, int]]
) -> None:
    """Determinism within a process: two fresh engines given the same commands, valid and
    not, cut into the same batches, give the same events, outcomes and hashes. One of them
    gets each batch through the log codec when the batch survives it unchanged."""
    batches = [Batch(1, SET_UP)]
    time_ms, start = 1, 0
    for elapsed_ms, count in [*cuts, (1, len(commands))]:
        time_ms += elapsed_ms
        batches.append(Batch(time_ms, tuple(commands[start : start + count])))
        start += count
    first, second = Engine(), Engine()
    for batch in batches:
        one = first.apply(batch)
        two = (
            second.apply_entry(entry) if (entry := codec_round_trip(batch)) else second.apply(batch)
        )
        assert (one.events, one.outcome_offsets) == (two.events, two.outcome_offsets)
        assert one.state_hash == two.state_hash
    check_invariants(first)
    assert to_state(first) == to_state(second)


# -- Engine bugs this machine found: the smallest reproductions -------------------------------


def exchange(*cash: int, position_limit: int = constants.position_limit_default) -> Harness:
    """One account per amount of cash (ids 1, 2, ...) and one open binary market (id 1)
    without fees, so the numbers in a reproduction are only prices and quantities."""
    harness = Harness()
    for number, amount in enumerate(cash, 1):
        harness.do(CreateAccount(f"trader{number}", KEY))
        harness.do(Deposit(number, amount, f"seed-{number}"))
    harness.do(CreateMarket("REPRO", MarketKind.BINARY, 0, 0, 0, position_limit))
    harness.do(SetMarketStatus(1, MarketStatus.OPEN))
    return harness


def reduce_only_ladder(harness: Harness) -> None:
    """Trader 2 holds 5 YES and offers them twice at 50: a plain ask, then a reduce-only
    one behind it. When the plain ask fills, the position is gone and the reduce-only ask
    is trimmed away (correctly) in the middle of the taker's sweep."""
    harness.do(NewOrder(2, 1, 1, Side.BUY_YES, 50, 5))
    harness.do(NewOrder(3, 1, 1, Side.SELL_YES, 50, 5))
    harness.do(NewOrder(2, 2, 1, Side.SELL_YES, 50, 5))
    harness.do(NewOrder(2, 3, 1, Side.SELL_YES, 50, 5, flags=OrderFlag.REDUCE_ONLY))


@pytest.mark.parametrize("promise", ["fill_or_kill", "max_cost", "market_order_limit"])
def test_book_walks_before_matching_ignore_reduce_only_trims(promise: str) -> None:
    harness = exchange(10_000, 10_000, 10_000)
    reduce_only_ladder(harness)
    if promise == "fill_or_kill":
        # 10 contracts show at 50, but only 5 can fill: it must be rejected, not half-filled
        events = harness.do(NewOrder(1, 1, 1, Side.BUY_YES, 50, 10, time_in_force=3))
        assert isinstance(events[0], CommandRejected), events
        assert events[0].reason == Reject.FILL_OR_KILL_MUST_FILL_COMPLETELY
        return
    harness.do(NewOrder(3, 2, 1, Side.SELL_YES, 52, 10))
    if promise == "max_cost":
        # 5 + 5 at 50 and 5 at 52 cost 760; the trimmed 5 at 50 must not come back at 52
        command = NewOrder(1, 1, 1, Side.BUY_YES, 0, 15, OrderType.MARKET, 2, max_cost=760)
        events = harness.do(command)
        fills = [
            event for event in events if isinstance(event, OrderFilled) and event.account_id == 1
        ]
        assert sum(fill.price * fill.quantity + fill.fee for fill in fills) <= 760, fills
        return
    # a market order without a worst price takes the ask at 52 once the 5 at 50 are gone
    events = harness.do(NewOrder(1, 1, 1, Side.BUY_YES, 0, 10, OrderType.MARKET, 2))
    fills = [event for event in events if isinstance(event, OrderFilled) and event.account_id == 1]
    assert [(fill.price, fill.quantity) for fill in fills] == [(50, 5), (52, 5)], events


def test_reduce_only_orders_escape_position_limit() -> None:
    harness = exchange(10_000, 10_000, 10_000, position_limit=10)
    harness.do(NewOrder(2, 1, 1, Side.BUY_YES, 50, 5))
    harness.do(NewOrder(1, 1, 1, Side.SELL_YES, 50, 5))  # trader 1 holds 5 NO
    harness.do(NewOrder(1, 2, 1, Side.BUY_YES, 40, 15))  # -5 + 15 = 10: at the limit
    harness.do(NewOrder(1, 3, 1, Side.BUY_YES, 45, 5, flags=OrderFlag.REDUCE_ONLY))
    harness.do(NewOrder(3, 1, 1, Side.SELL_YES, 40, 10))
    harness.do(NewOrder(2, 2, 1, Side.SELL_YES, 40, 10))
    position = harness.engine.accounts[1].markets[1].position
    assert position <= 10, f"trader 1 holds {position} YES with a position limit of 10"


def test_market_order_fills_report_leaves_without_unreachable_part() -> None:
    harness = exchange(10_000, 10_000)
    harness.do(NewOrder(2, 1, 1, Side.SELL_YES, 50, 6))
    events = harness.do(NewOrder(1, 1, 1, Side.BUY_YES, 0, 10, OrderType.MARKET, 2))
    fill = next(event for event in events if isinstance(event, OrderFilled))
    cancel = next(event for event in events if isinstance(event, OrderCancelled))
    assert fill.leaves_quantity == cancel.cancelled_quantity == 4, (fill, cancel)


def test_replace_that_requeues_alone_at_its_price_reports_the_level_twice() -> None:
    harness = exchange(10_000)
    harness.do(NewOrder(1, 1, 1, Side.BUY_YES, 51, 2))
    events = harness.do(ReplaceOrder(1, 1, 0, 2, 51, 3))  # more quantity: to the back
    levels = [
        (event.book_side, event.price, event.quantity, event.orders)
        for event in events
        if isinstance(event, LevelUpdated)
    ]
    assert levels == [(BookSide.BID, 51, 3, 1)], levels
