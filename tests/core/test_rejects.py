"""Every reject reason, reached on purpose and given for exactly the rule it names.

Strategy: three kinds of test, each driven by a table.
- The reject table has one row per way of breaking one rule: a setup (a scenario table in
  the language of `support.scenario`, or a function of the scenario) and the one bad command.
  Each row checks the reason, the stream the reject lands in (an order-entry command of an
  existing account: that account and its next number; operator commands, unknown accounts
  and malformed commands: account 0, number 0), the command code, the client order id and
  `related_id`. The harness checks that the reject changed nothing. A second test fails when
  a member of `Reject` has no row, so a new rule cannot be added without a test.
- The precedence tests take one command that breaks many rules at once and mend it one rule
  at a time ("peeling"): each answer must be the next rule in the order of docs/engine.md
  section 5, and the last command is accepted. A chain so proves both that its command
  really breaks every rule it lists and the order in which they are checked. Rejects change
  nothing, so a whole chain runs on one scenario.
- Batch-level rejects go through `Engine.apply` directly, with batches of several commands,
  and check that every command in the batch gets exactly one outcome.

Limits too large to reach in a test (accounts_max is 1,000,000, for instance) are lowered
with monkeypatch on `evx.core.constants`, the module object the engine reads its limits from
at run time (`evx.core.engine.limits`); every row and test that does so says so. Engine bugs
found here were fixed and are kept as tests, each with the smallest setup that shows it;
docs/engine.md is the specification they are measured against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from evx.core import (
    COMMANDS,
    Batch,
    CancelOrder,
    CommandRejected,
    ConfigureMarket,
    ConvertNo,
    CreateAccount,
    CreateEvent,
    CreateMarket,
    Deposit,
    MarketKind,
    MarketStatus,
    MarkMarket,
    MassCancel,
    NewOrder,
    OrderAccepted,
    OrderFlag,
    OrderReplaced,
    OrderType,
    Record,
    Reject,
    ReplaceOrder,
    ResetOrderGroup,
    SetMargins,
    SetMarketStatus,
    SetOrderGroup,
    SettleEvent,
    SettleMarket,
    Side,
    TimeInForce,
    Withdraw,
    check_invariants,
    event_from_canonical,
)
from evx.core import constants as limits
from support.engine_harness import Harness, comparable_state
from support.scenario import Scenario

KEY = b"k" * 32  # a public key of the right length
POST_ONLY = int(OrderFlag.POST_ONLY)
REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
BUY_YES, SELL_YES, BUY_NO = Side.BUY_YES, Side.SELL_YES, Side.BUY_NO
OPEN, HALTED, CLOSED = MarketStatus.OPEN, MarketStatus.HALTED, MarketStatus.CLOSED
BINARY, SCALAR, FUTURE = MarketKind.BINARY, MarketKind.SCALAR, MarketKind.FUTURE
HORIZON_MS = limits.gtd_horizon_ms_max


class World(Scenario):
    """The default scenario (alice, bob and carol with 10,000 cents each; market MKT open),
    plus more markets by ticker, in whatever status a row needs."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.market_ids = {"MKT": self.market_id}
        self.event_ids: dict[str, int] = {}

    def add_event(self, ticker: str, mutually_exclusive: int, exhaustive: int) -> int:
        created = self.harness.do(CreateEvent(ticker, mutually_exclusive, exhaustive))
        assert not isinstance(created[0], CommandRejected), created
        self.event_ids[ticker] = created[0].event_id
        return created[0].event_id

    def add_market(
        self,
        ticker: str,
        *statuses: MarketStatus,
        kind: MarketKind = BINARY,
        floor: int = 0,
        cap: int = 0,
        settle_with: int | None = None,
        event: str = "",
    ) -> int:
        event_id = self.event_ids[event] if event else 0
        created = self.harness.do(
            CreateMarket(ticker, kind, floor=floor, cap=cap, event_id=event_id)
        )
        assert not isinstance(created[0], CommandRejected), created
        market_id = created[0].market_id
        for status in statuses:
            changed = self.harness.do(SetMarketStatus(market_id, status))
            assert not isinstance(changed[0], CommandRejected), changed
        if settle_with is not None:
            settled = self.harness.do(SettleMarket(market_id, settle_with))
            assert not isinstance(settled[0], CommandRejected), settled
        self.market_ids[ticker] = market_id
        return market_id

    def account_id(self, name: str) -> int:
        return self.actors[name].account_id

    def order_id(self, name: str, client_order_id: int) -> int:
        return self.actors[name].order_ids[client_order_id]

    def next_batch_time(self) -> int:
        """The time of the batch the harness applies next (it counts one up per command)."""
        return self.harness.time_ms + 1


Setup = str | Callable[[World, pytest.MonkeyPatch], None]
Value = Any  # a field value, or a function of the world that gives one


def lower(monkeypatch: pytest.MonkeyPatch, name: str, value: int) -> Callable[[], None]:
    """Lower one limit of `evx.core.constants` for this test, because its real value is
    impractical to reach; return a function that puts the real value back."""
    original = getattr(limits, name)
    monkeypatch.setattr(limits, name, value)
    return lambda: monkeypatch.setattr(limits, name, original)


# -- Values that depend on the world --------------------------------------------------------


def account_of(name: str) -> Callable[[World], int]:
    return lambda world: world.account_id(name)


def order_of(name: str, client_order_id: int) -> Callable[[World], int]:
    return lambda world: world.order_id(name, client_order_id)


def market_of(ticker: str) -> Callable[[World], int]:
    return lambda world: world.market_ids[ticker]


def event_of(ticker: str) -> Callable[[World], int]:
    return lambda world: world.event_ids[ticker]


def batch_time(plus: int = 0) -> Callable[[World], int]:
    """The time of the batch the bad command goes in, plus `plus` milliseconds."""
    return lambda world: world.next_batch_time() + plus


def _command(cls: type[Record], defaults: dict[str, Value], fields: dict[str, Value]):
    values = {**defaults, **fields}

    def build(world: World) -> Record:
        resolved = {
            name: value(world) if callable(value) else value for name, value in values.items()
        }
        return cls(**resolved)

    return build


def new_order(actor: str = "alice", **fields: Value):
    defaults = {
        "account_id": account_of(actor),
        "client_order_id": 100,
        "market_id": market_of("MKT"),
        "side": BUY_YES,
        "price": 40,
        "quantity": 1,
    }
    return _command(NewOrder, defaults, fields)


def cancel_order(actor: str = "alice", **fields: Value):
    defaults = {"account_id": account_of(actor), "order_id": 0, "client_order_id": 0}
    return _command(CancelOrder, defaults, fields)


def replace_order(actor: str = "alice", **fields: Value):
    defaults = {
        "account_id": account_of(actor),
        "order_id": 0,
        "client_order_id": 1,
        "new_client_order_id": 100,
        "price": 41,
        "quantity": 10,
    }
    return _command(ReplaceOrder, defaults, fields)


def mass_cancel(actor: str = "alice", **fields: Value):
    return _command(MassCancel, {"account_id": account_of(actor), "market_id": 0}, fields)


def set_group(actor: str = "alice", **fields: Value):
    defaults = {
        "account_id": account_of(actor),
        "order_group_id": 3,
        "contract_limit": 10,
        "window_ms": 60_000,
    }
    return _command(SetOrderGroup, defaults, fields)


def reset_group(actor: str = "alice", **fields: Value):
    return _command(ResetOrderGroup, {"account_id": account_of(actor), "order_group_id": 3}, fields)


def deposit(actor: str = "alice", **fields: Value):
    defaults = {"account_id": account_of(actor), "amount": 5, "bank_reference": "fresh"}
    return _command(Deposit, defaults, fields)


def withdraw(actor: str = "alice", **fields: Value):
    defaults = {"account_id": account_of(actor), "amount": 5, "bank_reference": "fresh"}
    return _command(Withdraw, defaults, fields)


def create_account(**fields: Value):
    return _command(CreateAccount, {"name": "dave", "public_key": KEY}, fields)


def create_market(**fields: Value):
    return _command(CreateMarket, {"ticker": "NEW", "kind": BINARY}, fields)


def set_status(ticker: str = "MKT", **fields: Value):
    return _command(SetMarketStatus, {"market_id": market_of(ticker), "status": HALTED}, fields)


def settle(ticker: str = "MKT", **fields: Value):
    return _command(SettleMarket, {"market_id": market_of(ticker), "outcome": 1}, fields)


def configure(ticker: str = "MKT", **fields: Value):
    defaults = {
        "market_id": market_of(ticker),
        "taker_fee_bps": 700,
        "maker_fee_bps": 0,
        "position_limit": 1_000,
    }
    return _command(ConfigureMarket, defaults, fields)


def create_event(**fields: Value):
    defaults = {"ticker": "NEW", "mutually_exclusive": 1, "exhaustive": 0}
    return _command(CreateEvent, defaults, fields)


def settle_event(ticker: str = "RACE", **fields: Value):
    defaults = {"event_id": event_of(ticker), "winner_market_id": market_of("X")}
    return _command(SettleEvent, defaults, fields)


def convert(actor: str = "alice", **fields: Value):
    defaults = {
        "account_id": account_of(actor),
        "client_order_id": 100,
        "market_id": market_of("A"),
        "quantity": 1,
    }
    return _command(ConvertNo, defaults, fields)


def canonical(build: Callable[[World], Record], edit: Callable[[tuple], Any]):
    """A command in canonical form, edited into something the engine must not accept."""
    return lambda world: edit(build(world).to_canonical())


# -- Setups ---------------------------------------------------------------------------------

NONE = ""
ALICE_RESTS = "alice buy_yes 10 @ 40 -> accepted; rests 10"  # alice #1, holds 400
BOB_RESTS = "bob sell_yes 5 @ 45 -> accepted; rests 5"  # an ask at 45; bob #1
ALICE_FILLED = """
alice buy_yes 2 @ 40 -> accepted; rests 2
bob   sell_yes 2 @ 40 -> accepted; filled 2@40
"""  # alice #1 is filled (its client order id is remembered); alice is long 2 YES


