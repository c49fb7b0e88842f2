"""Events: everything the engine says happened, in the order it happened.

Strategy: three numbered streams come out of the engine, so every node numbers them alike.
- Account events (codes 1-31) carry `account_id` and `account_seq`, numbered 1, 2, ... per
  account: the execution reports and balance changes a session replays after a reconnect.
  A reject of a command that names no existing account has account_id 0 and account_seq 0.
- Market events (codes 32-63) carry `market_id` and `market_seq`, numbered per market: the
  market-data stream. LevelUpdated gives the absolute quantity of a level, so the book is
  rebuilt from them alone; a level with quantity 0 is gone.
- Event events (codes 64-95) carry `event_id` and `event_seq`, numbered per event (a group
  of markets): its creation and its settlement.

Prices in account events are in the terms of the order's side (a BUY_NO fill at 40 paid
40 cents per NO contract); prices in market events are YES prices.
"""

from __future__ import annotations

from typing import Any

from .records import Record, Registry

EVENTS = Registry("event")

ACCOUNT_EVENT_CODES = range(1, 32)
MARKET_EVENT_CODES = range(32, 64)
EVENT_EVENT_CODES = range(64, 96)


# -- Account events (1-31) -------------------------------------------------------------------


@EVENTS.define(1)
class OrderAccepted(Record):
    account_id: int
    account_seq: int
    order_id: int
    client_order_id: int
    market_id: int
    side: int
    order_type: int
    time_in_force: int
    price: int
    quantity: int
    flags: int
    expire_time_ms: int


@EVENTS.define(2)
class CommandRejected(Record):
    """A command that changed nothing. `client_order_id` is the command's, if it has one;
    `related_id` is what the reject refers to: for `exists`, the order, account or market
    that already has that id or name; for a cancel or replace, the order it named."""

    account_id: int
    account_seq: int
    command_code: int
    client_order_id: int
    related_id: int
    reason: int


@EVENTS.define(3)
class OrderFilled(Record):
    account_id: int
    account_seq: int
    order_id: int
    client_order_id: int
    market_id: int
    trade_id: int
    side: int
    price: int  # in the order's side terms
    quantity: int
    fee: int
    leaves_quantity: int
    liquidity: int
    position: int  # the account's position in the market after this fill (+YES, -NO)


@EVENTS.define(4)
class OrderCancelled(Record):
    account_id: int
    account_seq: int
    order_id: int
    client_order_id: int
    market_id: int
    cancelled_quantity: int
    reason: int


@EVENTS.define(5)
class OrderReplaced(Record):
    account_id: int
    account_seq: int
    order_id: int
    client_order_id: int  # the new one
    previous_client_order_id: int
    market_id: int
    price: int
    quantity: int  # the new remaining quantity
    priority_kept: int  # 1 if the order kept its place in the queue


@EVENTS.define(6)
class MassCancelled(Record):
    account_id: int
    account_seq: int
    market_id: int
    cancelled_orders: int


@EVENTS.define(7)
class AccountCreated(Record):
    account_id: int
    account_seq: int
    name: str
    public_key: bytes


@EVENTS.define(8)
class Deposited(Record):
    account_id: int
    account_seq: int
    amount: int
    bank_reference: str
    cash: int  # available cash after it


@EVENTS.define(9)
class Withdrawn(Record):
    account_id: int
    account_seq: int
    amount: int
    bank_reference: str
    cash: int


@EVENTS.define(10)
class PositionSettled(Record):
    account_id: int
    account_seq: int
    market_id: int
    position: int
    payout: int
    cash: int


@EVENTS.define(11)
class OrderGroupUpdated(Record):
    """An order group was set, triggered (its limit reached: its resting orders were
    cancelled just before this event) or reset."""

    account_id: int
    account_seq: int
    order_group_id: int
    contract_limit: int
    window_ms: int
    filled: int  # contracts its orders filled within the window
    triggered: int  # 1: new orders of the group are refused until it is reset


@EVENTS.define(12)
class PositionsConverted(Record):
    """ConvertNo's outcome: `quantity` NO of `market_id` became `quantity` YES of every
    other market of the event (a NO held there closed instead). The account's cash and hold
    are unchanged; its released payout moves (PayoutReleased)."""

    account_id: int
    account_seq: int
    client_order_id: int
    event_id: int
    market_id: int
    quantity: int


