"""The market-data feed of a real node in this process (gateway/feed_server.py), through the
real client library (gateway/feed_client.py): the books a subscriber keeps equal the
engine's, losses are noticed and repaired, limits and slow subscribers are handled, and bad
bytes end only the connection that sent them."""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import statistics
import time
from pathlib import Path

import pytest
import trio

from evx.core import CreateMarket, MarketKind, Side
from evx.gateway import feed_server
from evx.gateway import messages as wire
from evx.gateway.client import Client, sole_exception
from evx.gateway.codec import Connection, Signal
from evx.gateway.codes import ErrorCode
from evx.gateway.exchange import StateInstalled
from evx.gateway.feed import BookImage, LocalBook, book_image
from evx.gateway.feed_client import FeedClient, FeedError
from evx.tools.node import ClientPortError, RunningNode, run_node
from support.nodes import open_market_with_traders, operator_client, single_node_layout, start_node

FAST_FEED = {"heartbeat_interval_ms": 200}


def feed_address(node: RunningNode) -> list[tuple[str, int]]:
    return [("127.0.0.1", node.feed_port)]


def engine_image(node: RunningNode, market_id: int) -> BookImage:
    with node.machine.lock:
        return book_image(node.machine.engine, market_id)


async def wait_same_book(feed: FeedClient, node: RunningNode, market_id: int) -> None:
    """Until the subscriber's book is the engine's (the feed lags the apply a little)."""

    def same(client: FeedClient) -> bool:
        book = client.current(market_id)
        return book is not None and book.image() == engine_image(node, market_id)

    await feed.wait_for(same, timeout_s=10)


def trader(node: RunningNode, account_id: int, key: object) -> Client:
    return Client([("127.0.0.1", node.gateway_port)], account_id=account_id, key=key)


