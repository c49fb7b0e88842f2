"""`evx admin`: what an operator runs against a cluster. Today: `status`.

Strategy: a tool finds the cluster from `--data DIR` (the folder `evx up` made) or from
`--config FILE` (one node's config: the node and its peers), and asks each node for its
Status on its order-entry port, which answers before login and changes nothing. A node that
does not answer is shown as down, not skipped: at 3 a.m. the missing row is the news.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from evx.gateway.client import query_status

from . import layout as layouts
from .config import NodeConfig, PeerConfig, load
from .node import split_address

ROLES = {0: "follower", 1: "candidate", 2: "leader"}


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: int
    address: str
    up: bool
    role: str = "down"
    leader: int = 0
    term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    state_hash: str = ""
    uptime_s: int = 0
    error: str = ""


def cluster_nodes(data_dir: Path | None, config_path: Path | None) -> list[PeerConfig]:
    if config_path is not None:
        return list(load(config_path).all_nodes())
    layout = layouts.ClusterLayout((data_dir or Path("evx-data")).resolve())
    configs: list[NodeConfig] = layout.configs()
    if not configs:
        raise FileNotFoundError(f"no cluster in {layout.data_dir} (node*.toml)")
    return list(configs[0].all_nodes())


async def statuses(nodes: list[PeerConfig], timeout_s: float = 2.0) -> list[NodeStatus]:
    results: dict[int, NodeStatus] = {}

    async def one(peer: PeerConfig) -> None:
        host, port = split_address(peer.gateway)
        try:
            status = await query_status(host, port, timeout_s)
        except Exception as error:
            results[peer.node_id] = NodeStatus(
                peer.node_id, peer.gateway, False, error=type(error).__name__
            )
            return
        results[peer.node_id] = NodeStatus(
            node=peer.node_id,
            address=peer.gateway,
            up=True,
            role=ROLES.get(status.role, str(status.role)),
            leader=status.leader_node_id,
            term=status.term,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            state_hash=status.state_hash.hex(),
            uptime_s=status.uptime_s,
        )

    async with trio.open_nursery() as nursery:
        for peer in nodes:
            nursery.start_soon(one, peer)
    return [results[peer.node_id] for peer in nodes]


def render_table(rows: list[NodeStatus]) -> str:
    from rich.console import Console  # noqa: PLC0415 - only for people
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="evx cluster")
    for column in (
        "node",
        "address",
        "role",
        "leader",
        "term",
        "commit",
        "applied",
        "lag",
        "state hash",
        "uptime",
    ):
        table.add_column(column, justify="right" if column not in ("address", "role") else "left")
    top = max((row.applied_index for row in rows if row.up), default=0)
    for row in rows:
        if not row.up:
            table.add_row(str(row.node), row.address, f"down ({row.error})", *[""] * 7)
            continue
        table.add_row(
            str(row.node),
            row.address,
            row.role,
            str(row.leader or "?"),
            str(row.term),
            str(row.commit_index),
            str(row.applied_index),
            str(top - row.applied_index),
            row.state_hash[:16],
            f"{row.uptime_s} s",
        )
    console = Console(record=True, width=140)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def status_json(rows: list[NodeStatus]) -> str:
    return json.dumps([asdict(row) for row in rows])
