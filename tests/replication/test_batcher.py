"""Group commit on a one-node cluster running the real engine: many commands per entry,
each ticket ends with its own events, and an idle leader still moves time forward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
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
from evx.replication.batcher import Batcher, BatcherConfig, Outcome
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


class _ScriptedProposer:
    """A leader stand-in: refuses the first `refusals` entries with NOT_LEADER (nothing
    appended), then applies each entry at once, in order."""

    def __init__(self, bridge: Bridge, refusals: int) -> None:
        self.bridge = bridge
        self.refusals = refusals
        self.proposed: list[list[object]] = []

    def propose(self, entry: bytes, callback: Callable[[Any, int], None]) -> None:
        node_id, batch_seq, _, commands = msgpack.unpackb(entry)
        self.proposed.append(commands)
        if self.refusals:
            self.refusals -= 1
            callback(None, 4)  # FAIL_REASON.NOT_LEADER
            return
        result = _Applied((node_id, batch_seq), len(commands))
        self.bridge.applied_in_raft_thread(len(self.proposed), result)
        callback(result, 0)


@dataclass(frozen=True)
class _Applied:
    origin: tuple[int, int]
    commands: int

    def command_events(self, position: int) -> tuple[tuple[Any, ...], ...]:
        return ((1, position),)


async def _run_scripted(
    refusals: int, config: BatcherConfig
) -> tuple[list[Outcome], Batcher, _ScriptedProposer]:
    bridge = Bridge(trio.lowlevel.current_trio_token())
    proposer = _ScriptedProposer(bridge, refusals)
    bridge.proposer = proposer
    batcher = Batcher(bridge, config, is_leader=lambda: False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with trio.fail_after(10):
            tickets = [batcher.submit(("cmd", number)) for number in range(3)]
            outcomes = [await ticket.wait() for ticket in tickets]
        nursery.cancel_scope.cancel()
    return outcomes, batcher, proposer


async def test_an_entry_refused_before_it_was_appended_is_proposed_again() -> None:
    """NOT_LEADER (a leader handing over refuses what followers forward) means nothing was
    appended: the commands are proposed again, in order, and end known, not unknown."""
    outcomes, batcher, proposer = await _run_scripted(3, BatcherConfig(node_id=1, window_ms=1))
    assert all(outcome.known for outcome in outcomes)
    assert [outcome.events for outcome in outcomes] == [((1, 0),), ((1, 1),), ((1, 2),)]
    assert len(proposer.proposed) == 4 and proposer.proposed[-1] == proposer.proposed[0]
    assert batcher.statistics().unknown_outcomes == 0 and batcher.waiting == 0


async def test_an_entry_refused_for_longer_than_the_proposal_timeout_is_unknown() -> None:
    config = BatcherConfig(node_id=1, window_ms=1, propose_timeout_s=0.1, refused_backoff_ms=5)
    outcomes, batcher, proposer = await _run_scripted(10**6, config)
    assert not any(outcome.known for outcome in outcomes)
    assert 3 <= len(proposer.proposed) <= 40  # backed off, not a tight loop
    assert batcher.statistics().unknown_outcomes == 3 and batcher.waiting == 0


async def test_entries_refused_out_of_order_are_proposed_again_in_order() -> None:
    """Two entries in flight, refused newest first: proposed again oldest first, so one
    session's commands keep their order."""
    bridge = Bridge(trio.lowlevel.current_trio_token())
    held: list[tuple[list[object], Callable[[Any, int], None]]] = []
    applied: list[list[object]] = []

    class Holding:
        def propose(self, entry: bytes, callback: Callable[[Any, int], None]) -> None:
            node_id, batch_seq, _, commands = msgpack.unpackb(entry)
            if len(held) < 2:
                held.append((commands, callback))
                return
            applied.append(commands)
            result = _Applied((node_id, batch_seq), len(commands))
            bridge.applied_in_raft_thread(len(applied), result)
            callback(result, 0)

    bridge.proposer = Holding()
    batcher = Batcher(bridge, BatcherConfig(node_id=1, window_ms=0, commands_max=1), lambda: False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with trio.fail_after(10):
            tickets = [batcher.submit(("cmd", number)) for number in range(2)]
            while len(held) < 2:
                await trio.sleep(0.001)
            held[1][1](None, 4)  # the newer entry is refused first
            await trio.sleep(0.001)
            held[0][1](None, 4)
            for ticket in tickets:
                assert (await ticket.wait()).known
        nursery.cancel_scope.cancel()
    assert [commands for commands, _ in held] == [[["cmd", 0]], [["cmd", 1]]]
    assert applied == [[["cmd", 0]], [["cmd", 1]]]


async def test_drain_returns_when_the_last_room_is_handed_to_a_paused_waiter() -> None:
    """trio hands a released slot straight to a waiting task: a paused batcher that got it
    gives it back, and drain() still returns."""
    bridge = Bridge(trio.lowlevel.current_trio_token())
    proposer = _ScriptedProposer(bridge, 0)
    bridge.proposer = proposer
    batcher = Batcher(bridge, BatcherConfig(node_id=1, window_ms=0, in_flight_max=1), lambda: True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with trio.fail_after(10):
            for number in range(20):
                batcher.submit(("cmd", number))
            await trio.sleep(0)
            batcher.pause()
            await batcher.drain()
            assert batcher._room.value == 1
        nursery.cancel_scope.cancel()


async def test_a_paused_batcher_proposes_nothing_until_resumed() -> None:
    bridge = Bridge(trio.lowlevel.current_trio_token())
    proposer = _ScriptedProposer(bridge, 0)
    bridge.proposer = proposer
    batcher = Batcher(bridge, BatcherConfig(node_id=1, window_ms=1), is_leader=lambda: True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with trio.fail_after(10):
            first = batcher.submit(("cmd", 1))
            await first.wait()
            batcher.pause()
            await batcher.drain()
            proposed = len(proposer.proposed)
            held = batcher.submit(("cmd", 2))
            await trio.sleep(0.3)  # three clock ticks: a leader's clock entries are held too
            assert len(proposer.proposed) == proposed and held.outcome is None
            assert batcher.waiting == 1
            batcher.resume()
            assert (await held.wait()).known
        nursery.cancel_scope.cancel()