def with_markets(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A market in every status besides MKT (open): NEW (proposed), HALTED, CLOSED,
    SETTLED and SCALAR (a closed scalar market on 0 to 1,000)."""
    world.add_market("NEW")
    world.add_market("HALTED", OPEN, HALTED)
    world.add_market("CLOSED", CLOSED)
    world.add_market("SETTLED", CLOSED, settle_with=1)
    world.add_market("SCALAR", CLOSED, kind=SCALAR, floor=0, cap=1_000)


def with_future(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """FUT, an open futures market on [0, 100] (margins 20 / 10, band 5, marked at 50),
    where alice is long 2 from bob at 50."""
    market_id = world.add_market("FUT", kind=FUTURE, floor=0, cap=100)
    world.harness.do(SetMarketStatus(market_id, OPEN))
    alice, bob = world.account_id("alice"), world.account_id("bob")
    world.harness.do(NewOrder(alice, 60, market_id, BUY_YES, 50, 2))
    filled = world.harness.do(NewOrder(bob, 60, market_id, SELL_YES, 50, 2))
    assert any(type(event).__name__ == "OrderFilled" for event in filled), filled


def set_margins(ticker: str = "FUT", **fields: Value):
    defaults = {
        "market_id": market_of(ticker),
        "initial_margin": 20,
        "maintenance_margin": 10,
        "mark_band": 5,
        "mark_interval_ms": 0,
    }
    return _command(SetMargins, defaults, fields)


def mark(ticker: str = "FUT", **fields: Value):
    return _command(MarkMarket, {"market_id": market_of(ticker), "price": 52}, fields)


def with_settled_future(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with_future(world, monkeypatch)
    world.harness.do(SetMarketStatus(world.market_ids["FUT"], CLOSED))
    world.harness.do(SettleMarket(world.market_ids["FUT"], 50))


def with_events(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events besides MKT: ELECT (exhaustive) of A, B and C, open, where alice holds 2 NO
    of A (bought from bob at 60); RACE (mutually exclusive, not exhaustive) of X and Y,
    closed; CLUB (a plain group) of G, closed; DONE (exhaustive) of D1 and D2, settled
    with D1."""
    world.add_event("ELECT", 1, 1)
    for ticker in ("A", "B", "C"):  # every market of an exhaustive event before any opens
        world.add_market(ticker, event="ELECT")
    for ticker in ("A", "B", "C"):
        world.harness.do(SetMarketStatus(world.market_ids[ticker], OPEN))
    alice, bob, a = world.account_id("alice"), world.account_id("bob"), world.market_ids["A"]
    world.harness.do(NewOrder(bob, 50, a, BUY_YES, 40, 2))
    filled = world.harness.do(NewOrder(alice, 50, a, BUY_NO, 60, 2))
    assert any(type(event).__name__ == "OrderFilled" for event in filled), filled
    world.add_event("RACE", 1, 0)
    world.add_market("X", CLOSED, event="RACE")
    world.add_market("Y", CLOSED, event="RACE")
    world.add_event("CLUB", 0, 0)
    world.add_market("G", CLOSED, event="CLUB")
    world.add_event("DONE", 1, 1)
    world.add_market("D1", event="DONE")
    world.add_market("D2", CLOSED, event="DONE")
    world.harness.do(SetMarketStatus(world.market_ids["D1"], CLOSED))
    settled = world.harness.do(SettleEvent(world.event_ids["DONE"], world.market_ids["D1"]))
    assert not isinstance(settled[0], CommandRejected), settled


def full_event(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Event PAIR (mutually exclusive) of P1 and P2, with markets_per_event_max lowered
    to 2."""
    world.add_event("PAIR", 1, 0)
    world.add_market("P1", event="PAIR")
    world.add_market("P2", event="PAIR")
    lower(monkeypatch, "markets_per_event_max", 2)


def limited(name: str, value: int, table: str = NONE) -> Setup:
    """A scenario table, then one limit lowered, because its real value is impractical to
    reach in a test."""

    def setup(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        world.run(table)
        lower(monkeypatch, name, value)

    return setup


def alice_group(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's order group 3 (10 contracts a minute)."""
    world.harness.do(SetOrderGroup(world.account_id("alice"), 3, 10, 60_000))


def alice_group_triggered(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's order group 3 with a limit of 1 contract, reached by one fill."""
    alice = world.account_id("alice")
    world.harness.do(SetOrderGroup(alice, 3, 1, 60_000))
    world.harness.do(NewOrder(alice, 50, world.market_id, BUY_YES, 40, 1, order_group_id=3))
    world.harness.do(NewOrder(world.account_id("bob"), 50, world.market_id, Side.SELL_YES, 40, 1))
    assert world.engine.accounts[alice].groups[3].triggered


def many_groups(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    alice_group(world, monkeypatch)
    lower(monkeypatch, "order_groups_per_account_max", 1)


def rich_alice(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice deposits the largest amount nine times: 900,000,010,000 cents, so one more
    largest deposit takes her past account_cash_max_cents (10**12)."""
    for number in range(1, 10):
        world.run(f"alice deposit {limits.deposit_amount_max_cents} big-{number} -> ok")


# -- The reject table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    rule: str
    setup: Setup
    command: Callable[[World], Any]
    account: str | None  # whose stream the reject lands in; None: account 0, number 0
    related: int | Callable[[World], int]
    time_ms: Callable[[World], Any] | None  # the batch's time, if not the harness's next


def row(
    rule: str,
    case: str,
    setup: Setup,
    command: Callable[[World], Any],
    account: str | None = None,
    related: int | Callable[[World], int] = 0,
    *,
    time_ms: Callable[[World], Any] | None = None,
):
    return pytest.param(Row(rule, setup, command, account, related, time_ms), id=f"{rule}: {case}")


MISSING_LAST_FIELD = canonical(new_order(), lambda fields: fields[:-1])
TOO_MANY_FIELDS = canonical(new_order(), lambda fields: (*fields, 0))

TABLE = [
    # 100-199: the shape of the batch or command
    row("batch_time_must_be_valid", "negative time", NONE, deposit(), time_ms=lambda world: -1),
    row("batch_time_must_be_valid", "order entry goes to account 0", NONE, new_order(),
        time_ms=lambda world: 2**63),
    # batch_commands_max is lowered to 0 so that a batch of one command is over it; the
    # batch tests below use a real batch of several commands.
    row("batch_must_not_exceed_commands_max", "one command over a limit of 0",
        limited("batch_commands_max", 0), new_order()),
    row("command_must_be_well_formed", "a field missing", NONE, MISSING_LAST_FIELD),
    row("command_must_be_well_formed", "a field too many", NONE, TOO_MANY_FIELDS),
    row("command_must_be_well_formed", "not an array", NONE, lambda world: None),
    row("command_must_be_well_formed", "an empty array", NONE, lambda world: ()),
    row("command_code_must_be_known", "unused code", NONE, lambda world: (8, 1, 2)),
    row("command_code_must_be_known", "code as a string", NONE,
        canonical(new_order(), lambda fields: ("1", *fields[1:]))),
    row("command_code_must_be_known", "code as a bool", NONE,
        canonical(new_order(), lambda fields: (True, *fields[1:]))),
    row("fields_must_have_declared_types", "price as a string", NONE, new_order(price="40")),
    row("fields_must_have_declared_types", "a bool is not an int", NONE,
        new_order(quantity=True)),
    row("fields_must_have_declared_types", "a float is not an int", NONE,
        new_order(price=40.0)),
    row("fields_must_have_declared_types", "public key as str", NONE,
        create_account(public_key="k" * 32)),
    row("fields_must_have_declared_types", "bank reference as bytes", NONE,
        deposit(bank_reference=b"fresh")),
    # 200-299: identity and idempotency
    row("exists", "new order reuses an open client order id", ALICE_RESTS,
        new_order(client_order_id=1), "alice", order_of("alice", 1)),
    row("exists", "new order reuses a filled order's id", ALICE_FILLED,
        new_order(client_order_id=1), "alice", order_of("alice", 1)),
    row("exists", "new order reuses a cancelled order's id",
        f"{ALICE_RESTS}\nalice cancel #1 -> cancelled 10 requested",
        new_order(client_order_id=1), "alice", order_of("alice", 1)),
    row("exists", "replace to another open order's id",
        f"{ALICE_RESTS}\nalice buy_yes 5 @ 30 -> accepted; rests 5",
        replace_order(client_order_id=1, new_client_order_id=2), "alice", order_of("alice", 2)),
    row("exists", "replace to a filled order's id",
        f"{ALICE_FILLED}\nalice buy_yes 5 @ 30 -> accepted; rests 5",
        replace_order(client_order_id=2, new_client_order_id=1), "alice", order_of("alice", 1)),
    row("exists", "account name taken", NONE, create_account(name="alice"), None,
        account_of("alice")),
    row("exists", "ticker taken", NONE, create_market(ticker="MKT"), None, market_of("MKT")),
    row("exists", "event ticker taken", with_events, create_event(ticker="ELECT"), None,
        event_of("ELECT")),
    row("exists", "event settled again with its winner", with_events,
        settle_event("DONE", winner_market_id=market_of("D1")), None, event_of("DONE")),
    row("exists", "conversion reuses an open order's id",
        lambda world, monkeypatch: (world.run(ALICE_RESTS), with_events(world, monkeypatch)),
        convert(client_order_id=1), "alice", order_of("alice", 1)),
    row("exists", "conversion retried",
        lambda world, monkeypatch: (with_events(world, monkeypatch),
                                    world.harness.do(convert()(world))),
        convert(), "alice", 0),
    row("exists", "deposit reuses a bank reference", NONE,
        deposit(bank_reference="seed-alice"), None, account_of("alice")),
    row("exists", "withdrawal reuses a bank reference", NONE,
        withdraw(bank_reference="seed-alice"), None, account_of("alice")),
    row("account_must_exist", "new order", NONE, new_order(account_id=999)),
    row("account_must_exist", "new order for account 0", NONE, new_order(account_id=0)),
    row("account_must_exist", "cancel", NONE, cancel_order(account_id=999, order_id=1)),
    row("account_must_exist", "replace", NONE, replace_order(account_id=999)),
    row("account_must_exist", "mass cancel", NONE, mass_cancel(account_id=999)),
    row("account_must_exist", "deposit", NONE, deposit(account_id=999)),
    row("account_must_exist", "withdrawal", NONE, withdraw(account_id=999)),
    row("account_must_exist", "conversion", with_events, convert(account_id=999)),
    row("market_must_exist", "new order", NONE, new_order(market_id=999), "alice"),
    row("market_must_exist", "mass cancel", NONE, mass_cancel(market_id=999), "alice", 999),
    row("market_must_exist", "set status", NONE, set_status(market_id=999)),
    row("market_must_exist", "settle", NONE, settle(market_id=999)),
    row("market_must_exist", "configure", NONE, configure(market_id=999)),
    row("market_must_exist", "conversion", NONE, convert(market_id=999), "alice", 999),
    row("event_must_exist", "new market", NONE, create_market(event_id=999), None, 999),
    row("event_must_exist", "new market in event -1", NONE, create_market(event_id=-1)),
    row("event_must_exist", "settle", NONE, settle_event(event_id=999, winner_market_id=0)),
    row("order_must_exist", "cancel of an unknown order id", NONE,
        cancel_order(order_id=999), "alice", 999),
    row("order_must_exist", "cancel of an unknown client order id", NONE,
        cancel_order(client_order_id=7), "alice"),
    row("order_must_exist", "cancel by another account's client order id", BOB_RESTS,
        cancel_order(client_order_id=1), "alice"),
    row("order_must_exist", "cancel of a filled order by id", ALICE_FILLED,
        cancel_order(order_id=order_of("alice", 1)), "alice", order_of("alice", 1)),
    row("order_must_exist", "cancel of a filled order by client order id", ALICE_FILLED,
        cancel_order(client_order_id=1), "alice"),
    row("order_must_exist", "replace of an unknown order id", NONE,
        replace_order(order_id=999), "alice", 999),
    row("order_must_exist", "replace of an unknown client order id", NONE,
        replace_order(client_order_id=7), "alice"),
    row("order_must_belong_to_account", "cancel of another account's order", BOB_RESTS,
        cancel_order(order_id=order_of("bob", 1)), "alice", order_of("bob", 1)),
    row("order_must_belong_to_account", "replace of another account's order", BOB_RESTS,
        replace_order(order_id=order_of("bob", 1)), "alice", order_of("bob", 1)),
    # 300-399: the fields of an order
    row("client_order_id_must_be_in_range", "zero", NONE, new_order(client_order_id=0),
        "alice"),
    row("client_order_id_must_be_in_range", "negative", NONE, new_order(client_order_id=-1),
        "alice"),
    row("client_order_id_must_be_in_range", "2**63", NONE, new_order(client_order_id=2**63),
        "alice"),
    row("client_order_id_must_be_in_range", "replace to zero, by client order id",
        ALICE_RESTS, replace_order(new_client_order_id=0), "alice"),
    row("client_order_id_must_be_in_range", "replace to zero, by order id", ALICE_RESTS,
        replace_order(order_id=order_of("alice", 1), new_client_order_id=0), "alice",
        order_of("alice", 1)),
    row("client_order_id_must_be_in_range", "conversion with 0", with_events,
        convert(client_order_id=0), "alice", market_of("A")),
    row("side_must_be_known", "zero", NONE, new_order(side=0), "alice"),
    row("side_must_be_known", "five", NONE, new_order(side=5), "alice"),
    row("order_type_must_be_known", "zero", NONE, new_order(order_type=0), "alice"),
    row("order_type_must_be_known", "three", NONE, new_order(order_type=3), "alice"),
    row("time_in_force_must_be_known", "zero", NONE, new_order(time_in_force=0), "alice"),
    row("time_in_force_must_be_known", "five", NONE, new_order(time_in_force=5), "alice"),
    row("market_order_must_be_immediate", "gtc", NONE,
        new_order(order_type=MARKET, time_in_force=GTC), "alice"),
    row("market_order_must_be_immediate", "gtd", NONE,
        new_order(order_type=MARKET, time_in_force=GTD, expire_time_ms=batch_time(1_000)),
        "alice"),
    row("price_must_be_between_1_and_99", "limit at 0", NONE, new_order(price=0), "alice"),
    row("price_must_be_between_1_and_99", "limit at 100", NONE, new_order(price=100), "alice"),
    row("price_must_be_between_1_and_99", "market at 100", NONE,
        new_order(order_type=MARKET, time_in_force=IOC, price=100), "alice"),
    row("price_must_be_between_1_and_99", "market at -1", NONE,
        new_order(order_type=MARKET, time_in_force=IOC, price=-1), "alice"),
    row("price_must_be_between_1_and_99", "replace to 0", ALICE_RESTS,
        replace_order(price=0), "alice", order_of("alice", 1)),
    row("price_must_be_between_1_and_99", "replace to 100", ALICE_RESTS,
        replace_order(price=100), "alice", order_of("alice", 1)),
    row("quantity_must_be_positive", "zero", NONE, new_order(quantity=0), "alice"),
    row("quantity_must_be_positive", "negative", NONE, new_order(quantity=-1), "alice"),
    row("quantity_must_be_positive", "replace to zero", ALICE_RESTS,
        replace_order(quantity=0), "alice", order_of("alice", 1)),
    row("quantity_must_not_exceed_max", "one over", NONE,
        new_order(quantity=limits.order_quantity_max + 1), "alice"),
    row("quantity_must_not_exceed_max", "replace to one over", ALICE_RESTS,
        replace_order(quantity=limits.order_quantity_max + 1), "alice", order_of("alice", 1)),
    row("quantity_must_be_positive", "conversion of 0", with_events, convert(quantity=0),
        "alice", market_of("A")),
    row("quantity_must_not_exceed_max", "conversion of one over", with_events,
        convert(quantity=limits.order_quantity_max + 1), "alice", market_of("A")),
    row("flags_must_be_known", "flag 4", NONE, new_order(flags=4), "alice"),
    row("flags_must_be_known", "negative", NONE, new_order(flags=-1), "alice"),
    row("post_only_must_be_a_resting_limit", "ioc", NONE,
        new_order(flags=POST_ONLY, time_in_force=IOC), "alice"),
    row("post_only_must_be_a_resting_limit", "fok", NONE,
        new_order(flags=POST_ONLY, time_in_force=FOK), "alice"),
    row("post_only_must_be_a_resting_limit", "market", NONE,
        new_order(flags=POST_ONLY, order_type=MARKET, time_in_force=IOC), "alice"),
    row("self_trade_prevention_must_be_known", "zero", NONE,
        new_order(self_trade_prevention=0), "alice"),
    row("self_trade_prevention_must_be_known", "four", NONE,
        new_order(self_trade_prevention=4), "alice"),
    row("expire_time_must_be_set_only_for_gtd", "gtc", NONE,
        new_order(expire_time_ms=batch_time(1_000)), "alice"),
    row("expire_time_must_be_set_only_for_gtd", "ioc", NONE,
        new_order(time_in_force=IOC, expire_time_ms=batch_time(1_000)), "alice"),
    row("expire_time_must_be_in_future", "now", NONE,
        new_order(time_in_force=GTD, expire_time_ms=batch_time(0)), "alice"),
    row("expire_time_must_be_in_future", "unset", NONE,
        new_order(time_in_force=GTD, expire_time_ms=0), "alice"),
    row("expire_time_must_be_within_horizon", "one over", NONE,
        new_order(time_in_force=GTD, expire_time_ms=batch_time(HORIZON_MS + 1)), "alice"),
    row("max_cost_must_be_for_market_orders_only", "limit order", NONE,
        new_order(max_cost=100), "alice"),
    row("max_cost_must_be_for_market_orders_only", "negative, limit order", NONE,
        new_order(max_cost=-1), "alice"),
    row("max_cost_must_be_in_range", "negative", NONE,
        new_order(order_type=MARKET, time_in_force=IOC, max_cost=-1), "alice"),
    row("max_cost_must_be_in_range", "one over", NONE,
        new_order(order_type=MARKET, time_in_force=IOC,
                  max_cost=limits.market_order_max_cost_cents_max + 1), "alice"),
    row("order_group_id_must_be_in_range", "order in group 2**32", NONE,
        new_order(order_group_id=2**32), "alice"),
    row("order_group_id_must_be_in_range", "order in group -1", NONE,
        new_order(order_group_id=-1), "alice"),
    row("order_group_id_must_be_in_range", "set group 0", NONE, set_group(order_group_id=0),
        "alice"),
    row("order_group_id_must_be_in_range", "reset group 2**32", NONE,
        reset_group(order_group_id=2**32), "alice", 2**32),
    row("order_group_limit_must_be_in_range", "0", NONE, set_group(contract_limit=0), "alice",
        3),
    row("order_group_limit_must_be_in_range", "one over", NONE,
        set_group(contract_limit=limits.order_group_contract_limit_max + 1), "alice", 3),
    row("order_group_window_must_be_in_range", "0", NONE, set_group(window_ms=0), "alice", 3),
    row("max_cost_must_not_be_set_for_futures", "market order", with_future,
        new_order(market_id=market_of("FUT"), order_type=MARKET, time_in_force=IOC,
                  max_cost=100), "alice"),
    row("order_group_window_must_be_in_range", "one over", NONE,
        set_group(window_ms=limits.order_group_window_ms_max + 1), "alice", 3),
    # 400-499: the order against the market and the account's orders
    row("market_must_be_open", "proposed", with_markets,
        new_order(market_id=market_of("NEW")), "alice"),
    row("market_must_be_open", "halted", with_markets,
        new_order(market_id=market_of("HALTED")), "alice"),
    row("market_must_be_open", "closed", with_markets,
        new_order(market_id=market_of("CLOSED")), "alice"),
    row("market_must_be_open", "settled", with_markets,
        new_order(market_id=market_of("SETTLED")), "alice"),
    row("market_must_be_open", "replace in a halted market", f"{ALICE_RESTS}\nop halt -> ok",
        replace_order(), "alice", order_of("alice", 1)),
    row("post_only_must_not_take", "bid at the best ask", BOB_RESTS,
        new_order(price=45, flags=POST_ONLY), "alice"),
    row("post_only_must_not_take", "buy NO through the best bid",
        "bob buy_yes 5 @ 40 -> accepted; rests 5",
        new_order(side=BUY_NO, price=60, flags=POST_ONLY), "alice"),
    row("post_only_must_not_take", "replace to the best ask",
        f"{BOB_RESTS}\nalice buy_yes 10 @ 40 post_only -> accepted; rests 10",
        replace_order(price=45), "alice", order_of("alice", 1)),
    row("fill_or_kill_must_fill_completely", "empty book", NONE,
        new_order(time_in_force=FOK), "alice"),
    row("fill_or_kill_must_fill_completely", "one short", BOB_RESTS,
        new_order(time_in_force=FOK, price=45, quantity=6), "alice"),
    row("fill_or_kill_must_fill_completely", "market order one short", BOB_RESTS,
        new_order(order_type=MARKET, time_in_force=FOK, price=0, quantity=6), "alice"),
    row("fill_or_kill_must_fill_completely", "own order in the way",
        f"alice sell_yes 1 @ 44 -> accepted; rests 1\n{BOB_RESTS}",
        new_order(time_in_force=FOK, price=45, quantity=5), "alice"),
    row("reduce_only_must_reduce_position", "no position", NONE,
        new_order(flags=REDUCE_ONLY), "alice"),
    row("reduce_only_must_reduce_position", "more than the position", ALICE_FILLED,
        new_order(side=SELL_YES, price=60, quantity=3, flags=REDUCE_ONLY), "alice"),
    row("reduce_only_must_reduce_position", "same side as the position", ALICE_FILLED,
        new_order(flags=REDUCE_ONLY), "alice"),
    row("reduce_only_must_reduce_position", "replace past the position",
        f"{ALICE_FILLED}\nalice sell_yes 2 @ 60 reduce_only -> accepted; rests 2",
        replace_order(client_order_id=2, price=60, quantity=3), "alice", order_of("alice", 2)),
    row("position_must_stay_within_limit", "bid", "op configure 700 0 5 -> ok",
        new_order(quantity=6), "alice"),
    row("position_must_stay_within_limit", "ask", "op configure 700 0 5 -> ok",
        new_order(side=SELL_YES, price=60, quantity=6), "alice"),
    row("position_must_stay_within_limit", "replace past it",
        "op configure 700 0 5 -> ok\nalice buy_yes 5 @ 40 -> accepted; rests 5",
        replace_order(price=40, quantity=6), "alice", order_of("alice", 1)),
    row("open_orders_per_account_must_not_exceed_max", "gtc",
        limited("open_orders_per_account_max", 1, "alice buy_yes 1 @ 10 -> accepted; rests 1"),
        new_order(), "alice"),
    row("open_orders_per_account_must_not_exceed_max", "gtd",
        limited("open_orders_per_account_max", 1, "alice buy_yes 1 @ 10 -> accepted; rests 1"),
        new_order(time_in_force=GTD, expire_time_ms=batch_time(1_000)), "alice"),
    row("order_group_must_exist", "order", NONE, new_order(order_group_id=9), "alice", 9),
    row("order_group_must_exist", "another account's", alice_group,
        new_order("bob", order_group_id=3), "bob", 3),
    row("order_group_must_exist", "reset", alice_group, reset_group(order_group_id=9), "alice",
        9),
    row("order_group_must_not_be_triggered", "order", alice_group_triggered,
        new_order(order_group_id=3), "alice", 3),
    row("order_groups_per_account_must_not_exceed_max", "a second", many_groups,
        set_group(order_group_id=4), "alice", 4),
    row("event_must_be_exhaustive", "conversion in a market on its own", NONE, convert(
        market_id=market_of("MKT")), "alice", market_of("MKT")),
    row("event_must_be_exhaustive", "conversion where none may win", with_events,
        convert(market_id=market_of("X")), "alice", market_of("X")),
    row("event_must_be_exhaustive", "conversion in a plain group", with_events,
        convert(market_id=market_of("G")), "alice", market_of("G")),
    row("event_must_not_be_settled", "conversion", with_events,
        convert(market_id=market_of("D2")), "alice", market_of("D2")),
    row("no_position_must_cover_conversion", "no position", with_events,
        convert(market_id=market_of("B")), "alice", market_of("B")),
    row("no_position_must_cover_conversion", "one NO more than held", with_events,
        convert(quantity=3), "alice", market_of("A")),
    row("no_position_must_cover_conversion", "YES held", with_events,
        convert("bob"), "bob", market_of("A")),
    row("position_must_stay_within_limit", "conversion past the limit elsewhere",
        lambda world, monkeypatch: (with_events(world, monkeypatch), world.harness.do(
            ConfigureMarket(world.market_ids["C"], 700, 0, 1))),
        convert(quantity=2), "alice", market_of("A")),
    row("open_orders_per_market_must_not_exceed_max", "gtc",
        limited("open_orders_per_market_max", 2,
                "alice buy_yes 1 @ 10 -> accepted; rests 1\n"
                "bob buy_yes 1 @ 11 -> accepted; rests 1"),
        new_order("carol"), "carol"),
    # 500-599: money
    row("collateral_must_cover_order", "one contract more than the cash", NONE,
        new_order(price=40, quantity=251), "alice"),
    row("collateral_must_cover_order", "replace past the cash",
        "alice buy_yes 200 @ 40 -> accepted; rests 200",
        replace_order(price=40, quantity=251), "alice", order_of("alice", 1)),
    row("amount_must_be_positive", "deposit of 0", NONE, deposit(amount=0), None,
        account_of("alice")),
    row("amount_must_be_positive", "negative withdrawal", NONE, withdraw(amount=-1), None,
        account_of("alice")),
    row("amount_must_not_exceed_max", "deposit", NONE,
        deposit(amount=limits.deposit_amount_max_cents + 1), None, account_of("alice")),
    row("amount_must_not_exceed_max", "withdrawal", NONE,
        withdraw(amount=limits.account_cash_max_cents + 1), None, account_of("alice")),
    row("bank_reference_must_be_valid", "empty", NONE, deposit(bank_reference=""), None,
        account_of("alice")),
    row("bank_reference_must_be_valid", "a space", NONE, deposit(bank_reference="a b"), None,
        account_of("alice")),
    row("bank_reference_must_be_valid", "65 characters", NONE,
        withdraw(bank_reference="r" * 65), None, account_of("alice")),
    row("bank_reference_must_be_valid", "not ascii", NONE, withdraw(bank_reference="ré"),
        None, account_of("alice")),
    row("withdrawal_must_not_exceed_available_cash", "one cent more", NONE,
        withdraw(amount=10_001), None, account_of("alice")),
    row("withdrawal_must_not_exceed_available_cash", "held cash is not available",
        ALICE_RESTS, withdraw(amount=9_601), None, account_of("alice")),
    row("cash_must_not_exceed_max", "past 10**12 cents", rich_alice,
        deposit(amount=limits.deposit_amount_max_cents), None, account_of("alice")),
    row("bank_references_must_not_exceed_max", "deposit", limited("bank_references_max", 3),
        deposit(), None, account_of("alice")),
    row("bank_references_must_not_exceed_max", "withdrawal",
        limited("bank_references_max", 3), withdraw(), None, account_of("alice")),
    row("exchange_money_must_not_exceed_max", "one cent over",
        limited("exchange_money_max_cents", 30_000), deposit(amount=1), None,
        account_of("alice")),
    # 600-699: accounts and markets (operator commands)
    row("accounts_must_not_exceed_max", "a fourth account", limited("accounts_max", 3),
        create_account()),
    row("public_key_must_be_32_bytes", "31", NONE, create_account(public_key=KEY[:31])),
    row("public_key_must_be_32_bytes", "33", NONE, create_account(public_key=KEY + b"k")),
    row("public_key_must_be_32_bytes", "empty", NONE, create_account(public_key=b"")),
    row("account_name_must_be_valid", "empty", NONE, create_account(name="")),
    row("account_name_must_be_valid", "a space", NONE, create_account(name="da ve")),
    row("account_name_must_be_valid", "65 characters", NONE, create_account(name="d" * 65)),
    row("account_name_must_be_valid", "starts with a dash", NONE, create_account(name="-d")),
    row("account_name_must_be_valid", "not ascii", NONE, create_account(name="dävé")),
    row("ticker_must_be_valid", "empty", NONE, create_market(ticker="")),
    row("ticker_must_be_valid", "lower case", NONE, create_market(ticker="new")),
    row("ticker_must_be_valid", "33 characters", NONE, create_market(ticker="T" * 33)),
    row("ticker_must_be_valid", "starts with a dot", NONE, create_market(ticker=".NEW")),
    row("market_kind_must_be_known", "zero", NONE, create_market(kind=0)),
    row("market_kind_must_be_known", "four", NONE, create_market(kind=4)),
    row("close_time_must_be_in_future", "now", NONE,
        create_market(close_time_ms=batch_time(0))),
    row("close_time_must_be_in_future", "negative", NONE, create_market(close_time_ms=-1)),
    row("fee_bps_must_be_in_range", "taker", NONE,
        create_market(taker_fee_bps=limits.fee_bps_max + 1)),
    row("fee_bps_must_be_in_range", "maker", NONE,
        create_market(maker_fee_bps=limits.fee_bps_max + 1)),
    row("fee_bps_must_be_in_range", "configure taker", NONE,
        configure(taker_fee_bps=limits.fee_bps_max + 1), None, market_of("MKT")),
    row("fee_bps_must_be_in_range", "configure maker", NONE,
        configure(maker_fee_bps=limits.fee_bps_max + 1), None, market_of("MKT")),
    row("position_limit_must_be_in_range", "zero", NONE, create_market(position_limit=0)),
    row("position_limit_must_be_in_range", "one over", NONE,
        create_market(position_limit=limits.position_limit_max + 1)),
    row("position_limit_must_be_in_range", "configure zero", NONE,
        configure(position_limit=0), None, market_of("MKT")),
    row("scalar_range_must_be_valid", "floor equals cap", NONE,
        create_market(kind=SCALAR, floor=5, cap=5)),
    row("scalar_range_must_be_valid", "floor above cap", NONE,
        create_market(kind=SCALAR, floor=6, cap=5)),
    row("scalar_range_must_be_valid", "range too wide", NONE,
        create_market(kind=SCALAR, floor=-1, cap=limits.scalar_range_max)),
    row("scalar_range_must_be_valid", "bound too far", NONE,
        create_market(kind=SCALAR, floor=limits.scalar_bound_abs_max,
                      cap=limits.scalar_bound_abs_max + 1)),
    row("scalar_range_must_be_valid", "binary with a range", NONE,
        create_market(kind=BINARY, floor=0, cap=1)),
    row("markets_must_not_exceed_max", "a second market", limited("markets_max", 1),
        create_market()),
    row("market_status_must_be_known", "proposed", NONE,
        set_status(status=MarketStatus.PROPOSED), None, market_of("MKT")),
    row("market_status_must_be_known", "settled", NONE,
        set_status(status=MarketStatus.SETTLED), None, market_of("MKT")),
    row("market_status_must_be_known", "zero", NONE, set_status(status=0), None,
        market_of("MKT")),
    row("exists", "open to open: an operator's retry", NONE,
        set_status(status=OPEN), None, market_of("MKT")),
    row("market_status_transition_must_be_allowed", "proposed to halted", with_markets,
        set_status("NEW", status=HALTED), None, market_of("NEW")),
    row("market_status_transition_must_be_allowed", "closed to open", with_markets,
        set_status("CLOSED", status=OPEN), None, market_of("CLOSED")),
    row("market_status_transition_must_be_allowed", "settled to closed", with_markets,
        set_status("SETTLED", status=CLOSED), None, market_of("SETTLED")),
    row("market_must_be_closed", "open", NONE, settle(), None, market_of("MKT")),
    row("market_must_be_closed", "halted", with_markets, settle("HALTED"), None,
        market_of("HALTED")),
    row("market_must_be_closed", "proposed", with_markets, settle("NEW"), None,
        market_of("NEW")),
    row("outcome_must_be_valid", "binary 2", with_markets, settle("CLOSED", outcome=2), None,
        market_of("CLOSED")),
    row("outcome_must_be_valid", "binary -1", with_markets, settle("CLOSED", outcome=-1),
        None, market_of("CLOSED")),
    row("outcome_must_be_valid", "scalar above cap", with_markets,
        settle("SCALAR", outcome=1_001), None, market_of("SCALAR")),
    row("outcome_must_be_valid", "scalar below floor", with_markets,
        settle("SCALAR", outcome=-1), None, market_of("SCALAR")),
    row("market_must_not_be_settled", "configure", with_markets, configure("SETTLED"), None,
        market_of("SETTLED")),
    row("ticker_must_be_valid", "event in lower case", NONE, create_event(ticker="new")),
    row("event_flags_must_be_valid", "exhaustive but not exclusive", NONE,
        create_event(mutually_exclusive=0, exhaustive=1)),
    row("event_flags_must_be_valid", "exclusive 2", NONE, create_event(mutually_exclusive=2)),
    row("event_flags_must_be_valid", "exhaustive -1", NONE, create_event(exhaustive=-1)),
    row("events_must_not_exceed_max", "a fifth event",
        lambda world, monkeypatch: (with_events(world, monkeypatch),
                                    lower(monkeypatch, "events_max", 4)), create_event()),
    row("markets_per_event_must_not_exceed_max", "a third market", full_event,
        create_market(event_id=event_of("PAIR")), None, event_of("PAIR")),
    row("exclusive_event_markets_must_be_binary", "scalar", with_events,
        create_market(kind=SCALAR, cap=10, event_id=event_of("RACE")), None, event_of("RACE")),
    row("event_must_not_be_settled", "new market", with_events,
        create_market(event_id=event_of("DONE")), None, event_of("DONE")),
    row("event_must_not_be_settled", "settled again with another winner", with_events,
        settle_event("DONE", winner_market_id=market_of("D2")), None, event_of("DONE")),
    row("exhaustive_event_must_not_have_opened", "new market", with_events,
        create_market(event_id=event_of("ELECT")), None, event_of("ELECT")),
    row("market_must_be_settled_with_its_event", "settle one market", with_events,
        settle("X"), None, market_of("X")),
    row("event_must_be_mutually_exclusive", "settle a plain group", with_events,
        settle_event("CLUB", winner_market_id=market_of("G")), None, event_of("CLUB")),
    row("winner_must_be_a_market_of_the_event", "another event's market", with_events,
        settle_event(winner_market_id=market_of("A")), None, event_of("RACE")),
    row("exhaustive_event_must_have_a_winner", "none won", with_events,
        settle_event("ELECT", winner_market_id=0), None, event_of("ELECT")),
    row("exhaustive_event_must_have_two_markets", "open its one market",
        lambda world, monkeypatch: (world.add_event("SOLO", 1, 1),
                                    world.add_market("S1", event="SOLO")),
        set_status("S1", status=OPEN), None, market_of("S1")),
    row("market_must_be_a_future", "margins of a binary market", NONE, set_margins("MKT"),
        None, market_of("MKT")),
    row("market_must_be_a_future", "mark a binary market", NONE, mark("MKT"), None,
        market_of("MKT")),
    row("market_must_exist", "margins", NONE, set_margins(market_id=999)),
    row("market_must_exist", "mark", NONE, mark(market_id=999)),
    row("market_must_not_be_settled", "margins", with_settled_future, set_margins(), None,
        market_of("FUT")),
    row("market_must_not_be_settled", "mark", with_settled_future, mark(), None,
        market_of("FUT")),
    row("margins_must_be_in_order", "band above maintenance", with_future,
        set_margins(mark_band=11), None, market_of("FUT")),
    row("margins_must_be_in_order", "maintenance above initial", with_future,
        set_margins(maintenance_margin=21, mark_band=1), None, market_of("FUT")),
    row("margins_must_be_in_order", "initial above 100", with_future,
        set_margins(initial_margin=101), None, market_of("FUT")),
    row("margins_must_be_in_order", "band 0", with_future, set_margins(mark_band=0), None,
        market_of("FUT")),
    row("mark_interval_must_be_in_range", "negative", with_future,
        set_margins(mark_interval_ms=-1), None, market_of("FUT")),
    row("mark_interval_must_be_in_range", "past a day", with_future,
        set_margins(mark_interval_ms=limits.futures_mark_interval_ms_max + 1), None,
        market_of("FUT")),
    row("mark_must_be_within_band", "6 cents from the mark", with_future, mark(price=56), None,
        market_of("FUT")),
    row("price_must_be_between_1_and_99", "mark at 100", with_future, mark(price=100), None,
        market_of("FUT")),
    row("event_markets_must_be_closed", "open markets", with_events,
        settle_event("ELECT", winner_market_id=market_of("A")), None, event_of("ELECT")),
]  # fmt: skip


def expected_command_code(command: Any) -> int:
    """The code a reject reports: the command's, when it is an id-sized int, else 0."""
    if isinstance(command, Record):
        return command.CODE
    if type(command) in (tuple, list) and command and type(command[0]) is int:
        return command[0] if 0 <= command[0] <= limits.id_max else 0
    return 0


def expected_client_order_id(command: Any, rule: str, account: str | None) -> int:
    """A reject carries the command's client order id (a replace's new one), unless it has
    none, the account is unknown, or the id itself is out of range."""
    if account is None or rule == "client_order_id_must_be_in_range":
        return 0
    if isinstance(command, NewOrder | CancelOrder | ConvertNo):
        return command.client_order_id
    if isinstance(command, ReplaceOrder):
        return command.new_client_order_id
    return 0


@pytest.mark.parametrize("row", TABLE)
def test_each_reason_is_given_for_its_rule(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    if isinstance(row.setup, str):
        world.run(row.setup)
    else:
        row.setup(world, monkeypatch)
    command = row.command(world)
    related = row.related(world) if callable(row.related) else row.related
    if row.account is None:
        account_id = account_seq = 0
    else:
        account_id = world.account_id(row.account)
        account_seq = world.engine.accounts[account_id].seq + 1
    time_ms = row.time_ms(world) if row.time_ms is not None else None

    events = world.harness.do(command, time_ms=time_ms)

    assert [type(event).__name__ for event in events] == ["CommandRejected"], events
    assert Reject(events[0].reason).rule == row.rule
    assert events[0] == CommandRejected(
        account_id,
        account_seq,
        expected_command_code(command),
        expected_client_order_id(command, row.rule, row.account),
        related,
        int(Reject[row.rule.upper()]),
    )


def test_every_reason_has_a_row() -> None:
    """A new member of Reject needs a row in TABLE (and a row needs a real reason)."""
    rules = {param.values[0].rule for param in TABLE}
    assert rules == {reason.rule for reason in Reject}


def test_each_row_is_named_once() -> None:
    names = [param.id for param in TABLE]
    assert len(names) == len(set(names))


# -- Just inside every limit, the command is accepted -------------------------------------------
# The other half of "given for exactly the rule it names": at the boundary the rule holds.


INSIDE = [
    pytest.param(NONE, new_order(client_order_id=limits.id_max), "OrderAccepted",
                 id="client order id 2**63-1"),
    pytest.param(NONE, new_order(price=1), "OrderAccepted", id="price 1"),
    pytest.param(NONE, new_order(price=99), "OrderAccepted", id="price 99"),
    # 1,000,000 contracts at 1 cent hold exactly all of alice's 1,000,000 cents.
    pytest.param("alice deposit 990000 top-up -> ok",
                 new_order(price=1, quantity=limits.order_quantity_max), "OrderAccepted",
                 id="largest quantity, all the cash"),
    pytest.param(NONE, new_order(price=40, quantity=250), "OrderAccepted",
                 id="collateral exactly the cash"),
    pytest.param(NONE, new_order(time_in_force=GTD, expire_time_ms=batch_time(1)),
                 "OrderAccepted", id="expires 1 ms from now"),
    pytest.param(NONE, new_order(time_in_force=GTD, expire_time_ms=batch_time(HORIZON_MS)),
                 "OrderAccepted", id="expires at the horizon"),
    pytest.param(NONE, new_order(order_type=MARKET, time_in_force=IOC, price=0,
                                 max_cost=limits.market_order_max_cost_cents_max),
                 "OrderAccepted", id="largest max cost"),
    pytest.param(BOB_RESTS, new_order(time_in_force=FOK, price=45, quantity=5),
                 "OrderAccepted", id="fill or kill fills exactly"),
    pytest.param(ALICE_FILLED, new_order(side=SELL_YES, price=60, quantity=2,
                                         flags=REDUCE_ONLY),
                 "OrderAccepted", id="reduce-only exactly the position"),
    pytest.param("op configure 700 0 5 -> ok", new_order(quantity=5), "OrderAccepted",
                 id="position exactly the limit"),
    pytest.param(f"{ALICE_RESTS}\nop halt -> ok", cancel_order(client_order_id=1),
                 "OrderCancelled", id="halted markets take cancels"),
    pytest.param(NONE, deposit(amount=limits.deposit_amount_max_cents), "Deposited",
                 id="largest deposit"),
    pytest.param(NONE, withdraw(amount=10_000), "Withdrawn", id="withdraw all the cash"),
    pytest.param(NONE, deposit(bank_reference="!" + "r" * 62 + "~"), "Deposited",
                 id="bank reference of 64 printable characters"),
    pytest.param(rich_alice,
                 deposit(amount=limits.deposit_amount_max_cents - 10_000), "Deposited",
                 id="cash exactly the max"),
    pytest.param(limited("exchange_money_max_cents", 30_001), deposit(amount=1), "Deposited",
                 id="exchange money exactly the max (lowered)"),
    pytest.param(limited("bank_references_max", 4), deposit(), "Deposited",
                 id="the last bank reference (lowered)"),
    pytest.param(limited("accounts_max", 4), create_account(name="d.a_v@e-1" + "x" * 55),
                 "AccountCreated", id="the last account (lowered), a 64-character name"),
    pytest.param(NONE, create_market(ticker="T" * 32, close_time_ms=batch_time(1),
                                     taker_fee_bps=limits.fee_bps_max,
                                     maker_fee_bps=limits.fee_bps_max,
                                     position_limit=limits.position_limit_max),
                 "MarketCreated", id="every market field at its limit"),
    pytest.param(NONE, create_market(kind=SCALAR, floor=-limits.scalar_bound_abs_max,
                                     cap=-limits.scalar_bound_abs_max + limits.scalar_range_max),
                 "MarketCreated", id="widest scalar range"),
    pytest.param(limited("markets_max", 2), create_market(), "MarketCreated",
                 id="the last market (lowered)"),
    pytest.param(with_markets, settle("SCALAR", outcome=1_000), "MarketSettled",
                 id="scalar outcome at the cap"),
    pytest.param(with_markets, configure("CLOSED"), "MarketConfigured",
                 id="configure a closed market"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "command", "outcome"), INSIDE)
def test_just_inside_each_limit_the_command_is_accepted(
    setup: Setup, command: Callable[[World], Any], outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World()
    if isinstance(setup, str):
        world.run(setup)
    else:
        setup(world, monkeypatch)
    events = world.harness.do(command(world))
    assert type(events[0]).__name__ == outcome, events[0]


# -- Precedence: one command, many broken rules, mended one at a time -------------------------


Mend = Callable[[Any], Any]


def change(**fields: Any) -> Mend:
    return lambda command: dataclasses.replace(command, **fields)


def after(action: Callable[[], Any], **fields: Any) -> Mend:
    """Mend by changing the world (a limit put back, a market opened), then the fields."""

    def mend(command: Any) -> Any:
        action()
        return dataclasses.replace(command, **fields)

    return mend


def outcome_of(world: World, command: Record) -> str:
    first = world.harness.do(command)[0]
    return Reject(first.reason).rule if isinstance(first, CommandRejected) else type(first).__name__


def peel(world: World, command: Record, steps: list[tuple[str, Mend]], accepted: str) -> None:
    """Apply the command, mend the rule it broke, apply again, ...: the answers must be the
    steps' rules in order, and the fully mended command must be accepted."""
    answers = []
    for _rule, mend in steps:
        answers.append(outcome_of(world, command))
        command = mend(command)
    answers.append(outcome_of(world, command))
    assert answers == [rule for rule, _mend in steps] + [accepted]


def operator(world: World, command: Record) -> Callable[[], None]:
    def act() -> None:
        first = world.harness.do(command)[0]
        assert not isinstance(first, CommandRejected), first

    return act


def test_new_order_field_rules_come_in_their_order() -> None:
    """Types, then the account, then the client order id (range, then `exists`), then each
    field in the order of docs/engine.md step 4, then the market. The three expiry rules
    exclude each other (GTD or not), so their order among themselves is not observable."""
    world = World()
    world.run(ALICE_RESTS)
    world.add_market("HALTED", OPEN, HALTED)
    alice, far = world.account_id("alice"), world.next_batch_time() + HORIZON_MS + 10_000
    command = NewOrder(
        account_id=999, client_order_id=0, market_id=999, side=9, price=100, quantity=0,
        order_type=9, time_in_force=9, flags=8, self_trade_prevention=0, expire_time_ms=1,
        max_cost="5",
    )  # fmt: skip
    peel(world, command, [
        ("fields_must_have_declared_types", change(max_cost=5)),
        ("account_must_exist", change(account_id=alice)),
        ("client_order_id_must_be_in_range", change(client_order_id=1)),
        ("exists", change(client_order_id=100)),
        ("side_must_be_known", change(side=BUY_YES)),
        ("order_type_must_be_known", change(order_type=MARKET)),
        ("time_in_force_must_be_known", change(time_in_force=GTC)),
        ("market_order_must_be_immediate", change(order_type=LIMIT)),
        ("price_must_be_between_1_and_99", change(price=40)),
        ("quantity_must_be_positive", change(quantity=limits.order_quantity_max + 1)),
        ("quantity_must_not_exceed_max", change(quantity=10)),
        ("flags_must_be_known", change(flags=POST_ONLY, time_in_force=IOC)),
        ("post_only_must_be_a_resting_limit", change(flags=0)),
        ("self_trade_prevention_must_be_known", change(self_trade_prevention=2)),
        ("expire_time_must_be_set_only_for_gtd", change(time_in_force=GTD)),
        ("expire_time_must_be_in_future", change(expire_time_ms=far)),
        ("expire_time_must_be_within_horizon", change(time_in_force=GTC, expire_time_ms=0)),
        ("max_cost_must_be_for_market_orders_only",
         change(order_type=MARKET, time_in_force=IOC, max_cost=-1)),
        ("max_cost_must_be_in_range", change(order_type=LIMIT, time_in_force=GTC, max_cost=0)),
        ("market_must_exist", change(market_id=world.market_ids["HALTED"])),
        ("market_must_be_open", change(market_id=world.market_id)),
    ], "OrderAccepted")  # fmt: skip


def test_new_order_book_and_account_rules_come_in_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Market open, post-only, reduce-only, position limit, open orders (account, then
    market), and collateral last. Alice has 990 cents free: her own bid holds 10."""
    world = World(cash=1_000)
    world.run("""
    bob   sell_yes 1 @ 40   -> accepted; rests 1
    alice buy_yes 1 @ 10    -> accepted; rests 1
    op    configure 700 0 50 -> ok
    """)
    world.add_market("HALTED", OPEN, HALTED)
    # Lowered because 2,000 and 1,000,000 open orders are impractical to place in a test.
    restore_account_max = lower(monkeypatch, "open_orders_per_account_max", 1)
    restore_market_max = lower(monkeypatch, "open_orders_per_market_max", 2)
    command = NewOrder(
        world.account_id("alice"), 100, world.market_ids["HALTED"], BUY_YES, 40, 60,
        flags=POST_ONLY | REDUCE_ONLY,
    )  # fmt: skip
    peel(world, command, [
        ("market_must_be_open", change(market_id=world.market_id)),
        ("post_only_must_not_take", change(price=39)),
        ("reduce_only_must_reduce_position", change(flags=POST_ONLY)),
        ("position_must_stay_within_limit", change(quantity=30)),
        ("open_orders_per_account_must_not_exceed_max", after(restore_account_max)),
        ("open_orders_per_market_must_not_exceed_max", after(restore_market_max)),
        ("collateral_must_cover_order", change(quantity=1)),  # 30 * 39 = 1,170 > 990
    ], "OrderAccepted")  # fmt: skip


def test_fill_or_kill_comes_before_reduce_only_position_and_collateral() -> None:
    """Alice is long 1 YES; the limit is 1; she has 8 cents; one ask of 1 at 45 is there."""
    world = World(cash=1_000)
    world.run("""
    carol sell_yes 1 @ 40       -> accepted; rests 1
    alice buy_yes 1 @ 40        -> accepted; filled 1@40; fee 2
    alice withdraw 950 out-1    -> ok
    bob   sell_yes 1 @ 45       -> accepted; rests 1
    op    configure 700 0 1     -> ok
    """)
    world.add_market("HALTED", OPEN, HALTED)
    command = NewOrder(
        world.account_id("alice"), 100, world.market_ids["HALTED"], BUY_YES, 45, 2,
        time_in_force=FOK, flags=REDUCE_ONLY,
    )  # fmt: skip
    open_up = operator(world, ConfigureMarket(world.market_id, 700, 0, 1_000))
    top_up = operator(world, Deposit(world.account_id("alice"), 1_000, "in-1"))
    peel(world, command, [
        ("market_must_be_open", change(market_id=world.market_id)),
        ("fill_or_kill_must_fill_completely", change(quantity=1)),
        ("reduce_only_must_reduce_position", change(flags=0)),
        ("position_must_stay_within_limit", after(open_up)),
        ("collateral_must_cover_order", after(top_up)),  # 45 + fee 2 > 8
    ], "OrderAccepted")  # fmt: skip


def test_replace_rules_come_in_their_order() -> None:
    """Alice is short 10 YES, and rests a post-only, reduce-only bid of 10 at 30 (#2) and a
    bid of 1 at 20 (#3); bob's ask is at 45; the market is halted."""
    world = World()
    world.run("""
    alice sell_yes 10 @ 50                    -> accepted; rests 10
    carol buy_yes 10 @ 50                     -> accepted; filled 10@50
    alice buy_yes 10 @ 30 post_only reduce_only -> accepted; rests 10
    alice buy_yes 1 @ 20                      -> accepted; rests 1
    bob   sell_yes 1 @ 45                     -> accepted; rests 1
    op    halt                                -> ok
    """)
    command = ReplaceOrder("alice", world.order_id("bob", 1), 0, 0, 0, 0)
    resume = operator(world, SetMarketStatus(world.market_id, OPEN))
    peel(world, command, [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=world.account_id("alice"))),
        ("client_order_id_must_be_in_range", change(new_client_order_id=3)),
        ("exists", change(new_client_order_id=50)),
        ("order_must_belong_to_account", change(order_id=999)),
        ("order_must_exist", change(order_id=world.order_id("alice", 2))),
        ("price_must_be_between_1_and_99", change(price=45)),
        ("quantity_must_be_positive", change(quantity=limits.order_quantity_max + 1)),
        ("quantity_must_not_exceed_max", change(quantity=20)),
        ("market_must_be_open", after(resume)),
        ("post_only_must_not_take", change(price=35)),
        ("reduce_only_must_reduce_position", change(quantity=10)),
    ], "OrderReplaced")  # fmt: skip


def test_replace_position_limit_comes_before_collateral() -> None:
    world = World(cash=1_000)
    world.run("""
    alice buy_yes 10 @ 30   -> accepted; rests 10
    op    configure 700 0 50 -> ok
    """)  # alice holds 300 and has 700 free
    command = ReplaceOrder(world.account_id("alice"), 0, 1, 2, 30, 60)
    peel(world, command, [
        ("position_must_stay_within_limit", change(quantity=40)),
        ("collateral_must_cover_order", change(quantity=20)),  # 40 * 30 - 300 = 900 > 700
    ], "OrderReplaced")  # fmt: skip


def test_cancel_and_mass_cancel_rules_come_in_their_order() -> None:
    world = World()
    world.run(f"{ALICE_RESTS}\n{BOB_RESTS}")
    alice = world.account_id("alice")
    peel(world, CancelOrder("alice", world.order_id("bob", 1), 0), [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=alice)),
        ("order_must_belong_to_account", change(order_id=999)),
        ("order_must_exist", change(order_id=world.order_id("alice", 1))),
    ], "OrderCancelled")  # fmt: skip
    peel(world, MassCancel(b"alice", 999), [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=alice)),
        ("market_must_exist", change(market_id=world.market_id)),
    ], "MassCancelled")  # fmt: skip


def test_deposit_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    rich_alice(world, monkeypatch)
    # Lowered to where the exchange is now, because 10,000,000 references and 2**62 cents
    # are impractical to reach in a test.
    restore_references = lower(monkeypatch, "bank_references_max", 12)
    restore_money = lower(monkeypatch, "exchange_money_max_cents", 9 * 10**11 + 30_000)
    peel(world, Deposit("alice", 0, "bad reference"), [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=world.account_id("alice"))),
        ("amount_must_be_positive", change(amount=limits.deposit_amount_max_cents + 1)),
        ("amount_must_not_exceed_max", change(amount=limits.deposit_amount_max_cents)),
        ("bank_reference_must_be_valid", change(bank_reference="seed-alice")),
        ("exists", change(bank_reference="fresh")),
        ("bank_references_must_not_exceed_max", after(restore_references)),
        ("cash_must_not_exceed_max", change(amount=1)),
        ("exchange_money_must_not_exceed_max", after(restore_money)),
    ], "Deposited")  # fmt: skip


def test_withdrawal_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    restore_references = lower(monkeypatch, "bank_references_max", 3)  # 10,000,000 is a lot
    peel(world, Withdraw(None, 0, "bad reference"), [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=world.account_id("alice"))),
        ("amount_must_be_positive", change(amount=limits.account_cash_max_cents + 1)),
        ("amount_must_not_exceed_max", change(amount=10_001)),
        ("bank_reference_must_be_valid", change(bank_reference="seed-bob")),
        ("exists", change(bank_reference="fresh")),
        ("bank_references_must_not_exceed_max", after(restore_references)),
        ("withdrawal_must_not_exceed_available_cash", change(amount=10_000)),
    ], "Withdrawn")  # fmt: skip


