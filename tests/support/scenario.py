"""Readable scenario tables for engine tests.

A table is one row per command, with the outcome it must have:

    alice  buy_yes 10 @ 40                  -> accepted; rests 10
    bob    buy_no 4 @ 60 ioc                -> accepted; filled 4@60; fee 7
    alice  cancel #1                        -> cancelled 6 requested
    op     settle yes                       -> ok

Commands (prices in the terms of the side, as a client sends them):
    buy_yes|sell_yes|buy_no|sell_no Q @ P [ioc|fok|gtd=T|post_only|reduce_only|
                                           stp=resting|aggressing|both|id=K]
    buy_yes Q market [@ WORST] [fok] [max_cost=N]
    cancel #K          (K: the actor's client order id)
    replace #K Q @ P [id=J]
    mass_cancel [all]
    deposit N REF | withdraw N REF
    group G L W        (SetOrderGroup: group G, limit L contracts, window W ms)
    reset_group G
    (an order option: group=G)
    convert Q          (ConvertNo of Q contracts, in the row's market)
    op open|halt|close|settle yes|no|VALUE|configure TAKER MAKER LIMIT|tick T (-> ok)
    op EVENT settle WINNER|none   (SettleEvent)
    op mark P                      (MarkMarket: a futures market; 0: from its book)
    op margins I M B T             (SetMargins: initial, maintenance, band, interval ms)

A row acts on market MKT unless the word after the actor is another market's ticker
(`alice A buy_no 1 @ 70`, `op A close`); `add_event` makes events and their markets.

Expectations, separated by ';', all checked strictly for the actor's own order:
    accepted | rejected RULE | exists | ok | replaced [kept] | mass_cancelled N | converted
    group armed|triggered FILLED  (OrderGroupUpdated first)
    filled Q@P[, Q@P...]  (absent: no fills)   fee F   rests Q   cancelled Q REASON
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evx.core import (
    CancelOrder,
    CancelReason,
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
    OrderCancelled,
    OrderFilled,
    OrderFlag,
    OrderGroupUpdated,
    OrderReplaced,
    OrderType,
    PositionsConverted,
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
    Withdraw,
)

from .engine_harness import Harness

_STP = {
    "resting": SelfTradePrevention.CANCEL_RESTING,
    "aggressing": SelfTradePrevention.CANCEL_AGGRESSING,
    "both": SelfTradePrevention.CANCEL_BOTH,
}


@dataclass
class Actor:
    name: str
    account_id: int
    next_client_order_id: int = 1
    order_ids: dict[int, int] = field(default_factory=dict)  # client id -> order id


class Scenario:
    """Accounts funded with `cash` each and one open market, driven by tables."""

    def __init__(
        self,
        actors: tuple[str, ...] = ("alice", "bob", "carol"),
        cash: int = 10_000,
        *,
        kind: MarketKind = MarketKind.BINARY,
        taker_fee_bps: int = 700,
        maker_fee_bps: int = 0,
        position_limit: int = 1_000_000,
        floor: int = 0,
        cap: int = 0,
        close_time_ms: int = 0,
    ) -> None:
        self.harness = Harness()
        self.actors: dict[str, Actor] = {}
        for name in actors:
            created = self.harness.do(CreateAccount(name, name.encode().ljust(32, b"k")))
            self.actors[name] = Actor(name, created[0].account_id)
            if cash:
                self.harness.do(Deposit(created[0].account_id, cash, f"seed-{name}"))
        created = self.harness.do(
            CreateMarket(
                "MKT",
                kind,
                close_time_ms,
                taker_fee_bps,
                maker_fee_bps,
                position_limit,
                floor,
                cap,
            )
        )
        self.market_id = created[0].market_id
        self.harness.do(SetMarketStatus(self.market_id, MarketStatus.OPEN))
        self.last_events: list = []
        self.markets = {"MKT": self.market_id}
        self.events: dict[str, int] = {}
        self._target = self.market_id  # the market of the row being run

    def add_event(
        self,
        ticker: str,
        *markets: str,
        mutually_exclusive: bool = True,
        exhaustive: bool = False,
        taker_fee_bps: int = 700,
        maker_fee_bps: int = 0,
        position_limit: int = 1_000_000,
    ) -> int:
        """An event and its markets (binary), every market opened once all are made."""
        created = self.harness.do(CreateEvent(ticker, int(mutually_exclusive), int(exhaustive)))
        assert not isinstance(created[0], CommandRejected), created
        event_id = self.events[ticker] = created[0].event_id
        for market in markets:
            made = self.harness.do(
                CreateMarket(
                    market,
                    MarketKind.BINARY,
                    0,
                    taker_fee_bps,
                    maker_fee_bps,
                    position_limit,
                    event_id=event_id,
                )
            )
            assert not isinstance(made[0], CommandRejected), made
            self.markets[market] = made[0].market_id
        for market in markets:
            self.harness.do(SetMarketStatus(self.markets[market], MarketStatus.OPEN))
        return event_id

    def add_future(
        self,
        ticker: str,
        *,
        floor: int = 0,
        cap: int = 100,
        margins: tuple[int, int, int] = (20, 10, 5),
        mark_interval_ms: int = 0,
        mark: int = 50,
        taker_fee_bps: int = 0,
        maker_fee_bps: int = 0,
        position_limit: int = 1_000_000,
    ) -> int:
        """An open futures market on [floor, cap] with these margins, marked at `mark`."""
        made = self.harness.do(
            CreateMarket(
                ticker,
                MarketKind.FUTURE,
                0,
                taker_fee_bps,
                maker_fee_bps,
                position_limit,
                floor,
                cap,
            )
        )
        assert not isinstance(made[0], CommandRejected), made
        market_id = self.markets[ticker] = made[0].market_id
        for command in (
            SetMargins(market_id, *margins, mark_interval_ms),
            MarkMarket(market_id, mark),
            SetMarketStatus(market_id, MarketStatus.OPEN),
        ):
            done = self.harness.do(command)
            assert not isinstance(done[0], CommandRejected), done
        return market_id

    @property
    def engine(self):
        return self.harness.engine

    # -- Tables ---------------------------------------------------------------------------

    def run(self, table: str) -> None:
        for number, raw in enumerate(table.strip().splitlines(), 1):
            line = re.sub(r"(^|\s)#\s.*$", "", raw).strip()  # comments: '# ' to the end
            if not line:
                continue
            command_text, _, expectation = line.partition("->")
            actor_name, _, command_text = command_text.strip().partition(" ")
            try:
                self._row(actor_name, command_text.strip(), expectation.strip())
            except AssertionError as error:
                raise AssertionError(f"row {number} `{raw.strip()}`: {error}") from None

    def _row(self, actor_name: str, command_text: str, expectation: str) -> None:
        words = command_text.split()
        self._target = self.market_id
        if words[0] in self.markets:
            self._target = self.markets[words[0]]
            words = words[1:]
        elif actor_name == "op" and words[0] in self.events:
            self.last_events = self._settle_event(self.events[words[0]], words[1:])
            self._check(None, None, self.last_events, expectation)
            return
        if actor_name == "op" and words[0] == "tick":
            self.harness.tick(int(words[1]))
            assert expectation == "ok", "a tick row expects ok; check its effects after it"
            return
        if actor_name == "op":
            events = self._operator(words)
            actor = None
            order_client_id = None
        else:
            actor = self.actors[actor_name]
            command, order_client_id = self._account_command(actor, words)
            events = self.harness.do(command)
        self.last_events = events
        self._check(actor, order_client_id, events, expectation)

    def _account_command(self, actor: Actor, words: list[str]):
        verb = words[0]
        aid = actor.account_id
        if verb in ("buy_yes", "sell_yes", "buy_no", "sell_no"):
            return self._new_order(actor, verb, words[1:])
        if verb == "cancel":
            client_id = int(words[1].lstrip("#"))
            return CancelOrder(aid, 0, client_id), client_id
        if verb == "replace":
            client_id = int(words[1].lstrip("#"))
            quantity, price = int(words[2]), int(words[4])
            new_id = actor.next_client_order_id
            for word in words[5:]:
                if word.startswith("id="):
                    new_id = int(word[3:])
            actor.next_client_order_id = max(actor.next_client_order_id, new_id + 1)
            return ReplaceOrder(aid, 0, client_id, new_id, price, quantity), new_id
        if verb == "mass_cancel":
            market_id = 0 if words[1:] == ["all"] else self._target
            return MassCancel(aid, market_id), None
        if verb == "convert":
            client_id = actor.next_client_order_id
            actor.next_client_order_id += 1
            return ConvertNo(aid, client_id, self._target, int(words[1])), None
        if verb == "deposit":
            return Deposit(aid, int(words[1]), words[2]), None
        if verb == "withdraw":
            return Withdraw(aid, int(words[1]), words[2]), None
        if verb == "group":
            group, limit, window = (int(word) for word in words[1:4])
            return SetOrderGroup(aid, group, limit, window), None
        if verb == "reset_group":
            return ResetOrderGroup(aid, int(words[1])), None
        raise AssertionError(f"unknown command {verb}")

    def _new_order(self, actor: Actor, verb: str, words: list[str]):
        side = Side[verb.upper()]
        quantity = int(words[0])
        order_type, tif, flags = OrderType.LIMIT, TimeInForce.GTC, 0
        stp = SelfTradePrevention.CANCEL_AGGRESSING
        price = expire = max_cost = group = 0
        client_id = actor.next_client_order_id
        rest = words[1:]
        if rest and rest[0] == "market":
            order_type, tif = OrderType.MARKET, TimeInForce.IOC
            rest = rest[1:]
        if rest and rest[0] == "@":
            price = int(rest[1])
            rest = rest[2:]
        for word in rest:
            if word == "ioc":
                tif = TimeInForce.IOC
            elif word == "fok":
                tif = TimeInForce.FOK
            elif word.startswith("gtd="):
                tif, expire = TimeInForce.GTD, int(word[4:])
            elif word == "post_only":
                flags |= OrderFlag.POST_ONLY
            elif word == "reduce_only":
                flags |= OrderFlag.REDUCE_ONLY
            elif word.startswith("stp="):
                stp = _STP[word[4:]]
            elif word.startswith("id="):
                client_id = int(word[3:])
            elif word.startswith("max_cost="):
                max_cost = int(word[9:])
            elif word.startswith("group="):
                group = int(word[6:])
            else:
                raise AssertionError(f"unknown order option {word}")
        actor.next_client_order_id = max(actor.next_client_order_id, client_id + 1)
        command = NewOrder(
            actor.account_id,
            client_id,
            self._target,
            side,
            price,
            quantity,
            order_type,
            tif,
            int(flags),
            stp,
            expire,
            max_cost,
            group,
        )
        return command, client_id

    def _settle_event(self, event_id: int, words: list[str]) -> list:
        assert words[0] == "settle", f"an event row settles it, not {words}"
        winner = 0 if words[1] == "none" else self.markets[words[1]]
        return self.harness.do(SettleEvent(event_id, winner))

    def _operator(self, words: list[str]) -> list:
        verb, mid = words[0], self._target
        if verb in ("open", "halt", "close"):
            status = {"open": MarketStatus.OPEN, "halt": MarketStatus.HALTED}.get(
                verb, MarketStatus.CLOSED
            )
            return self.harness.do(SetMarketStatus(mid, status))
        if verb == "settle":
            outcome = {"yes": 1, "no": 0}.get(words[1])
            return self.harness.do(
                SettleMarket(mid, outcome if outcome is not None else int(words[1]))
            )
        if verb == "configure":
            taker, maker, limit = (int(word) for word in words[1:4])
            return self.harness.do(ConfigureMarket(mid, taker, maker, limit))
        if verb == "mark":
            return self.harness.do(MarkMarket(mid, int(words[1])))
        if verb == "margins":
            initial, maintenance, band, interval = (int(word) for word in words[1:5])
            return self.harness.do(SetMargins(mid, initial, maintenance, band, interval))
        raise AssertionError(f"unknown operator command {verb}")

    # -- Checks ---------------------------------------------------------------------------

    def _check(
        self, actor: Actor | None, client_id: int | None, events: list, expectation: str
    ) -> None:
        clauses = [clause.strip() for clause in expectation.split(";") if clause.strip()]
        assert clauses, "a row must say what it expects"
        outcome, details = clauses[0], clauses[1:]
        first = events[0]
        word, _, argument = outcome.partition(" ")
        if word == "rejected":
            assert isinstance(first, CommandRejected), f"expected a reject, got {first}"
            assert Reject(first.reason).rule == argument, (
                f"rejected {Reject(first.reason).rule}, expected {argument}"
            )
        elif word == "exists":
            assert isinstance(first, CommandRejected) and first.reason == Reject.EXISTS, first
        else:
            assert not isinstance(first, CommandRejected), (
                f"rejected {Reject(first.reason).rule}, expected {outcome}"
            )
            if word == "accepted":
                assert isinstance(first, OrderAccepted), first
                assert actor is not None and client_id is not None
                actor.order_ids[client_id] = first.order_id
            elif word == "replaced":
                assert isinstance(first, OrderReplaced), first
                assert first.priority_kept == (1 if argument == "kept" else 0), first
                assert actor is not None and client_id is not None
                actor.order_ids[client_id] = first.order_id
            elif word == "mass_cancelled":
                assert first.cancelled_orders == int(argument), first
            elif word == "converted":
                assert isinstance(first, PositionsConverted), first
            elif word == "group":
                state, filled = argument.split()
                assert isinstance(first, OrderGroupUpdated), first
                assert (first.triggered, first.filled) == (int(state == "triggered"), int(filled))
            elif word == "cancelled":
                details = [outcome, *details]
            elif word != "ok":
                raise AssertionError(f"unknown outcome {outcome}")
        if actor is None or client_id is None or isinstance(first, CommandRejected):
            assert not details, f"nothing to check details of: {details}"
            return
        order_id = actor.order_ids.get(client_id)
        mine = [e for e in events if getattr(e, "order_id", None) == order_id]
        fills = [e for e in mine if isinstance(e, OrderFilled)]
        cancels = [e for e in mine if isinstance(e, OrderCancelled)]
        expected_fills: list[tuple[int, int]] = []
        expected_cancel: tuple[int, str] | None = None
        for clause in details:
            word, _, argument = clause.partition(" ")
            if word == "filled":
                for part in argument.split(","):
                    quantity, price = part.strip().split("@")
                    expected_fills.append((int(quantity), int(price)))
            elif word == "fee":
                assert sum(f.fee for f in fills) == int(argument), (
                    f"fee {sum(f.fee for f in fills)}, expected {argument}"
                )
            elif word == "rests":
                order = self.engine.orders.get(order_id)
                assert order is not None and order.level is not None, "order is not resting"
                assert order.remaining == int(argument), f"rests {order.remaining}"
            elif word == "cancelled":
                quantity, reason = argument.split()
                expected_cancel = (int(quantity), reason)
            else:
                raise AssertionError(f"unknown detail {clause}")
        got_fills = [(f.quantity, f.price) for f in fills]
        assert got_fills == expected_fills, f"fills {got_fills}, expected {expected_fills}"
        got_cancel = [(c.cancelled_quantity, CancelReason(c.reason).name.lower()) for c in cancels]
        assert got_cancel == ([expected_cancel] if expected_cancel else []), (
            f"cancels {got_cancel}, expected {expected_cancel}"
        )
        if "rests" not in " ".join(details) and order_id in self.engine.orders and not cancels:
            order = self.engine.orders[order_id]
            raise AssertionError(f"order rests {order.remaining} but the row does not say so")

    # -- Expected book and balances -----------------------------------------------------------

    def book(self) -> tuple[str, str]:
        """The market's book as 'PRICExQTY' words, bids best first, then asks best first."""
        market = self.engine.markets[self.market_id]
        bids = " ".join(
            f"{level.price}x{level.quantity}"
            for level in reversed(market.bid_levels)
            if level is not None
        )
        asks = " ".join(
            f"{level.price}x{level.quantity}" for level in market.ask_levels if level is not None
        )
        return bids, asks

    def expect_book(self, bids: str = "", asks: str = "") -> None:
        assert self.book() == (bids, asks), f"book {self.book()}, expected {(bids, asks)}"

    def expect(
        self, name: str, *, cash: int, held: int = 0, position: int = 0, market: str = "MKT"
    ) -> None:
        account = self.engine.accounts[self.actors[name].account_id]
        am = account.markets.get(self.markets[market])
        got = (account.cash, account.held, am.position if am else 0)
        assert got == (cash, held, position), (
            f"{name} (cash, held, position) {got}, expected {(cash, held, position)}"
        )

    def expect_positions(self, name: str, **positions: int) -> None:
        """The account's positions in the named markets (0 where it holds none)."""
        account = self.engine.accounts[self.actors[name].account_id]
        got = {}
        for ticker in positions:
            am = account.markets.get(self.markets[ticker])
            got[ticker] = am.position if am is not None else 0
        assert got == positions, f"{name} positions {got}, expected {positions}"

    def released(self, name: str, event: str) -> int:
        """The payout released to the account in the event."""
        account = self.engine.accounts[self.actors[name].account_id]
        ae = account.events.get(self.events[event])
        return ae.released if ae is not None else 0

    def fees(self) -> int:
        return self.engine.fees_collected
