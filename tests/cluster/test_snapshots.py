"""Snapshots on real nodes: the log stays bounded, a follower that fell behind the
compacted log catches up by snapshot to the same hash, a restart loads the newest
snapshot, `evx replay` agrees with the live nodes, and one data folder has one node."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.gateway.exchange import ExchangeMachine
from evx.replication.journal import read_entries
from evx.snapshots.replay import replay
from evx.snapshots.store import SnapshotStore
from evx.snapshots.writer import EXIT_SNAPSHOT_FAILED
from evx.tools import admin
from evx.tools.config import NodeConfig, PeerConfig, SnapshotSettings, load, render
from support.counter import free_ports
from support.processes import ProcessCluster
from support.snapshot_logs import apply_through, journal_entries, snapshot_at

EVERY = 100  # a snapshot each time the log passes this many entries


@pytest.fixture
def cluster(tmp_path: Path):
    cluster = ProcessCluster(tmp_path, snapshots=SnapshotSettings(every_entries=EVERY))
    cluster.start_all()
    yield cluster
    cluster.stop_all()


async def _place(client: Client, market: int, count: int) -> list[int]:
    order_ids = []
    for number in range(count):
        report = await client.place(market, Side.BUY_YES, 10 + number % 40, 1)
        assert isinstance(report, wire.OrderAccepted), report
        order_ids.append(report.order_id)
    return order_ids


def _stored(cluster: ProcessCluster, node_id: int) -> list[int]:
    path = cluster.configs[node_id - 1].snapshot_store_path
    with SnapshotStore(path, readonly=True) as store:
        return store.indexes()


async def test_a_follower_behind_the_compacted_log_catches_up_by_snapshot(
    cluster: ProcessCluster,
) -> None:
    leader = await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker"])
    maker_id, maker_key = traders["maker"]
    follower = next(node for node in cluster.node_ids if node != leader)
    async with Client(cluster.addresses(leader), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, 30)
        cluster.kill(follower)
        acked += await _place(maker, market, 3 * EVERY)  # the log is compacted past it
        assert _stored(cluster, leader)[0] > EVERY
        status = await cluster.wait_converged([n for n in cluster.node_ids if n != follower])
        cluster.start(follower)
        converged = await cluster.wait_converged(timeout_s=60)
        assert converged.applied_index >= status.applied_index
        assert "snapshot_installed" in cluster.log(follower)
        async with Client(cluster.addresses(follower), account_id=maker_id, key=maker_key) as view:
            assert view.node == cluster.address(follower)
            orders = await view.open_orders(min_applied_index=maker.applied_index)
            assert sorted(order.order_id for order in orders.orders) == sorted(acked)
    journal = read_entries(str(cluster.configs[leader - 1].journal_path))
    assert journal[0][1] > EVERY, "the leader's log was compacted"
    assert len(journal) < 2 * EVERY, "and stays bounded"


async def test_a_restart_loads_the_newest_snapshot_and_replay_agrees(
    cluster: ProcessCluster,
) -> None:
    leader = await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker"])
    maker_id, maker_key = traders["maker"]
    async with Client(cluster.addresses(leader), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, 2 * EVERY + 20)
    before = await cluster.wait_converged()
    for node in cluster.node_ids:
        cluster.kill(node)
    # Offline, each node's files replay to the hash the live nodes showed.
    for config in cluster.configs:
        start, steps = replay(config.data_dir)
        assert start.header is not None, "replay starts from the node's snapshot"
        hashes = {step.index: step.state_hash for step in steps}
        assert hashes[before.applied_index] == before.state_hash, config.node_id
    cluster.start_all()
    await cluster.wait_leader()
    after = await cluster.wait_converged(min_index=before.applied_index, timeout_s=60)
    assert after.applied_index >= before.applied_index
    for node in cluster.node_ids:
        assert "snapshot_loaded" in cluster.log(node)
    async with Client(cluster.addresses(), account_id=maker_id, key=maker_key) as maker:
        orders = await maker.open_orders(min_applied_index=before.applied_index)
        assert sorted(order.order_id for order in orders.orders) == sorted(acked)


async def test_a_second_node_on_the_same_folder_is_refused(cluster: ProcessCluster) -> None:
    await cluster.wait_leader()
    first = cluster.configs[0]
    second = subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", "node", "--config", str(first.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert "in use by another evx node" in second.stderr
    await trio.sleep(0.5)
    assert cluster.exit_codes()[1] is None, "the first node runs on"
    await cluster.wait_converged()


async def test_a_snapshot_that_fails_its_audit_stops_the_node_once(tmp_path: Path) -> None:
    single = ProcessCluster(tmp_path, size=1)
    config = single.configs[0]
    entries = journal_entries(5, 40)
    machine = ExchangeMachine()
    apply_through(machine, entries, 40)
    machine.engine.accounts[1].cash += 99  # written by a bug: the checksum is fine
    config.data_dir.mkdir(parents=True)
    with SnapshotStore(config.snapshot_store_path) as store:
        store.put(40, snapshot_at(machine.engine, entries, 40))
    try:
        single.start(1)
        process = single.processes[1]
        with trio.fail_after(60):
            while process.poll() is None:
                await trio.sleep(0.1)
        assert process.returncode == EXIT_SNAPSHOT_FAILED
        assert "money_conserved" in single.log(1)
        single.processes.pop(1)
        single.start(1)  # the next start refuses it at once and starts without it
        status = await single.wait_converged(timeout_s=30)
        assert status.applied_index < 40
        assert '"check": "audit"' in single.log(1)
    finally:
        single.stop_all()


async def test_a_dead_node_replaced_by_an_empty_one_catches_up_to_the_same_hash(
    cluster: ProcessCluster,
) -> None:
    """The runbook's "replace a dead node" (docs/operations.md): node lost with its disk,
    the two others agree and lag 0, an empty node with the same config starts; it installs
    the leader's snapshot, replays the rest, and `evx admin verify` passes."""
    leader = await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker"])
    maker_id, maker_key = traders["maker"]
    dead = next(node for node in cluster.node_ids if node != leader)
    survivors = [node for node in cluster.node_ids if node != dead]
    async with Client(cluster.addresses(leader), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, 20)
        cluster.kill(dead)
        shutil.rmtree(cluster.configs[dead - 1].data_dir)  # the disk is gone
        acked += await _place(maker, market, 2 * EVERY)
        await cluster.wait_converged(survivors)  # the runbook's step 1: the survivors agree
        cluster.start(dead)
        await cluster.wait_converged(timeout_s=60)
        assert "snapshot_installed" in cluster.log(dead)
        result = await admin.verify(admin.cluster_nodes(cluster.layout.data_dir, None))
        assert result.agree, result
        async with Client(cluster.addresses(dead), account_id=maker_id, key=maker_key) as view:
            assert view.node == cluster.address(dead)
            orders = await view.open_orders(min_applied_index=maker.applied_index)
            assert sorted(order.order_id for order in orders.orders) == sorted(acked)