def test_create_account_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    restore = lower(monkeypatch, "accounts_max", 3)  # 1,000,000 accounts is a lot
    peel(world, CreateAccount(1, b"short"), [
        ("fields_must_have_declared_types", change(name="bad name")),
        ("account_name_must_be_valid", change(name="alice")),
        ("exists", change(name="dave")),
        ("public_key_must_be_32_bytes", change(public_key=KEY)),
        ("accounts_must_not_exceed_max", after(restore)),
    ], "AccountCreated")  # fmt: skip


def test_create_market_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    restore = lower(monkeypatch, "markets_max", 1)  # 10,000 markets is a lot
    peel(world, CreateMarket(b"NEW", 9, -1, limits.fee_bps_max + 1, 0, 0, 5, 1), [
        ("fields_must_have_declared_types", change(ticker="new")),
        ("ticker_must_be_valid", change(ticker="MKT")),
        ("exists", change(ticker="NEW")),
        ("market_kind_must_be_known", change(kind=BINARY)),
        ("close_time_must_be_in_future", change(close_time_ms=0)),
        ("fee_bps_must_be_in_range", change(taker_fee_bps=700)),
        ("position_limit_must_be_in_range", change(position_limit=1_000)),
        ("scalar_range_must_be_valid", change(floor=0, cap=0)),
        ("markets_must_not_exceed_max", after(restore)),
    ], "MarketCreated")  # fmt: skip


