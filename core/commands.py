"""Commands: everything that can change the exchange, as entries of one log.

Strategy: a command says what someone asked for, never what happened; the engine decides.
Codes are stable: 1-31 order entry (an account's session), 32-63 accounts and money,
64-95 markets and events (both operator commands). A `Batch` is one Raft entry: the proposer's
timestamp and the commands it collected, in the order they are applied.

The account of an order-entry command is stamped by the gateway from the authenticated
session; the engine trusts the log for identity and validates everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from . import constants
from .codes import OrderType, SelfTradePrevention, TimeInForce
from .records import Record, RecordError, Registry

COMMANDS = Registry("command")


# -- Order entry (1-31) --------------------------------------------------------------------


@COMMANDS.define(1)
class NewOrder(Record):
    """A new order. `price` is in the terms of the contract the side names (Side), or for a
    market order the worst price it accepts (0 for none). `max_cost` (market orders only,
    0 for none) caps what the order spends, fees included. `expire_time_ms` is set for GTD
    orders only."""

    account_id: int
    client_order_id: int
    market_id: int
    side: int
    price: int
    quantity: int
    order_type: int = int(OrderType.LIMIT)
    time_in_force: int = int(TimeInForce.GTC)
    flags: int = 0
    self_trade_prevention: int = int(SelfTradePrevention.CANCEL_AGGRESSING)
    expire_time_ms: int = 0
    max_cost: int = 0
    order_group_id: int = 0  # the account's order group the order belongs to; 0: none


@COMMANDS.define(2)
class CancelOrder(Record):
    """Cancel one open order, by `order_id`, or by `client_order_id` when order_id is 0."""

    account_id: int
    order_id: int
    client_order_id: int = 0


@COMMANDS.define(3)
class ReplaceOrder(Record):
    """Cancel-replace: give an open order a new price and remaining quantity. It keeps its
    place in the queue only when the price is the same and the quantity goes down."""

    account_id: int
    order_id: int
    client_order_id: int  # of the open order, used when order_id is 0
    new_client_order_id: int
    price: int
    quantity: int


@COMMANDS.define(4)
class MassCancel(Record):
    """Cancel every open order of the account, in one market or (market_id 0) in all."""

    account_id: int
    market_id: int = 0


@COMMANDS.define(5)
class SetOrderGroup(Record):
    """Create an order group of the account, or change its limit and window: when the
    contracts its orders fill within the last `window_ms` of batch time reach
    `contract_limit`, the group's resting orders are cancelled and new ones refused until
    the account resets it."""

    account_id: int
    order_group_id: int
    contract_limit: int
    window_ms: int


@COMMANDS.define(6)
class ResetOrderGroup(Record):
    """Let a triggered group take orders again; its window starts empty."""

    account_id: int
    order_group_id: int


@COMMANDS.define(7)
class ConvertNo(Record):
    """In an exhaustive event (exactly one market wins), `quantity` NO contracts of
    `market_id` become `quantity` YES contracts of every other market of the event: they
    pay the same in every scenario. A NO the account holds in another market is closed by
    its new YES, so this is also the conversion of a NO set of k markets into the YES of
    the others and 100 (k - 1) per set, which the account holds as released payout.
    `client_order_id` makes it exactly once, as an order's does (the same namespace)."""

    account_id: int
    client_order_id: int
    market_id: int
    quantity: int


# -- Accounts and money (32-63) ------------------------------------------------------------


@COMMANDS.define(32)
class CreateAccount(Record):
    """A new account with the Ed25519 public key its sessions log in with. The name is
    unique: creating the same name again is answered `exists`."""

    name: str
    public_key: bytes


@COMMANDS.define(33)
class Deposit(Record):
    account_id: int
    amount: int
    bank_reference: str  # applied at most once, across deposits and withdrawals


@COMMANDS.define(34)
class Withdraw(Record):
    account_id: int
    amount: int
    bank_reference: str


# -- Markets (64-95) -------------------------------------------------------------------------