async def run_flow(
    node: RunningNode,
    traders: dict[str, tuple[int, object]],
    market_id: int,
    rng: random.Random,
    orders: int,
    latencies: list[float] | None = None,
    in_flight: int = 2,
) -> None:
    """`orders` random orders from traders a and b, `in_flight` at a time."""
    sink = [] if latencies is None else latencies
    async with (
        trader(node, *traders["a"]) as a,
        trader(node, *traders["b"]) as b,
        trio.open_nursery() as flow,
    ):
        for position in range(in_flight):
            client = (a, b)[position % 2]
            flow.start_soon(random_flow, client, market_id, rng, orders // in_flight, sink)


async def random_flow(
    client: Client, market_id: int, rng: random.Random, orders: int, latencies: list[float]
) -> None:
    """Orders at random prices and sides, a third of them cancelled again."""
    resting: list[int] = []
    for _ in range(orders):
        if resting and rng.random() < 0.33:
            await client.cancel(order_id=resting.pop(rng.randrange(len(resting))))
            continue
        side = rng.choice([Side.BUY_YES, Side.BUY_NO])
        started = time.perf_counter()
        report = await client.place(
            market_id=market_id, side=side, price=rng.randint(30, 70), quantity=rng.randint(1, 9)
        )
        latencies.append(time.perf_counter() - started)
        if isinstance(report, wire.OrderAccepted):  # it may have filled: a cancel may miss
            resting.append(report.order_id)


async def test_a_subscribers_books_follow_the_engine_and_new_markets_arrive(
    tmp_path: Path,
) -> None:
    seed = 21
    print(f"seed={seed}")
    rng = random.Random(seed)
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
            one = FeedClient(feed_address(node), markets=[market_id])
            every = FeedClient(feed_address(node))  # every market, later ones too
            await nursery.start(one.run)
            await nursery.start(every.run)
            for _ in range(5):
                await run_flow(node, traders, market_id, rng, 40)
                await wait_same_book(one, node, market_id)
                await wait_same_book(every, node, market_id)
            created = await operator.operate(CreateMarket("FEED-NEW", MarketKind.BINARY))
            new_market = created.event_values()[0][1]
            await wait_same_book(every, node, new_market)
            assert every.books[new_market].ticker == "FEED-NEW"
            assert new_market not in one.books
        book = one.books[market_id]
        assert book.bids and book.asks, "the flow left a book on both sides"
        assert book.trades, "and traded"
        for client in (one, every):
            assert client.statistics.gaps == 0 and client.statistics.duplicates == 0
        nursery.cancel_scope.cancel()


async def test_dropped_frames_are_noticed_and_repaired(tmp_path: Path) -> None:
    seed = 8
    print(f"seed={seed}")
    rng = random.Random(seed)
    losses = random.Random(seed + 1)
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
        lossy = FeedClient(feed_address(node), drop=lambda _message: losses.random() < 0.05)
        await nursery.start(lossy.run)
        await run_flow(node, traders, market_id, rng, 300)
        # The last loss may be of the market's last change: the heartbeat names the latest
        # sequence, so it is noticed within an interval and repaired too.
        await wait_same_book(lossy, node, market_id)
        stats = lossy.statistics
        print(stats)
        assert stats.dropped > 5 and stats.gaps > 0 and stats.repairs > 0
        assert stats.duplicates == 0
        nursery.cancel_scope.cancel()


async def test_a_quiet_markets_lost_last_change_is_found_by_the_heartbeat(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a"])
        drop_next = {"armed": False}

        def drop(message: wire.Message) -> bool:
            if drop_next["armed"] and isinstance(message, wire.LevelUpdate):
                drop_next["armed"] = False
                return True
            return False

        feed = FeedClient(feed_address(node), markets=[market_id], drop=drop)
        await nursery.start(feed.run)
        await feed.wait_for(lambda f: market_id in f.books)
        drop_next["armed"] = True
        async with trader(node, *traders["a"]) as a:
            await a.place(market_id=market_id, side=Side.BUY_YES, price=41, quantity=3)
        # One order, one level change, lost; nothing follows it in this market.
        await wait_same_book(feed, node, market_id)
        assert feed.statistics.dropped == 1 and feed.statistics.gaps == 1
        assert feed.books[market_id].bids == {41: (3, 1)}
        nursery.cancel_scope.cancel()


async def test_a_subscriber_that_never_reads_is_cut_and_others_keep_up(tmp_path: Path) -> None:
    seed = 4
    print(f"seed={seed}")
    rng = random.Random(seed)
    layout = single_node_layout(
        tmp_path,
        feed_limits={**FAST_FEED, "outbound_bytes_max": 65_536, "socket_send_buffer_bytes": 4_096},
    )
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
        reader = FeedClient(feed_address(node), markets=[market_id])
        await nursery.start(reader.run)
        without: list[float] = []
        await run_flow(node, traders, market_id, rng, 200, without, in_flight=8)
        # A subscriber that subscribes and then never reads (but says it is alive), with a
        # small receive buffer.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
        raw.setblocking(False)
        with raw:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
            await stream.socket.connect(("127.0.0.1", node.feed_port))
            codec = Connection(wire.CLIENT, wire.FEED_PORT)
            await stream.send_all(
                codec.send(wire.Subscribe(1, 0, (wire.MarketFrom(market_id, 0),)))
            )

            async def alive() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    while True:
                        await stream.send_all(codec.send(wire.Heartbeat(0)))
                        await trio.sleep(0.1)

            with_slow: list[float] = []
            async with trio.open_nursery() as slow:
                slow.start_soon(alive)
                with trio.fail_after(60):
                    while node.feed.statistics.slow_consumers_cut == 0:
                        await run_flow(node, traders, market_id, rng, 200, with_slow, in_flight=8)
                slow.cancel_scope.cancel()
        await wait_same_book(reader, node, market_id)
        assert reader.statistics.gaps == 0 and reader.statistics.connections == 1
        assert node.feed.statistics.subscribers == 1  # the slow one is gone
        print(
            f"order latency median without a slow subscriber {statistics.median(without) * 1e3:.2f}"
            f" ms, with {statistics.median(with_slow) * 1e3:.2f} ms ({len(with_slow)} orders)"
        )
        nursery.cancel_scope.cancel()


async def raw_feed(node: RunningNode) -> tuple[trio.SocketStream, Connection]:
    stream = await trio.open_tcp_stream("127.0.0.1", node.feed_port)
    return stream, Connection(wire.CLIENT, wire.FEED_PORT)


async def next_message(stream: trio.SocketStream, codec: Connection) -> object:
    with trio.fail_after(5):
        while True:
            event = codec.next_event()
            if event is Signal.NEED_DATA:
                codec.receive_data(await stream.receive_some(65_536))
                continue
            return event


async def test_subscribe_refusals_limits_and_bad_bytes(tmp_path: Path) -> None:
    layout = single_node_layout(
        tmp_path, feed_limits={**FAST_FEED, "subscribers_max": 1, "markets_per_subscriber_max": 1}
    )
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, _ = await open_market_with_traders(operator, [])
            second = await operator.operate(CreateMarket("OTHER", MarketKind.BINARY))
            other_market = second.event_values()[0][1]
        with pytest.raises(FeedError, match="market_must_exist"):
            await FeedClient(feed_address(node), markets=[999]).run()
        with pytest.raises(FeedError, match="subscriptions_must_not_exceed_max"):
            await FeedClient(feed_address(node), markets=[market_id, other_market]).run()

        stream, codec = await raw_feed(node)
        hello = await next_message(stream, codec)
        assert isinstance(hello, wire.FeedHello) and hello.markets_max == 1
        last = engine_image(node, market_id).market_seq
        await stream.send_all(
            codec.send(wire.Subscribe(7, 0, (wire.MarketFrom(market_id, last + 5),)))
        )
        refused = await next_message(stream, codec)
        assert isinstance(refused, wire.Error)
        assert (refused.code, refused.reference) == (ErrorCode.NODE_MUST_BE_READY, 7)
        await stream.send_all(codec.send(wire.Subscribe(8, 0, (wire.MarketFrom(market_id, 0),))))
        answer = await next_message(stream, codec)
        assert answer == wire.Subscribed(8, 1, 0, answer.applied_index)
        image = await next_message(stream, codec)
        assert isinstance(image, wire.BookSnapshot) and image.market_seq == last
        # At its limit of one market, repairing that market again is no new market: it goes.
        repair = wire.Subscribe(10, 0, (wire.MarketFrom(market_id, last),))
        await stream.send_all(codec.send(repair))
        assert await next_message(stream, codec) == wire.Subscribed(10, 1, 0, answer.applied_index)
        # A market this node does not know, named with a sequence the client saw elsewhere:
        # this node is behind, not wrong (market_must_exist would make the client give up).
        ahead = wire.Subscribe(11, 0, (wire.MarketFrom(999, 5),))
        await stream.send_all(codec.send(ahead))
        behind = await next_message(stream, codec)
        assert isinstance(behind, wire.Error) and behind.code == ErrorCode.NODE_MUST_BE_READY

        # The node is full (1 connection): a second is told so and closed.
        full_stream, full_codec = await raw_feed(node)
        refused = await next_message(full_stream, full_codec)
        assert (
            isinstance(refused, wire.Error)
            and refused.code == ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX
        )
        await full_stream.aclose()

        # An order-entry message on the feed port ends that connection, and only it.
        await stream.send_all(b"\x00\x00\x00\x01\x10")
        error = await next_message(stream, codec)
        assert isinstance(error, wire.Error) and error.code == ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN
        assert await next_message(stream, codec) is Signal.CLOSED
        await stream.aclose()
        assert node.feed.statistics.protocol_errors == 1
        good = FeedClient(feed_address(node), markets=[market_id])
        await nursery.start(good.run)
        await wait_same_book(good, node, market_id)
        nursery.cancel_scope.cancel()


async def test_the_ticker_names_every_markets_top_of_book_and_trades(tmp_path: Path) -> None:
    seed = 2
    print(f"seed={seed}")
    rng = random.Random(seed)
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    trades: list[wire.TradeUpdate] = []
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
        screen = FeedClient(
            feed_address(node),
            markets=[],
            ticker=True,
            on_message=lambda m: trades.append(m) if isinstance(m, wire.TradeUpdate) else None,
        )
        await nursery.start(screen.run)
        both = FeedClient(feed_address(node), markets=[market_id], ticker=True)
        await nursery.start(both.run)
        await run_flow(node, traders, market_id, rng, 120)

        def top_is_the_engines(client: FeedClient) -> bool:
            top = client.tops.get(market_id)
            image = engine_image(node, market_id)
            if top is None or top.market_seq > image.market_seq:
                return False
            bid = image.bids[0] if image.bids else (0, 0, 0)
            ask = image.asks[0] if image.asks else (0, 0, 0)
            return (top.bid_price, top.bid_quantity, top.ask_price, top.ask_quantity) == (
                bid[0],
                bid[1],
                ask[0],
                ask[1],
            )

        await screen.wait_for(top_is_the_engines)
        await both.wait_for(top_is_the_engines)
        # A connection with the ticker and the market gets each trade once, in the market.
        await wait_same_book(both, node, market_id)
        assert both.statistics.duplicates == 0 and both.statistics.gaps == 0
        assert trades and all(t.market_id == market_id for t in trades)
        assert screen.books == {}, "a ticker keeps no books"
        nursery.cancel_scope.cancel()


async def test_a_node_that_installs_a_snapshot_ends_its_feed_and_subscribers_resume(
    tmp_path: Path,
) -> None:
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
        feed = FeedClient(feed_address(node), markets=[market_id], retry_delay_s=0.05)
        await nursery.start(feed.run)
        await run_flow(node, traders, market_id, random.Random(1), 20)
        await wait_same_book(feed, node, market_id)
        assert feed.statistics.connections == 1
        # What the node does when the leader sends it a snapshot: its state jumps, so every
        # feed connection ends; the subscriber resumes from its sequence.
        node.feed.on_applied(
            node.machine.applied_index, StateInstalled(node.machine.applied_index, {})
        )
        await feed.wait_for(lambda f: f.statistics.connections == 2)
        await run_flow(node, traders, market_id, random.Random(2), 20)
        await wait_same_book(feed, node, market_id)
        assert feed.statistics.gaps == 0 and feed.statistics.duplicates == 0
        assert feed.statistics.snapshots == 1, "resumed from the sequence, no new image"
        nursery.cancel_scope.cancel()


async def test_a_bug_serving_one_connection_ends_only_that_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, message: object) -> None:
        raise RuntimeError("a bug in the ticker")

    monkeypatch.setattr(feed_server.FeedSession, "_subscribe_ticker", broken)
    layout = single_node_layout(tmp_path, feed_limits=FAST_FEED)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a", "b"])
        healthy = FeedClient(feed_address(node), markets=[market_id])
        await nursery.start(healthy.run)
        stream, codec = await raw_feed(node)
        assert isinstance(await next_message(stream, codec), wire.FeedHello)
        await stream.send_all(codec.send(wire.SubscribeTicker(1)))
        assert await next_message(stream, codec) is Signal.CLOSED
        await stream.aclose()
        await run_flow(node, traders, market_id, random.Random(3), 20)
        await wait_same_book(healthy, node, market_id)
        assert node.feed.statistics.subscribers == 1
        nursery.cancel_scope.cancel()


def test_a_connection_whose_reader_and_heartbeat_fail_together_is_reconnected() -> None:
    # Both tasks of a connection can fail at once (the node vanished): the client must see
    # one reason to reconnect, not a group it does not catch, and a refusal for good wins.
    from evx.gateway.feed_client import FeedError, _one_failure, _Reconnect

    both = BaseExceptionGroup("", [trio.BrokenResourceError("gone"), trio.TooSlowError()])
    assert isinstance(_one_failure(both), _Reconnect)
    refused = FeedError(202, "no market 9")
    assert _one_failure(BaseExceptionGroup("", [OSError(), refused])) is refused
    bug = BaseExceptionGroup("", [KeyError("bug")])
    assert _one_failure(bug) is bug


async def test_a_node_whose_feed_port_is_taken_stops_at_once_saying_so(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path, feed=True)
    config = layout.configs()[0]
    host, port = config.feed.rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        with pytest.raises(BaseExceptionGroup) as raised, trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(run_node, config)
    error = sole_exception(raised.value)
    assert isinstance(error, ClientPortError), error
    assert f"market data on {config.feed}" in str(error)


async def test_a_client_refused_everywhere_backs_off() -> None:
    """Nodes that greet and then refuse every subscription (an election under way): the
    client tries each node once, then waits longer each round instead of looping hot."""
    greeted = 0

    async def refusing(stream: trio.SocketStream) -> None:
        nonlocal greeted
        greeted += 1
        codec = Connection(wire.SERVER, wire.FEED_PORT)
        await stream.send_all(codec.send(wire.FeedHello(1, 1, 0, 1_000, 10, 10)))
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(
                codec.send(wire.Error(int(ErrorCode.NODE_MUST_BE_READY), 0x71, 1, "behind"))
            )

    async with trio.open_nursery() as nursery:
        ports = []
        for _ in range(3):
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, refusing, 0, host="127.0.0.1")
            )
            ports.append(listeners[0].socket.getsockname()[1])
        feed = FeedClient([("127.0.0.1", port) for port in ports], markets=[1], retry_delay_s=0.05)
        with trio.move_on_after(1.5):
            await feed.run()
        nursery.cancel_scope.cancel()
    # Rounds of 3 at about 0, 0.05, 0.15, 0.35, 0.75, 1.15 s (jitter aside): a hot loop
    # made hundreds of connections a second here.
    assert 3 <= greeted <= 30, greeted


async def test_a_resumed_book_is_current_only_from_the_next_heartbeat() -> None:
    # After a reconnect or a repair, Subscribed comes first and the catch-up frames after it;
    # the node sends no FeedHeartbeat until they are all out, so that is when the book is
    # whole again (a quoting program must not act on the book from before).
    feed = FeedClient([("127.0.0.1", 1)], markets=[1])
    feed.node_id = 1
    feed.books[1] = LocalBook.from_image(BookImage(1, 5, 2, ((40, 3, 1),), ()))
    feed.settling, feed._pending = {1}, {7}
    assert feed.current(1) is None
    await feed._handle(wire.Subscribed(7, 1, 0, 10))
    assert feed.current(1) is None
    await feed._handle(wire.LevelUpdate(1, 6, 1, 41, 2, 1))
    await feed._handle(wire.FeedHeartbeat(11, (wire.MarketSeq(1, 6),)))
    assert feed.current(1) is feed.books[1] and feed.books[1].bids == {40: (3, 1), 41: (2, 1)}
