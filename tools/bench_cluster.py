"""`evx bench cluster`: acknowledged orders per second through a real three-node cluster.

Strategy: a fresh cluster in a temporary folder (three `evx node` processes on 127.0.0.1,
journal flushed unless --no-flush), accounts and markets created by an operator session,
then N client sessions spread over the three nodes, each keeping W commands in flight.
The order mix is the engine benchmark's, driven from the client side: 45 % passive limit
orders, 25 % cancels and 10 % cancel-replaces of the session's own resting orders, 15 %
IOC orders and 5 % GTC orders that cross the mid. A command's acknowledgement latency runs
from just before its frame is written to the arrival of its outcome report, which the
node sends only after the entry holding it is committed (durable on a majority) and
applied on that node. Throughput counts outcome reports in the measured window. The
engine-alone rate is measured in the same run, so `engine_ratio` compares like with like.
Everything (nodes and clients) shares this machine's cores: the figures say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

from evx.core import (
    CreateAccount,
    CreateMarket,
    Deposit,
    MarketKind,
    MarketStatus,
    SetMarketStatus,
    Side,
    TimeInForce,
)
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.gateway.keys import generate_private_key, public_bytes, read_private_key

from . import layout as layouts
from .config import LoggingConfig, RaftSettings, SnapshotSettings, load, render
from .node import split_address
from .up import node_processes, wait_for_leader

MARKETS = 10
CASH_CENTS = 10**10


@dataclass(frozen=True, slots=True)
class ClusterBenchResult:
    sessions: int
    in_flight_per_session: int
    seconds: float
    flush: bool
    batch_window_ms: float
    acked_orders: int
    acked_orders_per_s: float
    ack_latency_ms_p50: float
    ack_latency_ms_p99: float
    ack_latency_ms_p999: float
    outcome_unknown: int
    engine_commands_per_s: float
    engine_ratio: float
    cores: int
    snapshot_every_entries: int  # the nodes' [snapshots] every_entries during the run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _make_cluster(
    folder: Path, flush: bool, window_ms: float, snapshot_every: int, *, feed: bool = False
) -> layouts.ClusterLayout:
    """`feed`: each node also serves its market-data feed and its metrics (bench feed)."""
    ports = layouts.free_ports(12 if feed else 6)
    layout = layouts.create(
        folder,
        ports[:3],
        ports[3:6],
        logging=LoggingConfig(level="warning", json=True),
        metrics_ports=ports[6:9] if feed else None,
        feed_ports=ports[9:12] if feed else None,
    )
    for path in layout.config_paths():
        config = load(path)
        limits = dataclasses.replace(
            config.limits, messages_per_s_max=1_000_000, message_burst_max=1_000_000
        )
        config = dataclasses.replace(
            config,
            limits=limits,
            raft_settings=RaftSettings(flush_journal=flush),
            batching=dataclasses.replace(config.batching, batch_window_ms=window_ms),
            snapshots=dataclasses.replace(config.snapshots, every_entries=snapshot_every),
        )
        path.write_text(render(config))
    return layout


async def _setup(layout: layouts.ClusterLayout, sessions: int) -> list[tuple[int, Any]]:
    nodes = [split_address(config.gateway) for config in layout.configs()]
    accounts = []
    async with Client(
        nodes, account_id=0, key=read_private_key(layout.operator_key_file)
    ) as operator:
        for number in range(sessions):
            key = generate_private_key()
            result = await operator.operate(CreateAccount(f"bench{number}", public_bytes(key)))
            account_id = result.event_values()[0][1]
            await operator.operate(Deposit(account_id, CASH_CENTS, f"bench-{number}"))
            accounts.append((account_id, key))
        for number in range(1, MARKETS + 1):
            await operator.operate(CreateMarket(f"BENCH-{number}", MarketKind.BINARY))
            await operator.operate(SetMarketStatus(number, MarketStatus.OPEN))
    return accounts


class _Session:
    def __init__(self, client: Client, seed: int) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.live: list[tuple[int, int, int, int]] = []  # (order_id, market, side, price)
        self.latencies_ms: list[float] = []
        self.acked = 0
        self.measuring = False
        self.unknown = 0

    async def worker(self) -> None:
        r = self.random
        while True:
            roll = r.random()
            market = r.randint(1, MARKETS)
            started = time.perf_counter()
            try:
                if roll < 0.25 and self.live:
                    order_id, *_ = self.live.pop(r.randrange(len(self.live)))
                    await self.client.cancel(order_id)
                elif roll < 0.35 and self.live:
                    order_id, market, side, price = self.live.pop(r.randrange(len(self.live)))
                    new_price = max(1, min(99, price + r.choice((-1, 1))))
                    report = await self.client.replace(order_id, new_price, r.randint(1, 50))
                    if isinstance(report, wire.OrderReplaced):
                        self.live.append((order_id, market, side, new_price))
                elif roll < 0.55:
                    side = r.choice((Side.BUY_YES, Side.SELL_YES))
                    price = 53 if side == Side.BUY_YES else 47
                    tif = TimeInForce.IOC if roll < 0.5 else TimeInForce.GTC
                    await self.client.place(
                        market, side, price, r.randint(1, 20), time_in_force=tif
                    )
                else:
                    side = r.choice((Side.BUY_YES, Side.SELL_YES))
                    distance = r.randint(1, 10)
                    price = 50 - distance if side == Side.BUY_YES else 50 + distance
                    report = await self.client.place(market, side, price, r.randint(1, 100))
                    if isinstance(report, wire.OrderAccepted):
                        self.live.append((report.order_id, market, side, price))
                        if len(self.live) > 500:
                            self.live.pop(0)  # old ones may be filled: forget them
            except trio.TooSlowError:
                self.unknown += 1
                continue
            if self.measuring:
                self.acked += 1
                self.latencies_ms.append((time.perf_counter() - started) * 1_000)


async def _drive(
    layout: layouts.ClusterLayout,
    accounts: list[tuple[int, Any]],
    in_flight: int,
    warmup_s: float,
    measure_s: float,
    on_window: Callable[[bool], Awaitable[None]] | None = None,
) -> tuple[list[_Session], float]:
    """`on_window(True)` just before the measured window opens, `on_window(False)` just
    after it closes (bench feed reads a node's metrics there)."""
    nodes = [split_address(config.gateway) for config in layout.configs()]
    sessions: list[_Session] = []
    async with contextlib.AsyncExitStack() as stack:
        for number, (account_id, key) in enumerate(accounts):
            first = number % len(nodes)
            client = await stack.enter_async_context(
                Client(nodes[first:] + nodes[:first], account_id=account_id, key=key)
            )
            sessions.append(_Session(client, seed=number))
        async with trio.open_nursery() as nursery:
            for session in sessions:
                for _ in range(in_flight):
                    nursery.start_soon(session.worker)
            await trio.sleep(warmup_s)
            if on_window is not None:
                await on_window(True)
            for session in sessions:
                session.measuring = True
            started = time.perf_counter()
            await trio.sleep(measure_s)
            for session in sessions:
                session.measuring = False
            seconds = time.perf_counter() - started
            if on_window is not None:
                await on_window(False)
            nursery.cancel_scope.cancel()
    return sessions, seconds


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    sessions: int = 8,
    in_flight: int = 8,
    warmup_s: float = 3.0,
    measure_s: float = 10.0,
    flush: bool = True,
    window_ms: float = 1.0,
    snapshot_every: int = SnapshotSettings().every_entries,
) -> ClusterBenchResult:
    from . import bench_engine  # noqa: PLC0415

    engine = bench_engine.run(commands=50_000, reference_commands=0)
    folder = Path(tempfile.mkdtemp(prefix="evx-bench-"))
    try:
        layout = _make_cluster(folder / "cluster", flush, window_ms, snapshot_every)
        with node_processes(layout):
            trio.run(wait_for_leader, layout)
            accounts = trio.run(_setup, layout, sessions)
            measured, seconds = trio.run(_drive, layout, accounts, in_flight, warmup_s, measure_s)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    latencies = [value for session in measured for value in session.latencies_ms]
    acked = sum(session.acked for session in measured)
    rate = acked / seconds
    return ClusterBenchResult(
        sessions=sessions,
        in_flight_per_session=in_flight,
        seconds=round(seconds, 2),
        flush=flush,
        batch_window_ms=window_ms,
        acked_orders=acked,
        acked_orders_per_s=round(rate),
        ack_latency_ms_p50=round(_percentile(latencies, 0.50), 2),
        ack_latency_ms_p99=round(_percentile(latencies, 0.99), 2),
        ack_latency_ms_p999=round(_percentile(latencies, 0.999), 2),
        outcome_unknown=sum(session.unknown for session in measured),
        engine_commands_per_s=engine.commands_per_s,
        engine_ratio=round(engine.commands_per_s / rate, 1) if rate else 0.0,
        cores=os.cpu_count() or 0,
        snapshot_every_entries=snapshot_every,
    )


def summary(result: ClusterBenchResult) -> str:
    return "\n".join(
        [
            f"cluster: 3 nodes, {result.sessions} sessions x {result.in_flight_per_session} "
            f"in flight, journal flush {'on' if result.flush else 'OFF'}, batch window "
            f"{result.batch_window_ms} ms, snapshot every {result.snapshot_every_entries:,} "
            f"entries, {result.cores} cores",
            f"  {result.acked_orders_per_s:,.0f} acknowledged orders/s "
            f"({result.acked_orders:,} in {result.seconds:.1f} s)",
            f"  ack latency: p50 {result.ack_latency_ms_p50:.2f} ms, "
            f"p99 {result.ack_latency_ms_p99:.2f} ms, p99.9 {result.ack_latency_ms_p999:.2f} ms",
            f"  engine alone in the same run: {result.engine_commands_per_s:,.0f} commands/s "
            f"({result.engine_ratio}x the cluster)",
        ]
    )


def median_rate(results: list[ClusterBenchResult]) -> float:
    return statistics.median(result.acked_orders_per_s for result in results)
