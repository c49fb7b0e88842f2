"""The engine's state objects and the collateral rule.

Strategy: plain slotted classes with integer fields, mutated only by the engine. The book
of a market is two arrays of 100 price levels (index = YES price) with a bit mask of the
non-empty ones, so the best price is one bit operation; a level is an intrusive doubly
linked list of orders in time priority, so adding, filling and cancelling are O(1).

Collateral (docs/engine.md has the worked examples): the worst case over the outcomes.  # float-ok
Every resting order pays, per contract, its side price x: a bid (buy YES at p) pays x = p,
an ask (buy NO) pays x = 100 - p. Per AccountMarket, b is what its bids pay at their
limits plus every fee they can still cost, a the same for its asks; q is the position.
In the scenario "YES wins" every ask loses what it pays and every YES held pays 100; in
"NO wins" the bids lose and the NO held pays. So a market on its own holds

    hold = max(a - 100 max(q, 0), b - 100 max(-q, 0))   (never below 0)

Why this is enough, and the least that is: costs are linear in the fills and the payout
of a scenario is too, so for each scenario the worst fills are every order that loses in
it, in full; the max over scenarios is then the max over every way the orders can fill
of what the fills cost less what they add to the least payout. After any fill, what the
rest can cost is at most that max less what the fill cost: on a fill the account's cash
never falls (the engine asserts it), and check_invariants recomputes every hold.

A mutually exclusive event nets across its markets (AccountEvent): its scenarios are
"market k wins", and "none does" unless it is exhaustive. With B the sum of b over the
account's markets of the event and d_k = a_k - b_k - 100 q_k,

    hold     = B + 100 min_k q_k + max_k d_k
    released = 100 (N + min_k q_k)        (N: the NO contracts held in the event)

where min and max also take 0 when the account has nothing in some market of the event or
the event is not exhaustive. `released` is the guaranteed payout (the least the positions
pay in any scenario), paid to the account's cash ahead of settlement; every fill moves
it, and settlement pays each position less what was released. A market on its own is the
event of one market that is not exhaustive: the same formulas give the hold above and
released 0.

A futures market holds margin instead (FutureTerms, `futures_requirement`): positions are
not paid for, every fill settles its price's difference from the mark at once, and marks
move money between longs and shorts (engine.py, `_mark`). The hold of its AccountMarket is
the margin posted, a primary fact: at most the requirement, at least the maintenance
margin of the position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from . import constants
from .fees import fee_cents

PAYOUT = constants.contract_payout_cents
_GROUP_BUCKETS = 1_024  # time buckets per order group window
_UNBOUNDED = 2**64  # past any position or money of one market


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
        "event",
        "exclusive",
        "floor",
        "future",
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
        self.event: Event | None = None  # the event it belongs to, if any
        self.exclusive: Event | None = None  # the same, if that event is mutually exclusive
        self.future: FutureTerms | None = None  # a futures market's margins and mark

    def best_bid(self) -> int:
        return self.bid_mask.bit_length() - 1  # -1 if none

    def best_ask(self) -> int:
        mask = self.ask_mask
        return (mask & -mask).bit_length() - 1  # -1 if none


class FutureTerms:
    """A futures market's margins (cents per contract), its mark price and how the mark
    moves: at most `mark_band` a mark, by the engine every `mark_interval_ms` (0: only when
    told), from the book's mid or else its last trade."""

    __slots__ = (
        "initial_margin",
        "last_price",
        "maintenance_margin",
        "mark",
        "mark_band",
        "mark_interval_ms",
        "next_mark_ms",
    )

    def __init__(self) -> None:
        self.mark = constants.futures_mark_price_default
        self.initial_margin = constants.futures_initial_margin_default
        self.maintenance_margin = constants.futures_maintenance_margin_default
        self.mark_band = constants.futures_mark_band_default
        self.mark_interval_ms = 0
        self.next_mark_ms = 0  # the batch time of the next mark by the engine; 0: none
        self.last_price = 0  # of the last trade; 0: none yet