async def test_a_dead_node_removed_and_a_new_one_added_catches_up_by_snapshot(
    cluster: ProcessCluster,
) -> None:
    """Membership change, one node at a time: node D dies and is removed from the cluster;
    a new, empty node N (new id, new addresses) is added and started; it is sent the
    leader's snapshot and reaches the same hash; after every node restarts, the cluster is
    still {survivors, N}."""
    leader = await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker"])
    maker_id, maker_key = traders["maker"]
    dead = next(node for node in cluster.node_ids if node != leader)
    survivors = [node for node in cluster.node_ids if node != dead]
    data = str(cluster.layout.data_dir)
    async with Client(cluster.addresses(leader), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, 20)
        cluster.kill(dead)
        acked += await _place(maker, market, 2 * EVERY)  # compacted past what D had

        removed = await trio.to_thread.run_sync(
            lambda: _evx(
                "admin", "remove-node", "--data", data, "--raft", cluster.configs[dead - 1].raft
            )
        )
        assert removed.returncode == 0, removed.stdout + removed.stderr
        with trio.fail_after(5):  # Status counts the live membership's peers, not the configs'
            while any(
                s is None or s.peers_total != 1
                for s in (await cluster.statuses(survivors)).values()
            ):
                await trio.sleep(0.05)
        new = _new_node_config(cluster, survivors)
        added = await trio.to_thread.run_sync(
            lambda: _evx("admin", "add-node", "--data", data, "--raft", new.raft)
        )
        assert added.returncode == 0, added.stdout + added.stderr
        refused = await trio.to_thread.run_sync(
            lambda: _evx("admin", "add-node", "--data", data, "--raft", new.raft)
        )
        assert refused.returncode == 1 and "already" in refused.stdout, refused.stdout
        cluster.start(new.node_id)
        members = [*survivors, new.node_id]
        _write_peers(cluster, members)  # the runbook's last step: every config says who is in
        await cluster.wait_converged(members, timeout_s=60)
        assert "snapshot_installed" in cluster.log(new.node_id)
        statuses = await cluster.statuses(members)  # the live membership, not the configs
        assert all(s is not None and s.peers_total == 2 for s in statuses.values()), statuses
        acked += await _place(maker, market, 10)
    await cluster.wait_converged(members, timeout_s=60)
    for node in members:
        cluster.kill(node)
    for node in members:
        cluster.start(node)
    await cluster.wait_leader(members)
    status = await cluster.wait_converged(members, timeout_s=60)
    async with Client(cluster.addresses(new.node_id), account_id=maker_id, key=maker_key) as view:
        assert view.node == cluster.address(new.node_id)
        orders = await view.open_orders(min_applied_index=status.applied_index)
        assert sorted(order.order_id for order in orders.orders) == sorted(acked)


def _peer(config: NodeConfig) -> PeerConfig:
    return PeerConfig(config.node_id, config.raft, config.gateway, config.feed)


def _write_peers(cluster: ProcessCluster, members: list[int]) -> None:
    """Each member's config lists the other members as its peers (read at its next start)."""
    configs = {node: cluster.configs[node - 1] for node in members}
    for node, config in configs.items():
        peers = tuple(_peer(configs[other]) for other in members if other != node)
        config.path.write_text(render(dataclasses.replace(config, peers=peers)))
        cluster.configs[node - 1] = load(config.path)


def _new_node_config(cluster: ProcessCluster, members: list[int]) -> NodeConfig:
    """A fourth node's config: its own id and ports, the current members as its peers."""
    raft, gateway, feed = free_ports(3)
    template = cluster.configs[members[0] - 1]
    node_id = max(cluster.node_ids) + 1
    config = dataclasses.replace(
        template,
        path=cluster.layout.data_dir / f"node{node_id}.toml",
        node_id=node_id,
        data_dir=cluster.layout.data_dir / f"node{node_id}",
        raft=f"127.0.0.1:{raft}",
        gateway=f"127.0.0.1:{gateway}",
        feed=f"127.0.0.1:{feed}",
        metrics="",
        peers=tuple(_peer(cluster.configs[node - 1]) for node in members),
    )
    config.path.write_text(render(config))
    cluster.configs.append(load(config.path))
    return cluster.configs[-1]


def _evx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
