"""Nodes in this process, for gateway tests: a real Raft node, engine, batcher and gateway on
127.0.0.1, driven through the real client library."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from evx.core import CreateAccount, CreateMarket, Deposit, MarketKind, MarketStatus, SetMarketStatus
from evx.gateway.client import Client
from evx.gateway.keys import generate_private_key, public_bytes, read_private_key
from evx.tools.config import FeedLimits, GatewayLimits, load, render
from evx.tools.layout import ClusterLayout, create
from evx.tools.node import RunningNode, run_node

from .counter import free_ports


def single_node_layout(
    tmp_path: Path,
    *,
    metrics: bool = False,
    feed: bool = False,
    feed_limits: dict[str, object] | None = None,
    **limits: object,
) -> ClusterLayout:
    raft, gateway, metrics_port, feed_port = free_ports(4)
    layout = create(
        tmp_path / "cluster",
        [raft],
        [gateway],
        metrics_ports=[metrics_port] if metrics else None,
        feed_ports=[feed_port] if feed or feed_limits else None,
    )
    if limits or feed_limits:
        path = layout.config_paths()[0]
        config = load(path)
        config = dataclasses.replace(
            config,
            limits=dataclasses.replace(GatewayLimits(), **limits),
            feed_limits=dataclasses.replace(FeedLimits(), **(feed_limits or {})),
        )
        path.write_text(render(config))
    return layout


async def start_node(nursery: trio.Nursery, layout: ClusterLayout, index: int = 0) -> RunningNode:
    config = layout.configs()[index]
    node: RunningNode = await nursery.start(run_node, config)
    with trio.fail_after(15):
        while not node.raft.isReady():
            await trio.sleep(0.05)
    return node


def operator_client(layout: ClusterLayout, node: RunningNode) -> Client:
    return Client(
        [("127.0.0.1", node.gateway_port)],
        account_id=0,
        key=read_private_key(layout.operator_key_file),
    )


async def open_market_with_traders(
    operator: Client, names: list[str], cash: int = 1_000_000, ticker: str = "GW-TEST"
) -> tuple[int, dict[str, tuple[int, object]]]:
    """Accounts with fresh keys and cash, and one open binary market. Returns the market id
    and name -> (account_id, private key)."""
    traders: dict[str, tuple[int, object]] = {}
    for name in names:
        key = generate_private_key()
        result = await operator.operate(CreateAccount(name, public_bytes(key)))
        account_id = result.event_values()[0][1]
        await operator.operate(Deposit(account_id, cash, f"seed-{name}"))
        traders[name] = (account_id, key)
    created = await operator.operate(CreateMarket(ticker, MarketKind.BINARY))
    market_id = created.event_values()[0][1]
    await operator.operate(SetMarketStatus(market_id, MarketStatus.OPEN))
    return market_id, traders
