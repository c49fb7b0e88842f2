"""A deterministic exchange state with a chosen number of resting orders.

Strategy: the state is reached the only way an engine's state can be, by applying
commands: markets created and opened, accounts created and funded, then resting limit
orders that never cross (bids at 1-49 cents in YES terms, asks at 51-99), spread over
markets and accounts in a seeded order. Used by `evx bench snapshot` and by the snapshot
tests, which need states of a known size without a cluster.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from evx.core import (
    Batch,
    CreateAccount,
    CreateMarket,
    Deposit,
    Engine,
    MarketKind,
    MarketStatus,
    NewOrder,
    SetMarketStatus,
    Side,
    constants,
)

DEPOSIT_CENTS = 10**9
BATCH_COMMANDS = 1_000


def resting_state_commands(
    orders: int, *, accounts: int = 0, markets: int = 100, seed: int = 1
) -> Iterator[list[Any]]:
    """Batches of commands that leave `orders` resting orders on the books."""
    accounts = accounts or max(10, -(-orders // (constants.open_orders_per_account_max // 2)))
    rng = random.Random(seed)
    yield [
        CreateMarket(f"M{market:05d}", MarketKind.BINARY) for market in range(1, markets + 1)
    ] + [SetMarketStatus(market, MarketStatus.OPEN) for market in range(1, markets + 1)]
    setup: list[Any] = []
    for account in range(1, accounts + 1):
        setup.append(CreateAccount(f"trader-{account}", account.to_bytes(32, "big")))
        setup.append(Deposit(account, DEPOSIT_CENTS, f"funding-{account}"))
        if len(setup) >= BATCH_COMMANDS:
            yield setup
            setup = []
    if setup:
        yield setup
    batch: list[Any] = []
    for number in range(orders):
        account = number % accounts + 1
        if rng.random() < 0.5:
            side, price = Side.BUY_YES, rng.randint(1, 49)
        else:
            side, price = Side.SELL_YES, rng.randint(51, 99)
        batch.append(
            NewOrder(account, number + 1, rng.randint(1, markets), side, price, rng.randint(1, 50))
        )
        if len(batch) >= BATCH_COMMANDS:
            yield batch
            batch = []
    if batch:
        yield batch


def build_resting_state(
    orders: int, *, accounts: int = 0, markets: int = 100, seed: int = 1
) -> Engine:
    engine = Engine()
    for time_ms, commands in enumerate(
        resting_state_commands(orders, accounts=accounts, markets=markets, seed=seed), 1
    ):
        engine.apply(Batch(time_ms, tuple(command.to_canonical() for command in commands)))
    return engine
