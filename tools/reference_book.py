"""A naive reference order book: obviously correct, slow, and independent of the engine.

Strategy: the resting orders of a market sit in one plain Python list, in no order. To
match, the resting orders an incoming order crosses are filtered out of that list and
sorted by price, then by arrival number, afresh before every single step, so there is no
incremental structure (levels, masks, linked lists, indexes) that could go stale. Orders
are found by scanning. The only state is those lists, the order and arrival counters, and
each account's accepted client order ids.

Rules (the engine's `_new_order`, `_match`, `_replace_order`, `_cancel_order` and
`_mass_cancel` were read to confirm them, not copied):
- Order ids are 1, 2, 3 ... given to accepted new orders only. A replace keeps its id.
- The book is in YES terms. BUY_YES at p and SELL_NO at n are bids at YES p and 100 - n;
  SELL_YES at p and BUY_NO at n are asks at YES p and 100 - n.
- Price-time priority; a trade prints at the resting order's YES price.
- GTC and GTD rest what is left (expiry is not modelled, so use GTD only with far expiries),
  IOC cancels it, FOK is rejected unless it can fill completely now. A market order walks
  the book like an IOC or FOK limit order at its worst price (0: 99 in its own terms for a
  buy, 1 for a sell).
- Self-trade prevention, when the incoming order meets an order of its own account:
  CANCEL_RESTING cancels that order and goes on; CANCEL_AGGRESSING stops and cancels the
  incoming order's remainder; CANCEL_BOTH does both.
- A replace gives the order a new client order id, which must be new like a new order's.
  At the same YES price and no more than the remaining quantity it keeps its place; any
  other replace goes to the back at its new price and matches like a new GTC order.

Money is ignored entirely (collateral, fees, position limits): the differential test gives
every account enough cash and a position limit high enough that none of them ever binds.
What the reference does not model at all (reduce-only, max_cost, commands other than order
entry) raises ValueError rather than being answered wrongly. All markets are open.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

from evx.core import (
    CancelOrder,
    CancelReason,
    MassCancel,
    NewOrder,
    OrderFlag,
    OrderType,
    Reject,
    ReplaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    constants,
)

PAYOUT_CENTS = constants.contract_payout_cents
IMMEDIATE_REMAINDER = CancelReason.IMMEDIATE_REMAINDER.name.lower()
SELF_TRADE_PREVENTED = CancelReason.SELF_TRADE_PREVENTED.name.lower()
REMEMBERED_CLIENT_ORDER_IDS_MAX = constants.client_order_ids_remembered_per_account_max


@dataclass(frozen=True, slots=True)
class Trade:
    taker_order_id: int
    maker_order_id: int
    yes_price: int  # the resting order's YES price, in cents
    quantity: int


@dataclass(frozen=True, slots=True)
class Result:
    """What one command did. `order_id` is the order a new order created, or the order a
    replace or cancel named; it is 0 for a reject and for a mass cancel."""

    accepted: bool
    rule: str = ""  # the rule that failed, named as Reject names it, when rejected
    order_id: int = 0
    trades: tuple[Trade, ...] = ()
    # Resting orders of the same account that self-trade prevention cancelled, as
    # (order_id, cancelled quantity), in the order they were met.
    self_trade_cancelled: tuple[tuple[int, int], ...] = ()
    # Contracts of the incoming (or replaced) order cancelled once matching ended, and why,
    # as CancelReason names it: immediate_remainder, or self_trade_prevented when
    # self-trade prevention stopped matching.
    remainder_cancelled: int = 0
    remainder_reason: str = ""
    rests: int = 0  # contracts of the incoming (or replaced) order now resting
    # Orders a cancel or a mass cancel ended, as (order_id, cancelled quantity).
    cancelled: tuple[tuple[int, int], ...] = ()


def rejected(reason: Reject) -> Result:
    return Result(accepted=False, rule=reason.rule)


@dataclass(slots=True, eq=False)
class Order:
    """An order in the reference book (or one being matched before it rests). Orders
    compare by identity, so `list.remove` takes out exactly the one it is given."""

    order_id: int
    account_id: int
    client_order_id: int
    market_id: int
    side: int
    is_bid: bool
    yes_price: int
    remaining: int
    self_trade_prevention: int
    post_only: bool
    arrival: int = 0  # when it last joined the back of its price's queue


def is_bid_side(side: int) -> bool:
    return side in (Side.BUY_YES, Side.SELL_NO)


def to_yes_price(side: int, own_price: int) -> int:
    """A price in the terms of the contract the side names, as a YES price."""
    if side in (Side.BUY_YES, Side.SELL_YES):
        return own_price
    return PAYOUT_CENTS - own_price


class ReferenceExchange:
    """Order entry of the engine, done the slow and obvious way, with money ignored."""

    def __init__(
        self, account_ids: Iterable[int] | None = None, market_ids: Iterable[int] | None = None
    ) -> None:
        # The accounts and (open) markets that exist; None: every id names one, which is
        # what a benchmark feeding only order entry wants.
        self.account_ids = None if account_ids is None else set(account_ids)
        self.market_ids = None if market_ids is None else set(market_ids)
        # The resting orders of each market, in one plain list per market, in no order.
        self.books: dict[int, list[Order]] = {}
        self.next_order_id = 1
        self.next_arrival = 1
        # Each account's accepted client order ids (new orders and replace renames), oldest
        # first; the engine remembers the last REMEMBERED_CLIENT_ORDER_IDS_MAX of them.
        self.accepted_client_order_ids: dict[int, list[int]] = {}

    # -- Commands -----------------------------------------------------------------------------

    def apply(self, command: Sequence[Any]) -> Result:
        """Apply one canonical order-entry command tuple; return what it did."""
        code = command[0]
        if code == NewOrder.CODE:
            return self.new_order(NewOrder(*command[1:]))
        if code == CancelOrder.CODE:
            return self.cancel_order(CancelOrder(*command[1:]))
        if code == ReplaceOrder.CODE:
            return self.replace_order(ReplaceOrder(*command[1:]))
        if code == MassCancel.CODE:
            return self.mass_cancel(MassCancel(*command[1:]))
        raise ValueError(f"the reference book models order entry only, not command {code}")

    def apply_all(self, commands: Iterable[Sequence[Any]]) -> list[Result]:
        """Apply a whole list of canonical commands in order (the benchmark's entry)."""
        return [self.apply(command) for command in commands]

    def new_order(self, command: NewOrder) -> Result:
        if not self._account_exists(command.account_id):
            return rejected(Reject.ACCOUNT_MUST_EXIST)
        if not 0 < command.client_order_id <= constants.id_max:
            return rejected(Reject.CLIENT_ORDER_ID_MUST_BE_IN_RANGE)
        if self._client_order_id_taken(command.account_id, command.client_order_id):
            return rejected(Reject.EXISTS)
        if command.flags & OrderFlag.REDUCE_ONLY or command.max_cost:
            raise ValueError("the reference book does not model reduce-only or max_cost")
        is_market = command.order_type == OrderType.MARKET
        immediate = command.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
        rests = command.time_in_force in (TimeInForce.GTC, TimeInForce.GTD)
        post_only = bool(command.flags & OrderFlag.POST_ONLY)
        lowest_price = 0 if is_market else 1
        if command.side not in tuple(Side):
            return rejected(Reject.SIDE_MUST_BE_KNOWN)
        if command.order_type not in tuple(OrderType):
            return rejected(Reject.ORDER_TYPE_MUST_BE_KNOWN)
        if command.time_in_force not in tuple(TimeInForce):
            return rejected(Reject.TIME_IN_FORCE_MUST_BE_KNOWN)
        if is_market and not immediate:
            return rejected(Reject.MARKET_ORDER_MUST_BE_IMMEDIATE)
        if not lowest_price <= command.price <= 99:
            return rejected(Reject.PRICE_MUST_BE_BETWEEN_1_AND_99)
        if command.quantity <= 0:
            return rejected(Reject.QUANTITY_MUST_BE_POSITIVE)
        if command.quantity > constants.order_quantity_max:
            return rejected(Reject.QUANTITY_MUST_NOT_EXCEED_MAX)
        if command.flags & ~OrderFlag.POST_ONLY:
            return rejected(Reject.FLAGS_MUST_BE_KNOWN)
        if post_only and not rests:
            return rejected(Reject.POST_ONLY_MUST_BE_A_RESTING_LIMIT)
        if command.self_trade_prevention not in tuple(SelfTradePrevention):
            return rejected(Reject.SELF_TRADE_PREVENTION_MUST_BE_KNOWN)
        if command.time_in_force != TimeInForce.GTD and command.expire_time_ms:
            return rejected(Reject.EXPIRE_TIME_MUST_BE_SET_ONLY_FOR_GTD)
        if not self._market_exists(command.market_id):
            return rejected(Reject.MARKET_MUST_EXIST)

        own_price = command.price
        if is_market and own_price == 0:
            # No worst price: a buy pays up to 99 in its own terms, a sell takes down to 1.
            buys = command.side in (Side.BUY_YES, Side.BUY_NO)
            own_price = 99 if buys else 1
        incoming = Order(
            order_id=0,
            account_id=command.account_id,
            client_order_id=command.client_order_id,
            market_id=command.market_id,
            side=command.side,
            is_bid=is_bid_side(command.side),
            yes_price=to_yes_price(command.side, own_price),
            remaining=command.quantity,
            self_trade_prevention=command.self_trade_prevention,
            post_only=post_only,
        )
        if post_only and self._crossing(incoming):
            return rejected(Reject.POST_ONLY_MUST_NOT_TAKE)
        if command.time_in_force == TimeInForce.FOK and self._fillable(incoming) < command.quantity:
            return rejected(Reject.FILL_OR_KILL_MUST_FILL_COMPLETELY)

        incoming.order_id = self.next_order_id
        self.next_order_id += 1
        self._remember(command.account_id, command.client_order_id)
        return self._enter(incoming, may_rest=rests)

    def cancel_order(self, command: CancelOrder) -> Result:
        if not self._account_exists(command.account_id):
            return rejected(Reject.ACCOUNT_MUST_EXIST)
        found = self._find(command.account_id, command.order_id, command.client_order_id)
        if isinstance(found, Result):
            return found
        self._unrest(found)
        return Result(
            accepted=True,
            order_id=found.order_id,
            cancelled=((found.order_id, found.remaining),),
        )

    def replace_order(self, command: ReplaceOrder) -> Result:
        account_id = command.account_id
        if not self._account_exists(account_id):
            return rejected(Reject.ACCOUNT_MUST_EXIST)
        if not 0 < command.new_client_order_id <= constants.id_max:
            return rejected(Reject.CLIENT_ORDER_ID_MUST_BE_IN_RANGE)
        # The new client order id must be new, the order's own current one included, and it
        # is checked before the order is looked up: a retried replace names its order by an
        # id the order no longer has, and must still be answered `exists`.
        if self._client_order_id_taken(account_id, command.new_client_order_id):
            return rejected(Reject.EXISTS)
        found = self._find(account_id, command.order_id, command.client_order_id)
        if isinstance(found, Result):
            return found
        order = found
        if not 1 <= command.price <= 99:
            return rejected(Reject.PRICE_MUST_BE_BETWEEN_1_AND_99)
        if command.quantity <= 0:
            return rejected(Reject.QUANTITY_MUST_BE_POSITIVE)
        if command.quantity > constants.order_quantity_max:
            return rejected(Reject.QUANTITY_MUST_NOT_EXCEED_MAX)
        yes_price = to_yes_price(order.side, command.price)

        if yes_price == order.yes_price and command.quantity <= order.remaining:
            # The same price and no more contracts: it keeps its place in the queue.
            order.remaining = command.quantity
            self._rename(order, command.new_client_order_id)
            return Result(accepted=True, order_id=order.order_id, rests=order.remaining)

        # Anything else takes it out of the book; it comes back like a new GTC order with
        # the same id, side, self-trade prevention mode and post-only flag.
        moved = replace(order, yes_price=yes_price, remaining=command.quantity)
        if moved.post_only and self._crossing(moved):
            return rejected(Reject.POST_ONLY_MUST_NOT_TAKE)
        self._unrest(order)
        self._rename(moved, command.new_client_order_id)
        return self._enter(moved, may_rest=True)

    def mass_cancel(self, command: MassCancel) -> Result:
        if not self._account_exists(command.account_id):
            return rejected(Reject.ACCOUNT_MUST_EXIST)
        if command.market_id and not self._market_exists(command.market_id):
            return rejected(Reject.MARKET_MUST_EXIST)
        victims = sorted(
            (
                order
                for order in self._all_resting()
                if order.account_id == command.account_id
                and command.market_id in (0, order.market_id)
            ),
            key=lambda order: order.order_id,
        )
        for order in victims:
            self._unrest(order)
        return Result(
            accepted=True,
            cancelled=tuple((order.order_id, order.remaining) for order in victims),
        )

    # -- Views ------------------------------------------------------------------------------

    def levels(
        self, market_id: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) as (yes_price, total quantity, order count), each side best first."""
        sides: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        for order in self.books.get(market_id, []):
            level = sides[0 if order.is_bid else 1].setdefault(order.yes_price, [0, 0])
            level[0] += order.remaining
            level[1] += 1
        bids = [(price, total, count) for price, (total, count) in sorted(sides[0].items())]
        asks = [(price, total, count) for price, (total, count) in sorted(sides[1].items())]
        bids.reverse()
        return bids, asks

    def open_orders(self, account_id: int | None = None) -> list[Order]:
        """Copies of the resting orders (of one account, or all), oldest order id first."""
        return [
            replace(order)
            for order in sorted(self._all_resting(), key=lambda order: order.order_id)
            if account_id is None or order.account_id == account_id
        ]

    # -- Matching ---------------------------------------------------------------------------

    def priority(self, order: Order) -> tuple[int, int]:
        """The sort key of a resting order among those an incoming order crosses: the best
        price first (the lowest ask, the highest bid), then the earliest arrival."""
        price_rank = -order.yes_price if order.is_bid else order.yes_price
        return price_rank, order.arrival

    def _crossing(self, incoming: Order) -> list[Order]:
        """The resting orders the incoming order could trade with, in priority."""

        def crosses(resting: Order) -> bool:
            if incoming.is_bid:
                return resting.yes_price <= incoming.yes_price
            return resting.yes_price >= incoming.yes_price

        candidates = [
            resting
            for resting in self.books.get(incoming.market_id, [])
            if resting.is_bid != incoming.is_bid and crosses(resting)
        ]
        candidates.sort(key=self.priority)
        return candidates

    def _fillable(self, incoming: Order) -> int:
        """How many contracts a fill-or-kill order could fill now. Its own account's orders
        are skipped when matching would cancel them and go on (CANCEL_RESTING); any other
        self-trade prevention mode would stop matching there, so counting stops too."""
        total = 0
        for resting in self._crossing(incoming):
            if resting.account_id == incoming.account_id:
                if incoming.self_trade_prevention == SelfTradePrevention.CANCEL_RESTING:
                    continue
                break
            total += resting.remaining
        return total

    def _enter(self, order: Order, may_rest: bool) -> Result:
        """Match an accepted order, then rest what is left of it or cancel that."""
        trades, self_trade_cancelled, stopped = self._match(order)
        rests = remainder_cancelled = 0
        remainder_reason = ""
        if stopped:
            remainder_cancelled, remainder_reason = order.remaining, SELF_TRADE_PREVENTED
        elif order.remaining and not may_rest:
            remainder_cancelled, remainder_reason = order.remaining, IMMEDIATE_REMAINDER
        elif order.remaining:
            self._rest(order)
            rests = order.remaining
        return Result(
            accepted=True,
            order_id=order.order_id,
            trades=trades,
            self_trade_cancelled=self_trade_cancelled,
            remainder_cancelled=remainder_cancelled,
            remainder_reason=remainder_reason,
            rests=rests,
        )

    def _match(
        self, incoming: Order
    ) -> tuple[tuple[Trade, ...], tuple[tuple[int, int], ...], bool]:
        """Trade the incoming order against the book. Returns the trades, the resting
        orders self-trade prevention cancelled, and whether self-trade prevention stopped
        matching (then nothing of the incoming order may rest)."""
        trades: list[Trade] = []
        self_trade_cancelled: list[tuple[int, int]] = []
        mode = incoming.self_trade_prevention
        while incoming.remaining:
            candidates = self._crossing(incoming)
            if not candidates:
                break
            resting = candidates[0]
            if resting.account_id == incoming.account_id:
                if mode in (SelfTradePrevention.CANCEL_RESTING, SelfTradePrevention.CANCEL_BOTH):
                    self._unrest(resting)
                    self_trade_cancelled.append((resting.order_id, resting.remaining))
                if mode in (
                    SelfTradePrevention.CANCEL_AGGRESSING,
                    SelfTradePrevention.CANCEL_BOTH,
                ):
                    return tuple(trades), tuple(self_trade_cancelled), True
                continue
            quantity = min(incoming.remaining, resting.remaining)
            trades.append(Trade(incoming.order_id, resting.order_id, resting.yes_price, quantity))
            incoming.remaining -= quantity
            resting.remaining -= quantity
            if not resting.remaining:
                self._unrest(resting)
        return tuple(trades), tuple(self_trade_cancelled), False

    # -- Bookkeeping ------------------------------------------------------------------------

    def _account_exists(self, account_id: int) -> bool:
        return self.account_ids is None or account_id in self.account_ids

    def _market_exists(self, market_id: int) -> bool:
        return self.market_ids is None or market_id in self.market_ids

    def _rest(self, order: Order) -> None:
        order.arrival = self.next_arrival
        self.next_arrival += 1
        self.books.setdefault(order.market_id, []).append(order)

    def _unrest(self, order: Order) -> None:
        self.books[order.market_id].remove(order)

    def _all_resting(self) -> Iterator[Order]:
        return chain.from_iterable(self.books.values())

    def _find(self, account_id: int, order_id: int, client_order_id: int) -> Order | Result:
        """The open order a cancel or replace names (by order_id, or by client_order_id
        when order_id is 0), or the reject that says why there is none."""
        if order_id:
            for order in self._all_resting():
                if order.order_id == order_id:
                    if order.account_id != account_id:
                        return rejected(Reject.ORDER_MUST_BELONG_TO_ACCOUNT)
                    return order
            return rejected(Reject.ORDER_MUST_EXIST)
        for order in self._all_resting():
            if order.account_id == account_id and order.client_order_id == client_order_id:
                return order
        return rejected(Reject.ORDER_MUST_EXIST)

    def _client_order_id_taken(self, account_id: int, client_order_id: int) -> bool:
        """A client order id is taken while one of the account's open orders has it, and
        while it is among the account's last remembered accepted ones."""
        accepted = self.accepted_client_order_ids.get(account_id, [])
        if client_order_id not in accepted:
            return False  # an open order's client order id was accepted once, so it is here
        return client_order_id in accepted[-REMEMBERED_CLIENT_ORDER_IDS_MAX:] or any(
            order.account_id == account_id and order.client_order_id == client_order_id
            for order in self._all_resting()
        )

    def _remember(self, account_id: int, client_order_id: int) -> None:
        self.accepted_client_order_ids.setdefault(account_id, []).append(client_order_id)

    def _rename(self, order: Order, new_client_order_id: int) -> None:
        order.client_order_id = new_client_order_id
        self._remember(order.account_id, new_client_order_id)