def test_market_operator_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    with_markets(world, monkeypatch)
    market_id, settled = world.market_id, world.market_ids["SETTLED"]
    peel(world, SetMarketStatus("1", 9), [
        ("fields_must_have_declared_types", change(market_id=999)),
        ("market_must_exist", change(market_id=market_id)),
        ("market_status_must_be_known", change(status=OPEN)),
        ("exists", change(status=HALTED)),
    ], "MarketStatusChanged")  # fmt: skip
    peel(world, ConfigureMarket("1", limits.fee_bps_max + 1, 0, 0), [
        ("fields_must_have_declared_types", change(market_id=999)),
        ("market_must_exist", change(market_id=settled)),
        ("market_must_not_be_settled", change(market_id=market_id)),
        ("fee_bps_must_be_in_range", change(taker_fee_bps=700)),
        ("position_limit_must_be_in_range", change(position_limit=1_000)),
    ], "MarketConfigured")  # fmt: skip
    close = operator(world, SetMarketStatus(market_id, CLOSED))
    peel(world, SettleMarket(market_id, b"2"), [
        ("fields_must_have_declared_types", change(market_id=999, outcome=2)),
        ("market_must_exist", change(market_id=market_id)),
        ("market_must_be_closed", after(close)),
        ("outcome_must_be_valid", change(outcome=1)),
    ], "MarketSettled")  # fmt: skip


