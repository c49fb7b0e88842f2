"""`evx admin`, the cluster half: status, verify, transfer, snapshot.

Strategy: a tool finds the cluster from `--data DIR` (the folder `evx up` made) or from
`--config FILE` (one node's config: the node and its peers), and asks each node for its
Status on its order-entry port, which answers before login and changes nothing. A node that
does not answer is shown as down, not skipped: at 3 a.m. the missing row is the news.

`verify` compares the nodes at one common index (the lowest applied index of the nodes that
answer), asking each for its state hash right after that index (QueryHash): the nodes keep
moving meanwhile, and each keeps its recent hashes. Anything that changes a node (transfer,
snapshot) goes over an operator session, signed with the operator key, to that one node.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evx.gateway import messages as wire
from evx.gateway.client import Client, ClientError, query_hash, query_status, sole_exception
from evx.gateway.codes import ErrorCode

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
    last_snapshot_index: int = 0
    log_entries: int = 0
    peers_connected: int = 0
    peers_total: int = 0
    transferring: bool = False
    lag: int = 0  # entries the leader has committed that this node has not applied
    error: str = ""


def cluster_nodes(data_dir: Path | None, config_path: Path | None) -> list[PeerConfig]:
    if config_path is not None:
        return list(load(config_path).all_nodes())
    layout = layouts.ClusterLayout((data_dir or Path("evx-data")).resolve())
    configs: list[NodeConfig] = layout.configs()
    if not configs:
        raise FileNotFoundError(f"no cluster in {layout.data_dir} (node*.toml)")
    # Every node named by any config of the folder (after a membership change, a new
    # node's config names it before the others' are edited), each node's own config
    # being the word on its addresses.
    nodes: dict[int, PeerConfig] = {}
    for config in configs:
        for peer in config.all_nodes():
            nodes.setdefault(peer.node_id, peer)
    for config in configs:
        nodes[config.node_id] = PeerConfig(config.node_id, config.raft, config.gateway, config.feed)
    return [nodes[node_id] for node_id in sorted(nodes)]


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
            last_snapshot_index=status.last_snapshot_index,
            log_entries=status.log_entries,
            peers_connected=status.peers_connected,
            peers_total=status.peers_total,
            transferring=bool(status.flags & wire.StatusFlag.TRANSFERRING),
        )

    async with trio.open_nursery() as nursery:
        for peer in nodes:
            nursery.start_soon(one, peer)
    rows = [results[peer.node_id] for peer in nodes]
    leaders = [row for row in rows if row.up and row.role == "leader"]
    # Lag is measured against the leader's commit index (the highest one if two nodes
    # both still believe they lead, or the highest known when there is no leader).
    top = max((row.commit_index for row in (leaders or [row for row in rows if row.up])), default=0)
    return [
        dataclass_replace(row, lag=max(top - row.applied_index, 0)) if row.up else row
        for row in rows
    ]


def leader_of(rows: list[NodeStatus]) -> NodeStatus | None:
    """The node every node that answers agrees leads, or None."""
    leaders = [row for row in rows if row.up and row.role == "leader"]
    if len(leaders) != 1:
        return None
    others = [row for row in rows if row.up and row is not leaders[0]]
    if any(row.leader != leaders[0].node for row in others):
        return None
    return leaders[0]


def render_table(rows: list[NodeStatus]) -> str:
    from rich.console import Console  # noqa: PLC0415 - only for people
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="evx cluster")
    columns = (
        "node",
        "address",
        "role",
        "leader",
        "term",
        "commit",
        "applied",
        "lag",
        "state hash",
        "peers",
        "snapshot",
        "log",
        "uptime",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("address", "role") else "right")
    for row in rows:
        if not row.up:
            table.add_row(
                str(row.node), row.address, f"down ({row.error})", *[""] * (len(columns) - 3)
            )
            continue
        table.add_row(
            str(row.node),
            row.address,
            row.role + (" (transferring)" if row.transferring else ""),
            str(row.leader or "?"),
            str(row.term),
            str(row.commit_index),
            str(row.applied_index),
            str(row.lag),
            row.state_hash[:16],
            f"{row.peers_connected}/{row.peers_total}",
            str(row.last_snapshot_index),
            str(row.log_entries),
            _duration(row.uptime_s),
        )
    console = Console(record=True, width=160)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def status_json(rows: list[NodeStatus]) -> str:
    return json.dumps([asdict(row) for row in rows])


# -- verify -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verification:
    index: int  # the common index the nodes were compared at
    hashes: dict[int, str]  # node -> state hash at index, for the nodes that answered
    differing: tuple[int, ...]  # nodes whose hash is not the majority's
    unchecked: dict[int, str]  # node -> why it could not be compared

    @property
    def agree(self) -> bool:
        return not self.differing and not self.unchecked

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"agree": self.agree}


async def verify(nodes: list[PeerConfig], timeout_s: float = 3.0) -> Verification:
    """Every node's state hash at one common applied index."""
    rows = await statuses(nodes, timeout_s)
    unchecked = {row.node: f"down ({row.error})" for row in rows if not row.up}
    up = [row for row in rows if row.up]
    if not up:
        return Verification(0, {}, (), unchecked)
    index = min(row.applied_index for row in up)
    hashes: dict[int, str] = {}

    async def one(peer: PeerConfig) -> None:
        host, port = split_address(peer.gateway)
        try:
            answer = await query_hash(host, port, index, timeout_s)
        except Exception as error:
            unchecked[peer.node_id] = f"down ({type(error).__name__})"
            return
        if not answer.kept:
            unchecked[peer.node_id] = (
                f"no hash kept at index {index} (applied {answer.applied_index}): it restarted "
                "from or installed a later snapshot; run verify again"
            )
            return
        hashes[peer.node_id] = answer.state_hash.hex()

    async with trio.open_nursery() as nursery:
        for peer in nodes:
            if peer.node_id not in unchecked:
                nursery.start_soon(one, peer)
    counts = Counter(hashes.values())
    differing: tuple[int, ...] = ()
    if len(counts) > 1:
        (majority, top), *rest = counts.most_common()
        if rest[0][1] == top:  # no majority: every node is named
            differing = tuple(sorted(hashes))
        else:
            differing = tuple(sorted(node for node, value in hashes.items() if value != majority))
    return Verification(
        index, dict(sorted(hashes.items())), differing, dict(sorted(unchecked.items()))
    )