@COMMANDS.define(64)
class CreateMarket(Record):
    """A market in the PROPOSED state. `close_time_ms` 0 means it closes only when told.
    Binary markets have floor = cap = 0; scalar markets settle on a value in [floor, cap].
    `event_id` (0: none) puts it in an event, for good."""

    ticker: str
    kind: int
    close_time_ms: int = 0
    taker_fee_bps: int = constants.taker_fee_bps_default
    maker_fee_bps: int = constants.maker_fee_bps_default
    position_limit: int = constants.position_limit_default
    floor: int = 0
    cap: int = 0
    event_id: int = 0


@COMMANDS.define(65)
class SetMarketStatus(Record):
    """Open, halt, resume (open again) or close a market."""

    market_id: int
    status: int


@COMMANDS.define(66)
class SettleMarket(Record):
    """Settle a closed market. Binary: outcome 1 is YES, 0 is NO. Scalar: the value."""

    market_id: int
    outcome: int


@COMMANDS.define(67)
class ConfigureMarket(Record):
    """New fee rates and position limit; they apply to orders placed from now on."""

    market_id: int
    taker_fee_bps: int
    maker_fee_bps: int
    position_limit: int


@COMMANDS.define(68)
class CreateEvent(Record):
    """A group of markets (CreateMarket names it). Mutually exclusive (1): at most one of
    its markets resolves YES; collateral nets across them and they settle together
    (SettleEvent). Exhaustive (1, mutually exclusive only): exactly one does."""

    ticker: str
    mutually_exclusive: int
    exhaustive: int


@COMMANDS.define(69)
class SettleEvent(Record):
    """Settle a mutually exclusive event whose markets are all closed: `winner_market_id`
    settles YES and every other market NO; 0 (not for an exhaustive event): none won."""

    event_id: int
    winner_market_id: int


@COMMANDS.define(70)
class SetMargins(Record):
    """A futures market's initial and maintenance margin (cents per contract), the most a
    mark may move (`mark_band`, at most the maintenance margin) and how often the engine
    marks it by itself (`mark_interval_ms` of batch time; 0: only when told)."""

    market_id: int
    initial_margin: int
    maintenance_margin: int
    mark_band: int
    mark_interval_ms: int


@COMMANDS.define(71)
class MarkMarket(Record):
    """Mark a futures market to `price` (1-99, within the band of the last mark; any price
    while nobody holds a position), or with price 0 to the price its book gives."""

    market_id: int
    price: int


Command = Record


@dataclass(frozen=True, slots=True)
class Batch:
    """One log entry: the proposer's time and the commands, in canonical form."""

    time_ms: int
    commands: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, time_ms: int, commands: list[Record] | tuple[Record, ...] = ()) -> Batch:
        return cls(time_ms, tuple(command.to_canonical() for command in commands))

    def encode(self) -> bytes:
        return msgpack.packb([self.time_ms, self.commands], use_bin_type=True)

    @classmethod
    def decode(cls, entry: bytes) -> Batch:
        """The batch in an entry. Commands stay raw: the engine validates each one, so one
        bad command is one reject. Raises RecordError only if the entry is no batch."""
        try:
            value = msgpack.unpackb(entry, raw=False, strict_map_key=False, use_list=False)
        except Exception as error:  # msgpack raises several types for bad bytes
            raise RecordError(f"entry is not msgpack: {error}") from None
        if type(value) is not tuple or len(value) != 2 or type(value[1]) is not tuple:
            raise RecordError("entry must be [time_ms, [commands]]")
        return cls(value[0], value[1])


def command_from_canonical(value: Any) -> Record:
    return COMMANDS.from_canonical(value)


__all__ = [
    "COMMANDS",
    "Batch",
    "CancelOrder",
    "Command",
    "ConfigureMarket",
    "ConvertNo",
    "CreateAccount",
    "CreateEvent",
    "CreateMarket",
    "Deposit",
    "MarkMarket",
    "MassCancel",
    "NewOrder",
    "RecordError",
    "ReplaceOrder",
    "ResetOrderGroup",
    "SetMargins",
    "SetMarketStatus",
    "SetOrderGroup",
    "SettleEvent",
    "SettleMarket",
    "Withdraw",
    "command_from_canonical",
]
