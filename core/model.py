"""The engine's state objects and the collateral rule.

Strategy: plain slotted classes with integer fields, mutated only by the engine. The book
of a market is two arrays of 100 price levels (index = YES price) with a bit mask of the
non-empty ones, so the best price is one bit operation; a level is an intrusive doubly
linked list of orders in time priority, so adding, filling and cancelling are O(1).

Collateral (docs/engine.md has the worked examples). An account's money in a market is  # float-ok
held per (account, market) in an AccountMarket. Every resting order pays, per contract, its
side price x: a bid (buy YES at p) pays x = p, an ask (buy NO) pays x = 100 - p. A bid that
meets a NO position closes it: the pair is redeemed for 100 at once, so such a fill brings
money in instead of taking it. The hold of an AccountMarket is

    hold = P(bids, cap = NO held) + P(asks, cap = YES held) + maker fee bound + taker fee bound

where P(side, cap) is the price of the side's cheapest (N - cap) contracts (N = the side's
resting contracts). The side's dearest orders are the ones that fill first (price priority),
so they are the ones that close; the cheapest N - cap are the ones that open a position.
The fee bounds are exact: for each order, the fee its remaining contracts can still cost
given the per-order rounding (fees.py). Every fill moves money so that cash never goes
below zero; the engine asserts it, and check_invariants recomputes every hold.
"""

from __future__ import annotations

from collections import deque

from . import constants
from .fees import fee_cents

PAYOUT = constants.contract_payout_cents
_GROUP_BUCKETS = 1_024  # time buckets per order group window