def test_event_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    with_events(world, monkeypatch)
    restore = lower(monkeypatch, "events_max", 4)
    peel(world, CreateEvent(b"NEW", 2, 1), [
        ("fields_must_have_declared_types", change(ticker="new")),
        ("ticker_must_be_valid", change(ticker="ELECT")),
        ("exists", change(ticker="NEW")),
        ("event_flags_must_be_valid", change(mutually_exclusive=1)),
        ("events_must_not_exceed_max", after(restore)),
    ], "EventCreated")  # fmt: skip
    world.add_event("DUO", 1, 0)
    r1 = world.add_market("R1", event="DUO")
    r2 = world.add_market("R2", OPEN, event="DUO")
    world.harness.do(SetMarketStatus(r1, CLOSED))
    duo, done, club = world.event_ids["DUO"], world.event_ids["DONE"], world.event_ids["CLUB"]
    close_r2 = operator(world, SetMarketStatus(r2, CLOSED))
    peel(world, SettleEvent("1", world.market_id), [
        ("fields_must_have_declared_types", change(event_id=999)),
        ("event_must_exist", change(event_id=club)),
        ("event_must_be_mutually_exclusive", change(event_id=done)),
        ("event_must_not_be_settled", change(event_id=duo)),
        ("winner_must_be_a_market_of_the_event", change(winner_market_id=r1)),
        ("event_markets_must_be_closed", after(close_r2)),
    ], "EventSettled")  # fmt: skip


