"""What an operator does to one node, on the trio side: a snapshot now, a planned transfer,
a membership change (one node added or removed, through the log, on the leader).

Strategy: both run on the trio thread of the node they concern, watch the node through
the status the tick thread takes every tick (RaftNode.status), and hand anything that
touches pysyncobj to the tick thread (RaftNode.call_on_tick, answered through the bridge),
since pysyncobj is not thread-safe. Each ends with an `AdminOutcome` that says in words
what happened or why nothing did; neither raises for a refusal.

A planned transfer, on the leader:
1. intake pauses: the batcher proposes nothing more (commands queue in it), and commands
   that followers forward are answered NOT_LEADER before anything is appended (their
   node's batcher proposes them again until the new leader takes them), so the log stops
   growing;
2. this node's entries in flight are applied;
3. pysyncobj is asked to transfer (Raft's TimeoutNow), which it allows only once the
   target holds every entry: asked again each tick until then;
4. the target wins the election at once (no log is ahead of its own);
5. as soon as this node sees another leader, intake resumes: what queued here is proposed
   and forwarded to the new leader.
The pause, from 1 to 5, is what `elapsed_us` reports. If anything takes longer than the
deadline, intake resumes and the transfer is reported as not done: before the target was
told to stand, nothing changed (a request still queued for the tick thread is dropped);
after, it may still win its election, and the text says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from pysyncobj import FAIL_REASON

from .batcher import Batcher
from .bridge import FAIL_REASON_NAMES, Bridge
from .raft import RaftNode, RaftStatus, TransferTicket

_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class AdminOutcome:
    done: bool
    text: str
    node_id: int = 0  # TRANSFER: the leader afterwards
    index: int = 0  # SNAPSHOT: the snapshot's log index
    elapsed_us: int = 0  # TRANSFER: how long intake was paused


class NodeControl:
    def __init__(
        self,
        raft: RaftNode,
        bridge: Bridge,
        batcher: Batcher,
        node_ids_by_address: dict[str, int],
        last_snapshot_index: Callable[[], int],
    ) -> None:
        self._raft = raft
        self._bridge = bridge
        self._batcher = batcher
        self._ids = node_ids_by_address
        self._addresses = {node_id: address for address, node_id in node_ids_by_address.items()}
        self._last_snapshot_index = last_snapshot_index
        self._busy = False

    def _status(self) -> RaftStatus | None:
        return self._raft.status()

    async def take_snapshot(self, timeout_s: float = 60.0) -> AdminOutcome:
        """Take a snapshot now and wait until it is stored."""
        if self._busy:
            return AdminOutcome(False, "another admin action is running on this node")
        self._busy = True
        try:
            before = self._last_snapshot_index()
            self._raft.take_snapshot()
            with trio.move_on_after(timeout_s):
                while self._last_snapshot_index() == before:
                    await trio.sleep(0.02)
                index = self._last_snapshot_index()
                return AdminOutcome(True, f"snapshot taken at index {index}", index=index)
            return AdminOutcome(
                False,
                f"no new snapshot within {timeout_s:g} s (one may still be written; the "
                "node's log says why)",
            )
        finally:
            self._busy = False

    async def transfer(self, target_node_id: int, timeout_s: float = 5.0) -> AdminOutcome:
        """Hand leadership from this node to `target_node_id` (0: the most caught-up)."""
        status = self._status()
        if status is None or status.role != "leader":
            leader = self._ids.get(status.leader or "", 0) if status else 0
            where = f"node {leader} is" if leader else "no leader is known"
            return AdminOutcome(False, f"this node is not the leader ({where}): ask the leader")
        target = self._addresses.get(target_node_id) if target_node_id else None
        if target_node_id and (target is None or target == status.address):
            return AdminOutcome(False, f"node {target_node_id} is not another node of the cluster")
        if target is not None and target not in status.connected_peers:
            return AdminOutcome(False, f"node {target_node_id} is not connected to the leader")
        if self._busy:
            return AdminOutcome(False, "another admin action is running on this node")
        self._busy = True
        started = time.perf_counter()
        self._batcher.pause()
        self._raft.set_transferring(True)
        ticket = TransferTicket()  # withdrawn when this ends: a late tick call sends nothing
        try:
            with trio.move_on_after(timeout_s):
                await self._batcher.drain()
                reason = await self._ask_until_caught_up(target, ticket)
                if reason != FAIL_REASON.SUCCESS:
                    refused = FAIL_REASON_NAMES.get(reason, str(reason))
                    return AdminOutcome(False, f"pysyncobj refused the transfer: {refused}")
                new_leader = await self._new_leader(status.address)
                elapsed_us = int((time.perf_counter() - started) * 1_000_000)
                node_id = self._ids.get(new_leader, 0)
                return AdminOutcome(
                    True,
                    f"node {node_id} leads; intake was paused {elapsed_us / 1000:.1f} ms",
                    node_id=node_id,
                    elapsed_us=elapsed_us,
                )
            if ticket.withdraw():  # the target was told to stand before the deadline
                return AdminOutcome(
                    False,
                    f"the target was told to stand but no new leader was seen within "
                    f"{timeout_s:g} s: leadership may still move (see evx admin status); "
                    "intake resumed here",
                )
            return AdminOutcome(
                False,
                f"the target did not catch up within {timeout_s:g} s (behind, or cut off): "
                "nothing changed, intake resumed here",
            )
        finally:
            ticket.withdraw()
            self._raft.set_transferring(False)
            self._batcher.resume()
            self._busy = False

    async def change_membership(
        self, add: bool, address: str, timeout_s: float = 10.0
    ) -> AdminOutcome:
        """Add or remove one node (by its peer address), through the log: done once the
        change is committed. Only on the leader, one change at a time, never the leader."""
        status = self._status()
        verb = "add" if add else "remove"
        if status is None or status.role != "leader":
            leader = self._ids.get(status.leader or "", 0) if status else 0
            where = f"node {leader} is" if leader else "no leader is known"
            return AdminOutcome(False, f"this node is not the leader ({where}): ask the leader")
        if not add and address == status.address:
            return AdminOutcome(False, "the leader cannot remove itself: transfer leadership first")
        if self._busy:
            return AdminOutcome(False, "another admin action is running on this node")
        self._busy = True
        try:
            return await self._change_membership(add, address, verb, timeout_s)
        finally:
            self._busy = False

    async def _change_membership(
        self, add: bool, address: str, verb: str, timeout_s: float
    ) -> AdminOutcome:
        with trio.move_on_after(timeout_s):
            reason: int = await self._bridge.ask(
                lambda reply: self._raft.change_membership(add, address, reply)
            )
            if reason == FAIL_REASON.SUCCESS:
                done = "added to" if add else "removed from"
                return AdminOutcome(True, f"{address} {done} the cluster (committed)")
            why = FAIL_REASON_NAMES.get(reason, str(reason))
            if reason == FAIL_REASON.REQUEST_DENIED:
                why = (
                    f"refused: {address} is {'already' if add else 'not'} a member, or an "
                    "earlier membership change is not committed yet, or leadership moved"
                )
            return AdminOutcome(False, f"cannot {verb} {address}: {why}")
        return AdminOutcome(
            False,
            f"the change to {verb} {address} was not committed within {timeout_s:g} s: it may "
            "still be (a majority of the new membership must be up); see evx admin status",
        )

    async def _ask_until_caught_up(self, target: str | None, ticket: TransferTicket) -> int:
        """pysyncobj's transfer, asked each tick while it is refused because the target
        has not got every entry yet; the first other answer."""
        while True:
            reason = await self._ask_once(target, ticket)
            if reason != FAIL_REASON.REQUEST_DENIED:
                return reason
            status = self._status()
            if status is None or status.role != "leader":
                return FAIL_REASON.NOT_LEADER
            await trio.sleep(_POLL_S)

    async def _ask_once(self, target: str | None, ticket: TransferTicket) -> int:
        reason: int = await self._bridge.ask(
            lambda reply: self._raft.transfer_leadership(target, reply, ticket)
        )
        return reason

    async def _new_leader(self, own_address: str) -> str:
        while True:
            status = self._status()
            if status is not None and status.leader and status.leader != own_address:
                return status.leader
            await trio.sleep(_POLL_S)