@EVENTS.define(13)
class PayoutReleased(Record):
    """The payout released to the account in a mutually exclusive event (the least its
    positions there pay whichever market wins, paid into its cash ahead of settlement)
    changed in this command, to `released`; `cash` is its available cash after it. At the
    event's settlement it goes back to 0, after the positions were paid in full."""

    account_id: int
    account_seq: int
    event_id: int
    released: int
    cash: int


@EVENTS.define(14)
class VariationMargin(Record):
    """A futures mark: the account received (or paid) `variation` cents, its position
    times the mark's move; what it owed came from its cash first, then its margin."""

    account_id: int
    account_seq: int
    market_id: int
    mark: int
    variation: int  # + received, - paid
    margin: int  # the account's margin in the market after it
    cash: int


@EVENTS.define(15)
class PositionReduced(Record):
    """A futures position closed by the engine at the mark: the account's own (reason 1,
    liquidated: its margin fell below maintenance) or a counterparty's (reason 2,
    deleveraged: it held the opposite position the liquidation closed against)."""

    account_id: int
    account_seq: int
    market_id: int
    quantity: int
    position: int  # after it
    reason: int
    margin: int
    cash: int


# -- Market events (32-63) -------------------------------------------------------------------


@EVENTS.define(32)
class MarketCreated(Record):
    market_id: int
    market_seq: int
    ticker: str
    kind: int
    close_time_ms: int
    taker_fee_bps: int
    maker_fee_bps: int
    position_limit: int
    floor: int
    cap: int
    event_id: int  # the event it belongs to; 0: none


@EVENTS.define(33)
class MarketStatusChanged(Record):
    market_id: int
    market_seq: int
    status: int


@EVENTS.define(34)
class MarketConfigured(Record):
    market_id: int
    market_seq: int
    taker_fee_bps: int
    maker_fee_bps: int
    position_limit: int


@EVENTS.define(35)
class LevelUpdated(Record):
    market_id: int
    market_seq: int
    book_side: int
    price: int  # YES price
    quantity: int  # the level's whole quantity now; 0 removes the level
    orders: int


@EVENTS.define(36)
class TradePrinted(Record):
    market_id: int
    market_seq: int
    trade_id: int
    price: int  # YES price, the resting order's
    quantity: int
    aggressor_side: int  # BookSide of the taker: BID bought YES


@EVENTS.define(37)
class MarketSettled(Record):
    market_id: int
    market_seq: int
    outcome: int
    yes_payout: int  # cents paid per YES contract; NO contracts get the rest of 100


@EVENTS.define(38)
class MarketMarked(Record):
    """A futures market's mark price moved (variation margin follows for every position)."""

    market_id: int
    market_seq: int
    mark: int


@EVENTS.define(39)
class MarginsSet(Record):
    market_id: int
    market_seq: int
    initial_margin: int
    maintenance_margin: int
    mark_band: int
    mark_interval_ms: int


# -- Event events (64-95) --------------------------------------------------------------------


@EVENTS.define(64)
class EventCreated(Record):
    event_id: int
    event_seq: int
    ticker: str
    mutually_exclusive: int
    exhaustive: int


@EVENTS.define(65)
class EventSettled(Record):
    """A mutually exclusive event settled: `winner_market_id` YES (0: none won), every
    other market NO. MarketSettled and PositionSettled follow for each market, then
    PayoutReleased (back to 0) for each account that had payout released."""

    event_id: int
    event_seq: int
    winner_market_id: int


Event = Record


def event_from_canonical(value: Any) -> Record:
    return EVENTS.from_canonical(value)


__all__ = [
    "ACCOUNT_EVENT_CODES",
    "EVENTS",
    "EVENT_EVENT_CODES",
    "MARKET_EVENT_CODES",
    "AccountCreated",
    "CommandRejected",
    "Deposited",
    "Event",
    "EventCreated",
    "EventSettled",
    "LevelUpdated",
    "MarginsSet",
    "MarketConfigured",
    "MarketCreated",
    "MarketMarked",
    "MarketSettled",
    "MarketStatusChanged",
    "MassCancelled",
    "OrderAccepted",
    "OrderCancelled",
    "OrderFilled",
    "OrderGroupUpdated",
    "OrderReplaced",
    "PayoutReleased",
    "PositionReduced",
    "PositionSettled",
    "PositionsConverted",
    "TradePrinted",
    "VariationMargin",
    "Withdrawn",
    "event_from_canonical",
]