def test_conversion_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    with_events(world, monkeypatch)
    alice, a = world.account_id("alice"), world.market_ids["A"]
    world.harness.do(ConfigureMarket(world.market_ids["C"], 700, 0, 1))
    peel(world, ConvertNo("1", 0, 999, 0), [
        ("fields_must_have_declared_types", change(account_id=999)),
        ("account_must_exist", change(account_id=alice)),
        ("client_order_id_must_be_in_range", change(client_order_id=50)),  # alice's bid's
        ("exists", change(client_order_id=100)),
        ("quantity_must_be_positive", change(quantity=3)),
        ("market_must_exist", change(market_id=world.market_ids["X"])),
        ("event_must_be_exhaustive", change(market_id=world.market_ids["D1"])),
        ("event_must_not_be_settled", change(market_id=a)),
        ("no_position_must_cover_conversion", change(quantity=2)),
        ("position_must_stay_within_limit", change(quantity=1)),
    ], "PositionsConverted")  # fmt: skip


def test_event_market_rules_come_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    with_events(world, monkeypatch)
    world.add_event("TRIO", 1, 0)
    for ticker in ("T1", "T2", "T3"):
        world.add_market(ticker, event="TRIO")
    restore = lower(monkeypatch, "markets_per_event_max", 3)  # TRIO and ELECT are full
    peel(world, CreateMarket("NEW", SCALAR, cap=10, event_id=999), [
        ("event_must_exist", change(event_id=world.event_ids["DONE"])),
        ("event_must_not_be_settled", change(event_id=world.event_ids["TRIO"])),
        ("exclusive_event_markets_must_be_binary", change(kind=BINARY, cap=0)),
        ("markets_per_event_must_not_exceed_max", after(restore)),
    ], "MarketCreated")  # fmt: skip
    peel(world, CreateMarket("NEW2", BINARY, event_id=world.event_ids["ELECT"]), [
        ("exhaustive_event_must_not_have_opened", change(event_id=world.event_ids["CLUB"])),
    ], "MarketCreated")  # fmt: skip


