"""Stable numeric codes: order sides and types, market states, cancel and reject reasons.

Strategy: every code is an IntEnum whose values are part of the log and wire formats; a
value is never reused or renumbered, only added. Reject reasons are named after the rule
that failed and numbered in ranges by layer (core 100-999; the gateway uses 1000 and up).
The engine's hot path compares plain ints; these enums are for everyone who reads them.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Side(IntEnum):
    """What the order does, in its own terms. The price of the order is the price of the
    contract it names: BUY_NO at 40 pays 40 cents per NO contract."""

    BUY_YES = 1
    SELL_YES = 2  # accepted as BUY_NO at 100 - price
    BUY_NO = 3
    SELL_NO = 4  # accepted as BUY_YES at 100 - price


class BookSide(IntEnum):
    """The book is kept in YES terms: bids buy YES, asks sell YES (buy NO)."""

    BID = 1
    ASK = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2  # immediate only; its price is the worst price it accepts (0: no limit)


class TimeInForce(IntEnum):
    GTC = 1  # good till cancelled
    IOC = 2  # immediate or cancel
    FOK = 3  # fill or kill: fills completely at once, or is rejected
    GTD = 4  # good till a batch time: expires when batch time reaches expire_time_ms


class OrderFlag(IntFlag):
    NONE = 0
    POST_ONLY = 1  # rejected if any part of it would take liquidity
    REDUCE_ONLY = 2  # may only shrink the account's position in the market


class SelfTradePrevention(IntEnum):
    """What happens when an order would trade with a resting order of its own account."""

    CANCEL_RESTING = 1
    CANCEL_AGGRESSING = 2
    CANCEL_BOTH = 3


class Liquidity(IntEnum):
    MAKER = 1
    TAKER = 2


class MarketKind(IntEnum):
    BINARY = 1  # YES pays 100 if the outcome is YES, else 0
    SCALAR = 2  # YES pays round_half_up(100 * (v - floor) / (cap - floor)); NO the rest  # float-ok
    FUTURE = 3  # settles at that scalar price; positions on margin, marked to market


class MarketStatus(IntEnum):
    PROPOSED = 1
    OPEN = 2
    HALTED = 3
    CLOSED = 4
    SETTLED = 5


class CancelReason(IntEnum):
    REQUESTED = 1
    MASS_CANCEL = 2
    SELF_TRADE_PREVENTED = 3
    IMMEDIATE_REMAINDER = 4  # the unfilled rest of an IOC or market order
    EXPIRED = 5  # GTD order reached its expiry
    MARKET_CLOSED = 6
    MARKET_SETTLED = 7
    REDUCE_ONLY_TRIMMED = 8  # the position it reduced got smaller
    MAX_COST_REACHED = 9  # a market order stopped at its maximum cost
    ORDER_GROUP_TRIGGERED = 10  # its order group's fills reached the group's limit
    MARGIN_SHORT = 11  # a futures mark left the account's margin short of what its orders need


class Reject(IntEnum):
    """Why a command changed nothing. Checked in a fixed precedence per command
    (docs/engine.md lists it), so the same bad command always gets the same reason."""

    # 100-199: the shape of the batch or command
    BATCH_TIME_MUST_BE_VALID = 100
    COMMAND_MUST_BE_WELL_FORMED = 101
    COMMAND_CODE_MUST_BE_KNOWN = 102
    FIELDS_MUST_HAVE_DECLARED_TYPES = 103
    BATCH_MUST_NOT_EXCEED_COMMANDS_MAX = 104

    # 200-299: identity and idempotency
    EXISTS = 200  # an idempotent replay: the id or reference was already used
    ACCOUNT_MUST_EXIST = 201
    MARKET_MUST_EXIST = 202
    ORDER_MUST_EXIST = 203  # unknown, or no longer open
    ORDER_MUST_BELONG_TO_ACCOUNT = 204
    EVENT_MUST_EXIST = 205

    # 300-399: the fields of an order
    CLIENT_ORDER_ID_MUST_BE_IN_RANGE = 300
    SIDE_MUST_BE_KNOWN = 301
    ORDER_TYPE_MUST_BE_KNOWN = 302
    TIME_IN_FORCE_MUST_BE_KNOWN = 303
    MARKET_ORDER_MUST_BE_IMMEDIATE = 304
    PRICE_MUST_BE_BETWEEN_1_AND_99 = 305
    QUANTITY_MUST_BE_POSITIVE = 306
    QUANTITY_MUST_NOT_EXCEED_MAX = 307
    FLAGS_MUST_BE_KNOWN = 308
    POST_ONLY_MUST_BE_A_RESTING_LIMIT = 309
    SELF_TRADE_PREVENTION_MUST_BE_KNOWN = 310
    EXPIRE_TIME_MUST_BE_SET_ONLY_FOR_GTD = 311
    EXPIRE_TIME_MUST_BE_IN_FUTURE = 312
    EXPIRE_TIME_MUST_BE_WITHIN_HORIZON = 313
    MAX_COST_MUST_BE_FOR_MARKET_ORDERS_ONLY = 314
    MAX_COST_MUST_BE_IN_RANGE = 315
    ORDER_GROUP_ID_MUST_BE_IN_RANGE = 316
    ORDER_GROUP_LIMIT_MUST_BE_IN_RANGE = 317
    ORDER_GROUP_WINDOW_MUST_BE_IN_RANGE = 318
    MAX_COST_MUST_NOT_BE_SET_FOR_FUTURES = 319

    # 400-499: the order against the market and the account's orders
    MARKET_MUST_BE_OPEN = 400
    POST_ONLY_MUST_NOT_TAKE = 402
    FILL_OR_KILL_MUST_FILL_COMPLETELY = 403
    REDUCE_ONLY_MUST_REDUCE_POSITION = 404
    POSITION_MUST_STAY_WITHIN_LIMIT = 405
    OPEN_ORDERS_PER_ACCOUNT_MUST_NOT_EXCEED_MAX = 406
    OPEN_ORDERS_PER_MARKET_MUST_NOT_EXCEED_MAX = 407
    ORDER_GROUP_MUST_EXIST = 408
    ORDER_GROUP_MUST_NOT_BE_TRIGGERED = 409  # reset the group first
    ORDER_GROUPS_PER_ACCOUNT_MUST_NOT_EXCEED_MAX = 410
    EVENT_MUST_BE_EXHAUSTIVE = 411  # conversions: a NO is all the other YES only then
    NO_POSITION_MUST_COVER_CONVERSION = 412

    # 500-599: money
    COLLATERAL_MUST_COVER_ORDER = 500
    AMOUNT_MUST_BE_POSITIVE = 501
    AMOUNT_MUST_NOT_EXCEED_MAX = 502
    BANK_REFERENCE_MUST_BE_VALID = 503
    WITHDRAWAL_MUST_NOT_EXCEED_AVAILABLE_CASH = 504
    CASH_MUST_NOT_EXCEED_MAX = 505
    BANK_REFERENCES_MUST_NOT_EXCEED_MAX = 506
    EXCHANGE_MONEY_MUST_NOT_EXCEED_MAX = 507

    # 600-699: accounts and markets (operator commands)
    ACCOUNTS_MUST_NOT_EXCEED_MAX = 600
    PUBLIC_KEY_MUST_BE_32_BYTES = 601
    ACCOUNT_NAME_MUST_BE_VALID = 602
    TICKER_MUST_BE_VALID = 603
    MARKET_KIND_MUST_BE_KNOWN = 604
    CLOSE_TIME_MUST_BE_IN_FUTURE = 605
    FEE_BPS_MUST_BE_IN_RANGE = 606
    POSITION_LIMIT_MUST_BE_IN_RANGE = 607
    SCALAR_RANGE_MUST_BE_VALID = 608
    MARKETS_MUST_NOT_EXCEED_MAX = 609
    MARKET_STATUS_MUST_BE_KNOWN = 610
    MARKET_STATUS_TRANSITION_MUST_BE_ALLOWED = 611
    MARKET_MUST_BE_CLOSED = 612
    OUTCOME_MUST_BE_VALID = 613
    MARKET_MUST_NOT_BE_SETTLED = 614
    EVENTS_MUST_NOT_EXCEED_MAX = 615
    EVENT_FLAGS_MUST_BE_VALID = 616  # 0 or 1 each; exhaustive only if mutually exclusive
    MARKETS_PER_EVENT_MUST_NOT_EXCEED_MAX = 617
    EXCLUSIVE_EVENT_MARKETS_MUST_BE_BINARY = 618
    EVENT_MUST_NOT_BE_SETTLED = 619
    EXHAUSTIVE_EVENT_MUST_NOT_HAVE_OPENED = 620  # its scenarios are fixed once it trades
    MARKET_MUST_BE_SETTLED_WITH_ITS_EVENT = 621
    EVENT_MUST_BE_MUTUALLY_EXCLUSIVE = 622
    WINNER_MUST_BE_A_MARKET_OF_THE_EVENT = 623
    EXHAUSTIVE_EVENT_MUST_HAVE_A_WINNER = 624
    EVENT_MARKETS_MUST_BE_CLOSED = 625
    MARKET_MUST_BE_A_FUTURE = 626
    MARGINS_MUST_BE_IN_ORDER = 627  # 1 <= band <= maintenance <= initial <= 100
    MARK_INTERVAL_MUST_BE_IN_RANGE = 628
    MARK_MUST_BE_WITHIN_BAND = 629
    EXHAUSTIVE_EVENT_MUST_HAVE_TWO_MARKETS = 630  # to open: one market alone would surely win

    @property
    def rule(self) -> str:
        """The reason as written in docs and logs: `market_must_be_open`."""
        return self.name.lower()
