"""The bridge hands applied entries and proposal outcomes from the tick thread to trio, in
order: an entry's "applied" always arrives before the answer to the proposal of it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import trio

from evx.replication.bridge import TIMED_OUT, Bridge
from evx.replication.raft import RaftConfig, RaftNode
from support.counter import CounterMachine, free_ports


async def test_applied_entries_reach_trio_in_order_before_their_proposal(tmp_path: Path) -> None:
    bridge = Bridge(trio.lowlevel.current_trio_token())
    seen: list[tuple[str, int]] = []
    bridge.on_applied(lambda index, result: seen.append(("applied", index)))
    node = RaftNode(
        RaftConfig(f"127.0.0.1:{free_ports(1)[0]}", (), str(tmp_path / "j"), secret="s"),
        CounterMachine(),
        on_applied=bridge.applied_in_raft_thread,
    )
    bridge.proposer = node
    try:
        for number in range(1, 21):
            proposal = await bridge.propose(b"add %d" % number, timeout_s=10)
            assert proposal.applied, proposal.reason_name
            assert proposal.result == sum(range(1, number + 1))
            seen.append(("proposal", number))
        applied = [index for kind, index in seen if kind == "applied"]
        assert applied == sorted(applied) and len(applied) == 20
        # every proposal's answer comes after the applied entry that holds it
        assert seen[-1] == ("proposal", 20) and seen[-2][0] == "applied"
    finally:
        await trio.to_thread.run_sync(node.destroy_synchronous)


class _Silent:
    """A proposer whose entries are never answered (a deposed leader's callbacks)."""

    def propose(self, entry: bytes, callback: Any) -> None:
        return None


async def test_a_proposal_without_an_answer_times_out(autojump_clock: trio.abc.Clock) -> None:
    bridge = Bridge(trio.lowlevel.current_trio_token())
    bridge.proposer = _Silent()
    proposal = await bridge.propose(b"x", timeout_s=5)
    assert proposal.reason == TIMED_OUT and not proposal.applied
    assert proposal.reason_name == "timed_out"


def test_hand_overs_after_trio_has_finished_are_dropped() -> None:
    bridges: list[Bridge] = []

    async def main() -> None:
        bridges.append(Bridge(trio.lowlevel.current_trio_token()))

    trio.run(main)
    thread = threading.Thread(target=bridges[0].applied_in_raft_thread, args=(1, None))
    thread.start()
    thread.join()  # no exception escaped the thread: RunFinishedError was absorbed
    assert bridges[0].handed_over == 0


async def test_a_failing_handler_stops_the_node_instead_of_breaking_trio() -> None:
    failures: list[str] = []
    bridge = Bridge(trio.lowlevel.current_trio_token(), on_failure=failures.append)
    seen: list[int] = []

    def handler(index: int, result: Any) -> None:
        if index == 2:
            raise AssertionError("a report stream skipped")
        seen.append(index)

    bridge.on_applied(handler)
    worker = threading.Thread(
        target=lambda: [bridge.applied_in_raft_thread(index, None) for index in (1, 2, 3)]
    )
    worker.start()
    worker.join()
    with trio.fail_after(5):
        while len(seen) + len(failures) < 3:
            await trio.sleep(0.01)
    assert seen == [1, 3]
    assert failures == ["handing _deliver_applied over to the trio thread"]
