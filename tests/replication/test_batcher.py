"""Group commit on a one-node cluster running the real engine: many commands per entry,
each ticket ends with its own events, and an idle leader still moves time forward."""

from __future__ import annotations

from pathlib import Path

import trio

from evx.core import (
    CreateAccount,
    CreateMarket,
    Deposit,
    MarketKind,
    NewOrder,
    OrderAccepted,
    SetMarketStatus,
    Side,
    event_from_canonical,
)
from evx.gateway.exchange import ExchangeMachine
from evx.replication.batcher import Batcher, BatcherConfig
from evx.replication.bridge import Bridge
from evx.replication.raft import RaftConfig, RaftNode
from support.counter import free_ports


async def test_commands_share_entries_and_each_ticket_gets_its_events(tmp_path: Path) -> None:
    bridge = Bridge(trio.lowlevel.current_trio_token())
    machine = ExchangeMachine()
    node = RaftNode(
        RaftConfig(f"127.0.0.1:{free_ports(1)[0]}", (), str(tmp_path / "j"), secret="s"),
        machine,
        on_applied=bridge.applied_in_raft_thread,
    )
    bridge.proposer = node
    status = node.status
    batcher = Batcher(
        bridge,
        BatcherConfig(node_id=1, window_ms=20, clock_tick_ms=50),
        is_leader=lambda: (s := status()) is not None and s.role == "leader",
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            setup = [
                batcher.submit(CreateAccount("alice", b"a" * 32).to_canonical()),
                batcher.submit(Deposit(1, 100_000, "ref-1").to_canonical()),
                batcher.submit(CreateMarket("M", MarketKind.BINARY).to_canonical()),
                batcher.submit(SetMarketStatus(1, 2).to_canonical()),
            ]
            for ticket in setup:
                assert (await ticket.wait()).known
            orders = [
                batcher.submit(NewOrder(1, number, 1, Side.BUY_YES, 40, 1).to_canonical())
                for number in range(1, 101)
            ]
            outcomes = [await ticket.wait() for ticket in orders]
            for number, outcome in enumerate(outcomes, 1):
                first = event_from_canonical(outcome.events[0])
                assert isinstance(first, OrderAccepted) and first.client_order_id == number
            entries = {outcome.index for outcome in outcomes}
            assert len(entries) < 20, f"100 orders took {len(entries)} entries"
            before = machine.engine.time_ms
            await trio.sleep(0.3)  # idle: the leader proposes entries with only time
            assert machine.engine.time_ms > before
            assert batcher.statistics().clock_entries > 0
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(node.destroy_synchronous)