class Order:
    """An open order. `price` is its YES price in the book; `x` the price it pays per
    contract (YES price for bids, NO price for asks); `b` = price * (100 - price)."""

    __slots__ = (
        "account",
        "am",
        "b",
        "client_order_id",
        "expire_time_ms",
        "flags",
        "group",
        "is_bid",
        "level",
        "maker_basis",
        "maker_bound",
        "maker_bps",
        "maker_fee",
        "market",
        "next",
        "order_id",
        "order_type",
        "prev",
        "price",
        "quantity",
        "reduce_only",
        "remaining",
        "self_trade_prevention",
        "side",
        "taker_basis",
        "taker_bps",
        "taker_fee",
        "time_in_force",
        "unreached",
        "x",
    )

    def __init__(
        self,
        order_id: int,
        client_order_id: int,
        account: Account,
        am: AccountMarket,
        market: Market,
        side: int,
        is_bid: bool,
        price: int,
        quantity: int,
        order_type: int,
        time_in_force: int,
        flags: int,
        self_trade_prevention: int,
        expire_time_ms: int,
        taker_bps: int,
        maker_bps: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.account = account
        self.am = am
        self.market = market
        self.side = side
        self.is_bid = is_bid
        self.price = price
        self.x = price if is_bid else PAYOUT - price
        self.b = price * (PAYOUT - price)
        self.quantity = quantity
        self.remaining = quantity
        # a market order's contracts that no price it accepts can reach now: still open
        # (reported as leaves) until the order ends, never matched
        self.unreached = 0
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.flags = flags
        self.reduce_only = bool(flags & 2)
        self.self_trade_prevention = self_trade_prevention
        self.expire_time_ms = expire_time_ms
        self.taker_bps = taker_bps
        self.maker_bps = maker_bps
        self.taker_basis = 0
        self.taker_fee = 0
        self.maker_basis = 0
        self.maker_fee = 0
        self.maker_bound = 0
        self.prev: Order | None = None
        self.next: Order | None = None
        self.level: Level | None = None
        self.group: OrderGroup | None = None

    def set_price(self, price: int) -> None:
        self.price = price
        self.x = price if self.is_bid else PAYOUT - price
        self.b = price * (PAYOUT - price)

    def own_price(self, yes_price: int) -> int:
        """A YES price in this order's own terms (Side 1, 2 name YES; 3, 4 name NO)."""
        return yes_price if self.side <= 2 else PAYOUT - yes_price

    def maker_fee_bound(self) -> int:
        """The most its remaining contracts can still pay in maker fees (they fill at
        its own price, and the order's fee is rounded up once over all its fills)."""
        if not self.maker_bps:
            return 0
        return (
            fee_cents(self.maker_bps, self.maker_basis + self.remaining * self.b) - self.maker_fee
        )


class Level:
    """One price level of one side: orders in time priority, as a linked list. `dirty` is
    set while the engine owes a LevelUpdated event for it (one per level per command)."""

    __slots__ = ("count", "dirty", "head", "is_bid", "market", "price", "quantity", "tail")

    def __init__(self, market: Market, is_bid: bool, price: int) -> None:
        self.market = market
        self.is_bid = is_bid
        self.price = price
        self.dirty = False
        self.head: Order | None = None
        self.tail: Order | None = None
        self.quantity = 0
        self.count = 0

    def append(self, order: Order) -> None:
        tail = self.tail
        order.prev = tail
        order.next = None
        order.level = self
        if tail is None:
            self.head = order
        else:
            tail.next = order
        self.tail = order
        self.quantity += order.remaining
        self.count += 1

    def unlink(self, order: Order) -> None:
        """Take the order out of the queue; the caller adjusts `quantity`."""
        prev = order.prev
        nxt = order.next
        if prev is None:
            self.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            self.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = order.level = None
        self.count -= 1

    def orders(self) -> list[Order]:
        result = []
        order = self.head
        while order is not None:
            result.append(order)
            order = order.next
        return result


class Market:
    __slots__ = (
        "ams",
        "ask_levels",
        "ask_mask",
        "bid_levels",
        "bid_mask",
        "cap",
        "close_time_ms",
        "escrow",
        "floor",
        "kind",
        "maker_bps",
        "market_id",
        "open_interest",
        "open_orders",
        "outcome",
        "position_limit",
        "seq",
        "status",
        "taker_bps",
        "ticker",
        "yes_payout",
    )

    def __init__(
        self,
        market_id: int,
        ticker: str,
        kind: int,
        close_time_ms: int,
        taker_bps: int,
        maker_bps: int,
        position_limit: int,
        floor: int,
        cap: int,
    ) -> None:
        self.market_id = market_id
        self.ticker = ticker
        self.kind = kind
        self.status = 1  # MarketStatus.PROPOSED
        self.close_time_ms = close_time_ms
        self.taker_bps = taker_bps
        self.maker_bps = maker_bps
        self.position_limit = position_limit
        self.floor = floor
        self.cap = cap
        self.seq = 0
        self.bid_levels: list[Level | None] = [None] * PAYOUT
        self.ask_levels: list[Level | None] = [None] * PAYOUT
        self.bid_mask = 0  # bit p set: a bid level at YES price p exists
        self.ask_mask = 0
        self.escrow = 0
        self.open_interest = 0
        self.open_orders = 0
        self.outcome = 0
        self.yes_payout = 0
        self.ams: dict[int, AccountMarket] = {}  # account_id -> its AccountMarket here

    def best_bid(self) -> int:
        return self.bid_mask.bit_length() - 1  # -1 if none

    def best_ask(self) -> int:
        mask = self.ask_mask
        return (mask & -mask).bit_length() - 1  # -1 if none


class OrderGroup:
    """An account's kill switch: the contracts its orders filled within the last
    `window_ms` of batch time, and whether they reached `contract_limit`."""

    __slots__ = ("contract_limit", "filled", "fills", "group_id", "triggered", "window_ms")

    def __init__(self, group_id: int, contract_limit: int, window_ms: int) -> None:
        self.group_id = group_id
        self.contract_limit = contract_limit
        self.window_ms = window_ms
        self.fills: deque[tuple[int, int]] = deque()  # (time_ms, contracts), oldest first
        self.filled = 0  # the sum of `fills`
        self.triggered = False

    def forget_before(self, now_ms: int) -> None:
        """Drop fills that are out of the window ending at `now_ms`."""
        start = now_ms - self.window_ms
        fills = self.fills
        while fills and fills[0][0] <= start:
            self.filled -= fills.popleft()[1]

    def add_fill(self, now_ms: int, contracts: int) -> bool:
        """Count a fill; True if it makes the group reach its limit (it triggers). Fills
        are kept in at most about 1,024 time buckets per window (a bucket is window_ms /  # float-ok
        1,024 wide, at least 1 ms), so a group's memory is bounded however it trades; a
        fill leaves the window with its bucket, up to one bucket early."""
        self.forget_before(now_ms)
        width = self.window_ms // _GROUP_BUCKETS or 1
        bucket = now_ms - now_ms % width
        fills = self.fills
        if fills and fills[-1][0] >= bucket:  # the same bucket (or a window made wider)
            fills[-1] = (fills[-1][0], fills[-1][1] + contracts)
        else:
            fills.append((bucket, contracts))
        self.filled += contracts
        return not self.triggered and self.filled >= self.contract_limit


class Account:
    __slots__ = (
        "account_id",
        "cash",
        "groups",
        "held",
        "markets",
        "name",
        "open_by_client_id",
        "orders",
        "public_key",
        "recent_client_ids",
        "recent_queue",
        "seq",
    )

    def __init__(self, account_id: int, name: str, public_key: bytes) -> None:
        self.account_id = account_id
        self.name = name
        self.public_key = public_key
        self.cash = 0
        self.held = 0
        self.seq = 0
        self.orders: dict[int, Order] = {}  # open orders by order_id
        self.open_by_client_id: dict[int, Order] = {}
        # The last accepted client_order_ids (FIFO, bounded): id -> order_id, and the queue
        # of (client_order_id, order_id) in acceptance order for eviction.
        self.recent_client_ids: dict[int, int] = {}
        self.recent_queue: deque[tuple[int, int]] = deque()
        self.markets: dict[int, AccountMarket] = {}
        self.groups: dict[int, OrderGroup] = {}  # by order_group_id


class AccountMarket:
    """An account's position, resting orders and hold in one market."""

    __slots__ = (
        "account",
        "ask_notional",
        "ask_prices",
        "ask_qty",
        "bid_notional",
        "bid_prices",
        "bid_qty",
        "hold",
        "maker_bound",
        "market",
        "orders",
        "position",
        "reduce_ask_qty",
        "reduce_bid_qty",
        "taker_bound",
        "trim_pending",
    )

    def __init__(self, account: Account, market: Market) -> None:
        self.account = account
        self.market = market
        self.position = 0  # + YES contracts, - NO contracts
        self.bid_qty = 0  # resting contracts on each side, and what they pay at their limits
        self.bid_notional = 0
        self.ask_qty = 0
        self.ask_notional = 0
        # Resting contracts by the price they pay (x), per side: what the hold's "cheapest
        # N - cap contracts" walks, a few distinct prices instead of every order.
        self.bid_prices: dict[int, int] = {}
        self.ask_prices: dict[int, int] = {}
        self.maker_bound = 0
        self.taker_bound = 0  # only while an incoming order of this account is matching
        self.reduce_bid_qty = 0
        self.reduce_ask_qty = 0
        self.hold = 0
        self.orders: dict[int, Order] = {}  # by order_id, in acceptance order
        self.trim_pending = False  # its position moved in this command: check reduce-only

    def count(self, order: Order, sign: int) -> None:
        """Add (sign 1) or take away (sign -1) the order's remaining contracts in the sums."""
        remaining = order.remaining * sign
        x = order.x
        if order.is_bid:
            self.bid_qty += remaining
            self.bid_notional += x * remaining
            prices = self.bid_prices
            if order.reduce_only:
                self.reduce_bid_qty += remaining
        else:
            self.ask_qty += remaining
            self.ask_notional += x * remaining
            prices = self.ask_prices
            if order.reduce_only:
                self.reduce_ask_qty += remaining
        if remaining:
            left = prices.get(x, 0) + remaining
            if left:
                prices[x] = left
            else:
                del prices[x]
        self.maker_bound += order.maker_bound * sign

    def add(self, order: Order) -> None:
        self.count(order, 1)
        self.orders[order.order_id] = order

    def remove(self, order: Order) -> None:
        self.count(order, -1)
        del self.orders[order.order_id]

    def reduce(self, order: Order, quantity: int) -> None:
        """The order's remaining quantity goes down by `quantity` (filled or trimmed)."""
        order.remaining -= quantity
        x = order.x
        if order.is_bid:
            self.bid_qty -= quantity
            self.bid_notional -= x * quantity
            prices = self.bid_prices
            if order.reduce_only:
                self.reduce_bid_qty -= quantity
        else:
            self.ask_qty -= quantity
            self.ask_notional -= x * quantity
            prices = self.ask_prices
            if order.reduce_only:
                self.reduce_ask_qty -= quantity
        left = prices[x] - quantity
        if left:
            prices[x] = left
        else:
            del prices[x]
        # Only an order that holds a maker fee bound (one that can rest) has one to shrink;
        # the bound never grows as contracts go, so one that holds 0 keeps 0. An incoming
        # IOC or fill-or-kill order never rests and must not start holding one mid-match.
        if order.maker_bound:
            bound = order.maker_fee_bound()
            self.maker_bound += bound - order.maker_bound
            order.maker_bound = bound

    def is_empty(self) -> bool:
        return not self.orders and not self.position and not self.hold

    def closing_capacity(self, is_bid: bool) -> int:
        """How many contracts orders on one side can close: NO held for bids, YES for asks."""
        position = self.position
        if is_bid:
            return -position if position < 0 else 0
        return position if position > 0 else 0


def resting_orders(market: Market) -> list[Order]:
    """Every resting order of a market: bids best first, then asks, in queue order."""
    result: list[Order] = []
    for level in reversed(market.bid_levels):
        if level is not None:
            result.extend(level.orders())
    for level in market.ask_levels:
        if level is not None:
            result.extend(level.orders())
    return result


def required_hold(am: AccountMarket) -> int:
    """The money an AccountMarket must hold for its resting (and incoming) orders."""
    position = am.position
    count = am.bid_qty
    if not count:
        bids = 0
    elif position >= 0:
        bids = am.bid_notional
    elif count <= -position:
        bids = 0
    else:
        bids = _cheapest(am, True, count + position)
    count = am.ask_qty
    if not count:
        asks = 0
    elif position <= 0:
        asks = am.ask_notional
    elif count <= position:
        asks = 0
    else:
        asks = _cheapest(am, False, count - position)
    return bids + asks + am.maker_bound + am.taker_bound


def _cheapest(am: AccountMarket, is_bid: bool, contracts: int) -> int:
    """The price of the cheapest `contracts` resting contracts on one side."""
    total = 0
    for x, quantity in sorted((am.bid_prices if is_bid else am.ask_prices).items()):
        take = quantity if quantity < contracts else contracts
        total += take * x
        contracts -= take
        if not contracts:
            break
    return total


def taker_fee_bound(order: Order, position: int) -> int:
    """The most the incoming order can still pay in taker fees for the contracts that open
    a position. Contracts that close one pay their fee out of the redemption (fees.py)."""
    if not order.taker_bps:
        return 0
    capacity = -position if order.is_bid else position
    opening = order.remaining - capacity if capacity > 0 else order.remaining
    if opening <= 0:
        return 0
    x = order.x
    basis_max = x * (PAYOUT - x) if 2 * x <= PAYOUT else (PAYOUT // 2) * (PAYOUT // 2)
    return fee_cents(order.taker_bps, order.taker_basis + opening * basis_max) - order.taker_fee