class Event:
    """A group of markets. Mutually exclusive: at most one of them resolves YES, so
    collateral nets across them (AccountEvent) and they settle together. Exhaustive: exactly
    one does, so a NO converts into a YES of every other market, and the exchange keeps
    the NO sets that conversions leave (`house_sets`: a NO in every market each, which
    pays exactly 100 (n - 1) whichever market wins)."""

    __slots__ = (
        "accounts",
        "event_id",
        "exhaustive",
        "house_sets",
        "markets",
        "mutually_exclusive",
        "released",
        "seq",
        "settled",
        "ticker",
        "winner",
    )

    def __init__(
        self, event_id: int, ticker: str, mutually_exclusive: bool, exhaustive: bool
    ) -> None:
        self.event_id = event_id
        self.ticker = ticker
        self.mutually_exclusive = mutually_exclusive
        self.exhaustive = exhaustive
        self.markets: list[Market] = []  # in market id order (the order they joined)
        self.accounts: dict[int, AccountEvent] = {}  # by account_id
        self.seq = 0
        self.settled = False
        self.winner = 0  # the market that won (0: none), once settled
        self.house_sets = 0
        # Paid out of the markets' escrows ahead of settlement: every account's released
        # payout, and the house's 100 (n - 1) per set.
        self.released = 0

    def house_released(self) -> int:
        """What the house's NO sets pay whichever market wins, released at conversion."""
        return PAYOUT * (len(self.markets) - 1) * self.house_sets


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
        "events",
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
        self.events: dict[int, AccountEvent] = {}  # mutually exclusive events, by event_id


class AccountMarket:
    """An account's position and resting orders in one market, and (in a market on its
    own) its hold; in a mutually exclusive event the AccountEvent holds for it."""

    __slots__ = (
        "account",
        "account_event",
        "ask_fee_bound",
        "ask_notional",
        "ask_qty",
        "bid_fee_bound",
        "bid_notional",
        "bid_qty",
        "hold",
        "market",
        "orders",
        "position",
        "reduce_ask_qty",
        "reduce_bid_qty",
        "taker_bid",
        "taker_bound",
        "trim_pending",
    )

    def __init__(self, account: Account, market: Market) -> None:
        self.account = account
        self.market = market
        self.account_event: AccountEvent | None = None  # set while it belongs to one
        self.position = 0  # + YES contracts, - NO contracts
        self.bid_qty = 0  # resting contracts on each side, and what they pay at their limits
        self.bid_notional = 0
        self.ask_qty = 0
        self.ask_notional = 0
        self.bid_fee_bound = 0  # the maker fee bounds of the side's resting orders
        self.ask_fee_bound = 0
        # Only while an incoming order of this account is matching: the most its remaining
        # contracts can still pay in taker fees, on its side (taker_bid).
        self.taker_bound = 0
        self.taker_bid = False
        self.reduce_bid_qty = 0
        self.reduce_ask_qty = 0
        self.hold = 0  # a market on its own only; 0 in a mutually exclusive event
        self.orders: dict[int, Order] = {}  # by order_id, in acceptance order
        self.trim_pending = False  # its position moved in this command: check reduce-only

    def count(self, order: Order, sign: int) -> None:
        """Add (sign 1) or take away (sign -1) the order's remaining contracts in the sums."""
        remaining = order.remaining * sign
        if order.is_bid:
            self.bid_qty += remaining
            self.bid_notional += order.x * remaining
            self.bid_fee_bound += order.maker_bound * sign
            if order.reduce_only:
                self.reduce_bid_qty += remaining
        else:
            self.ask_qty += remaining
            self.ask_notional += order.x * remaining
            self.ask_fee_bound += order.maker_bound * sign
            if order.reduce_only:
                self.reduce_ask_qty += remaining

    def add(self, order: Order) -> None:
        self.count(order, 1)
        self.orders[order.order_id] = order

    def remove(self, order: Order) -> None:
        self.count(order, -1)
        del self.orders[order.order_id]

    def reduce(self, order: Order, quantity: int) -> None:
        """The order's remaining quantity goes down by `quantity` (filled or trimmed)."""
        order.remaining -= quantity
        # Only an order that holds a maker fee bound (one that can rest) has one to shrink;
        # the bound never grows as contracts go, so one that holds 0 keeps 0. An incoming
        # IOC or fill-or-kill order never rests and must not start holding one mid-match.
        change = 0
        if order.maker_bound:
            bound = order.maker_fee_bound()
            change = bound - order.maker_bound
            order.maker_bound = bound
        if order.is_bid:
            self.bid_qty -= quantity
            self.bid_notional -= order.x * quantity
            self.bid_fee_bound += change
            if order.reduce_only:
                self.reduce_bid_qty -= quantity
        else:
            self.ask_qty -= quantity
            self.ask_notional -= order.x * quantity
            self.ask_fee_bound += change
            if order.reduce_only:
                self.reduce_ask_qty -= quantity

    def is_empty(self) -> bool:
        return not self.orders and not self.position and not self.hold

    def closing_capacity(self, is_bid: bool) -> int:
        """How many contracts orders on one side can close: NO held for bids, YES for asks."""
        position = self.position
        if is_bid:
            return -position if position < 0 else 0
        return position if position > 0 else 0


