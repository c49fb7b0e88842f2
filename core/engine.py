"""The engine: `Engine.apply(batch)` is a pure function of the log.

Strategy (DESIGN.md section 1): the same batches applied to the same state give the same
events and state on every machine. So: integers only, time only from the batch (never
earlier than the previous batch's), ids assigned here in sequence, no iteration whose order
could differ between processes (dicts are iterated in insertion order, which the canonical
state restores; anything that emits events in a loop walks a sorted or queue order).

Every command yields exactly one outcome event first (accepted, or CommandRejected with the
rule that failed, checked in the fixed precedence of docs/engine.md), then its domain  # float-ok
events. A rejected command changes nothing but the account's event counter. The engine
never raises on input; an AssertionError here is a bug, and the node must stop.

Events are written in canonical form (the tuples `Record.to_canonical` gives), because this
is the hot path; `AppliedBatch.typed_events()` turns them into dataclasses.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from . import constants as limits
from .codes import (
    BookSide,
    CancelReason,
    Liquidity,
    MarketKind,
    MarketStatus,
    OrderFlag,
    OrderType,
    Reject,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from .commands import (
    Batch,
    CancelOrder,
    ConfigureMarket,
    ConvertNo,
    CreateAccount,
    CreateEvent,
    CreateMarket,
    Deposit,
    MarkMarket,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    ResetOrderGroup,
    SetMargins,
    SetMarketStatus,
    SetOrderGroup,
    SettleEvent,
    SettleMarket,
    Withdraw,
)
from .events import (
    EVENTS,
    AccountCreated,
    CommandRejected,
    Deposited,
    EventCreated,
    EventSettled,
    LevelUpdated,
    MarginsSet,
    MarketConfigured,
    MarketCreated,
    MarketMarked,
    MarketSettled,
    MarketStatusChanged,
    MassCancelled,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderGroupUpdated,
    OrderReplaced,
    PayoutReleased,
    PositionReduced,
    PositionsConverted,
    PositionSettled,
    TradePrinted,
    VariationMargin,
    Withdrawn,
)
from .fees import fee_cents
from .model import (
    Account,
    AccountEvent,
    AccountMarket,
    Event,
    FutureTerms,
    Level,
    Market,
    Order,
    OrderGroup,
    event_risk,
    futures_requirement,
    join_event,
    market_hold,
    resting_orders,
    taker_fee_bound,
)

# Plain ints for the hot path (an IntEnum attribute lookup costs more than a compare).
_PAYOUT = limits.contract_payout_cents
_ID_MAX = limits.id_max
_QTY_MAX = limits.order_quantity_max
_REMEMBERED_MAX = limits.client_order_ids_remembered_per_account_max

_BUY_YES, _SELL_YES, _BUY_NO, _SELL_NO = (int(s) for s in Side)
_LIMIT, _MARKET = int(OrderType.LIMIT), int(OrderType.MARKET)
_GTC, _IOC, _FOK, _GTD = (int(t) for t in TimeInForce)
_POST_ONLY, _REDUCE_ONLY = int(OrderFlag.POST_ONLY), int(OrderFlag.REDUCE_ONLY)
_FLAGS_ALL = _POST_ONLY | _REDUCE_ONLY
_STP_RESTING = int(SelfTradePrevention.CANCEL_RESTING)
_STP_AGGRESSING = int(SelfTradePrevention.CANCEL_AGGRESSING)
_STP_BOTH = int(SelfTradePrevention.CANCEL_BOTH)
_MAKER, _TAKER = int(Liquidity.MAKER), int(Liquidity.TAKER)
_BID, _ASK = int(BookSide.BID), int(BookSide.ASK)
_PROPOSED, _OPEN, _HALTED, _CLOSED, _SETTLED = (int(s) for s in MarketStatus)
_BINARY, _SCALAR, _FUTURE = (int(k) for k in MarketKind)
_CANCEL_REQUESTED = int(CancelReason.REQUESTED)
_CANCEL_MASS_CANCEL = int(CancelReason.MASS_CANCEL)
_CANCEL_SELF_TRADE_PREVENTED = int(CancelReason.SELF_TRADE_PREVENTED)
_CANCEL_IMMEDIATE_REMAINDER = int(CancelReason.IMMEDIATE_REMAINDER)
_CANCEL_EXPIRED = int(CancelReason.EXPIRED)
_CANCEL_MARKET_CLOSED = int(CancelReason.MARKET_CLOSED)
_CANCEL_REDUCE_ONLY_TRIMMED = int(CancelReason.REDUCE_ONLY_TRIMMED)
_CANCEL_MAX_COST_REACHED = int(CancelReason.MAX_COST_REACHED)
_CANCEL_ORDER_GROUP_TRIGGERED = int(CancelReason.ORDER_GROUP_TRIGGERED)
_CANCEL_MARGIN_SHORT = int(CancelReason.MARGIN_SHORT)
_LIQUIDATED, _DELEVERAGED = 1, 2  # PositionReduced reasons

_EV_ACCEPTED = OrderAccepted.CODE
_EV_REJECTED = CommandRejected.CODE
_EV_FILLED = OrderFilled.CODE
_EV_CANCELLED = OrderCancelled.CODE
_EV_REPLACED = OrderReplaced.CODE
_EV_MASS_CANCELLED = MassCancelled.CODE
_EV_ACCOUNT_CREATED = AccountCreated.CODE
_EV_DEPOSITED = Deposited.CODE
_EV_WITHDRAWN = Withdrawn.CODE
_EV_POSITION_SETTLED = PositionSettled.CODE
_EV_GROUP = OrderGroupUpdated.CODE
_EV_CONVERTED = PositionsConverted.CODE
_EV_RELEASED = PayoutReleased.CODE
_EV_EVENT_CREATED = EventCreated.CODE
_EV_EVENT_SETTLED = EventSettled.CODE
_EV_MARKED = MarketMarked.CODE
_EV_MARGINS = MarginsSet.CODE
_EV_VARIATION = VariationMargin.CODE
_EV_REDUCED = PositionReduced.CODE
_EV_MARKET_CREATED = MarketCreated.CODE
_EV_STATUS = MarketStatusChanged.CODE
_EV_CONFIGURED = MarketConfigured.CODE
_EV_LEVEL = LevelUpdated.CODE
_EV_TRADE = TradePrinted.CODE
_EV_SETTLED = MarketSettled.CODE

_R = Reject  # reasons are looked up once per reject, never on the accepted path

_TICKER = re.compile(r"[A-Z0-9][A-Z0-9._-]*\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*\Z")
_BANK_REFERENCE = re.compile(r"[\x21-\x7e]+\Z")  # printable ASCII, no spaces

_STATUS_TRANSITIONS = {
    (_PROPOSED, _OPEN),
    (_PROPOSED, _CLOSED),
    (_OPEN, _HALTED),
    (_OPEN, _CLOSED),
    (_HALTED, _OPEN),
    (_HALTED, _CLOSED),
}

STATE_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """What one batch did. `events` are canonical tuples; command i's events are
    `events[outcome_offsets[i]:outcome_offsets[i + 1]]`, its outcome first. Events before
    `outcome_offsets[0]` came from time passing (expiries, markets closing)."""

    index: int
    time_ms: int
    events: tuple[tuple[Any, ...], ...]
    outcome_offsets: tuple[int, ...]
    state_hash: bytes

    def typed_events(self) -> list[Any]:
        return [EVENTS.from_canonical(event) for event in self.events]

    def command_events(self, position: int) -> tuple[tuple[Any, ...], ...]:
        start = self.outcome_offsets[position]
        end = (
            self.outcome_offsets[position + 1]
            if position + 1 < len(self.outcome_offsets)
            else len(self.events)
        )
        return self.events[start:end]


class Engine:
    """The deterministic matching, clearing and settlement core of one exchange."""

    def __init__(self) -> None:
        self.time_ms = 0
        self.batches_applied = 0
        self.state_hash = bytes(STATE_HASH_SIZE)
        self.accounts: dict[int, Account] = {}
        self.account_ids_by_name: dict[str, int] = {}
        self.markets: dict[int, Market] = {}
        self.market_ids_by_ticker: dict[str, int] = {}
        self.events: dict[int, Event] = {}  # groups of markets, by event_id
        self.event_ids_by_ticker: dict[str, int] = {}
        self.orders: dict[int, Order] = {}  # every open order by order_id
        self.next_account_id = 1
        self.next_market_id = 1
        self.next_event_id = 1
        self.next_order_id = 1
        self.next_trade_id = 1
        self.bank_references: dict[str, int] = {}  # reference -> the account it moved money for
        self.fees_collected = 0
        self.deposits_total = 0
        self.withdrawals_total = 0
        # (expire_time_ms, order_id) of GTD orders; entries of orders no longer open stay
        # until they come up or the heap is rebuilt (gtd_open counts the live ones).
        self.gtd_heap: list[tuple[int, int]] = []
        self.gtd_open = 0
        self.close_heap: list[tuple[int, int]] = []  # (close_time_ms, market_id)
        self.mark_heap: list[tuple[int, int]] = []  # (next_mark_ms, market_id) of futures
        self._events: list[tuple[Any, ...]] = []
        self._dirty_levels: list[Level] = []
        self._pending_trims: list[AccountMarket] = []
        self._triggered_groups: list[tuple[Account, OrderGroup]] = []
        self._dirty_releases: list[AccountEvent] = []  # released payouts moved this command
        self._packer = msgpack.Packer(use_bin_type=True)
        self._handlers = {
            NewOrder.CODE: (len(NewOrder.FIELDS) + 1, self._new_order),
            CancelOrder.CODE: (len(CancelOrder.FIELDS) + 1, self._cancel_order),
            ReplaceOrder.CODE: (len(ReplaceOrder.FIELDS) + 1, self._replace_order),
            MassCancel.CODE: (len(MassCancel.FIELDS) + 1, self._mass_cancel),
            SetOrderGroup.CODE: (len(SetOrderGroup.FIELDS) + 1, self._set_order_group),
            ResetOrderGroup.CODE: (len(ResetOrderGroup.FIELDS) + 1, self._reset_order_group),
            ConvertNo.CODE: (len(ConvertNo.FIELDS) + 1, self._convert_no),
            CreateAccount.CODE: (len(CreateAccount.FIELDS) + 1, self._create_account),
            Deposit.CODE: (len(Deposit.FIELDS) + 1, self._deposit),
            Withdraw.CODE: (len(Withdraw.FIELDS) + 1, self._withdraw),
            CreateMarket.CODE: (len(CreateMarket.FIELDS) + 1, self._create_market),
            SetMarketStatus.CODE: (len(SetMarketStatus.FIELDS) + 1, self._set_market_status),
            SettleMarket.CODE: (len(SettleMarket.FIELDS) + 1, self._settle_market),
            ConfigureMarket.CODE: (len(ConfigureMarket.FIELDS) + 1, self._configure_market),
            CreateEvent.CODE: (len(CreateEvent.FIELDS) + 1, self._create_event),
            SettleEvent.CODE: (len(SettleEvent.FIELDS) + 1, self._settle_event),
            SetMargins.CODE: (len(SetMargins.FIELDS) + 1, self._set_margins),
            MarkMarket.CODE: (len(MarkMarket.FIELDS) + 1, self._mark_market),
        }

    # -- The log ------------------------------------------------------------------------------

    def apply(self, batch: Batch, after_command: Callable[[], None] | None = None) -> AppliedBatch:
        """Apply one batch; return its events. Never raises on any input.

        `after_command`, if given, is called after each command: the engine reads no clock,
        but a benchmark can time commands one by one with it."""
        events: list[tuple[Any, ...]] = []
        self._events = events
        offsets: list[int] = []
        time_ms = getattr(batch, "time_ms", None)
        commands = getattr(batch, "commands", None)
        if type(commands) is not tuple and type(commands) is not list:
            commands = ()
        if type(time_ms) is not int or not 0 <= time_ms <= limits.time_ms_max:
            for command in commands:
                offsets.append(len(events))
                self._reject_shape(command, _R.BATCH_TIME_MUST_BE_VALID)
        else:
            self.time_ms = max(self.time_ms, time_ms)
            self._advance_time()
            if len(commands) > limits.batch_commands_max:
                for command in commands:
                    offsets.append(len(events))
                    self._reject_shape(command, _R.BATCH_MUST_NOT_EXCEED_COMMANDS_MAX)
            else:
                handlers = self._handlers
                dirty = self._dirty_levels
                for command in commands:
                    offsets.append(len(events))
                    if (type(command) is tuple or type(command) is list) and command:
                        code = command[0]
                        entry = handlers.get(code) if type(code) is int else None
                        if entry is None:
                            self._reject_shape(command, _R.COMMAND_CODE_MUST_BE_KNOWN)
                        elif len(command) != entry[0]:
                            self._reject_shape(command, _R.COMMAND_MUST_BE_WELL_FORMED)
                        else:
                            entry[1](command)
                            if self._pending_trims:
                                self._flush_trims()
                            if self._triggered_groups:
                                self._flush_triggered_groups()
                            if self._dirty_releases:
                                self._flush_releases()
                            if dirty:
                                self._flush_levels()
                    else:
                        self._reject_shape(command, _R.COMMAND_MUST_BE_WELL_FORMED)
                    if after_command is not None:
                        after_command()
        self.batches_applied += 1
        self.state_hash = hashlib.blake2b(
            self.state_hash + self._packer.pack((self.time_ms, events)),
            digest_size=STATE_HASH_SIZE,
        ).digest()
        return AppliedBatch(
            self.batches_applied, self.time_ms, tuple(events), tuple(offsets), self.state_hash
        )

    def apply_entry(self, entry: bytes) -> AppliedBatch:
        """Apply one log entry as bytes. An entry that is not a batch at all applies as a
        batch with no commands and no time, so every replica still moves its hash."""
        try:
            batch = Batch.decode(entry)
        except ValueError:
            batch = Batch(-1, ())
        return self.apply(batch)

    # -- Time -------------------------------------------------------------------------------

    def _advance_time(self) -> None:
        now = self.time_ms
        heap = self.gtd_heap
        while heap and heap[0][0] <= now:
            expire_time_ms, order_id = heapq.heappop(heap)
            order = self.orders.get(order_id)
            if order is not None and order.expire_time_ms == expire_time_ms:
                self._cancel(order, _CANCEL_EXPIRED)
        closes = self.close_heap
        while closes and closes[0][0] <= now:
            close_time_ms, market_id = heapq.heappop(closes)
            market = self.markets[market_id]
            if market.close_time_ms == close_time_ms and market.status in (
                _PROPOSED,
                _OPEN,
                _HALTED,
            ):
                self._close_market(market)
        marks = self.mark_heap
        while marks and marks[0][0] <= now:
            mark_ms, market_id = heapq.heappop(marks)
            market = self.markets[market_id]
            terms = market.future
            assert terms is not None
            if terms.next_mark_ms != mark_ms:
                continue  # rescheduled since, or stopped (closed)
            if market.status == _OPEN or market.status == _HALTED:
                self._mark(market, self._book_mark(market))
            # (a proposed market's marks start when it opens; a closed one's have stopped)
            terms.next_mark_ms = now + terms.mark_interval_ms
            heapq.heappush(marks, (terms.next_mark_ms, market_id))
        if self._pending_trims:  # marks may have liquidated what reduce-only orders close
            self._flush_trims()
        if self._dirty_levels:
            self._flush_levels()

    # -- Rejects ---------------------------------------------------------------------------

    def _reject(
        self,
        account: Account | None,
        command_code: int,
        client_order_id: int,
        related_id: int,
        reason: Reject,
    ) -> None:
        # Ids are echoed back only when they are ids: a number out of range (a log entry can
        # hold any integer msgpack can) is reported as 0, so every event stays packable.
        if not 0 <= client_order_id <= _ID_MAX:
            client_order_id = 0
        if not 0 <= related_id <= _ID_MAX:
            related_id = 0
        if account is None:
            self._events.append(
                (_EV_REJECTED, 0, 0, command_code, client_order_id, related_id, int(reason))
            )
        else:
            account.seq += 1
            self._events.append(
                (
                    _EV_REJECTED,
                    account.account_id,
                    account.seq,
                    command_code,
                    client_order_id,
                    related_id,
                    int(reason),
                )
            )

    def _reject_shape(self, command: Any, reason: Reject) -> None:
        code = 0
        if (
            (type(command) is tuple or type(command) is list)
            and command
            and type(command[0]) is int
            and 0 <= command[0] <= _ID_MAX
        ):
            code = command[0]
        self._reject(None, code, 0, 0, reason)

    # -- Order entry -------------------------------------------------------------------------

    def _new_order(self, command: Any) -> None:
        (
            code,
            account_id,
            client_order_id,
            market_id,
            side,
            price,
            quantity,
            order_type,
            time_in_force,
            flags,
            stp,
            expire_time_ms,
            max_cost,
            order_group_id,
        ) = command
        if (
            type(account_id) is not int
            or type(client_order_id) is not int
            or type(market_id) is not int
            or type(side) is not int
            or type(price) is not int
            or type(quantity) is not int
            or type(order_type) is not int
            or type(time_in_force) is not int
            or type(flags) is not int
            or type(stp) is not int
            or type(expire_time_ms) is not int
            or type(max_cost) is not int
            or type(order_group_id) is not int
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
        if not 0 < client_order_id <= _ID_MAX:
            return self._reject(account, code, 0, 0, _R.CLIENT_ORDER_ID_MUST_BE_IN_RANGE)
        existing = account.open_by_client_id.get(client_order_id)
        if existing is not None:
            return self._reject(account, code, client_order_id, existing.order_id, _R.EXISTS)
        remembered = account.recent_client_ids.get(client_order_id)
        if remembered is not None:
            return self._reject(account, code, client_order_id, remembered, _R.EXISTS)
        if not 1 <= side <= 4:
            return self._reject(account, code, client_order_id, 0, _R.SIDE_MUST_BE_KNOWN)
        if order_type != _LIMIT and order_type != _MARKET:
            return self._reject(account, code, client_order_id, 0, _R.ORDER_TYPE_MUST_BE_KNOWN)
        if not 1 <= time_in_force <= 4:
            return self._reject(account, code, client_order_id, 0, _R.TIME_IN_FORCE_MUST_BE_KNOWN)
        is_market = order_type == _MARKET
        if is_market and time_in_force != _IOC and time_in_force != _FOK:
            return self._reject(
                account, code, client_order_id, 0, _R.MARKET_ORDER_MUST_BE_IMMEDIATE
            )
        if not (0 if is_market else 1) <= price <= 99:
            return self._reject(
                account, code, client_order_id, 0, _R.PRICE_MUST_BE_BETWEEN_1_AND_99
            )
        if quantity <= 0:
            return self._reject(account, code, client_order_id, 0, _R.QUANTITY_MUST_BE_POSITIVE)
        if quantity > _QTY_MAX:
            return self._reject(account, code, client_order_id, 0, _R.QUANTITY_MUST_NOT_EXCEED_MAX)
        if flags & ~_FLAGS_ALL or flags < 0:
            return self._reject(account, code, client_order_id, 0, _R.FLAGS_MUST_BE_KNOWN)
        rests = time_in_force == _GTC or time_in_force == _GTD
        if flags & _POST_ONLY and not rests:
            return self._reject(
                account, code, client_order_id, 0, _R.POST_ONLY_MUST_BE_A_RESTING_LIMIT
            )
        if not 1 <= stp <= 3:
            return self._reject(
                account, code, client_order_id, 0, _R.SELF_TRADE_PREVENTION_MUST_BE_KNOWN
            )
        if time_in_force == _GTD:
            if expire_time_ms <= self.time_ms:
                return self._reject(
                    account, code, client_order_id, 0, _R.EXPIRE_TIME_MUST_BE_IN_FUTURE
                )
            if expire_time_ms - self.time_ms > limits.gtd_horizon_ms_max:
                return self._reject(
                    account, code, client_order_id, 0, _R.EXPIRE_TIME_MUST_BE_WITHIN_HORIZON
                )
        elif expire_time_ms:
            return self._reject(
                account, code, client_order_id, 0, _R.EXPIRE_TIME_MUST_BE_SET_ONLY_FOR_GTD
            )
        if max_cost:
            if not is_market:
                return self._reject(
                    account, code, client_order_id, 0, _R.MAX_COST_MUST_BE_FOR_MARKET_ORDERS_ONLY
                )
            if not 0 < max_cost <= limits.market_order_max_cost_cents_max:
                return self._reject(account, code, client_order_id, 0, _R.MAX_COST_MUST_BE_IN_RANGE)
        if not 0 <= order_group_id <= limits.order_group_id_max:
            return self._reject(
                account, code, client_order_id, 0, _R.ORDER_GROUP_ID_MUST_BE_IN_RANGE
            )
        market = self.markets.get(market_id)
        if market is None:
            return self._reject(account, code, client_order_id, 0, _R.MARKET_MUST_EXIST)
        if market.status != _OPEN:
            return self._reject(account, code, client_order_id, 0, _R.MARKET_MUST_BE_OPEN)
        terms = market.future
        if max_cost and terms is not None:
            return self._reject(
                account, code, client_order_id, 0, _R.MAX_COST_MUST_NOT_BE_SET_FOR_FUTURES
            )
        group = None
        if order_group_id:
            group = account.groups.get(order_group_id)
            if group is None:
                return self._reject(
                    account, code, client_order_id, order_group_id, _R.ORDER_GROUP_MUST_EXIST
                )
            if group.triggered:
                return self._reject(
                    account,
                    code,
                    client_order_id,
                    order_group_id,
                    _R.ORDER_GROUP_MUST_NOT_BE_TRIGGERED,
                )

        # The order in YES terms: bids buy YES (BUY_YES, SELL_NO), asks buy NO.
        is_bid = side == _BUY_YES or side == _SELL_NO
        # A market order without a worst price pays up to 99 per contract: a buy's own price
        # is what it pays, a sell's is what it receives.
        own_price = price or (99 if side == _BUY_YES or side == _BUY_NO else 1)
        yes_price = own_price if side <= _SELL_YES else _PAYOUT - own_price
        if is_bid:
            mask = market.ask_mask
            crosses = mask != 0 and (mask & -mask).bit_length() - 1 <= yes_price
        else:
            mask = market.bid_mask
            crosses = mask != 0 and mask.bit_length() - 1 >= yes_price
        if flags & _POST_ONLY and crosses:
            return self._reject(account, code, client_order_id, 0, _R.POST_ONLY_MUST_NOT_TAKE)
        effective = quantity  # contracts the order can trade now; less for market orders
        stop_reason = 0
        own_stop = None  # the account's own order a market order stops at (self-trade)
        worst_yes = yes_price
        if is_market:
            effective, last_price, own_stop = self._reach(
                market, account, is_bid, yes_price, stp, quantity, max_cost, market.taker_bps
            )
            if own_stop is not None:
                stop_reason = _CANCEL_SELF_TRADE_PREVENTED
            elif effective < quantity and max_cost:
                stop_reason = _CANCEL_MAX_COST_REACHED
            if effective:
                yes_price = last_price  # collateral at the worst price it will really pay
            crosses = effective > 0
        if time_in_force == _FOK and (
            effective < quantity
            if is_market
            else not crosses
            or self._reach(market, account, is_bid, yes_price, stp, quantity, 0, 0)[0] < quantity
        ):
            return self._reject(
                account, code, client_order_id, 0, _R.FILL_OR_KILL_MUST_FILL_COMPLETELY
            )
        am = account.markets.get(market_id)
        created = am is None
        if am is None:
            am = AccountMarket(account, market)
        position = am.position
        reduce_only = flags & _REDUCE_ONLY
        if is_bid:
            if reduce_only and am.reduce_bid_qty + effective > -position:
                return self._reject(
                    account, code, client_order_id, 0, _R.REDUCE_ONLY_MUST_REDUCE_POSITION
                )
            if position + am.bid_qty + effective > market.position_limit:
                return self._reject(
                    account, code, client_order_id, 0, _R.POSITION_MUST_STAY_WITHIN_LIMIT
                )
        else:
            if reduce_only and am.reduce_ask_qty + effective > position:
                return self._reject(
                    account, code, client_order_id, 0, _R.REDUCE_ONLY_MUST_REDUCE_POSITION
                )
            if am.ask_qty + effective - position > market.position_limit:
                return self._reject(
                    account, code, client_order_id, 0, _R.POSITION_MUST_STAY_WITHIN_LIMIT
                )
        if rests:
            if len(account.orders) >= limits.open_orders_per_account_max:
                return self._reject(
                    account,
                    code,
                    client_order_id,
                    0,
                    _R.OPEN_ORDERS_PER_ACCOUNT_MUST_NOT_EXCEED_MAX,
                )
            if market.open_orders >= limits.open_orders_per_market_max:
                return self._reject(
                    account, code, client_order_id, 0, _R.OPEN_ORDERS_PER_MARKET_MUST_NOT_EXCEED_MAX
                )

        order_id = self.next_order_id
        order = Order(
            order_id,
            client_order_id,
            account,
            am,
            market,
            side,
            is_bid,
            yes_price,
            effective,
            order_type,
            time_in_force,
            flags,
            stp,
            expire_time_ms,
            market.taker_bps,
            market.maker_bps,
        )
        order.group = group
        if rests and order.maker_bps:
            order.maker_bound = order.maker_fee_bound()
        if is_market:
            order.unreached = quantity - effective
        required_before = futures_requirement(am, terms) if terms is not None else 0
        am.add(order)
        if crosses:
            am.taker_bound = taker_fee_bound(order)
            am.taker_bid = is_bid
        exclusive = market.exclusive
        if terms is not None:
            # Margin grows by what the order adds to the requirement (a shortfall a mark
            # left stays as it is: the next mark tops it up or liquidates)
            need = futures_requirement(am, terms) - required_before
            new_hold = am.hold + need
        elif exclusive is None:
            new_hold = market_hold(am)
            need = new_hold - am.hold
        else:
            new_hold, need = self._event_hold_with(exclusive, account, am, created)
        if need > account.cash:
            am.remove(order)
            am.taker_bound = 0
            return self._reject(account, code, client_order_id, 0, _R.COLLATERAL_MUST_COVER_ORDER)

        # Accepted: from here on nothing can fail.
        self.next_order_id = order_id + 1
        if created:
            account.markets[market_id] = am
            market.ams[account_id] = am
            if exclusive is not None:
                join_event(exclusive, am)
        account.cash -= need
        account.held += need
        if exclusive is None:
            am.hold = new_hold
        else:
            account.events[exclusive.event_id].hold = new_hold
        account.orders[order_id] = order
        account.open_by_client_id[client_order_id] = order
        self.orders[order_id] = order
        account.recent_client_ids[client_order_id] = order_id
        queue = account.recent_queue
        queue.append((client_order_id, order_id))
        if len(queue) > _REMEMBERED_MAX:
            self._forget_oldest_client_id(account)
        account.seq += 1
        self._events.append(
            (
                _EV_ACCEPTED,
                account_id,
                account.seq,
                order_id,
                client_order_id,
                market_id,
                side,
                order_type,
                time_in_force,
                price,
                quantity,
                flags,
                expire_time_ms,
            )
        )
        if not crosses and rests:
            # Nothing to match: the order rests and the hold computed above is final. This
            # is the most frequent path, so `_rest` is written out here.
            if is_bid:
                level = market.bid_levels[yes_price]
                if level is None:
                    level = market.bid_levels[yes_price] = Level(market, True, yes_price)
                market.bid_mask |= 1 << yes_price
            else:
                level = market.ask_levels[yes_price]
                if level is None:
                    level = market.ask_levels[yes_price] = Level(market, False, yes_price)
                market.ask_mask |= 1 << yes_price
            tail = level.tail
            order.prev = tail
            order.level = level
            if tail is None:
                level.head = order
            else:
                tail.next = order
            level.tail = order
            level.quantity += quantity
            level.count += 1
            market.open_orders += 1
            if not level.dirty:
                level.dirty = True
                self._dirty_levels.append(level)
            if time_in_force == _GTD:
                self.gtd_open += 1
                heapq.heappush(self.gtd_heap, (expire_time_ms, order_id))
            return None
        if crosses:
            stop_reason = self._match(order, market) or stop_reason
            am.taker_bound = 0
        if own_stop is not None and stp == _STP_BOTH:
            # Matching filled what came before the account's own order and stopped there,
            # as the walk said; cancel-both takes that resting order too.
            self._cancel(own_stop, _CANCEL_SELF_TRADE_PREVENTED)
        elif is_market and stp == _STP_RESTING and effective < quantity and not stop_reason:
            # A market order with quantity left meets, like an IOC at its worst price, the
            # rest of the book up to that price: only its own orders are left there.
            for level in self._levels_within(market, not is_bid, worst_yes):
                for resting in level.orders():
                    if resting.account is account:
                        self._cancel(resting, _CANCEL_SELF_TRADE_PREVENTED)
        if order.remaining and rests and not stop_reason:
            self._rest(order)
        elif order.remaining or effective < quantity:
            self._unregister(order)
            self._emit_cancelled(
                order,
                order.remaining + order.unreached,
                stop_reason or _CANCEL_IMMEDIATE_REMAINDER,
            )
        else:
            self._unregister(order)
        self._rehold(am)
        self._drop_if_empty(am)
        return None

    def _reach(
        self,
        market: Market,
        account: Account,
        is_bid: bool,
        limit: int,
        stp: int,
        quantity: int,
        max_cost: int,
        taker_bps: int,
    ) -> tuple[int, int, Order | None]:
        """What an immediate order would fill now, walking the book exactly as matching
        will: the contracts, the last YES price reached, and the account's own resting
        order it stops at (cancel-aggressing or cancel-both), if any. It stops at the limit,
        at `quantity`, or where `max_cost` (fees included, 0 for none) runs out. Reduce-only
        makers are capped by their position as earlier fills of the same walk move it."""
        filled = 0
        spent = 0
        basis = 0
        fee = 0
        last_price = limit
        positions: dict[int, int] = {}  # by account: makers with reduce-only orders, as walked
        for level in self._levels_within(market, not is_bid, limit):
            price = level.price
            x = price if is_bid else _PAYOUT - price
            b = price * (_PAYOUT - price)
            resting = level.head
            while resting is not None:
                if resting.account is account:
                    if stp != _STP_RESTING:
                        return filled, last_price, resting
                    resting = resting.next
                    continue
                take = min(resting.remaining, quantity - filled)
                maker = resting.am
                tracked = maker.reduce_bid_qty or maker.reduce_ask_qty
                if tracked and resting.reduce_only:
                    position = positions.get(resting.account.account_id, maker.position)
                    if resting.is_bid:
                        capacity = -position if position < 0 else 0
                    else:
                        capacity = position if position > 0 else 0
                    take = min(take, capacity)
                if max_cost and take > 0:
                    # the most contracts that fit: the cost is increasing in contracts
                    room = max_cost - spent
                    estimate = (
                        room
                        * limits.fee_denominator
                        // (x * limits.fee_denominator + taker_bps * b)
                    )
                    take = min(take, estimate + 1)
                    while (
                        take > 0 and take * x + fee_cents(taker_bps, basis + take * b) - fee > room
                    ):
                        take -= 1
                    if take <= 0:
                        return filled, last_price, None
                    spent += take * x + fee_cents(taker_bps, basis + take * b) - fee
                    basis += take * b
                    fee = fee_cents(taker_bps, basis)
                if take > 0:
                    filled += take
                    last_price = price
                    if tracked:
                        key = resting.account.account_id
                        position = positions.get(key, maker.position)
                        positions[key] = position + take if resting.is_bid else position - take
                    if filled == quantity:
                        return filled, last_price, None
                resting = resting.next
        return filled, last_price, None

    @staticmethod
    def _levels_within(market: Market, bids: bool, limit: int) -> list[Level]:
        """The levels of one side an order with this YES limit can reach, best first."""
        if bids:
            mask = market.bid_mask
            levels = market.bid_levels
            return [
                levels[price]  # type: ignore[misc]
                for price in range(mask.bit_length() - 1, limit - 1, -1)
                if mask >> price & 1
            ]
        mask = market.ask_mask
        levels = market.ask_levels
        return [
            levels[price]  # type: ignore[misc]
            for price in range((mask & -mask).bit_length() - 1, limit + 1)
            if price >= 0 and mask >> price & 1
        ]

    def _match(self, order: Order, market: Market) -> int:
        """Match an incoming order against the book; return a cancel reason if matching
        must stop with quantity left (self-trade prevention), else 0."""
        is_bid = order.is_bid
        limit = order.price
        account = order.account
        stp = order.self_trade_prevention
        levels = market.ask_levels if is_bid else market.bid_levels
        while order.remaining:
            if is_bid:
                mask = market.ask_mask
                if not mask:
                    return 0
                price = (mask & -mask).bit_length() - 1
                if price > limit:
                    return 0
            else:
                mask = market.bid_mask
                if not mask:
                    return 0
                price = mask.bit_length() - 1
                if price < limit:
                    return 0
            level = levels[price]
            assert level is not None
            while order.remaining:
                # The head is always the next order: each step fills it completely, cancels
                # it, or finishes the incoming order. Cancels and trims elsewhere in the
                # level can happen in between, so the head is read again every time.
                resting = level.head
                if resting is None:
                    break
                if resting.account is account:
                    if stp != _STP_AGGRESSING:
                        self._cancel(resting, _CANCEL_SELF_TRADE_PREVENTED)
                    if stp != _STP_RESTING:
                        return _CANCEL_SELF_TRADE_PREVENTED
                    continue
                if resting.reduce_only:
                    # It may only close what its account holds now, which earlier fills of
                    # this sweep may have shrunk: the rest of it is cancelled first.
                    capacity = resting.am.closing_capacity(resting.is_bid)
                    if capacity < resting.remaining:
                        self._trim(resting, resting.remaining - capacity)
                        continue
                self._trade(order, resting, price)
        return 0

    def _trade(self, taker: Order, maker: Order, price: int) -> None:
        quantity = min(taker.remaining, maker.remaining)
        trade_id = self.next_trade_id
        self.next_trade_id = trade_id + 1
        market = maker.market
        if market.future is not None:
            market.future.last_price = price
        level = maker.level
        assert level is not None
        level.quantity -= quantity
        if not level.dirty:
            level.dirty = True
            self._dirty_levels.append(level)
        events = self._events
        market.seq += 1
        events.append(
            (
                _EV_TRADE,
                market.market_id,
                market.seq,
                trade_id,
                price,
                quantity,
                _BID if taker.is_bid else _ASK,
            )
        )
        self._fill(taker, price, quantity, trade_id, _TAKER)
        self._fill(maker, price, quantity, trade_id, _MAKER)
        maker_am = maker.am
        if not maker.remaining:
            self._unlink(maker)
            self._unregister(maker)
            if not maker_am.orders and not maker_am.position and not maker_am.hold:
                self._drop(maker_am)

    def _fill(self, order: Order, price: int, quantity: int, trade_id: int, liquidity: int) -> None:
        """Move the money and position of one side of a trade."""
        am = order.am
        account = am.account
        market = order.market
        b = price * (_PAYOUT - price)
        if liquidity == _TAKER:
            basis = order.taker_basis + quantity * b
            order.taker_basis = basis
            total = fee_cents(order.taker_bps, basis)
            fee = total - order.taker_fee
            order.taker_fee = total
        else:
            basis = order.maker_basis + quantity * b
            order.maker_basis = basis
            total = fee_cents(order.maker_bps, basis)
            fee = total - order.maker_fee
            order.maker_fee = total
        am.reduce(order, quantity)
        if market.future is not None:
            self._fill_future(order, am, price, quantity, fee, liquidity)
            self._filled(order, account, market, price, quantity, trade_id, liquidity, fee)
            return
        position = am.position
        if order.is_bid:
            paid = price * quantity
            redeemed = -position if position < 0 else 0
            redeemed = min(redeemed, quantity)
            market.open_interest += quantity - redeemed
            position += quantity
        else:
            paid = (_PAYOUT - price) * quantity
            redeemed = position if position > 0 else 0
            redeemed = min(redeemed, quantity)
            market.open_interest -= redeemed
            position -= quantity
        am.position = position
        if (am.reduce_bid_qty or am.reduce_ask_qty) and not am.trim_pending:
            am.trim_pending = True
            self._pending_trims.append(am)
        market.escrow += paid - _PAYOUT * redeemed
        if liquidity == _TAKER:
            am.taker_bound = taker_fee_bound(order)
        ae = am.account_event
        if ae is None:
            old_hold = am.hold
            new_hold = market_hold(am)
            am.hold = new_hold
            released = 0
        else:
            old_hold = ae.hold
            new_hold, now_released = event_risk(ae.event, ae.ams.values(), len(ae.ams))
            ae.hold = new_hold
            released = now_released - ae.released  # paid out of escrow (or back into it)
            if released:
                ae.released = now_released
                ae.event.released += released
                if not ae.dirty:
                    ae.dirty = True
                    self._dirty_releases.append(ae)
        account.held += new_hold - old_hold
        cash = account.cash + old_hold - new_hold - paid - fee + _PAYOUT * redeemed + released
        # The hold covers every way the orders can fill, so no fill can cost more than it
        # frees (model docstring): available cash never falls on a fill.
        assert cash >= account.cash, "a fill took more money than the account held for it"
        account.cash = cash
        self._filled(order, account, market, price, quantity, trade_id, liquidity, fee)

    def _filled(
        self,
        order: Order,
        account: Account,
        market: Market,
        price: int,
        quantity: int,
        trade_id: int,
        liquidity: int,
        fee: int,
    ) -> None:
        """What every fill does once its money has moved: the fee, the order group, the
        report."""
        self.fees_collected += fee
        group = order.group
        if group is not None and group.add_fill(self.time_ms, quantity):
            group.triggered = True  # its orders are cancelled once the command is done
            self._triggered_groups.append((account, group))
        account.seq += 1
        self._events.append(
            (
                _EV_FILLED,
                account.account_id,
                account.seq,
                order.order_id,
                order.client_order_id,
                market.market_id,
                trade_id,
                order.side,
                price if order.side <= _SELL_YES else _PAYOUT - price,
                quantity,
                fee,
                order.remaining + order.unreached,
                liquidity,
                order.am.position,
            )
        )

    def _fill_future(
        self, order: Order, am: AccountMarket, price: int, quantity: int, fee: int, liquidity: int
    ) -> None:
        """A futures fill: positions move, and the price's difference from the mark is
        settled at once (the buyer pays (price - mark) per contract to the seller, or is
        paid it), so every position is always at the mark. What the account owes comes out
        of its margin, which its order's requirement covered; margin beyond what is left
        to cover goes back to its cash."""
        account = am.account
        market = order.market
        terms = market.future
        assert terms is not None
        before = am.position
        after = before + quantity if order.is_bid else before - quantity
        am.position = after
        market.open_interest += (after if after > 0 else 0) - (before if before > 0 else 0)
        if (am.reduce_bid_qty or am.reduce_ask_qty) and not am.trim_pending:
            am.trim_pending = True
            self._pending_trims.append(am)
        premium = (price - terms.mark) * quantity
        owed = (premium if order.is_bid else -premium) + fee
        margin = am.hold
        cash = account.cash
        if owed > 0:
            margin -= owed
            assert margin >= 0, "a futures fill took more than the margin held for it"
        else:
            cash -= owed
        if liquidity == _TAKER:
            am.taker_bound = taker_fee_bound(order)
        required = futures_requirement(am, terms)
        if margin > required:
            cash += margin - required
            margin = required
        assert margin >= terms.maintenance_margin * abs(after), "a fill broke maintenance"
        assert cash >= account.cash, "a fill took more money than the account held for it"
        account.held += margin - am.hold
        am.hold = margin
        account.cash = cash

    def _flush_trims(self) -> None:
        """After a command, reduce-only orders never add up to more than the position they
        reduce: where fills shrank a position, the newest ones are trimmed first."""
        pending = self._pending_trims
        self._pending_trims = []
        for am in pending:
            am.trim_pending = False
            excess_bids = am.reduce_bid_qty - am.closing_capacity(True)
            excess_asks = am.reduce_ask_qty - am.closing_capacity(False)
            if excess_bids <= 0 and excess_asks <= 0:
                continue
            for order in reversed(list(am.orders.values())):
                if not order.reduce_only:
                    continue
                if order.is_bid and excess_bids > 0:
                    cut = min(excess_bids, order.remaining)
                    excess_bids -= cut
                elif not order.is_bid and excess_asks > 0:
                    cut = min(excess_asks, order.remaining)
                    excess_asks -= cut
                else:
                    continue
                self._trim(order, cut)

    def _trim(self, order: Order, cut: int) -> None:
        """Cancel `cut` contracts of a resting reduce-only order (all of it, or part)."""
        if cut >= order.remaining:
            self._cancel(order, _CANCEL_REDUCE_ONLY_TRIMMED)
            return
        level = order.level
        assert level is not None
        level.quantity -= cut
        self._touch(level)
        am = order.am
        am.reduce(order, cut)
        self._emit_cancelled(order, cut, _CANCEL_REDUCE_ONLY_TRIMMED)
        self._rehold(am)

    def _cancel_order(self, command: Any) -> None:
        code, account_id, order_id, client_order_id = command
        if (
            type(account_id) is not int
            or type(order_id) is not int
            or type(client_order_id) is not int
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
        order = self._find_order(account, code, order_id, client_order_id, client_order_id)
        if order is not None:
            self._cancel(order, _CANCEL_REQUESTED)

    def _find_order(
        self,
        account: Account,
        code: int,
        order_id: int,
        client_order_id: int,
        reported_client_order_id: int,
    ) -> Order | None:
        """The open order a cancel or replace names, or None after rejecting it."""
        if order_id:
            order = self.orders.get(order_id)
            if order is None:
                self._reject(account, code, reported_client_order_id, order_id, _R.ORDER_MUST_EXIST)
                return None
            if order.account is not account:
                self._reject(
                    account,
                    code,
                    reported_client_order_id,
                    order_id,
                    _R.ORDER_MUST_BELONG_TO_ACCOUNT,
                )
                return None
            return order
        order = account.open_by_client_id.get(client_order_id)
        if order is None:
            self._reject(account, code, reported_client_order_id, 0, _R.ORDER_MUST_EXIST)
        return order

    def _replace_order(self, command: Any) -> None:
        code, account_id, order_id, client_order_id, new_client_order_id, price, quantity = command
        if (
            type(account_id) is not int
            or type(order_id) is not int
            or type(client_order_id) is not int
            or type(new_client_order_id) is not int
            or type(price) is not int
            or type(quantity) is not int
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
        if not 0 < new_client_order_id <= _ID_MAX:
            return self._reject(account, code, 0, order_id, _R.CLIENT_ORDER_ID_MUST_BE_IN_RANGE)
        new_id = new_client_order_id
        # The new id is checked before the order is looked up: a retried replace names an
        # order by its old id, which is gone, and must still be answered `exists`.
        existing = account.open_by_client_id.get(new_id)
        if existing is not None:
            return self._reject(account, code, new_id, existing.order_id, _R.EXISTS)
        remembered = account.recent_client_ids.get(new_id)
        if remembered is not None:
            return self._reject(account, code, new_id, remembered, _R.EXISTS)
        order = self._find_order(account, code, order_id, client_order_id, new_id)
        if order is None:
            return None
        order_id = order.order_id
        if not 1 <= price <= 99:
            return self._reject(account, code, new_id, order_id, _R.PRICE_MUST_BE_BETWEEN_1_AND_99)
        if quantity <= 0:
            return self._reject(account, code, new_id, order_id, _R.QUANTITY_MUST_BE_POSITIVE)
        if quantity > _QTY_MAX:
            return self._reject(account, code, new_id, order_id, _R.QUANTITY_MUST_NOT_EXCEED_MAX)
        market = order.market
        if market.status != _OPEN:
            return self._reject(account, code, new_id, order_id, _R.MARKET_MUST_BE_OPEN)
        am = order.am
        is_bid = order.is_bid
        yes_price = price if order.side <= _SELL_YES else _PAYOUT - price
        previous_client_order_id = order.client_order_id
        if yes_price == order.price and quantity <= order.remaining:
            # Same price, no more quantity: the order keeps its place in the queue.
            cut = order.remaining - quantity
            if cut:
                level = order.level
                assert level is not None
                level.quantity -= cut
                self._touch(level)
                am.reduce(order, cut)
            self._rename(order, new_id)
            self._emit_replaced(order, previous_client_order_id, price, priority_kept=1)
            self._rehold(am)
            return None
        if is_bid:
            mask = market.ask_mask
            crosses = mask != 0 and (mask & -mask).bit_length() - 1 <= yes_price
        else:
            mask = market.bid_mask
            crosses = mask != 0 and mask.bit_length() - 1 >= yes_price
        if order.flags & _POST_ONLY and crosses:
            return self._reject(account, code, new_id, order_id, _R.POST_ONLY_MUST_NOT_TAKE)
        position = am.position
        added = quantity - order.remaining
        if is_bid:
            if order.reduce_only and am.reduce_bid_qty + added > -position:
                return self._reject(
                    account, code, new_id, order_id, _R.REDUCE_ONLY_MUST_REDUCE_POSITION
                )
            if added > 0 and position + am.bid_qty + added > market.position_limit:
                return self._reject(
                    account, code, new_id, order_id, _R.POSITION_MUST_STAY_WITHIN_LIMIT
                )
        else:
            if order.reduce_only and am.reduce_ask_qty + added > position:
                return self._reject(
                    account, code, new_id, order_id, _R.REDUCE_ONLY_MUST_REDUCE_POSITION
                )
            if added > 0 and am.ask_qty + added - position > market.position_limit:
                return self._reject(
                    account, code, new_id, order_id, _R.POSITION_MUST_STAY_WITHIN_LIMIT
                )
        # Try the new terms on the order in place; put the old ones back if unaffordable.
        terms = market.future
        required_before = futures_requirement(am, terms) if terms is not None else 0
        old_price = order.price
        old_remaining = order.remaining
        old_maker_bound = order.maker_bound
        am.count(order, -1)
        order.set_price(yes_price)
        order.remaining = quantity
        order.maker_bound = order.maker_fee_bound()
        am.count(order, 1)
        if crosses:
            am.taker_bound = taker_fee_bound(order)
            am.taker_bid = is_bid
        if terms is not None:
            need = futures_requirement(am, terms) - required_before
            new_hold = am.hold + need
        else:
            new_hold, need = self._hold_needed(am)
        if need > account.cash:
            am.count(order, -1)
            order.set_price(old_price)
            order.remaining = old_remaining
            order.maker_bound = old_maker_bound
            am.count(order, 1)
            am.taker_bound = 0
            return self._reject(account, code, new_id, order_id, _R.COLLATERAL_MUST_COVER_ORDER)
        account.cash -= need
        account.held += need
        self._set_hold(am, new_hold)
        # Leave the old level: the order goes to the back of the queue at its new price.
        level = order.level
        assert level is not None
        level.quantity -= old_remaining
        self._touch(level)
        self._unlink(order)
        self._rename(order, new_id)
        self._emit_replaced(order, previous_client_order_id, price, priority_kept=0)
        stop_reason = 0
        if crosses:
            stop_reason = self._match(order, market)
            am.taker_bound = 0
        if order.remaining and not stop_reason:
            self._rest(order)
        elif order.remaining:
            self._unregister(order)
            self._emit_cancelled(order, order.remaining, stop_reason)
        else:
            self._unregister(order)
        self._rehold(am)
        self._drop_if_empty(am)
        return None

    def _mass_cancel(self, command: Any) -> None:
        code, account_id, market_id = command
        if type(account_id) is not int or type(market_id) is not int:
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
        if market_id:
            if market_id not in self.markets:
                return self._reject(account, code, 0, market_id, _R.MARKET_MUST_EXIST)
            am = account.markets.get(market_id)
            order_ids = sorted(am.orders) if am is not None else []
        else:
            order_ids = sorted(account.orders)
        account.seq += 1
        self._events.append(
            (_EV_MASS_CANCELLED, account_id, account.seq, market_id, len(order_ids))
        )
        for order_id in order_ids:
            order = self.orders.get(order_id)
            if order is not None:  # a trim of an earlier one may have taken it already
                self._cancel(order, _CANCEL_MASS_CANCEL)
        return None

    # -- Order bookkeeping ------------------------------------------------------------------

    # -- Order groups -------------------------------------------------------------------

    def _flush_triggered_groups(self) -> None:
        """After the command whose fills made groups reach their limits (not during it: the
        matching that filled them is not cut short)."""
        triggered = self._triggered_groups
        self._triggered_groups = []
        for account, group in triggered:
            self._trigger(account, group)

    def _trigger(self, account: Account, group: OrderGroup) -> None:
        """The group says it triggered, then each of its resting orders is cancelled."""
        group.triggered = True
        self._emit_group(account, group)
        for order in [o for o in account.orders.values() if o.group is group]:
            self._cancel(order, _CANCEL_ORDER_GROUP_TRIGGERED)

    def _emit_group(self, account: Account, group: OrderGroup) -> None:
        account.seq += 1
        self._events.append(
            (
                _EV_GROUP,
                account.account_id,
                account.seq,
                group.group_id,
                group.contract_limit,
                group.window_ms,
                group.filled,
                int(group.triggered),
            )
        )

    def _group_command(self, command: Any) -> tuple[Account, int] | None:
        """The account and group id of SetOrderGroup or ResetOrderGroup, or None after a
        reject."""
        code, account_id, group_id = command[0], command[1], command[2]
        if any(type(value) is not int for value in command[1:]):
            self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
            return None
        account = self.accounts.get(account_id)
        if account is None:
            self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
            return None
        if not 0 < group_id <= limits.order_group_id_max:
            self._reject(account, code, 0, group_id, _R.ORDER_GROUP_ID_MUST_BE_IN_RANGE)
            return None
        return account, group_id

    def _set_order_group(self, command: Any) -> None:
        found = self._group_command(command)
        if found is None:
            return
        account, group_id = found
        code, _, _, contract_limit, window_ms = command
        if not 0 < contract_limit <= limits.order_group_contract_limit_max:
            return self._reject(account, code, 0, group_id, _R.ORDER_GROUP_LIMIT_MUST_BE_IN_RANGE)
        if not 0 < window_ms <= limits.order_group_window_ms_max:
            return self._reject(account, code, 0, group_id, _R.ORDER_GROUP_WINDOW_MUST_BE_IN_RANGE)
        group = account.groups.get(group_id)
        if group is None:
            if len(account.groups) >= limits.order_groups_per_account_max:
                return self._reject(
                    account, code, 0, group_id, _R.ORDER_GROUPS_PER_ACCOUNT_MUST_NOT_EXCEED_MAX
                )
            group = account.groups[group_id] = OrderGroup(group_id, contract_limit, window_ms)
        group.contract_limit = contract_limit
        group.window_ms = window_ms
        group.forget_before(self.time_ms)
        if not group.triggered and group.filled >= contract_limit:
            # A limit lowered to what the window already holds triggers the group now.
            self._trigger(account, group)
            return None
        self._emit_group(account, group)
        return None

    def _reset_order_group(self, command: Any) -> None:
        found = self._group_command(command)
        if found is None:
            return
        account, group_id = found
        group = account.groups.get(group_id)
        if group is None:
            return self._reject(account, command[0], 0, group_id, _R.ORDER_GROUP_MUST_EXIST)
        group.triggered = False
        group.fills.clear()
        group.filled = 0
        self._emit_group(account, group)
        return None

    def _remember_client_id(self, account: Account, client_order_id: int, order_id: int) -> None:
        account.recent_client_ids[client_order_id] = order_id
        account.recent_queue.append((client_order_id, order_id))
        if len(account.recent_queue) > _REMEMBERED_MAX:
            self._forget_oldest_client_id(account)

    @staticmethod
    def _forget_oldest_client_id(account: Account) -> None:
        """Past the window, an id is forgotten, unless it was taken again since."""
        old_client_order_id, old_order_id = account.recent_queue.popleft()
        if account.recent_client_ids.get(old_client_order_id) == old_order_id:
            del account.recent_client_ids[old_client_order_id]

    def _rename(self, order: Order, new_client_order_id: int) -> None:
        account = order.account
        del account.open_by_client_id[order.client_order_id]
        account.open_by_client_id[new_client_order_id] = order
        order.client_order_id = new_client_order_id
        self._remember_client_id(account, new_client_order_id, order.order_id)

    def _rest(self, order: Order) -> None:
        """Put an accepted order with quantity left into the book."""
        market = order.market
        price = order.price
        if order.is_bid:
            level = market.bid_levels[price]
            if level is None:
                level = market.bid_levels[price] = Level(market, True, price)
            market.bid_mask |= 1 << price
        else:
            level = market.ask_levels[price]
            if level is None:
                level = market.ask_levels[price] = Level(market, False, price)
            market.ask_mask |= 1 << price
        level.append(order)
        market.open_orders += 1
        if not level.dirty:
            level.dirty = True
            self._dirty_levels.append(level)
        if order.time_in_force == _GTD:
            self.gtd_open += 1
            heapq.heappush(self.gtd_heap, (order.expire_time_ms, order.order_id))

    def _unlink(self, order: Order) -> None:
        """Take a resting order out of its level (its quantity already taken off)."""
        level = order.level
        assert level is not None
        level.unlink(order)
        market = order.market
        market.open_orders -= 1
        if order.time_in_force == _GTD:
            self.gtd_open -= 1
            self._compact_gtd()
        if not level.count:
            # Empty: out of the mask at once, so matching moves on; the Level object stays in
            # its slot until the command's LevelUpdated events are out, so an order resting
            # at this price again in the same command reuses it (one event per level).
            assert level.quantity == 0 and level.dirty
            if level.is_bid:
                market.bid_mask &= ~(1 << level.price)
            else:
                market.ask_mask &= ~(1 << level.price)

    def _compact_gtd(self) -> None:
        if len(self.gtd_heap) > 2 * self.gtd_open + 1_024:
            orders = self.orders
            self.gtd_heap = [
                entry
                for entry in self.gtd_heap
                if entry[1] in orders and orders[entry[1]].expire_time_ms == entry[0]
            ]
            heapq.heapify(self.gtd_heap)

    def _unregister(self, order: Order) -> None:
        """Forget an order that is no longer open (not in the book any more)."""
        account = order.account
        del account.orders[order.order_id]
        del account.open_by_client_id[order.client_order_id]
        del self.orders[order.order_id]
        order.am.remove(order)

    def _cancel(self, order: Order, reason: int) -> None:
        """Cancel all that is left of an open order. The most frequent command's path, so
        the level, the indexes and the hold are updated here inline."""
        quantity = order.remaining
        order_id = order.order_id
        account = order.account
        am = order.am
        level = order.level
        if level is not None:
            level.quantity -= quantity
            if not level.dirty:
                level.dirty = True
                self._dirty_levels.append(level)
            self._unlink(order)
        del account.orders[order_id]
        del account.open_by_client_id[order.client_order_id]
        del self.orders[order_id]
        am.count(order, -1)
        del am.orders[order_id]
        account.seq += 1
        self._events.append(
            (
                _EV_CANCELLED,
                account.account_id,
                account.seq,
                order_id,
                order.client_order_id,
                order.market.market_id,
                quantity,
                reason,
            )
        )
        if am.account_event is None and am.market.future is None:
            new_hold = market_hold(am)
            change = new_hold - am.hold
            if change:
                am.hold = new_hold
                account.held += change
                account.cash -= change
                assert account.cash >= 0, "a hold grew past the account's cash"
        else:
            self._rehold(am)
        if not am.orders and not am.position and not am.hold:
            self._drop(am)

    def _emit_cancelled(self, order: Order, quantity: int, reason: int) -> None:
        account = order.account
        account.seq += 1
        self._events.append(
            (
                _EV_CANCELLED,
                account.account_id,
                account.seq,
                order.order_id,
                order.client_order_id,
                order.market.market_id,
                quantity,
                reason,
            )
        )

    def _emit_replaced(
        self, order: Order, previous_client_order_id: int, price: int, priority_kept: int
    ) -> None:
        account = order.account
        account.seq += 1
        self._events.append(
            (
                _EV_REPLACED,
                account.account_id,
                account.seq,
                order.order_id,
                order.client_order_id,
                previous_client_order_id,
                order.market.market_id,
                price,
                order.remaining,
                priority_kept,
            )
        )

    def _rehold(self, am: AccountMarket) -> None:
        """Bring the hold that covers an AccountMarket to what its orders now require (its
        own, or its event's): its orders changed, its positions did not."""
        ae = am.account_event
        terms = am.market.future
        if terms is not None:
            # margin goes back to cash beyond what the orders and position now need; it is
            # never topped up here (a shortfall left by a mark waits for the next one)
            required = futures_requirement(am, terms)
            change = required - am.hold if am.hold > required else 0
            if change:
                am.hold = required
        elif ae is None:
            new_hold = market_hold(am)
            change = new_hold - am.hold
            if change:
                am.hold = new_hold
        else:
            new_hold, released = event_risk(ae.event, ae.ams.values(), len(ae.ams))
            assert released == ae.released, "only a position moves the released payout"
            change = new_hold - ae.hold
            if change:
                ae.hold = new_hold
        if change:
            account = am.account
            account.held += change
            account.cash -= change
            assert account.cash >= 0, "a hold grew past the account's cash"

    @staticmethod
    def _hold_needed(am: AccountMarket) -> tuple[int, int]:
        """The hold that covers `am` with its orders as they are now, and how much more
        than is held that is."""
        ae = am.account_event
        if ae is None:
            new_hold = market_hold(am)
            return new_hold, new_hold - am.hold
        new_hold = event_risk(ae.event, ae.ams.values(), len(ae.ams))[0]
        return new_hold, new_hold - ae.hold

    @staticmethod
    def _set_hold(am: AccountMarket, new_hold: int) -> None:
        ae = am.account_event
        if ae is None:
            am.hold = new_hold
        else:
            ae.hold = new_hold

    @staticmethod
    def _event_hold_with(
        event: Event, account: Account, am: AccountMarket, created: bool
    ) -> tuple[int, int]:
        """`_hold_needed` for an order in a mutually exclusive event, where `am` may be new
        (created: not yet one of the account's markets, so not yet in its AccountEvent)."""
        ae = account.events.get(event.event_id)
        if ae is None:
            new_hold = event_risk(event, (am,), 1)[0]
            return new_hold, new_hold
        if created:
            ams = [*ae.ams.values(), am]
            new_hold = event_risk(event, ams, len(ams))[0]
        else:
            new_hold = event_risk(event, ae.ams.values(), len(ae.ams))[0]
        return new_hold, new_hold - ae.hold

    def _drop_if_empty(self, am: AccountMarket) -> None:
        if not am.orders and not am.position and not am.hold:
            self._drop(am)

    @staticmethod
    def _drop(am: AccountMarket) -> None:
        """Forget an AccountMarket with no orders, no position and no hold (and its
        AccountEvent with it, once that holds none of the account's markets)."""
        account = am.account
        market = am.market
        if account.markets.get(market.market_id) is am:
            del account.markets[market.market_id]
            del market.ams[account.account_id]
            ae = am.account_event
            if ae is not None:
                am.account_event = None
                del ae.ams[market.market_id]
                if not ae.ams:
                    assert not ae.hold and not ae.released, "an empty event holds nothing"
                    event = ae.event
                    del account.events[event.event_id]
                    del event.accounts[account.account_id]

    def _touch(self, level: Level) -> None:
        if not level.dirty:
            level.dirty = True
            self._dirty_levels.append(level)

    def _flush_levels(self) -> None:
        """One LevelUpdated per level a command changed, in the order first changed."""
        events = self._events
        for level in self._dirty_levels:
            level.dirty = False
            market = level.market
            market.seq += 1
            events.append(
                (
                    _EV_LEVEL,
                    market.market_id,
                    market.seq,
                    _BID if level.is_bid else _ASK,
                    level.price,
                    level.quantity,
                    level.count,
                )
            )
            if not level.count:
                levels = market.bid_levels if level.is_bid else market.ask_levels
                if levels[level.price] is level:
                    levels[level.price] = None
        self._dirty_levels.clear()

    def _flush_releases(self) -> None:
        """One PayoutReleased per AccountEvent whose released payout a command moved, in the
        order first moved, with the account's cash after the command."""
        events = self._events
        for ae in self._dirty_releases:
            ae.dirty = False
            account = ae.account
            account.seq += 1
            events.append(
                (
                    _EV_RELEASED,
                    account.account_id,
                    account.seq,
                    ae.event.event_id,
                    ae.released,
                    account.cash,
                )
            )
        self._dirty_releases.clear()

    # -- Accounts and money --------------------------------------------------------------

    def _create_account(self, command: Any) -> None:
        code, name, public_key = command
        if type(name) is not str or type(public_key) is not bytes:
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        if not 0 < len(name) <= limits.account_name_length_max or not _NAME.match(name):
            return self._reject(None, code, 0, 0, _R.ACCOUNT_NAME_MUST_BE_VALID)
        existing = self.account_ids_by_name.get(name)
        if existing is not None:
            return self._reject(None, code, 0, existing, _R.EXISTS)
        if len(public_key) != limits.public_key_length:
            return self._reject(None, code, 0, 0, _R.PUBLIC_KEY_MUST_BE_32_BYTES)
        if len(self.accounts) >= limits.accounts_max:
            return self._reject(None, code, 0, 0, _R.ACCOUNTS_MUST_NOT_EXCEED_MAX)
        account_id = self.next_account_id
        self.next_account_id = account_id + 1
        account = Account(account_id, name, public_key)
        self.accounts[account_id] = account
        self.account_ids_by_name[name] = account_id
        account.seq = 1
        self._events.append((_EV_ACCOUNT_CREATED, account_id, 1, name, public_key))
        return None

    def _check_transfer(self, command: Any, amount_max: int) -> tuple[Account, int, str] | None:
        """The checks deposits and withdrawals share, in their precedence."""
        code, account_id, amount, bank_reference = command
        if (
            type(account_id) is not int
            or type(amount) is not int
            or type(bank_reference) is not str
        ):
            self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
            return None
        account = self.accounts.get(account_id)
        if account is None:
            self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
            return None
        if amount <= 0:
            self._reject(None, code, 0, account_id, _R.AMOUNT_MUST_BE_POSITIVE)
            return None
        if amount > amount_max:
            self._reject(None, code, 0, account_id, _R.AMOUNT_MUST_NOT_EXCEED_MAX)
            return None
        if not 0 < len(bank_reference) <= limits.bank_reference_length_max or not (
            _BANK_REFERENCE.match(bank_reference)
        ):
            self._reject(None, code, 0, account_id, _R.BANK_REFERENCE_MUST_BE_VALID)
            return None
        used_by = self.bank_references.get(bank_reference)
        if used_by is not None:
            self._reject(None, code, 0, used_by, _R.EXISTS)
            return None
        if len(self.bank_references) >= limits.bank_references_max:
            self._reject(None, code, 0, account_id, _R.BANK_REFERENCES_MUST_NOT_EXCEED_MAX)
            return None
        return account, amount, bank_reference

    def _deposit(self, command: Any) -> None:
        checked = self._check_transfer(command, limits.deposit_amount_max_cents)
        if checked is None:
            return None
        account, amount, bank_reference = checked
        code = command[0]
        if account.cash + amount > limits.account_cash_max_cents:
            return self._reject(None, code, 0, account.account_id, _R.CASH_MUST_NOT_EXCEED_MAX)
        if self.deposits_total - self.withdrawals_total + amount > limits.exchange_money_max_cents:
            return self._reject(
                None, code, 0, account.account_id, _R.EXCHANGE_MONEY_MUST_NOT_EXCEED_MAX
            )
        self.bank_references[bank_reference] = account.account_id
        self.deposits_total += amount
        account.cash += amount
        account.seq += 1
        self._events.append(
            (_EV_DEPOSITED, account.account_id, account.seq, amount, bank_reference, account.cash)
        )
        return None

    def _withdraw(self, command: Any) -> None:
        checked = self._check_transfer(command, limits.account_cash_max_cents)
        if checked is None:
            return None
        account, amount, bank_reference = checked
        if amount > account.cash:
            return self._reject(
                None,
                command[0],
                0,
                account.account_id,
                _R.WITHDRAWAL_MUST_NOT_EXCEED_AVAILABLE_CASH,
            )
        self.bank_references[bank_reference] = account.account_id
        self.withdrawals_total += amount
        account.cash -= amount
        account.seq += 1
        self._events.append(
            (_EV_WITHDRAWN, account.account_id, account.seq, amount, bank_reference, account.cash)
        )
        return None

    # -- Markets ---------------------------------------------------------------------------

    def _create_market(self, command: Any) -> None:
        (
            code,
            ticker,
            kind,
            close_time_ms,
            taker_bps,
            maker_bps,
            position_limit,
            floor,
            cap,
            event_id,
        ) = command
        if type(ticker) is not str or any(
            type(value) is not int
            for value in (
                kind,
                close_time_ms,
                taker_bps,
                maker_bps,
                position_limit,
                floor,
                cap,
                event_id,
            )
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        if not 0 < len(ticker) <= limits.ticker_length_max or not _TICKER.match(ticker):
            return self._reject(None, code, 0, 0, _R.TICKER_MUST_BE_VALID)
        existing = self.market_ids_by_ticker.get(ticker)
        if existing is not None:
            return self._reject(None, code, 0, existing, _R.EXISTS)
        if kind != _BINARY and kind != _SCALAR and kind != _FUTURE:
            return self._reject(None, code, 0, 0, _R.MARKET_KIND_MUST_BE_KNOWN)
        if close_time_ms and not self.time_ms < close_time_ms <= limits.time_ms_max:
            return self._reject(None, code, 0, 0, _R.CLOSE_TIME_MUST_BE_IN_FUTURE)
        if not 0 <= taker_bps <= limits.fee_bps_max or not 0 <= maker_bps <= limits.fee_bps_max:
            return self._reject(None, code, 0, 0, _R.FEE_BPS_MUST_BE_IN_RANGE)
        if not 0 < position_limit <= limits.position_limit_max:
            return self._reject(None, code, 0, 0, _R.POSITION_LIMIT_MUST_BE_IN_RANGE)
        if kind == _BINARY:
            valid_range = floor == 0 and cap == 0
        else:
            bound = limits.scalar_bound_abs_max
            valid_range = -bound <= floor < cap <= bound and cap - floor <= limits.scalar_range_max
        if not valid_range:
            return self._reject(None, code, 0, 0, _R.SCALAR_RANGE_MUST_BE_VALID)
        event = None
        if event_id:
            event = self.events.get(event_id)
            reason = self._event_refuses_market(event, kind)
            if reason is not None:
                related = event_id if 0 < event_id <= _ID_MAX else 0
                return self._reject(None, code, 0, related, reason)
        if len(self.markets) >= limits.markets_max:
            return self._reject(None, code, 0, 0, _R.MARKETS_MUST_NOT_EXCEED_MAX)
        market_id = self.next_market_id
        self.next_market_id = market_id + 1
        market = Market(
            market_id, ticker, kind, close_time_ms, taker_bps, maker_bps, position_limit, floor, cap
        )
        self.markets[market_id] = market
        self.market_ids_by_ticker[ticker] = market_id
        if kind == _FUTURE:
            market.future = FutureTerms()
        if event is not None:
            market.event = event
            if event.mutually_exclusive:
                market.exclusive = event
            event.markets.append(market)
        if close_time_ms:
            heapq.heappush(self.close_heap, (close_time_ms, market_id))
        market.seq = 1
        events = self._events
        events.append(
            (
                _EV_MARKET_CREATED,
                market_id,
                1,
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
        if market.future is not None:  # its first mark, so market data knows it
            market.seq += 1
            events.append((_EV_MARKED, market_id, market.seq, market.future.mark))
        return None

    @staticmethod
    def _event_refuses_market(event: Event | None, kind: int) -> Reject | None:
        """Why a new market cannot join `event`, in precedence order, or None."""
        if event is None:
            return _R.EVENT_MUST_EXIST
        if event.settled:
            return _R.EVENT_MUST_NOT_BE_SETTLED
        if event.mutually_exclusive and kind != _BINARY:
            return _R.EXCLUSIVE_EVENT_MARKETS_MUST_BE_BINARY
        if event.exhaustive and any(market.status != _PROPOSED for market in event.markets):
            # Its scenarios are its markets: one more would lower what every account's
            # positions are sure to pay, which was already released.
            return _R.EXHAUSTIVE_EVENT_MUST_NOT_HAVE_OPENED
        if len(event.markets) >= limits.markets_per_event_max:
            return _R.MARKETS_PER_EVENT_MUST_NOT_EXCEED_MAX
        return None

    def _market_for_operator(self, command: Any, fields: int) -> Market | None:
        """The market an operator command names, after its shape and type checks."""
        code = command[0]
        if any(type(value) is not int for value in command[1 : fields + 1]):
            self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
            return None
        market = self.markets.get(command[1])
        if market is None:
            self._reject(None, code, 0, 0, _R.MARKET_MUST_EXIST)
        return market

    def _set_market_status(self, command: Any) -> None:
        market = self._market_for_operator(command, 2)
        if market is None:
            return None
        code, market_id, status = command
        if status not in (_OPEN, _HALTED, _CLOSED):
            return self._reject(None, code, 0, market_id, _R.MARKET_STATUS_MUST_BE_KNOWN)
        if status == market.status:
            # an operator's retry: the market is already where it was asked to go
            return self._reject(None, code, 0, market_id, _R.EXISTS)
        if (market.status, status) not in _STATUS_TRANSITIONS:
            return self._reject(
                None, code, 0, market_id, _R.MARKET_STATUS_TRANSITION_MUST_BE_ALLOWED
            )
        exclusive = market.exclusive
        if (
            status == _OPEN
            and exclusive is not None
            and exclusive.exhaustive
            and len(exclusive.markets) < 2
        ):
            # its one market is sure to win: a YES bought below 100 is money for nothing
            return self._reject(None, code, 0, market_id, _R.EXHAUSTIVE_EVENT_MUST_HAVE_TWO_MARKETS)
        if status == _CLOSED:
            self._close_market(market)
        else:
            market.status = status
            market.seq += 1
            self._events.append((_EV_STATUS, market_id, market.seq, status))
        return None

    def _close_market(self, market: Market) -> None:
        """Close a market: status first, then every resting order cancelled, best first
        (and a futures market's marks by time stop)."""
        market.status = _CLOSED
        if market.future is not None:
            market.future.next_mark_ms = 0
        market.seq += 1
        self._events.append((_EV_STATUS, market.market_id, market.seq, _CLOSED))
        for order in resting_orders(market):
            self._cancel(order, _CANCEL_MARKET_CLOSED)

    def _settle_market(self, command: Any) -> None:
        market = self._market_for_operator(command, 2)
        if market is None:
            return None
        code, market_id, outcome = command
        if market.exclusive is not None:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_BE_SETTLED_WITH_ITS_EVENT)
        if market.status == _SETTLED and outcome == market.outcome:
            return self._reject(None, code, 0, market_id, _R.EXISTS)  # a retried settlement
        if market.status != _CLOSED:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_BE_CLOSED)
        if market.kind == _BINARY:
            if outcome != 0 and outcome != 1:
                return self._reject(None, code, 0, market_id, _R.OUTCOME_MUST_BE_VALID)
            yes_payout = _PAYOUT * outcome
        else:
            if not market.floor <= outcome <= market.cap:
                return self._reject(None, code, 0, market_id, _R.OUTCOME_MUST_BE_VALID)
            yes_payout = scalar_yes_payout(outcome, market.floor, market.cap)
        if market.future is not None:
            self._settle_future(market, outcome, yes_payout)
        else:
            self._pay_positions(market, outcome, yes_payout, 0)
        return None

    def _pay_positions(self, market: Market, outcome: int, yes_payout: int, house_no: int) -> None:
        """Settle a closed market: MarketSettled, then every position paid from the escrow
        (accounts in id order), which ends at exactly 0. `house_no`: the NO contracts the
        house holds here (an exhaustive event's conversions), paid back to the event."""
        market_id = market.market_id
        market.status = _SETTLED
        market.outcome = outcome
        market.yes_payout = yes_payout
        market.seq += 1
        self._events.append((_EV_SETTLED, market_id, market.seq, outcome, yes_payout))
        for account_id in sorted(market.ams):
            am = market.ams[account_id]
            assert not am.orders and not am.hold, "a closed market has no resting orders"
            position = am.position
            payout = yes_payout * position if position > 0 else (_PAYOUT - yes_payout) * -position
            account = am.account
            account.cash += payout
            market.escrow -= payout
            am.position = 0
            account.seq += 1
            self._events.append(
                (
                    _EV_POSITION_SETTLED,
                    account_id,
                    account.seq,
                    market_id,
                    position,
                    payout,
                    account.cash,
                )
            )
            del account.markets[market_id]
            ae = am.account_event
            if ae is not None:
                am.account_event = None
                del ae.ams[market_id]
        market.ams.clear()
        market.escrow -= (_PAYOUT - yes_payout) * house_no
        market.open_interest = 0
        assert market.escrow == 0, "settlement must empty the escrow exactly"

    def _configure_market(self, command: Any) -> None:
        market = self._market_for_operator(command, 4)
        if market is None:
            return None
        code, market_id, taker_bps, maker_bps, position_limit = command
        if market.status == _SETTLED:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_NOT_BE_SETTLED)
        if not 0 <= taker_bps <= limits.fee_bps_max or not 0 <= maker_bps <= limits.fee_bps_max:
            return self._reject(None, code, 0, market_id, _R.FEE_BPS_MUST_BE_IN_RANGE)
        if not 0 < position_limit <= limits.position_limit_max:
            return self._reject(None, code, 0, market_id, _R.POSITION_LIMIT_MUST_BE_IN_RANGE)
        market.taker_bps = taker_bps
        market.maker_bps = maker_bps
        market.position_limit = position_limit
        market.seq += 1
        self._events.append(
            (_EV_CONFIGURED, market_id, market.seq, taker_bps, maker_bps, position_limit)
        )
        return None

    # -- Futures ----------------------------------------------------------------------------

    def _set_margins(self, command: Any) -> None:
        market = self._market_for_operator(command, 5)
        if market is None:
            return None
        code, market_id, initial, maintenance, band, interval_ms = command
        terms = market.future
        if terms is None:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_BE_A_FUTURE)
        if market.status == _SETTLED:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_NOT_BE_SETTLED)
        if not 1 <= band <= maintenance <= initial <= _PAYOUT:
            return self._reject(None, code, 0, market_id, _R.MARGINS_MUST_BE_IN_ORDER)
        if not 0 <= interval_ms <= limits.futures_mark_interval_ms_max:
            return self._reject(None, code, 0, market_id, _R.MARK_INTERVAL_MUST_BE_IN_RANGE)
        terms.initial_margin = initial
        terms.maintenance_margin = maintenance
        terms.mark_band = band
        terms.mark_interval_ms = interval_ms
        marking = interval_ms and market.status != _CLOSED  # a closed market's marks stopped
        terms.next_mark_ms = self.time_ms + interval_ms if marking else 0
        if marking:
            heapq.heappush(self.mark_heap, (terms.next_mark_ms, market_id))
        market.seq += 1
        self._events.append(
            (_EV_MARGINS, market_id, market.seq, initial, maintenance, band, interval_ms)
        )
        # New margins apply at once: shortfalls are topped up, or orders cancelled, or
        # positions liquidated, as after a mark.
        self._remargin_market(market)
        return None

    def _mark_market(self, command: Any) -> None:
        market = self._market_for_operator(command, 2)
        if market is None:
            return None
        code, market_id, price = command
        terms = market.future
        if terms is None:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_BE_A_FUTURE)
        if market.status == _SETTLED:
            return self._reject(None, code, 0, market_id, _R.MARKET_MUST_NOT_BE_SETTLED)
        if price:
            if not 1 <= price <= 99:
                return self._reject(None, code, 0, market_id, _R.PRICE_MUST_BE_BETWEEN_1_AND_99)
            if market.open_interest and abs(price - terms.mark) > terms.mark_band:
                return self._reject(None, code, 0, market_id, _R.MARK_MUST_BE_WITHIN_BAND)
        else:
            price = self._book_mark(market)
        self._mark(market, price)
        return None

    @staticmethod
    def _book_mark(market: Market) -> int:
        """The mark the book gives: the middle of the best bid and ask (rounded down), or
        else the last trade, or else the mark as it is; at most the band from the mark."""
        terms = market.future
        assert terms is not None
        bid, ask = market.best_bid(), market.best_ask()
        if bid >= 0 and ask >= 0:
            target = (bid + ask) // 2
        elif terms.last_price:
            target = terms.last_price
        else:
            target = terms.mark
        low, high = terms.mark - terms.mark_band, terms.mark + terms.mark_band
        target = low if target < low else high if target > high else target
        return 1 if target < 1 else 99 if target > 99 else target

    def _mark(self, market: Market, price: int) -> None:
        """Mark a futures market to `price`: every position is paid its size times the
        move (variation margin, out of the loser's cash first and then its margin, into the
        winner's cash), then every account's margin is brought to what it needs."""
        terms = market.future
        assert terms is not None
        move = price - terms.mark
        terms.mark = price
        market_id = market.market_id
        market.seq += 1
        events = self._events
        events.append((_EV_MARKED, market_id, market.seq, price))
        if move:
            for account_id in sorted(market.ams):
                am = market.ams[account_id]
                position = am.position
                if not position:
                    continue
                account = am.account
                variation = position * move
                if variation > 0:
                    account.cash += variation
                else:
                    owed = -variation
                    from_cash = owed if owed <= account.cash else account.cash
                    account.cash -= from_cash
                    am.hold -= owed - from_cash
                    account.held -= owed - from_cash
                    # A mark moves at most the band, the band is at most the maintenance
                    # margin, and every account ends each command at or above it.
                    assert am.hold >= 0, "a mark took more than an account's margin"
                account.seq += 1
                events.append(
                    (
                        _EV_VARIATION,
                        account_id,
                        account.seq,
                        market_id,
                        price,
                        variation,
                        am.hold,
                        account.cash,
                    )
                )
        self._remargin_market(market)

    def _remargin_market(self, market: Market) -> None:
        """Every account of a futures market at its new requirement, then every one below
        maintenance liquidated, in account order."""
        short = []
        for account_id in sorted(market.ams):
            am = market.ams.get(account_id)
            if am is not None and self._remargin(am):
                short.append(am)
        for am in short:
            self._liquidate(am)

    def _remargin(self, am: AccountMarket) -> bool:
        """Bring a futures margin to its requirement: topped up from cash as far as cash
        goes; if still short, the account's orders in the market are cancelled (they would
        add exposure it cannot cover); margin beyond the requirement goes back to cash.
        True if the position is still below maintenance: it must be liquidated."""
        terms = am.market.future
        assert terms is not None
        account = am.account
        required = futures_requirement(am, terms)
        if am.hold < required:
            top = required - am.hold
            top = min(top, account.cash)
            am.hold += top
            account.held += top
            account.cash -= top
            if am.hold < required and am.orders:
                for order_id in sorted(am.orders):
                    self._cancel(am.orders[order_id], _CANCEL_MARGIN_SHORT)
                if account.markets.get(am.market.market_id) is not am:
                    return False  # nothing left: dropped
                required = futures_requirement(am, terms)
        if am.hold > required:
            release = am.hold - required
            am.hold = required
            account.held -= release
            account.cash += release
        return am.hold < terms.maintenance_margin * abs(am.position)

    def _liquidate(self, am: AccountMarket) -> None:
        """Close enough of a position below maintenance that its margin covers the rest at
        the initial margin, at the mark, against the largest opposite positions (ties by
        account id): no money moves, every position being at the mark already; the
        counterparties' positions shrink with it (deleveraged)."""
        market = am.market
        terms = market.future
        assert terms is not None
        position = am.position
        if am.hold >= terms.maintenance_margin * abs(position):
            return  # a deleveraging closed enough of it already
        close = abs(position) - am.hold // terms.initial_margin
        sign = 1 if position > 0 else -1
        counterparties = sorted(
            (other for other in market.ams.values() if other.position * sign < 0),
            key=lambda other: (-abs(other.position), other.account.account_id),
        )
        left = close
        reduced: list[tuple[AccountMarket, int]] = []
        for other in counterparties:
            take = left if left < abs(other.position) else abs(other.position)
            other.position += take * sign
            reduced.append((other, take))
            left -= take
            if not left:
                break
        assert not left, "every long has a short: the opposite side covers any position"
        am.position -= close * sign
        market.open_interest -= close
        for kept, quantity, reason in [(am, close, _LIQUIDATED)] + [
            (other, take, _DELEVERAGED) for other, take in reduced
        ]:
            if (kept.reduce_bid_qty or kept.reduce_ask_qty) and not kept.trim_pending:
                kept.trim_pending = True
                self._pending_trims.append(kept)
            self._remargin(kept)
            account = kept.account
            account.seq += 1
            self._events.append(
                (
                    _EV_REDUCED,
                    account.account_id,
                    account.seq,
                    market.market_id,
                    quantity,
                    kept.position,
                    reason,
                    kept.hold,
                    account.cash,
                )
            )
            self._drop_if_empty(kept)

    def _settle_future(self, market: Market, outcome: int, yes_payout: int) -> None:
        """Settle a closed futures market at `yes_payout`: MarketSettled, then marks toward
        it, at most the band each (each with its variation margin, and liquidations where
        a margin runs short: so no account ever owes more than it has), then every margin
        goes back to its account's cash."""
        terms = market.future
        assert terms is not None
        market_id = market.market_id
        market.outcome = outcome
        market.yes_payout = yes_payout
        market.seq += 1
        self._events.append((_EV_SETTLED, market_id, market.seq, outcome, yes_payout))
        while terms.mark != yes_payout:
            band = terms.mark_band
            step = yes_payout - terms.mark
            step = band if step > band else -band if step < -band else step
            self._mark(market, terms.mark + step)
        market.status = _SETTLED
        terms.next_mark_ms = 0
        for account_id in sorted(market.ams):
            am = market.ams[account_id]
            assert not am.orders, "a closed market has no resting orders"
            account = am.account
            account.cash += am.hold
            account.held -= am.hold
            position = am.position
            am.hold = 0
            am.position = 0
            account.seq += 1
            self._events.append(
                (
                    _EV_POSITION_SETTLED,
                    account_id,
                    account.seq,
                    market_id,
                    position,
                    0,  # its gains and losses came as variation margin; its margin is back
                    account.cash,
                )
            )
            del account.markets[market_id]
        market.ams.clear()
        market.open_interest = 0

    # -- Events -----------------------------------------------------------------------------

    def _create_event(self, command: Any) -> None:
        code, ticker, mutually_exclusive, exhaustive = command
        if (
            type(ticker) is not str
            or type(mutually_exclusive) is not int
            or (type(exhaustive) is not int)
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        if not 0 < len(ticker) <= limits.ticker_length_max or not _TICKER.match(ticker):
            return self._reject(None, code, 0, 0, _R.TICKER_MUST_BE_VALID)
        existing = self.event_ids_by_ticker.get(ticker)
        if existing is not None:
            return self._reject(None, code, 0, existing, _R.EXISTS)
        if mutually_exclusive not in (0, 1) or exhaustive not in (0, mutually_exclusive):
            return self._reject(None, code, 0, 0, _R.EVENT_FLAGS_MUST_BE_VALID)
        if len(self.events) >= limits.events_max:
            return self._reject(None, code, 0, 0, _R.EVENTS_MUST_NOT_EXCEED_MAX)
        event_id = self.next_event_id
        self.next_event_id = event_id + 1
        event = Event(event_id, ticker, bool(mutually_exclusive), bool(exhaustive))
        self.events[event_id] = event
        self.event_ids_by_ticker[ticker] = event_id
        event.seq = 1
        self._events.append(
            (_EV_EVENT_CREATED, event_id, 1, ticker, mutually_exclusive, exhaustive)
        )
        return None

    def _settle_event(self, command: Any) -> None:
        code, event_id, winner = command
        if type(event_id) is not int or type(winner) is not int:
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        event = self.events.get(event_id)
        if event is None:
            return self._reject(None, code, 0, 0, _R.EVENT_MUST_EXIST)
        if not event.mutually_exclusive:
            return self._reject(None, code, 0, event_id, _R.EVENT_MUST_BE_MUTUALLY_EXCLUSIVE)
        if event.settled:
            if winner == event.winner:
                return self._reject(None, code, 0, event_id, _R.EXISTS)  # a retry
            return self._reject(None, code, 0, event_id, _R.EVENT_MUST_NOT_BE_SETTLED)
        if winner:
            if all(market.market_id != winner for market in event.markets):
                return self._reject(
                    None, code, 0, event_id, _R.WINNER_MUST_BE_A_MARKET_OF_THE_EVENT
                )
        elif event.exhaustive:
            return self._reject(None, code, 0, event_id, _R.EXHAUSTIVE_EVENT_MUST_HAVE_A_WINNER)
        if any(market.status != _CLOSED for market in event.markets):
            return self._reject(None, code, 0, event_id, _R.EVENT_MARKETS_MUST_BE_CLOSED)
        event.settled = True
        event.winner = winner
        event.seq += 1
        self._events.append((_EV_EVENT_SETTLED, event_id, event.seq, winner))
        house_sets = event.house_sets
        for market in event.markets:
            won = 1 if market.market_id == winner else 0
            self._pay_positions(market, won, _PAYOUT * won, house_sets)
        # Every position was paid in full; what was released ahead goes back now. No cash
        # goes below 0: the least a set of positions pays is what it had released.
        events = self._events
        for account_id in sorted(event.accounts):
            ae = event.accounts[account_id]
            assert not ae.ams and not ae.hold, "a settled event holds no markets"
            account = ae.account
            del account.events[event_id]
            if not ae.released:
                continue
            account.cash -= ae.released
            assert account.cash >= 0, "settlement paid less than the payout it had released"
            event.released -= ae.released
            ae.released = 0
            account.seq += 1
            events.append((_EV_RELEASED, account_id, account.seq, event_id, 0, account.cash))
        event.accounts.clear()
        event.released -= event.house_released()
        event.house_sets = 0
        assert event.released == 0, "settlement must take back every released payout"
        return None

    def _convert_no(self, command: Any) -> None:
        code, account_id, client_order_id, market_id, quantity = command
        if (
            type(account_id) is not int
            or type(client_order_id) is not int
            or type(market_id) is not int
            or type(quantity) is not int
        ):
            return self._reject(None, code, 0, 0, _R.FIELDS_MUST_HAVE_DECLARED_TYPES)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(None, code, 0, 0, _R.ACCOUNT_MUST_EXIST)
        related = market_id if 0 < market_id <= _ID_MAX else 0
        if not 0 < client_order_id <= _ID_MAX:
            return self._reject(account, code, 0, related, _R.CLIENT_ORDER_ID_MUST_BE_IN_RANGE)
        existing = account.open_by_client_id.get(client_order_id)
        if existing is not None:
            return self._reject(account, code, client_order_id, existing.order_id, _R.EXISTS)
        remembered = account.recent_client_ids.get(client_order_id)
        if remembered is not None:
            return self._reject(account, code, client_order_id, remembered, _R.EXISTS)
        cid = client_order_id
        if quantity <= 0:
            return self._reject(account, code, cid, related, _R.QUANTITY_MUST_BE_POSITIVE)
        if quantity > _QTY_MAX:
            return self._reject(account, code, cid, related, _R.QUANTITY_MUST_NOT_EXCEED_MAX)
        market = self.markets.get(market_id)
        if market is None:
            return self._reject(account, code, cid, related, _R.MARKET_MUST_EXIST)
        event = market.exclusive
        if event is None or not event.exhaustive:
            return self._reject(account, code, cid, market_id, _R.EVENT_MUST_BE_EXHAUSTIVE)
        if event.settled:
            return self._reject(account, code, cid, market_id, _R.EVENT_MUST_NOT_BE_SETTLED)
        am = account.markets.get(market_id)
        if am is None or am.position > -quantity:
            return self._reject(account, code, cid, market_id, _R.NO_POSITION_MUST_COVER_CONVERSION)
        for other in event.markets:
            held = account.markets.get(other.market_id)
            if held is not None:
                room = other.position_limit - held.position - held.bid_qty
            else:
                room = other.position_limit
            if quantity > room:
                return self._reject(
                    account, code, cid, market_id, _R.POSITION_MUST_STAY_WITHIN_LIMIT
                )
        # Accepted. Every market's position goes up by `quantity` (a NO less here, a YES
        # more, or a NO less, everywhere else) and the house takes one NO set per contract:
        # every scenario pays the account the same less 100 (n - 1) per contract, which
        # the house's sets pay. Its hold is unchanged (every q and d moves by the same),
        # and so is its cash: what it is paid, it no longer has released.
        ae = account.events[event.event_id]
        # Remembered as an order's is (no order id: 0), so a retry is answered `exists`.
        self._remember_client_id(account, client_order_id, 0)
        account.seq += 1
        self._events.append(
            (
                _EV_CONVERTED,
                account_id,
                account.seq,
                client_order_id,
                event.event_id,
                market_id,
                quantity,
            )
        )
        escrow_added = 0
        emptied = []
        for other in event.markets:
            held = account.markets.get(other.market_id)
            if held is None:
                held = AccountMarket(account, other)
                account.markets[other.market_id] = held
                other.ams[account_id] = held
                join_event(event, held)
            before = held.position
            after = before + quantity
            yes_added = (after if after > 0 else 0) - (before if before > 0 else 0)
            other.open_interest += yes_added
            other.escrow += _PAYOUT * yes_added
            escrow_added += _PAYOUT * yes_added
            held.position = after
            if (held.reduce_bid_qty or held.reduce_ask_qty) and not held.trim_pending:
                held.trim_pending = True
                self._pending_trims.append(held)
            if not after and not held.orders:
                emptied.append(held)
        house_released = _PAYOUT * (len(event.markets) - 1) * quantity
        event.house_sets += quantity
        new_hold, now_released = event_risk(event, ae.ams.values(), len(ae.ams))
        assert new_hold == ae.hold, "a conversion leaves the hold as it was"
        released = now_released - ae.released
        assert released + house_released == escrow_added, "a conversion moves no cash"
        event.released += released + house_released
        ae.released = now_released
        if released and not ae.dirty:
            ae.dirty = True
            self._dirty_releases.append(ae)
        for held in emptied:
            self._drop(held)
        return None


def scalar_yes_payout(value: int, floor: int, cap: int) -> int:
    """round(100 * (value - floor) / (cap - floor)), halves rounded up, in integers."""
    span = cap - floor
    return (2 * _PAYOUT * (value - floor) + span) // (2 * span)
