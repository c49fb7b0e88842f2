"""The market-data feed across a crash, on three real node processes: a subscriber on node 1
keeps its book through node 1's SIGKILL (node 1 a follower, or the leader), resuming on
another node from the last sequence it has: no gap, no duplicate, no second image, and in
the end the same book as a live node's engine.

The order flow is two traders on nodes 2 and 3, each drawing from its own seeded generator
(the interleaving of the two is the scheduler's)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pytest
import trio

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.gateway.feed_client import FeedClient
from support.processes import ProcessCluster

TEST_TIMEOUT_S = 50
SEED = 1_701
UPDATES_BEFORE_KILL = 150  # changes the subscriber gets from node 1 before it dies
UPDATES_AFTER_RESUME = 150  # and from its new node after it resumed there
_MARKET_FRAMES = (
    wire.BookSnapshot,
    wire.LevelUpdate,
    wire.TradeUpdate,
    wire.StatusUpdate,
    wire.SettledUpdate,
    wire.ConfigUpdate,
)


async def random_flow(
    client: Client, market_id: int, rng: random.Random, stop: trio.Event, acked: list[float]
) -> None:
    """Orders at random prices and sides until `stop`, a third of them cancelled again;
    `acked` gets the time of each answer."""
    resting: list[int] = []
    while not stop.is_set():
        if resting and rng.random() < 0.33:
            await client.cancel(order_id=resting.pop(rng.randrange(len(resting))))
        else:
            report = await client.place(
                market_id=market_id,
                side=rng.choice([Side.BUY_YES, Side.BUY_NO]),
                price=rng.randint(30, 70),
                quantity=rng.randint(1, 9),
            )
            if isinstance(report, wire.OrderAccepted):  # it may have filled: a cancel may miss
                resting.append(report.order_id)
        acked.append(time.monotonic())


async def arrange_leader(cluster: ProcessCluster, node1: str) -> int:
    """Make node 1 the leader ("leader") or a follower ("follower"); the leader after."""
    leader = await cluster.wait_leader()
    if (leader == 1) == (node1 == "leader"):
        return leader
    target = 1 if node1 == "leader" else 2
    async with cluster.operator(first=leader) as operator:
        assert operator.node == cluster.address(leader)
        result = await operator.node_admin(wire.AdminAction.TRANSFER, target)
    assert result.done, result.text
    with trio.fail_after(10):
        while (leader := await cluster.wait_leader()) != target:
            await trio.sleep(0.05)
    return leader


def levels(book_levels: Sequence[wire.BookLevel]) -> tuple[tuple[int, int, int], ...]:
    return tuple((level.price, level.quantity, level.orders) for level in book_levels)


@pytest.mark.parametrize("node1", ["follower", "leader"])
async def test_a_subscriber_resumes_on_another_node_after_a_sigkill_without_gap_or_duplicate(
    cluster: ProcessCluster, node1: str
) -> None:
    print(f"seed={SEED}")
    with trio.fail_after(TEST_TIMEOUT_S):
        market, traders = await cluster.open_market(["a", "b"])
        leader = await arrange_leader(cluster, node1)
        assert (leader == 1) == (node1 == "leader")
        # What the subscriber received of the market, in order: (frame, market_seq, node).
        received: list[tuple[str, int, int]] = []

        def record(message: wire.Message) -> None:
            if isinstance(message, _MARKET_FRAMES) and message.market_id == market:
                received.append((type(message).__name__, message.market_seq, feed.node_id))

        feed = FeedClient(cluster.feed_addresses(first=1), markets=[market], on_message=record)
        acked: list[float] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            await feed.wait_for(lambda f: f.current(market) is not None, timeout_s=10)
            assert feed.node_id == 1, "the subscriber starts on node 1"
            a_id, a_key = traders["a"]
            b_id, b_key = traders["b"]
            async with (
                Client(cluster.addresses(first=2), account_id=a_id, key=a_key) as a,
                Client(cluster.addresses(first=3), account_id=b_id, key=b_key) as b,
            ):
                stop = trio.Event()
                async with trio.open_nursery() as flow:
                    flow.start_soon(random_flow, a, market, random.Random(SEED), stop, acked)
                    flow.start_soon(random_flow, b, market, random.Random(SEED + 1), stop, acked)
                    await feed.wait_for(
                        lambda f: f.statistics.updates >= UPDATES_BEFORE_KILL, timeout_s=15
                    )
                    assert feed.node_id == 1
                    at_kill = feed.statistics.updates
                    killed_at = time.monotonic()
                    cluster.kill(1)  # SIGKILL while orders flow
                    await feed.wait_for(
                        lambda f: f.node_id not in (0, 1) and f.current(market) is not None,
                        timeout_s=15,
                    )
                    resumed_s = time.monotonic() - killed_at
                    await feed.wait_for(
                        lambda f: f.statistics.updates >= at_kill + UPDATES_AFTER_RESUME,
                        timeout_s=20,
                    )
                    stop.set()
                # The flow has stopped, so the book no longer changes. A live node's engine
                # answers at an index past every answer the traders got; the feed holds
                # everything up to an index once a heartbeat names it (frames come in order).
                index = max(a.applied_index, b.applied_index)
                book = await a.book(market, min_applied_index=index)
                await feed.wait_for(
                    lambda f: (
                        f.applied_index >= book.applied_index and f.current(market) is not None
                    ),
                    timeout_s=10,
                )
                book_node = cluster.addresses().index(a.node) + 1
            new_node = feed.node_id
            mine = feed.current(market)
            assert mine is not None
            image = mine.image()
            # And a fresh subscriber on the other live node: its image (the sequence too)
            # once it has reached the same sequence.
            other = 5 - new_node
            fresh = FeedClient(cluster.feed_addresses(first=other), markets=[market])
            await nursery.start(fresh.run)
            await fresh.wait_for(
                lambda f: (
                    (book_now := f.current(market)) is not None
                    and book_now.market_seq >= image.market_seq
                ),
                timeout_s=10,
            )
            fresh_node = fresh.node_id
            fresh_book = fresh.current(market)
            assert fresh_book is not None
            fresh_image = fresh_book.image()
            nursery.cancel_scope.cancel()
        new_leader = await cluster.wait_leader([2, 3])

    stats = feed.statistics
    flowed_after_kill = sum(t > killed_at for t in acked)
    print(
        f"node 1 {node1}; leader {leader} -> {new_leader}; killed after {at_kill} updates; "
        f"on node {new_node} {1000 * resumed_s:.0f} ms after the kill; {len(acked)} orders and "
        f"cancels ({flowed_after_kill} after the kill); market_seq {image.market_seq}; "
        f"book from node {book_node} at index {book.applied_index}; {stats}"
    )
    assert new_node in (2, 3), "the subscriber moved off the dead node by itself"
    assert stats.gaps == 0 and stats.duplicates == 0 and stats.repairs == 0, stats
    snapshots = [entry for entry in received if entry[0] == "BookSnapshot"]
    assert snapshots == [received[0]], "one image, the first: the resume came from the window"
    assert stats.snapshots == 1 and stats.connections >= 2, stats
    seqs = [seq for _, seq, _ in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "every change once, in order"
    nodes = [node for _, _, node in received]
    on_node1 = nodes.count(1)
    assert set(nodes[:on_node1]) == {1} and 1 not in nodes[on_node1:], "node 1's, then others'"
    assert on_node1 > UPDATES_BEFORE_KILL and len(nodes) - on_node1 >= UPDATES_AFTER_RESUME
    assert flowed_after_kill > 0 and any(t < killed_at for t in acked), "orders flowed across"
    assert seqs[-1] == image.market_seq
    assert (image.status, image.bids, image.asks) == (
        book.status,
        levels(book.bids),
        levels(book.asks),
    ), "the feed's book is the live node's engine's"
    assert (fresh_node, fresh_image) == (other, image), "and the other live node's image"
    assert image.bids and image.asks, "the flow left a book on both sides"
