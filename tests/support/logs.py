"""Seeded random logs: batches of mixed commands, valid and not, for whole-log tests."""

from __future__ import annotations

import random

from evx.core import (
    Batch,
    CancelOrder,
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
    ReplaceOrder,
    ResetOrderGroup,
    SetMargins,
    SetMarketStatus,
    SetOrderGroup,
    SettleEvent,
    SettleMarket,
    Withdraw,
)

ACCOUNTS = 6
MARKETS = 7  # three on their own; the three of event 1 (exhaustive); a futures market
EVENT_MARKETS = (4, 5, 6)
FUTURE = 7


def random_log(seed: int, batches: int = 200, per_batch: int = 12) -> list[Batch]:
    """A log that opens markets, trades them hard, expires, closes and settles some: three
    on their own, an exhaustive event of three, whose NO are sometimes converted, and a
    futures market on thin margins, marked now and then, whose margins are raised half way
    (which liquidates the positions that cannot pay)."""
    rng = random.Random(seed)
    log = [
        Batch.of(
            1,
            [CreateAccount(f"acct{n}", bytes([n]) * 32) for n in range(1, ACCOUNTS + 1)]
            + [Deposit(n, rng.randint(500, 50_000), f"seed-{n}") for n in range(1, ACCOUNTS + 1)]
            + [
                CreateMarket("BIN-1", MarketKind.BINARY, maker_fee_bps=175, position_limit=300),
                CreateMarket("BIN-2", MarketKind.BINARY, close_time_ms=batches * 9),
                CreateMarket("SCALAR-1", MarketKind.SCALAR, floor=-500, cap=1_500),
                CreateEvent("ELECT", 1, 1),
            ]
            + [
                CreateMarket(f"ELECT-{n}", MarketKind.BINARY, position_limit=200, event_id=1)
                for n in range(1, 4)
            ]
            + [
                CreateMarket("FUT-1", MarketKind.FUTURE, position_limit=400, floor=0, cap=100),
                SetMargins(FUTURE, 6, 3, 3, 0),
            ]
            + [SetMarketStatus(m, MarketStatus.OPEN) for m in range(1, MARKETS + 1)]
            + [SetOrderGroup(n, 1, 60, 50) for n in range(1, ACCOUNTS + 1)]
            + [SetOrderGroup(n, 2, 150, 500) for n in range(1, ACCOUNTS + 1)],
        )
    ]
    client_ids = dict.fromkeys(range(1, ACCOUNTS + 1), 0)
    time_ms = 1
    for number in range(batches):
        time_ms += rng.choice((0, 1, 5, 17))
        commands = []
        for _ in range(rng.randint(0, per_batch)):
            account = rng.randint(1, ACCOUNTS)
            market = rng.randint(1, MARKETS)
            roll = rng.random()
            if roll < 0.55:
                client_ids[account] += 1
                tif = rng.choice((1, 1, 1, 2, 3, 4))
                order_type = 2 if rng.random() < 0.08 else 1
                if order_type == 2:
                    tif = rng.choice((2, 3))
                commands.append(
                    NewOrder(
                        account,
                        client_ids[account] if rng.random() > 0.02 else 1,
                        market,
                        rng.randint(1, 4),
                        rng.randint(0 if order_type == 2 else 35, 65),
                        rng.randint(1, 40),
                        order_type,
                        tif,
                        rng.choice((0, 0, 0, 1, 2)) if tif in (1, 4) else rng.choice((0, 2)),
                        rng.randint(1, 3),
                        time_ms + rng.randint(1, 200) if tif == 4 else 0,
                        rng.randint(50, 2_000) if order_type == 2 and rng.random() < 0.5 else 0,
                        rng.choice((0, 0, 0, 0, 0, 0, 1, 2)),  # order groups 1 and 2, or none
                    )
                )
            elif roll < 0.75:
                recent = max(1, client_ids[account] - 8)
                commands.append(
                    CancelOrder(account, 0, rng.randint(recent, client_ids[account] + 1))
                )
            elif roll < 0.87:
                client_ids[account] += 1
                commands.append(
                    ReplaceOrder(
                        account,
                        0,
                        rng.randint(max(1, client_ids[account] - 8), client_ids[account]),
                        client_ids[account],
                        rng.randint(35, 65),
                        rng.randint(1, 40),
                    )
                )
            elif roll < 0.91:
                commands.append(MassCancel(account, rng.choice((0, market))))
            elif roll < 0.95:
                commands.append(
                    Deposit(account, rng.randint(1, 5_000), f"dep-{seed}-{number}-{account}")
                )
            elif roll < 0.96:
                commands.append(
                    Withdraw(account, rng.randint(1, 3_000), f"wd-{seed}-{number}-{account}")
                )
            elif roll < 0.965:
                commands.append(ConfigureMarket(market, rng.randint(0, 900), 175, 300))
            elif roll < 0.975:
                client_ids[account] += 1
                commands.append(
                    ConvertNo(
                        account, client_ids[account], rng.choice(EVENT_MARKETS), rng.randint(1, 3)
                    )
                )
            elif roll < 0.983:
                group = rng.randint(1, 2)
                if rng.random() < 0.5:
                    commands.append(SetOrderGroup(account, group, rng.randint(5, 80), 50))
                else:
                    commands.append(ResetOrderGroup(account, group))
            elif roll < 0.99:
                commands.append(SetMarketStatus(market, rng.choice((2, 2, 2, 2, 3))))
            else:
                commands.append((rng.randint(0, 99), "garbage", rng.random()))
        if rng.random() < 0.1:
            commands.append(MarkMarket(FUTURE, 0))  # from the book, at most the band
        if number == batches // 2:
            # margins raised at once: positions their accounts cannot cover are liquidated
            commands.append(SetMargins(FUTURE, 100, 100, 3, 0))
        if number == batches * 3 // 4:
            commands += [SetMarketStatus(3, MarketStatus.CLOSED), SettleMarket(3, 777)]
        if number == batches * 7 // 8:
            commands += [SetMarketStatus(m, MarketStatus.CLOSED) for m in EVENT_MARKETS]
            commands.append(SettleEvent(1, rng.choice(EVENT_MARKETS)))
        log.append(Batch(time_ms, tuple(_canonical(c) for c in commands)))
    return log


def _canonical(command: object) -> tuple:
    return command if isinstance(command, tuple) else command.to_canonical()  # type: ignore[attr-defined]
