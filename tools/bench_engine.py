"""`evx bench engine`: the standard engine workload, measured.

Strategy: the workload is generated up front from a seed (so generating it is not timed and
every run with the same seed applies the same log), then applied to a fresh engine in
batches, the way a node applies Raft entries. Throughput is commands applied per second of
wall time over the whole stream; latency is the time of each command alone, taken with the
engine's after-command callback (the engine itself reads no clock). The naive reference
book gets the same order flow in the same run, and the ratio of the two rates is reported,
so a noisy machine shifts both figures alike.

The standard mix (docs/benchmarks.md): 100 binary markets, 10,000 funded accounts of which
200 are market makers, each market seeded with resting orders around a mid price that
wanders. Market makers send 80 % of the passive orders and replaces (as on a real venue,
where a few firms provide most resting liquidity); takers come from all 10,000. Per command:
45 % passive limit orders (GTC, 1-10 cents from the mid, on their own side of it),
25 % cancels of a resting order the generator placed, 10 % cancel-replaces (half shrink at
the same price, half move the price), 15 % marketable IOC orders (up to 3 cents through
the mid) and 5 % marketable GTC orders that take and may rest. Cancels and replaces name
orders by client_order_id; some of them find the order already filled, and are rejected,
as in real order flow (the rate is printed).

With `event_size` N the same flow runs on markets grouped N by N into exhaustive events
(mutually exclusive outcomes, as "who wins" markets are): every hold and fill of an account
in them is the event's, over its markets there, and fills release guaranteed payouts.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from evx.core import (
    Batch,
    CancelOrder,
    CommandRejected,
    CreateAccount,
    CreateEvent,
    CreateMarket,
    Deposit,
    Engine,
    MarketKind,
    MarketStatus,
    NewOrder,
    ReplaceOrder,
    SetMarketStatus,
    Side,
    TimeInForce,
)

MARKETS = 100
ACCOUNTS = 10_000
MARKET_MAKERS = 200
MARKET_MAKER_SHARE = 0.8
SEED_ORDERS_PER_SIDE = 20
DEPOSIT_CENTS = 10**9


@dataclass(frozen=True, slots=True)
class EngineBenchResult:
    commands: int
    batch_size: int
    seed: int
    seconds: float
    commands_per_s: float
    latency_us_p50: float
    latency_us_p99: float
    latency_us_p999: float
    rejected_fraction: float
    trades: int
    events_per_command: float
    reference_commands: int
    reference_commands_per_s: float
    reference_ratio: float
    cores: int
    event_size: int = 0  # markets per exhaustive event; 0: every market on its own

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Workload:
    """The standard order flow, generated from a seed."""

    def __init__(
        self, seed: int, markets: int = MARKETS, accounts: int = ACCOUNTS, event_size: int = 0
    ) -> None:
        self.random = random.Random(seed)
        self.event_size = event_size
        self.markets = markets
        self.accounts = accounts
        self.mids = [self.random.randint(30, 70) for _ in range(markets)]
        self.next_client_id = [1] * (accounts + 1)
        # resting orders the generator believes are live: (account, client_id, market, side,
        # own price); a list plus index for O(1) random removal
        self.live: list[tuple[int, int, int, int, int]] = []

    def setup(self) -> list[Any]:
        """Accounts, deposits, markets (not timed)."""
        commands: list[Any] = []
        for number in range(1, self.accounts + 1):
            key = number.to_bytes(32, "big")
            commands.append(CreateAccount(f"trader{number}", key))
            commands.append(Deposit(number, DEPOSIT_CENTS, f"bench-deposit-{number}"))
        event_id = 0
        for number in range(1, self.markets + 1):
            if self.event_size and (number - 1) % self.event_size == 0:
                event_id += 1
                commands.append(CreateEvent(f"BENCH-EVENT-{event_id}", 1, 1))
            commands.append(
                CreateMarket(
                    f"BENCH-{number}",
                    MarketKind.BINARY,
                    position_limit=10**8,
                    event_id=event_id if self.event_size else 0,
                )
            )
        # opened once every market exists: an exhaustive event's markets are all made first
        commands += [SetMarketStatus(n, MarketStatus.OPEN) for n in range(1, self.markets + 1)]
        for market in range(1, self.markets + 1):
            for _ in range(SEED_ORDERS_PER_SIDE):
                commands.append(self._passive(market, Side.BUY_YES))
                commands.append(self._passive(market, Side.SELL_YES))
        return commands

    def stream(self, count: int) -> list[Any]:
        return [self._next() for _ in range(count)]

    def _account(self) -> int:
        return self.random.randint(1, self.accounts)

    def _maker_account(self) -> int:
        if self.random.random() < MARKET_MAKER_SHARE:
            return self.random.randint(1, min(MARKET_MAKERS, self.accounts))
        return self._account()

    def _client_id(self, account: int) -> int:
        client_id = self.next_client_id[account]
        self.next_client_id[account] = client_id + 1
        return client_id

    def _passive(self, market: int, side: int | None = None) -> NewOrder:
        r = self.random
        mid = self.mids[market - 1]
        side = side or r.choice((Side.BUY_YES, Side.SELL_YES, Side.BUY_NO, Side.SELL_NO))
        distance = r.randint(1, 10)
        bid = side in (Side.BUY_YES, Side.SELL_NO)
        yes_price = max(1, min(99, mid - distance if bid else mid + distance))
        price = yes_price if side in (Side.BUY_YES, Side.SELL_YES) else 100 - yes_price
        account = self._maker_account()
        client_id = self._client_id(account)
        self.live.append((account, client_id, market, side, price))
        return NewOrder(account, client_id, market, side, price, r.randint(1, 100))

    def _next(self) -> Any:
        r = self.random
        roll = r.random()
        market = r.randint(1, self.markets)
        if r.random() < 0.02:
            self.mids[market - 1] = max(20, min(80, self.mids[market - 1] + r.choice((-1, 1))))
        if roll < 0.45 or not self.live:
            return self._passive(market)
        if roll < 0.70:
            account, client_id, *_ = self._take_live()
            return CancelOrder(account, 0, client_id)
        if roll < 0.80:
            account, client_id, market, side, price = self._take_live()
            new_id = self._client_id(account)
            if r.random() < 0.5:
                quantity, new_price = r.randint(1, 5), price
            else:
                quantity = r.randint(1, 100)
                moved = r.choice((-2, -1, 1, 2))
                buying = side in (Side.BUY_YES, Side.BUY_NO)
                # move without crossing: a buyer lowers, a seller raises, mostly
                new_price = max(1, min(99, price - abs(moved) if buying else price + abs(moved)))
            self.live.append((account, new_id, market, side, new_price))
            return ReplaceOrder(account, 0, client_id, new_id, new_price, quantity)
        mid = self.mids[market - 1]
        side = r.choice((Side.BUY_YES, Side.SELL_YES))
        through = r.randint(0, 3)
        price = max(1, min(99, mid + through if side == Side.BUY_YES else mid - through))
        account = self._account()
        client_id = self._client_id(account)
        if roll < 0.95:
            return NewOrder(
                account, client_id, market, side, price, r.randint(1, 20), 1, TimeInForce.IOC
            )
        self.live.append((account, client_id, market, side, price))
        return NewOrder(account, client_id, market, side, price, r.randint(1, 20))

    def _take_live(self) -> tuple[int, int, int, int, int]:
        index = self.random.randrange(len(self.live))
        self.live[index], self.live[-1] = self.live[-1], self.live[index]
        return self.live.pop()


def _batches(commands: list[tuple[Any, ...]], size: int) -> Iterator[tuple[tuple[Any, ...], ...]]:
    for start in range(0, len(commands), size):
        yield tuple(commands[start : start + size])


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def run(
    commands: int = 200_000,
    seed: int = 1,
    batch_size: int = 256,
    reference_commands: int = 20_000,
    event_size: int = 0,
) -> EngineBenchResult:
    workload = Workload(seed, event_size=event_size)
    setup = [command.to_canonical() for command in workload.setup()]
    stream = [command.to_canonical() for command in workload.stream(commands)]

    engine = Engine()
    clock_ms = 1
    for batch in _batches(setup, 1_000):
        engine.apply(Batch(clock_ms, batch))
        clock_ms += 1

    # Throughput and latency in one pass: the callback stamps the end of every command.
    stamps: list[int] = []
    stamp = stamps.append
    now = time.perf_counter_ns

    def after_command() -> None:
        stamp(now())

    latencies_ns: list[int] = []
    rejected = trades = events = 0
    gc.collect()
    gc.disable()  # a collection pause lands on one unlucky command; measured apart below
    try:
        started = time.perf_counter()
        for batch in _batches(stream, batch_size):
            stamps.clear()
            begin = now()
            applied = engine.apply(Batch(clock_ms, batch), after_command)
            clock_ms += 1
            previous = begin
            for value in stamps:
                latencies_ns.append(value - previous)
                previous = value
            for event in applied.events:
                code = event[0]
                if code == CommandRejected.CODE:
                    rejected += 1
                elif code == 36:  # TradePrinted
                    trades += 1
            events += len(applied.events)
        seconds = time.perf_counter() - started
    finally:
        gc.enable()

    reference_stream = stream[:reference_commands]
    reference_rate = _reference_rate(setup, reference_stream) if reference_stream else 0.0
    # the engine's rate over the same prefix, for a like-for-like ratio
    engine_prefix_seconds = sum(latencies_ns[: len(reference_stream)]) / 1e9
    latencies_us = sorted(value / 1_000 for value in latencies_ns)
    return EngineBenchResult(
        commands=commands,
        batch_size=batch_size,
        seed=seed,
        seconds=round(seconds, 3),
        commands_per_s=round(commands / seconds),
        latency_us_p50=round(percentile(latencies_us, 0.50), 2),
        latency_us_p99=round(percentile(latencies_us, 0.99), 2),
        latency_us_p999=round(percentile(latencies_us, 0.999), 2),
        rejected_fraction=round(rejected / commands, 4),
        trades=trades,
        events_per_command=round(events / commands, 2),
        reference_commands=len(reference_stream),
        reference_commands_per_s=round(reference_rate),
        reference_ratio=round(len(reference_stream) / engine_prefix_seconds / reference_rate, 1)
        if reference_rate
        else 0.0,
        cores=os.cpu_count() or 0,
        event_size=event_size,
    )


def _reference_rate(setup: list[tuple[Any, ...]], stream: list[tuple[Any, ...]]) -> float:
    """Commands per second of the naive reference book on the same order flow."""
    from evx.tools.reference_book import ReferenceExchange  # noqa: PLC0415 - only when asked

    reference = ReferenceExchange()
    # the reference book knows orders only (no events: it has no money)
    reference.apply_all([command for command in setup if command[0] <= 4])
    started = time.perf_counter()
    reference.apply_all(stream)
    return len(stream) / (time.perf_counter() - started)


def summary(result: EngineBenchResult) -> str:
    events = f", in exhaustive events of {result.event_size}" if result.event_size else ""
    return "\n".join(
        [
            f"engine: {result.commands:,} commands in batches of {result.batch_size} "
            f"(seed {result.seed}, {result.cores} cores{events})",
            f"  {result.commands_per_s:,.0f} commands/s over {result.seconds:.2f} s",
            f"  latency per command: p50 {result.latency_us_p50:.1f} us, "
            f"p99 {result.latency_us_p99:.1f} us, p99.9 {result.latency_us_p999:.1f} us",
            f"  {result.trades:,} trades, {result.events_per_command:.2f} events per command, "
            f"{result.rejected_fraction:.1%} of commands rejected",
            f"reference book: {result.reference_commands_per_s:,.0f} commands/s over the "
            f"first {result.reference_commands:,}; the engine is {result.reference_ratio}x",
        ]
    )


def median_of(results: list[EngineBenchResult]) -> float:
    return statistics.median(r.commands_per_s for r in results)
