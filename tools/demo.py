"""`evx demo`: a market maker quoting both sides and two takers, on the engine alone.

Strategy: a seeded script of commands applied to an engine in this process, printing what
each participant sees: its acks, fills and balances, and the book. Until the cluster
exists this is what README's first command runs; later it drives a running cluster.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from evx.core import (
    Batch,
    CommandRejected,
    CreateAccount,
    CreateMarket,
    Deposit,
    Engine,
    MarketKind,
    MarketStatus,
    MassCancel,
    NewOrder,
    OrderCancelled,
    OrderFilled,
    Reject,
    SetMarketStatus,
    SettleMarket,
    Side,
    TimeInForce,
    TradePrinted,
    check_invariants,
)

NAMES = {1: "maker", 2: "taker-a", 3: "taker-b"}


def run(seed: int = 7, steps: int = 12) -> Iterator[str]:
    rng = random.Random(seed)
    engine = Engine()
    clock = [0]

    def apply(*commands: object) -> list:
        clock[0] += 1_000
        applied = engine.apply(Batch.of(clock[0], list(commands)))  # type: ignore[arg-type]
        check_invariants(engine)
        return applied.typed_events()

    setup = [CreateAccount(name, bytes([number]) * 32) for number, name in NAMES.items()]
    setup += [Deposit(number, 100_000, f"demo-deposit-{number}") for number in NAMES]
    setup += [
        CreateMarket("DEMO-RAIN-TOMORROW", MarketKind.BINARY),
        SetMarketStatus(1, MarketStatus.OPEN),
    ]
    apply(*setup)
    yield f"seed {seed}: market DEMO-RAIN-TOMORROW is open; each account has $1,000.00"
    fair = 50
    client_ids = {number: 0 for number in NAMES}

    def next_id(account: int) -> int:
        client_ids[account] += 1
        return client_ids[account]

    for step in range(1, steps + 1):
        fair = max(5, min(95, fair + rng.choice((-3, -1, 0, 1, 3))))
        events = apply(
            MassCancel(1, 1),
            NewOrder(1, next_id(1), 1, Side.BUY_YES, fair - 2, 20),
            NewOrder(1, next_id(1), 1, Side.SELL_YES, fair + 2, 20),
        )
        taker = rng.choice((2, 3))
        side = rng.choice((Side.BUY_YES, Side.BUY_NO))
        price = fair + 3 if side == Side.BUY_YES else 100 - fair + 3
        quantity = rng.randint(1, 15)
        events += apply(
            NewOrder(taker, next_id(taker), 1, side, price, quantity, 1, TimeInForce.IOC)
        )
        yield f"step {step}: fair {fair}, maker quotes {fair - 2} / {fair + 2}"
        yield from _describe(events)
        yield "  book: " + _book(engine)
    events = apply(SetMarketStatus(1, MarketStatus.CLOSED), SettleMarket(1, rng.randint(0, 1)))
    yield "market closed and settled"
    yield from _describe(events)
    for number, name in NAMES.items():
        account = engine.accounts[number]
        yield f"  {name}: ${account.cash / 100:,.2f}"
    yield f"  exchange fees: ${engine.fees_collected / 100:,.2f}"


def _describe(events: list) -> Iterator[str]:
    for event in events:
        if isinstance(event, TradePrinted):
            side = "buyer" if event.aggressor_side == 1 else "seller"
            yield f"  trade {event.trade_id}: {event.quantity} at {event.price} (YES {side} took)"
        elif isinstance(event, OrderFilled):
            yield (
                f"    {NAMES[event.account_id]} filled {event.quantity} at {event.price}"
                f" (fee {event.fee}), position {event.position:+d}"
            )
        elif isinstance(event, CommandRejected):
            yield f"  rejected: {Reject(event.reason).rule}"
        elif isinstance(event, OrderCancelled) and event.reason not in (2,):
            yield f"    {NAMES[event.account_id]} order {event.order_id} cancelled"


def _book(engine: Engine) -> str:
    market = engine.markets[1]
    bids = [f"{lv.quantity}@{lv.price}" for lv in reversed(market.bid_levels) if lv]
    asks = [f"{lv.quantity}@{lv.price}" for lv in market.ask_levels if lv]
    return f"bids {' '.join(bids) or '-'} | asks {' '.join(asks) or '-'}"