def render_verification(result: Verification) -> str:
    lines = [f"compared at log index {result.index}"]
    for node, value in result.hashes.items():
        mark = "DIFFERS" if node in result.differing else "ok"
        lines.append(f"  node {node}: {value[:32]}  {mark}")
    for node, why in result.unchecked.items():
        lines.append(f"  node {node}: not compared: {why}")
    if result.differing:
        names = ", ".join(f"node {node}" for node in result.differing)
        lines.append(f"DISAGREE: {names} (docs/operations.md: a node that disagrees)")
    elif result.unchecked:
        lines.append("INCOMPLETE: not every node could be compared")
    else:
        lines.append(f"all {len(result.hashes)} nodes agree")
    return "\n".join(lines) + "\n"


# -- transfer and snapshot --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminResult:
    node: int  # the node the action ran on
    done: bool
    text: str
    leader: int = 0  # transfer: the leader afterwards
    index: int = 0  # snapshot: its log index
    paused_ms: float = 0.0  # transfer: how long intake was paused on the old leader

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def node_admin(
    peer: PeerConfig,
    key: Ed25519PrivateKey,
    action: wire.AdminAction,
    target: int = 0,
    timeout_s: float = 90.0,
) -> AdminResult:
    """One NodeAdmin on `peer`, over an operator session to that node only."""
    host, port = split_address(peer.gateway)
    try:
        # The whole exchange is bounded: connecting to a node that is down retries forever.
        with trio.fail_after(timeout_s):
            async with Client([(host, port)], account_id=0, key=key) as client:
                answer = await client.node_admin(int(action), target)
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
    return AdminResult(
        node=peer.node_id,
        done=bool(answer.done),
        text=answer.text,
        leader=answer.node_id,
        index=answer.index,
        paused_ms=round(answer.elapsed_us / 1000, 3),
    )


async def transfer(
    nodes: list[PeerConfig], key: Ed25519PrivateKey, target: int = 0, settle_s: float = 5.0
) -> AdminResult:
    """Planned failover: the leader hands over to `target` (0: the most caught-up node),
    then every node that answers is watched until it names the new leader."""
    rows = await statuses(nodes)
    leader = leader_of(rows)
    if leader is None:
        return AdminResult(0, False, "the nodes do not agree on one leader: see evx admin status")
    if target == leader.node:
        return AdminResult(leader.node, False, f"node {target} leads already")
    peer = next(peer for peer in nodes if peer.node_id == leader.node)
    result = await node_admin(peer, key, wire.AdminAction.TRANSFER, target)
    if not result.done:
        return result
    with trio.move_on_after(settle_s):
        while True:
            rows = await statuses(nodes)
            settled = leader_of(rows)
            if settled is not None and settled.node == result.leader:
                return result
            await trio.sleep(0.05)
    return dataclass_replace(
        result, text=result.text + f"; not every node named node {result.leader} yet"
    )


async def snapshot(
    nodes: list[PeerConfig], key: Ed25519PrivateKey, which: int = 0, timeout_s: float = 90.0
) -> list[AdminResult]:
    """A snapshot now on node `which` (0: on every node), one after the other."""
    chosen = [peer for peer in nodes if which in (0, peer.node_id)]
    if not chosen:
        raise ValueError(f"no node {which} in the cluster")
    up = {row.node for row in await statuses(chosen) if row.up}
    results = []
    for peer in chosen:
        if peer.node_id not in up:
            results.append(AdminResult(peer.node_id, False, "down: it does not answer"))
            continue
        try:
            results.append(await node_admin(peer, key, wire.AdminAction.SNAPSHOT, 0, timeout_s))
        except ClientError as error:
            if error.code == ErrorCode.OPERATOR_KEY_REQUIRED:
                raise  # the key is refused everywhere: said once, exit 4
            results.append(AdminResult(peer.node_id, False, f"refused: {error}"))
        except (OSError, trio.TooSlowError) as error:  # a node down: the others still run
            results.append(AdminResult(peer.node_id, False, f"down ({type(error).__name__})"))
    return results


async def change_membership(
    nodes: list[PeerConfig], key: Ed25519PrivateKey, add: bool, address: str
) -> AdminResult:
    """Add or remove the node whose peer address is `address`, on the leader."""
    rows = await statuses(nodes)
    leader = leader_of(rows)
    if leader is None:
        return AdminResult(0, False, "the nodes do not agree on one leader: see evx admin status")
    peer = next(peer for peer in nodes if peer.node_id == leader.node)
    action = wire.AdminAction.ADD_NODE if add else wire.AdminAction.REMOVE_NODE
    host, port = split_address(peer.gateway)
    try:
        with trio.fail_after(30):
            async with Client([(host, port)], account_id=0, key=key) as client:
                answer = await client.node_admin(int(action), 0, address)
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
    return AdminResult(node=peer.node_id, done=bool(answer.done), text=answer.text)
