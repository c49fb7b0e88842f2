"""`evx demo --data DIR`: traders on a running cluster (the one `evx up` started).

Strategy: three sessions of the client library, one per demo account, each on a different
node: a market maker quotes both sides around a wandering fair price, cancelling and
requoting each step; two takers cross the spread with immediate orders. Every execution
report each trader receives is printed, so what a trader sees is what the exchange did.
"""

from __future__ import annotations

import random
from pathlib import Path

import trio

from evx.core import Side, TimeInForce
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.gateway.keys import read_private_key

from . import layout as layouts
from .node import split_address

MARKET_ID = 1


def _describe(name: str, report: wire.ExecutionReport) -> str | None:
    if isinstance(report, wire.OrderFilled):
        return (
            f"  {name:8} filled {report.quantity} at {report.price} "
            f"(fee {report.fee}, position {report.position:+d})"
        )
    if isinstance(report, wire.OrderRejected):
        return f"  {name:8} rejected: reason {report.reason}"
    return None


async def trade(data_dir: Path, seed: int, steps: int) -> None:
    layout = layouts.ClusterLayout(data_dir.resolve())
    accounts = layout.accounts()
    if not accounts:
        raise FileNotFoundError(f"no demo accounts in {layout.data_dir}: run `evx up` first")
    nodes = [split_address(config.gateway) for config in layout.configs()]
    rng = random.Random(seed)

    def client(name: str, offset: int) -> Client:
        account = accounts[name]
        rotated = nodes[offset % len(nodes) :] + nodes[: offset % len(nodes)]
        return Client(
            rotated,
            account_id=int(account["account_id"]),  # type: ignore[arg-type]
            key=read_private_key(str(account["key_file"])),
        )

    fair = 50
    async with (
        client("maker", 0) as maker,
        client("taker-a", 1) as taker_a,
        client("taker-b", 2) as taker_b,
    ):
        print(f"trading market {MARKET_ID} on nodes {nodes}")
        for step in range(1, steps + 1):
            fair = max(5, min(95, fair + rng.choice((-3, -1, 0, 1, 3))))
            await maker.mass_cancel(MARKET_ID)
            await maker.place(MARKET_ID, Side.BUY_YES, fair - 2, 20)
            await maker.place(MARKET_ID, Side.SELL_YES, fair + 2, 20)
            taker, name = rng.choice(((taker_a, "taker-a"), (taker_b, "taker-b")))
            buying = rng.random() < 0.5
            side = Side.BUY_YES if buying else Side.BUY_NO
            price = fair + 3 if buying else 100 - fair + 3
            quantity = rng.randint(1, 15)
            await taker.place(MARKET_ID, side, price, quantity, time_in_force=TimeInForce.IOC)
            await trio.sleep(0.05)
            print(
                f"step {step}: fair {fair}, maker quotes {fair - 2} / {fair + 2}; {name} "
                f"{'buys YES' if buying else 'buys NO'} {quantity}"
            )
            for trader_name, trader in (
                ("maker", maker),
                ("taker-a", taker_a),
                ("taker-b", taker_b),
            ):
                for report in trader.drain_reports():
                    line = _describe(trader_name, report)
                    if line:
                        print(line)
        for trader_name, trader in (("maker", maker), ("taker-a", taker_a), ("taker-b", taker_b)):
            balance = await trader.balance()
            positions = await trader.positions()
            held = {p.market_id: p.position for p in positions.positions}
            print(
                f"{trader_name:8} cash ${balance.cash / 100:,.2f} held ${balance.held / 100:,.2f}"
                f" position {held.get(MARKET_ID, 0):+d} (node {trader.node})"
            )


def main(data_dir: Path, seed: int, steps: int) -> int:
    try:
        trio.run(trade, data_dir, seed, steps)
    except FileNotFoundError as error:
        print(error)
        return 1
    return 0
