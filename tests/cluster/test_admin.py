"""`evx admin` against real clusters: a planned transfer under load loses nothing, verify
names a node made to disagree, a snapshot on demand, and nobody but an operator can do
any of it.

Transfer runs on node processes (SIGKILL clean-up by pid, as everywhere). Verify needs a
node whose state is wrong: that node runs in this process, so the test can reach into its
engine (a test-only hook; nothing a client can send does this), next to two processes."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client, ClientError
from evx.gateway.codes import ErrorCode
from evx.gateway.keys import generate_private_key, read_private_key, write_private_key
from evx.tools import admin
from evx.tools.node import RunningNode
from support.nodes import start_node
from support.processes import ProcessCluster

TEST_TIMEOUT_S = 60


def _evx(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_a_planned_transfer_under_load_loses_nothing_and_pauses_briefly(
    cluster: ProcessCluster,
) -> None:
    """Traders on every node place resting orders without pause while leadership moves.
    Every acknowledged order is on the book afterwards exactly once, and the longest gap
    between two acknowledgements across the transfer is printed."""
    await cluster.wait_leader()
    names = [f"t{node}" for node in cluster.node_ids]
    market, traders = await cluster.open_market(names)
    old_leader = await cluster.wait_leader()
    acked: dict[str, list[int]] = {name: [] for name in names}
    ack_times: list[float] = []
    key = read_private_key(cluster.layout.operator_key_file)
    nodes = admin.cluster_nodes(cluster.layout.data_dir, None)

    async def trade(name: str, first: int, stop: trio.Event) -> None:
        account_id, trader_key = traders[name]
        async with Client(cluster.addresses(first), account_id=account_id, key=trader_key) as c:
            price = 1
            while not stop.is_set():
                client_order_id = c.next_client_order_id()
                report = await c.place(
                    market, Side.BUY_YES, price, 1, client_order_id=client_order_id
                )
                assert isinstance(report, wire.OrderAccepted), report
                acked[name].append(client_order_id)
                ack_times.append(time.monotonic())
                price = price % 40 + 1  # bids only: nothing trades, everything rests

    with trio.fail_after(TEST_TIMEOUT_S):
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for name, first in zip(names, cluster.node_ids, strict=True):
                nursery.start_soon(trade, name, first, stop)
            await trio.sleep(1.5)
            started = time.monotonic()
            result = await admin.transfer(nodes, key)
            ended = time.monotonic()
            await trio.sleep(1.5)
            stop.set()
        new_leader = await cluster.wait_leader()
        await cluster.wait_converged()

    assert result.done, result.text
    assert result.node == old_leader and result.leader == new_leader != old_leader
    window = [t for t in ack_times if started - 1 <= t <= ended + 1]
    gaps = [later - earlier for earlier, later in itertools.pairwise(window)]
    print(
        f"transfer {old_leader} -> {new_leader}: intake paused {result.paused_ms:.1f} ms on "
        f"the old leader, command took {1000 * (ended - started):.0f} ms; acks around it: "
        f"longest gap {1000 * max(gaps):.0f} ms, median {1000 * statistics.median(gaps):.1f} ms"
    )
    for name in names:
        account_id, trader_key = traders[name]
        async with Client(cluster.addresses(), account_id=account_id, key=trader_key) as c:
            open_orders = await c.open_orders()
        on_book = sorted(order.client_order_id for order in open_orders.orders)
        assert len(set(on_book)) == len(on_book), "an order is on the book twice"
        assert on_book == sorted(acked[name]), f"{name}: acknowledged orders are missing"
        assert len(on_book) > 20, "the trader kept trading"

    completed = _evx("admin", "transfer", "--data", str(cluster.layout.data_dir), "--to", "99")
    assert completed.returncode == 1
    assert "node 99 is not another node of the cluster" in completed.stdout


async def test_verify_names_the_node_made_to_disagree(tmp_path: Path) -> None:
    """Node 3 runs in this process; its running hash is changed behind the engine's back.
    `evx admin verify` passes before and names node 3 after, with exit status 1."""
    cluster = ProcessCluster(tmp_path)
    try:
        cluster.start(1)
        cluster.start(2)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(TEST_TIMEOUT_S):
                node3: RunningNode = await start_node(nursery, cluster.layout, index=2)
                await cluster.wait_leader([1, 2, 3])
                data = str(cluster.layout.data_dir)
                await cluster.wait_converged([1, 2, 3], min_index=3)

                completed = await trio.to_thread.run_sync(
                    lambda: _evx("admin", "verify", "--data", data, "--json")
                )
                agreed = json.loads(completed.stdout)
                assert completed.returncode == 0, completed.stdout + completed.stderr
                assert agreed["agree"] and len(agreed["hashes"]) == 3

                with node3.machine.lock:  # the test-only hook: a corrupted state
                    engine = node3.machine.engine
                    engine.state_hash = bytes(32)
                before = node3.machine.applied_index
                while node3.machine.applied_index < before + 3:  # the leader's clock entries
                    await trio.sleep(0.05)

                completed = await trio.to_thread.run_sync(
                    lambda: _evx("admin", "verify", "--data", data)
                )
                assert completed.returncode == 1, completed.stdout + completed.stderr
                assert "node 3: " in completed.stdout and "DIFFERS" in completed.stdout
                assert "DISAGREE: node 3 " in completed.stdout
                result = await admin.verify(admin.cluster_nodes(cluster.layout.data_dir, None))
                assert result.differing == (3,) and not result.unchecked
                assert result.hashes[1] == result.hashes[2] != result.hashes[3]
            node3.stop()
    finally:
        cluster.stop_all()


async def test_a_snapshot_on_demand_shows_in_status(cluster: ProcessCluster) -> None:
    await cluster.wait_leader()
    await cluster.open_market(["a"])
    data = str(cluster.layout.data_dir)
    completed = await trio.to_thread.run_sync(
        lambda: _evx("admin", "snapshot", "--data", data, "--node", "2", "--json")
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (result,) = json.loads(completed.stdout)
    assert result["done"] and result["node"] == 2 and result["index"] > 0
    rows = await admin.statuses(admin.cluster_nodes(cluster.layout.data_dir, None))
    by_node = {row.node: row for row in rows}
    assert by_node[2].last_snapshot_index == result["index"]
    assert by_node[1].last_snapshot_index == 0 and by_node[3].last_snapshot_index == 0
    assert all(row.peers_connected == row.peers_total == 2 for row in rows)


async def test_only_an_operator_key_may_act_on_a_node(cluster: ProcessCluster) -> None:
    """NodeAdmin from an account session is refused; a login as operator with any other key
    is refused; and the command line says so with exit status 4."""
    await cluster.wait_leader()
    _, traders = await cluster.open_market(["a"])
    account_id, key = traders["a"]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with Client(cluster.addresses(), account_id=account_id, key=key) as client:
            with pytest.raises(ClientError) as refused:
                await client.node_admin(int(wire.AdminAction.TRANSFER))
            assert refused.value.code == ErrorCode.OPERATOR_KEY_REQUIRED
        with pytest.raises(ClientError) as refused:
            async with Client(cluster.addresses(), account_id=0, key=generate_private_key()):
                pass
        assert refused.value.code == ErrorCode.OPERATOR_KEY_REQUIRED
    stranger = cluster.layout.data_dir / "stranger.pem"
    write_private_key(stranger, generate_private_key())
    data = str(cluster.layout.data_dir)
    signed_with_another_key = ("--data", data, "--operator-key", str(stranger))
    for args in (
        ("admin", "snapshot", *signed_with_another_key),
        ("admin", "deposit", "1", "5", "--reference", "X-1", *signed_with_another_key),
    ):
        completed = await trio.to_thread.run_sync(lambda args=args: _evx(*args))
        assert completed.returncode == 4, completed.stdout + completed.stderr
        assert "operator_key_required" in completed.stderr
    rows = await admin.statuses(admin.cluster_nodes(cluster.layout.data_dir, None))
    assert all(row.last_snapshot_index == 0 for row in rows), "nothing was done"