RETRIES = [
    pytest.param("op halt -> ok", id="market halted since"),
    pytest.param("op close -> ok", id="market closed since"),
    pytest.param("op close -> ok\nop settle yes -> ok", id="market settled since"),
    pytest.param("bob sell_yes 10 @ 40 -> accepted; filled 10@40", id="order filled since"),
    pytest.param("alice cancel #1 -> cancelled 10 requested", id="order cancelled since"),
    pytest.param("alice withdraw 9600 out-1 -> ok", id="cash withdrawn since"),
    pytest.param("op configure 700 0 1 -> ok", id="position limit lowered since"),
]


@pytest.mark.parametrize("since", RETRIES)
def test_a_retried_order_is_answered_exists_whatever_happened_since(since: str) -> None:
    """A market maker that lost its connection resends the same NewOrder: it must learn the
    original order's id, not a rule the world has broken since (docs/engine.md step 3)."""
    world = World()
    world.run(ALICE_RESTS)
    original = NewOrder(world.account_id("alice"), 1, world.market_id, BUY_YES, 40, 10)
    world.run(since)
    rejected = world.harness.do(original)[0]
    assert isinstance(rejected, CommandRejected), rejected
    assert Reject(rejected.reason) is Reject.EXISTS
    assert rejected.related_id == world.order_id("alice", 1)


def test_a_client_order_id_is_remembered_only_within_its_window() -> None:
    """`exists` for a closed order lasts client_order_ids_remembered_per_account_max
    accepted orders, as documented. The limit is not lowered: the engine copies it into a
    module constant at import. The filler orders go in batches straight to the engine, and a
    fresh harness takes over the engine's numbering after each."""
    world = World()
    world.run("alice buy_yes 1 @ 40 ioc -> accepted; cancelled 1 immediate_remainder")
    window = limits.client_order_ids_remembered_per_account_max
    alice, market_id = world.account_id("alice"), world.market_id

    def accept_fillers(first: int, count: int) -> None:
        """Orders that are accepted and cancelled at once (there is nothing to trade with)."""
        orders = [
            NewOrder(alice, client_order_id, market_id, BUY_YES, 40, 1, time_in_force=IOC)
            for client_order_id in range(first, first + count)
        ]
        applied = world.engine.apply(Batch.of(world.next_batch_time(), orders))
        outcomes = [applied.command_events(i)[0][0] for i in range(count)]
        assert outcomes == [OrderAccepted.CODE] * count
        check_invariants(world.engine)
        world.harness = Harness(world.engine)

    accept_fillers(2, window - 1)
    world.run("alice buy_yes 1 @ 40 id=1 ioc -> exists")  # order 1 is the oldest of `window`
    accept_fillers(window + 1, 1)
    world.run("alice buy_yes 1 @ 40 id=1 ioc -> accepted; cancelled 1 immediate_remainder")


# -- Batch-level rejects, straight through Engine.apply ---------------------------------------


def valid_commands(world: World) -> tuple[tuple[Any, ...], ...]:
    """Commands that would each be accepted on their own, in canonical form."""
    alice = world.account_id("alice")
    return (
        Deposit(alice, 5, "fresh").to_canonical(),
        NewOrder(alice, 100, world.market_id, BUY_YES, 40, 1).to_canonical(),
        CreateMarket("NEW", BINARY).to_canonical(),
    )