class AccountEvent:
    """An account's markets in one mutually exclusive event: one hold for all of them, and
    the payout released to it ahead of settlement (model docstring)."""

    __slots__ = ("account", "ams", "dirty", "event", "hold", "released")

    def __init__(self, account: Account, event: Event) -> None:
        self.account = account
        self.event = event
        self.ams: dict[int, AccountMarket] = {}  # by market_id
        self.hold = 0
        self.released = 0
        self.dirty = False  # released changed in this command: a PayoutReleased is owed


def join_event(event: Event, am: AccountMarket) -> AccountEvent:
    """Put a new AccountMarket of a mutually exclusive event in its account's AccountEvent
    (made on the account's first market of the event)."""
    account = am.account
    ae = account.events.get(event.event_id)
    if ae is None:
        ae = account.events[event.event_id] = AccountEvent(account, event)
        event.accounts[account.account_id] = ae
    ae.ams[am.market.market_id] = am
    am.account_event = ae
    return ae


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


def side_costs(am: AccountMarket) -> tuple[int, int]:
    """(b, a): what the account's bids and asks in the market pay if they all fill at their
    limits, every fee they can still cost included (the incoming order's too)."""
    bids = am.bid_notional + am.bid_fee_bound
    asks = am.ask_notional + am.ask_fee_bound
    taker = am.taker_bound
    if taker:
        if am.taker_bid:
            bids += taker
        else:
            asks += taker
    return bids, asks


def market_hold(am: AccountMarket) -> int:
    """The hold of an account in a market on its own: the worse of its two scenarios."""
    # side_costs written out: this runs on every order, cancel and fill of most markets
    bids = am.bid_notional + am.bid_fee_bound
    asks = am.ask_notional + am.ask_fee_bound
    taker = am.taker_bound
    if taker:
        if am.taker_bid:
            bids += taker
        else:
            asks += taker
    position = am.position
    if position > 0:
        asks -= PAYOUT * position
    elif position < 0:
        bids += PAYOUT * position
    return asks if asks > bids else bids


def event_risk(event: Event, ams: Iterable[AccountMarket], touched: int) -> tuple[int, int]:
    """(hold, released) of an account in a mutually exclusive event (model docstring), from
    its AccountMarkets there (`touched` of them)."""
    if not touched:
        return 0, 0
    if not event.exhaustive or touched < len(event.markets):
        # a market the account has nothing in (or "none wins") is a scenario with q = d = 0
        least = most = 0
    else:
        least, most = _UNBOUNDED, -_UNBOUNDED
    bids_total = 0
    no_held = 0
    for am in ams:
        bids, asks = side_costs(am)
        position = am.position
        bids_total += bids
        if position < 0:
            no_held -= position
        least = min(least, position)
        most = max(most, asks - bids - PAYOUT * position)
    return bids_total + PAYOUT * least + most, PAYOUT * (no_held + least)


def futures_requirement(am: AccountMarket, terms: FutureTerms) -> int:
    """The margin an account's position and orders in a futures market need: the initial
    margin on the largest position its orders can make (all its bids filling, or all its
    asks), what its orders would pay at their prices beyond the mark (a fill settles the
    difference at once), and every fee they can still cost."""
    position = am.position
    longest = position + am.bid_qty
    shortest = position - am.ask_qty
    exposure = max(abs(longest), abs(shortest))
    mark = terms.mark
    premium = 0
    for order in am.orders.values():
        price = order.price
        if order.is_bid:
            if price > mark:
                premium += (price - mark) * order.remaining
        elif price < mark:
            premium += (mark - price) * order.remaining
    return (
        terms.initial_margin * exposure
        + premium
        + am.bid_fee_bound
        + am.ask_fee_bound
        + am.taker_bound
    )


def taker_fee_bound(order: Order) -> int:
    """The most the incoming order's remaining contracts can still pay in taker fees, at
    the worst fill price its limit allows (p (100 - p) peaks at 50)."""
    if not order.taker_bps:
        return 0
    x = order.x
    basis_max = x * (PAYOUT - x) if 2 * x <= PAYOUT else (PAYOUT // 2) * (PAYOUT // 2)
    return (
        fee_cents(order.taker_bps, order.taker_basis + order.remaining * basis_max)
        - order.taker_fee
    )
