"""Three real node processes on 127.0.0.1: acknowledged orders survive the leader's death
and the death of every node; a client fails over and misses nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from evx.core import Side, TimeInForce
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.replication.raft import EXIT_RAFT_PORT_UNAVAILABLE
from evx.tools.node import split_address
from support.processes import ProcessCluster


async def _place(client: Client, market: int, prices: range, quantity: int = 5) -> list[int]:
    order_ids = []
    for price in prices:
        report = await client.place(market, Side.BUY_YES, price, quantity)
        assert isinstance(report, wire.OrderAccepted), report
        order_ids.append(report.order_id)
    return order_ids


async def test_killing_the_leader_loses_no_acknowledged_order(cluster: ProcessCluster) -> None:
    leader = await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker", "taker"])
    maker_id, maker_key = traders["maker"]
    taker_id, taker_key = traders["taker"]
    others = [node for node in cluster.node_ids if node != leader]
    async with Client(cluster.addresses(leader), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, range(20, 30))
        assert maker.node == cluster.address(leader)
        cluster.kill(leader)  # SIGKILL: the maker's node is gone
        new_leader = await cluster.wait_leader(others)
        assert new_leader != leader
        # Meanwhile a taker on a surviving node sells into the maker's bids: fills the
        # maker has not seen, because its connection died.
        async with Client(
            cluster.addresses(others[1]), account_id=taker_id, key=taker_key
        ) as taker:
            sold = await taker.place(market, Side.SELL_YES, 28, 12, time_in_force=TimeInForce.IOC)
            assert isinstance(sold, wire.OrderAccepted)
        acked += await _place(maker, market, range(10, 15))  # after its failover
        assert maker.node != cluster.address(leader) and maker.failovers >= 1
        reports = maker.drain_reports()
        seqs = [report.account_seq for report in reports]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap, no duplicate"
        fills = [(r.price, r.quantity) for r in reports if isinstance(r, wire.OrderFilled)]
        assert fills == [(29, 5), (28, 5)], "the fills made while it was away"
        for node in others:
            async with Client(cluster.addresses(node), account_id=maker_id, key=maker_key) as view:
                orders = await view.open_orders(min_applied_index=maker.applied_index)
                assert sorted(o.order_id for o in orders.orders) == sorted(acked[:8] + acked[10:])
    cluster.start(leader)  # it restarts from its journal and catches up
    status = await cluster.wait_converged(cluster.node_ids)
    assert status.applied_index > 0


async def test_killing_every_node_after_acknowledgements_loses_nothing(
    cluster: ProcessCluster,
) -> None:
    await cluster.wait_leader()
    market, traders = await cluster.open_market(["maker"])
    maker_id, maker_key = traders["maker"]
    async with Client(cluster.addresses(), account_id=maker_id, key=maker_key) as maker:
        acked = await _place(maker, market, range(30, 45))
        last_seq = maker.last_seq
    for node in cluster.node_ids:
        cluster.kill(node)
    cluster.start_all()
    await cluster.wait_leader()
    await cluster.wait_converged(cluster.node_ids)
    async with Client(
        cluster.addresses(), account_id=maker_id, key=maker_key, next_seq=last_seq + 1
    ) as maker:
        orders = await maker.open_orders()
        assert sorted(o.order_id for o in orders.orders) == sorted(acked)
        with trio.move_on_after(0.5):
            async for report in maker.reports():
                raise AssertionError(f"a report after {last_seq} that should not exist: {report}")


async def test_a_node_that_cannot_bind_its_peer_port_says_so_and_stops(tmp_path: Path) -> None:
    """pysyncobj would retry the bind forever without a word; the node logs each failure
    and stops with exit code 74."""
    cluster = ProcessCluster(tmp_path)
    host, port = split_address(cluster.configs[0].raft)
    squatter = socket.socket()
    try:
        squatter.bind((host, port))
        squatter.listen()
        cluster.start(1)
        process = cluster.processes[1]
        with trio.fail_after(60):
            while process.poll() is None:
                await trio.sleep(0.2)
        assert process.returncode == EXIT_RAFT_PORT_UNAVAILABLE
        log = cluster.log(1)
        assert log.count("raft_port_bind_failed") == 10
        assert f"cannot listen on the peer port {host}:{port}" in log
    finally:
        squatter.close()
        cluster.stop_all()