def assert_each_rejected(applied: Any, commands: tuple[Any, ...], reason: Reject) -> None:
    """One outcome per command, each a lone reject in no account's stream."""
    assert len(applied.outcome_offsets) == len(commands)
    for position, command in enumerate(commands):
        events = [event_from_canonical(event) for event in applied.command_events(position)]
        expected = CommandRejected(0, 0, expected_command_code(command), 0, 0, int(reason))
        assert events == [expected], f"command {position} {command!r}"


def apply_unchanged(world: World, batch: Batch) -> Any:
    """Apply a batch that must change nothing but time; check that and the invariants."""
    before = comparable_state(world.engine)
    applied = world.engine.apply(batch)
    check_invariants(world.engine)
    assert comparable_state(world.engine) == before
    return applied


@pytest.mark.parametrize("time_ms", [-1, 1.5, 10.0, None, limits.time_ms_max + 1, True, "7", b"7"])
def test_a_batch_without_a_valid_time_rejects_every_command(time_ms: Any) -> None:
    world = World()
    time_before = world.engine.time_ms
    commands = (*valid_commands(world), (999,), None, (1, 2))
    applied = apply_unchanged(world, Batch(time_ms, commands))
    assert_each_rejected(applied, commands, Reject.BATCH_TIME_MUST_BE_VALID)
    assert world.engine.time_ms == time_before


@pytest.mark.parametrize("time_ms", [0, limits.time_ms_max])
def test_the_first_and_last_batch_times_are_valid(time_ms: int) -> None:
    world = World()
    applied = world.engine.apply(Batch(time_ms, valid_commands(world)[:1]))
    assert type(applied.typed_events()[0]).__name__ == "Deposited"


def test_a_batch_over_the_limit_rejects_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    lower(monkeypatch, "batch_commands_max", 2)  # 4,097 commands would do, but slowly
    commands = valid_commands(world)
    applied = apply_unchanged(world, Batch(world.next_batch_time(), commands))
    assert_each_rejected(applied, commands, Reject.BATCH_MUST_NOT_EXCEED_COMMANDS_MAX)
    # at the limit, the same commands are applied
    applied = world.engine.apply(Batch(world.next_batch_time() + 1, commands[:2]))
    assert len(applied.outcome_offsets) == 2
    outcomes = [event_from_canonical(applied.command_events(i)[0]) for i in range(2)]
    assert [type(outcome).__name__ for outcome in outcomes] == ["Deposited", "OrderAccepted"]


UNKNOWN_CODES = [0, 8, 31, 35, 63, 72, 96, 999, -1, limits.id_max + 1, 2**64, "1", 1.0, True,
                 None, b"\x01"]  # fmt: skip


def test_unknown_command_codes_are_rejected_one_by_one() -> None:
    world = World()
    fields = valid_commands(world)[1][1:]  # NewOrder's fields: only the code is wrong
    commands = tuple((code, *fields) for code in UNKNOWN_CODES) + tuple(
        (code,) for code in UNKNOWN_CODES
    )
    applied = apply_unchanged(world, Batch(world.next_batch_time(), commands))
    assert_each_rejected(applied, commands, Reject.COMMAND_CODE_MUST_BE_KNOWN)


def test_malformed_commands_are_rejected_one_by_one() -> None:
    world = World()
    not_arrays = (None, 1, "1", b"\x01", {"code": 1}, frozenset({1}))
    wrong_arity = []
    for cls in COMMANDS.by_code.values():
        wrong_arity.append((cls.CODE,))  # no fields at all
        wrong_arity.append((cls.CODE, *([0] * (len(cls.FIELDS) - 1))))
        wrong_arity.append((cls.CODE, *([0] * (len(cls.FIELDS) + 1))))
    commands = (*not_arrays, (), [], *wrong_arity)
    applied = apply_unchanged(world, Batch(world.next_batch_time(), commands))
    assert_each_rejected(applied, commands, Reject.COMMAND_MUST_BE_WELL_FORMED)


def valid_command_of_each_code(world: World) -> dict[int, Record]:
    """One command of each code that the world accepts (it needs ALICE_RESTS and
    with_markets, for the order to cancel and the market to settle)."""
    alice, market_id = world.account_id("alice"), world.market_id
    commands = [
        NewOrder(alice, 100, market_id, BUY_YES, 40, 1),
        CancelOrder(alice, 0, 1),
        ReplaceOrder(alice, 0, 1, 2, 41, 5),
        MassCancel(alice, market_id),
        SetOrderGroup(alice, 3, 100, 60_000),
        ResetOrderGroup(alice, 3),
        CreateAccount("dave", KEY),
        Deposit(alice, 5, "fresh-1"),
        Withdraw(alice, 5, "fresh-2"),
        CreateMarket("OTHER", BINARY),
        SetMarketStatus(market_id, HALTED),
        SettleMarket(world.market_ids["CLOSED"], 1),
        ConfigureMarket(market_id, 700, 0, 1_000),
        ConvertNo(alice, 101, world.market_ids["A"], 1),
        CreateEvent("OTHER", 1, 1),
        SettleEvent(world.event_ids["RACE"], 0),
        SetMargins(world.market_ids["FUT"], 30, 10, 5, 1_000),
        MarkMarket(world.market_ids["FUT"], 51),
    ]
    return {command.CODE: command for command in commands}


WRONG_TYPES = {
    int: ("1", 1.0, True, None, b"1"),
    str: (b"ref", 1, None),
    bytes: ("k" * 32, bytearray(KEY), None, 1),
}


@pytest.mark.parametrize("code", sorted(COMMANDS.by_code))
def test_every_field_of_every_command_has_its_type_checked(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each field of the command, in turn, gets each wrong type, all in one batch. Only the
    type is wrong: the untouched command is accepted afterwards."""
    world = World()
    world.run(ALICE_RESTS)
    with_markets(world, monkeypatch)
    with_events(world, monkeypatch)
    with_future(world, monkeypatch)
    world.harness.do(SetOrderGroup(world.account_id("alice"), 3, 100, 60_000))  # to reset
    base = valid_command_of_each_code(world)
    assert set(base) == set(COMMANDS.by_code), "every command code needs a valid example"
    canonical_base = base[code].to_canonical()
    cls = COMMANDS.by_code[code]
    commands = tuple(
        (*canonical_base[: index + 1], wrong, *canonical_base[index + 2 :])
        for index, declared in enumerate(cls.TYPES)
        for wrong in WRONG_TYPES[declared]
    )
    applied = apply_unchanged(world, Batch(world.next_batch_time(), commands))
    assert_each_rejected(applied, commands, Reject.FIELDS_MUST_HAVE_DECLARED_TYPES)
    # and the untouched command is accepted, so it was the type that was rejected
    first = world.harness.do(base[code])[0]
    assert not isinstance(first, CommandRejected), first


def test_batch_and_command_shape_rules_come_in_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batch time, then batch size, then per command: code, then arity, then types."""
    world = World()
    lower(monkeypatch, "batch_commands_max", 1)  # so that two commands are too many
    too_many = ((999,), (1, "wrong", "arity"))
    applied = apply_unchanged(world, Batch(-1, too_many))
    assert_each_rejected(applied, too_many, Reject.BATCH_TIME_MUST_BE_VALID)
    applied = apply_unchanged(world, Batch(world.next_batch_time(), too_many))
    assert_each_rejected(applied, too_many, Reject.BATCH_MUST_NOT_EXCEED_COMMANDS_MAX)
    for command, reason in [
        (("1", "wrong", "arity"), Reject.COMMAND_CODE_MUST_BE_KNOWN),
        ((999, *valid_commands(world)[1][1:]), Reject.COMMAND_CODE_MUST_BE_KNOWN),
        ((1, "wrong", "arity"), Reject.COMMAND_MUST_BE_WELL_FORMED),
        ((1, *(["x"] * len(NewOrder.FIELDS))), Reject.FIELDS_MUST_HAVE_DECLARED_TYPES),
    ]:
        applied = apply_unchanged(world, Batch(world.next_batch_time(), (command,)))
        assert_each_rejected(applied, (command,), reason)


# -- Bugs found here, fixed, and kept as tests ---------------------------------------------


def test_a_retried_replace_by_client_order_id_is_answered_exists() -> None:
    world = World()
    world.run(ALICE_RESTS)
    replace = ReplaceOrder(world.account_id("alice"), 0, 1, 2, 41, 10)
    assert isinstance(world.harness.do(replace)[0], OrderReplaced)
    rejected = world.harness.do(replace)[0]
    assert isinstance(rejected, CommandRejected), rejected
    assert Reject(rejected.reason).rule == "exists"
    assert rejected.related_id == world.order_id("alice", 1)


def test_a_retried_replace_by_order_id_is_answered_exists() -> None:
    world = World()
    world.run(ALICE_RESTS)
    order_id = world.order_id("alice", 1)
    replace = ReplaceOrder(world.account_id("alice"), order_id, 0, 2, 41, 10)
    assert isinstance(world.harness.do(replace)[0], OrderReplaced)
    world.run("bob sell_yes 4 @ 41 -> accepted; filled 4@41")  # 6 of alice's 10 are left
    outcome = world.harness.do(replace)[0]
    assert world.engine.orders[order_id].remaining == 6, "the retry put 4 contracts back"
    assert isinstance(outcome, CommandRejected), outcome
    assert Reject(outcome.reason).rule == "exists"


@pytest.mark.parametrize(
    "command",
    [
        cancel_order(order_id=2**70),
        cancel_order(client_order_id=2**70),
        replace_order(order_id=2**70),
        mass_cancel(market_id=2**70),
    ],
    ids=["cancel order id", "cancel client order id", "replace order id", "mass cancel"],
)
def test_an_id_beyond_64_bits_is_rejected_not_raised(command: Callable[[World], Any]) -> None:
    world = World()
    events = world.engine.apply(Batch(world.next_batch_time(), (command(world).to_canonical(),)))
    assert isinstance(events.typed_events()[0], CommandRejected)


@pytest.mark.parametrize(
    "command",
    [create_market(taker_fee_bps=-1), create_market(maker_fee_bps=-1), configure(maker_fee_bps=-1)],
    ids=["create taker", "create maker", "configure maker"],
)
def test_a_negative_fee_is_out_of_range(command: Callable[[World], Any]) -> None:
    world = World()
    rejected = world.harness.do(command(world))[0]
    assert isinstance(rejected, CommandRejected), rejected
    assert Reject(rejected.reason) is Reject.FEE_BPS_MUST_BE_IN_RANGE
