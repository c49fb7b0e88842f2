"""A whole node in this process: engine, Raft (one node), batcher and gateway, over real
TCP on 127.0.0.1, driven by the real client library."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from evx.core import (
    EVENTS,
    CancelReason,
    CreateEvent,
    CreateMarket,
    MarketKind,
    MarketStatus,
    MarkMarket,
    Reject,
    SetMargins,
    SetMarketStatus,
    SettleEvent,
    Side,
    TimeInForce,
)
from evx.gateway import messages as wire
from evx.gateway.client import Client, ClientError
from evx.gateway.codec import Connection, Signal
from evx.gateway.codes import ErrorCode
from evx.gateway.keys import public_bytes, read_private_key, sign
from support.nodes import open_market_with_traders, operator_client, single_node_layout, start_node


async def test_orders_fill_and_every_report_arrives_in_sequence(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["alice", "bob"])
        alice_id, alice_key = traders["alice"]
        bob_id, bob_key = traders["bob"]
        async with (
            Client(nodes, account_id=alice_id, key=alice_key) as alice,
            Client(nodes, account_id=bob_id, key=bob_key) as bob,
        ):
            accepted = await alice.place(market, Side.BUY_YES, 40, 10)
            assert isinstance(accepted, wire.OrderAccepted), accepted
            taken = await bob.place(market, Side.SELL_YES, 40, 4, time_in_force=TimeInForce.IOC)
            assert isinstance(taken, wire.OrderAccepted)
            with trio.fail_after(5):
                while not any(isinstance(r, wire.OrderFilled) for r in alice._reports):
                    await trio.sleep(0.01)
            alice_reports = alice.drain_reports()
            seqs = [report.account_seq for report in alice_reports]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            fill = next(r for r in alice_reports if isinstance(r, wire.OrderFilled))
            assert (fill.quantity, fill.price, fill.leaves_quantity, fill.position) == (4, 40, 6, 4)
            orders = await alice.open_orders()
            assert [(o.order_id, o.remaining) for o in orders.orders] == [(accepted.order_id, 6)]
            balance = await alice.balance()
            assert (balance.cash, balance.held) == (1_000_000 - 400, 240)
            positions = await bob.positions()
            assert [(p.market_id, p.position) for p in positions.positions] == [(market, -4)]
            book = await bob.book(market)
            assert [(lv.price, lv.quantity) for lv in book.bids] == [(40, 6)] and not book.asks
            cancelled = await alice.cancel(accepted.order_id)
            assert isinstance(cancelled, wire.OrderCancelled) and cancelled.cancelled_quantity == 6
            rejected = await alice.cancel(accepted.order_id)
            assert isinstance(rejected, wire.OrderRejected) and rejected.reason == 203
            status = await alice.status()
            assert status.role == 2 and status.applied_index >= rejected.applied_index
        nursery.cancel_scope.cancel()


async def test_a_client_that_reconnects_gets_exactly_what_it_missed(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker", "taker"])
        maker_id, maker_key = traders["maker"]
        taker_id, taker_key = traders["taker"]
        async with Client(nodes, account_id=maker_id, key=maker_key) as maker:
            for price in (30, 31, 32):
                await maker.place(market, Side.BUY_YES, price, 5)
            seen = maker.drain_reports()
            last_seen = seen[-1].account_seq
        async with Client(nodes, account_id=taker_id, key=taker_key) as taker:
            await taker.place(market, Side.SELL_YES, 30, 12, time_in_force=TimeInForce.IOC)
        async with Client(
            nodes, account_id=maker_id, key=maker_key, next_seq=last_seen + 1
        ) as maker:
            with trio.fail_after(5):
                while len(maker._reports) < 3:
                    await trio.sleep(0.01)
            missed = maker.drain_reports()
            assert [r.account_seq for r in missed] == [last_seen + 1, last_seen + 2, last_seen + 3]
            assert [r.price for r in missed] == [32, 31, 30]  # best bid filled first
            assert all(isinstance(r, wire.OrderFilled) for r in missed)
        nursery.cancel_scope.cancel()


async def test_outcome_unknown_is_resolved_by_resending_the_same_order(tmp_path: Path) -> None:
    """With a proposal timeout of 0, every command's outcome is 'unknown' to the node that
    proposed it, though its entry still commits. The client resends each with the same
    client_order_id until it sees the result: one order per id, the rest `exists`."""
    layout = single_node_layout(tmp_path, proposal_timeout_s=0.0)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker"])
        maker_id, maker_key = traders["maker"]
        async with Client(nodes, account_id=maker_id, key=maker_key) as maker:
            accepted = [await maker.place(market, Side.BUY_YES, 20 + n, 1) for n in range(10)]
            assert all(isinstance(report, wire.OrderAccepted) for report in accepted)
            orders = await maker.open_orders()
            assert len(orders.orders) == 10, "each id placed exactly one order"
            assert node.gateway.statistics.outcome_unknown >= 10
            duplicates = [
                r
                for r in maker.drain_reports()
                if isinstance(r, wire.OrderRejected) and r.reason == 200  # exists
            ]
            assert {r.related_id for r in duplicates} <= {a.order_id for a in accepted}
        nursery.cancel_scope.cancel()


async def test_cancel_on_disconnect_cancels_the_accounts_orders(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker"])
        maker_id, maker_key = traders["maker"]
        async with Client(
            nodes, account_id=maker_id, key=maker_key, cancel_on_disconnect=True
        ) as maker:
            for price in (40, 41):
                await maker.place(market, Side.BUY_YES, price, 3)
        async with Client(nodes, account_id=maker_id, key=maker_key) as watcher:
            with trio.fail_after(5):
                while (await watcher.open_orders()).orders:
                    await trio.sleep(0.05)
            book = await watcher.book(market)
            assert not book.bids and not book.asks
        nursery.cancel_scope.cancel()


async def test_limits_of_a_session_replay_window_silence_and_node_capacity(
    tmp_path: Path,
) -> None:
    layout = single_node_layout(
        tmp_path,
        replay_window_events_per_account_max=5,
        heartbeat_interval_ms=200,
        sessions_max=3,
    )
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker"])
        maker_id, maker_key = traders["maker"]
        async with Client(nodes, account_id=maker_id, key=maker_key) as maker:
            for price in range(30, 40):
                await maker.place(market, Side.BUY_YES, price, 1)
            last = maker.last_seq
        # The node keeps the last 5 reports of the account: older ones are refused clearly.
        with pytest.raises(ClientError, match="replay_must_be_within_window"):
            async with Client(nodes, account_id=maker_id, key=maker_key, next_seq=last - 7):
                pass
        async with Client(nodes, account_id=maker_id, key=maker_key, next_seq=last - 3) as late:
            with trio.fail_after(5):
                while len(late._reports) < 4:
                    await trio.sleep(0.01)
            assert [r.account_seq for r in late.drain_reports()] == list(range(last - 3, last + 1))

        # A logged-in client that sends nothing for 3 heartbeat intervals is closed.
        stream = await trio.open_tcp_stream(*nodes[0])
        connection = Connection(wire.CLIENT)
        challenge = await _next(stream, connection)
        login = wire.Login(
            1, 0, public_bytes(read_private_key(layout.operator_key_file)), 0, 0, bytes(64)
        )
        login = dataclasses.replace(
            login,
            signature=sign(
                read_private_key(layout.operator_key_file),
                wire.login_signed_bytes(challenge.nonce, login),
            ),
        )
        await stream.send_all(connection.send(login))
        with trio.fail_after(5):
            received = []
            while (message := await _next(stream, connection)) is not None:
                received.append(message)
        errors = [m for m in received if isinstance(m, wire.Error)]
        assert errors and errors[-1].code == ErrorCode.HEARTBEAT_MUST_ARRIVE
        await stream.aclose()

        # Past sessions_max, a connection is refused at once.
        async with (
            Client(nodes, account_id=maker_id, key=maker_key),
            Client(nodes, account_id=maker_id, key=maker_key),
            Client(nodes, account_id=maker_id, key=maker_key),
        ):
            stream = await trio.open_tcp_stream(*nodes[0])
            refused = await _next(stream, Connection(wire.CLIENT))
            assert isinstance(refused, wire.LoginRejected)
            assert refused.reason == ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def _next(stream: trio.SocketStream, connection: Connection) -> wire.Message | None:
    while True:
        event = connection.next_event()
        if event is Signal.NEED_DATA:
            connection.receive_data(await stream.receive_some(65_536))
            continue
        return None if event is Signal.CLOSED else event  # type: ignore[return-value]


async def _raw_login(
    address: tuple[str, int],
    account_id: int,
    key: Ed25519PrivateKey,
    receive_buffer_bytes: int = 0,
) -> tuple[trio.SocketStream, Connection]:
    """A session logged in by hand, without the client library, for tests that must send
    exactly what they choose; `receive_buffer_bytes`: a small kernel buffer, so that what
    the client does not read stays in the node's queue rather than in the kernel's."""
    if receive_buffer_bytes:
        raw = trio.socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        await raw.connect(address)
        stream = trio.SocketStream(raw)
    else:
        stream = await trio.open_tcp_stream(*address)
    connection = Connection(wire.CLIENT)
    challenge = await _next(stream, connection)
    login = wire.Login(1, account_id, public_bytes(key), 0, 0, bytes(64))
    login = dataclasses.replace(
        login, signature=sign(key, wire.login_signed_bytes(challenge.nonce, login))
    )
    await stream.send_all(connection.send(login))
    assert isinstance(await _next(stream, connection), wire.LoginAccepted)
    return stream, connection


async def test_an_error_names_its_message_as_the_protocol_says(tmp_path: Path) -> None:
    """protocol.md section 5.1: CancelOrder by its order_id (client_order_id when that is
    0), ReplaceOrder by its new_client_order_id."""
    burst = 30  # enough for the operator's set-up; then the raw session spends it all
    layout = single_node_layout(tmp_path, messages_per_s_max=1, message_burst_max=burst)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            _, traders = await open_market_with_traders(operator, ["maker"])
        maker_id, maker_key = traders["maker"]
        stream, connection = await _raw_login(("127.0.0.1", node.gateway_port), maker_id, maker_key)
        sent = [wire.CancelOrder(0, 41)] * (burst + 1)  # every token spent
        sent += [
            wire.CancelOrder(7001, 0),
            wire.CancelOrder(0, 7002),
            wire.ReplaceOrder(0, 55, 7003, 40, 1),
        ]
        await stream.send_all(b"".join(connection.send(message) for message in sent))
        throttled = []
        with trio.fail_after(5):
            while len(throttled) < 4:
                message = await _next(stream, connection)
                if isinstance(message, wire.Error):
                    assert message.code == ErrorCode.MESSAGES_MUST_NOT_EXCEED_RATE
                    throttled.append((message.message_type, message.reference))
        assert throttled[1:] == [
            (wire.CancelOrder.TYPE, 7001),
            (wire.CancelOrder.TYPE, 7002),
            (wire.ReplaceOrder.TYPE, 7003),
        ]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_that_never_logs_in_is_closed_however_chatty(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path, login_timeout_s=1.0)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        stream = await trio.open_tcp_stream("127.0.0.1", node.gateway_port)
        connection = Connection(wire.CLIENT)
        assert isinstance(await _next(stream, connection), wire.Challenge)
        opened = trio.current_time()
        received = []
        with trio.fail_after(5):
            while True:
                with trio.move_on_after(0.2):
                    try:
                        message = await _next(stream, connection)
                    except trio.BrokenResourceError:  # reset: our heartbeats met a closed socket
                        message = None
                    if message is None:
                        break
                    received.append(message)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(connection.send(wire.Heartbeat(0)))
        assert 0.9 <= trio.current_time() - opened < 3, "closed at its login deadline"
        for error in (m for m in received if isinstance(m, wire.Error)):  # if not lost to a reset
            assert error.code == ErrorCode.HEARTBEAT_MUST_ARRIVE and "no login" in error.text
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_cancel_on_disconnect_is_resent_while_its_outcome_is_unknown(
    tmp_path: Path,
) -> None:
    """Every proposal's outcome is unknown here (timeout 0): the mass cancel is resent,
    and its result, once applied, is logged."""
    layout = single_node_layout(tmp_path, proposal_timeout_s=0.0)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker"])
        maker_id, maker_key = traders["maker"]
        with capture_logs() as logs:
            async with Client(
                nodes, account_id=maker_id, key=maker_key, cancel_on_disconnect=True
            ) as maker:
                await maker.place(market, Side.BUY_YES, 40, 3)
            with trio.fail_after(5):
                while not any(entry["event"] == "cancelled_on_disconnect" for entry in logs):
                    await trio.sleep(0.05)
        events = [entry["event"] for entry in logs]
        assert "cancel_on_disconnect_unknown" in events
        async with Client(nodes, account_id=maker_id, key=maker_key) as watcher:
            assert not (await watcher.open_orders()).orders
        nursery.cancel_scope.cancel()


async def test_a_client_that_asks_faster_than_it_reads_is_read_slower_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """1,000 large answers asked for at once and not read: the node stops reading that
    session while its unread answers pass half of outbound_bytes_max, never holds more than
    that, keeps serving others, and every answer arrives once the client reads."""
    bytes_max = 100_000
    layout = single_node_layout(
        tmp_path,
        outbound_bytes_max=bytes_max,
        queries_open_max=4,
        socket_send_buffer_bytes=4_096,  # the unread answers wait in the queue, measured
    )
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["maker", "other"])
        address = [("127.0.0.1", node.gateway_port)]
        maker_id, maker_key = traders["maker"]
        with trio.fail_after(60):
            async with Client(address, account_id=maker_id, key=maker_key) as maker:
                for number in range(200):
                    await maker.place(market, Side.BUY_YES, 1 + number % 40, 1)
            stream, connection = await _raw_login(address[0], maker_id, maker_key, 4_096)
            asks = 1_000
            queries = b"".join(connection.send(wire.QueryOpenOrders(n, 0)) for n in range(asks))
            await stream.send_all(queries)
            (session,) = [s for s in node.gateway.sessions if s.account_id == maker_id]
            held = []
            for _ in range(150):  # 1.5 s of the client not reading
                held.append(session._outbound_bytes)  # queued, and being written
                await trio.sleep(0.01)
            assert max(held) <= bytes_max, max(held)
            assert max(held) > bytes_max // 4, "the test did fill the queue"
            other_id, other_key = traders["other"]
            async with Client(address, account_id=other_id, key=other_key) as other:
                report = await other.place(market, Side.BUY_YES, 30, 1)
                assert isinstance(report, wire.OrderAccepted)  # others are served meanwhile
            answers = 0
            while answers < asks:
                message = await _next(stream, connection)
                if isinstance(message, wire.Heartbeat):
                    continue
                assert isinstance(message, wire.OpenOrders), message
                assert len(message.orders) == 200
                answers += 1
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_order_group_is_set_triggered_and_reset_through_the_protocol(
    tmp_path: Path,
) -> None:
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            market, traders = await open_market_with_traders(operator, ["alice", "bob"])
        (alice_id, alice_key), (bob_id, bob_key) = traders["alice"], traders["bob"]
        async with (
            Client(nodes, account_id=alice_id, key=alice_key) as alice,
            Client(nodes, account_id=bob_id, key=bob_key) as bob,
        ):
            armed = await alice.set_order_group(4, contract_limit=5, window_ms=60_000)
            assert isinstance(armed, wire.OrderGroupUpdated) and armed.triggered == 0
            refused = await alice.set_order_group(0, 5, 60_000)
            assert isinstance(refused, wire.OrderRejected)
            assert refused.reason == Reject.ORDER_GROUP_ID_MUST_BE_IN_RANGE
            first = await alice.place(market, Side.BUY_YES, 40, 3, order_group_id=4)
            second = await alice.place(market, Side.BUY_YES, 39, 3, order_group_id=4)
            assert isinstance(first, wire.OrderAccepted) and isinstance(second, wire.OrderAccepted)
            await bob.place(market, Side.SELL_YES, 39, 5, time_in_force=TimeInForce.IOC)
            with trio.fail_after(5):
                while not any(
                    isinstance(r, wire.OrderGroupUpdated) and r.triggered for r in alice._reports
                ):
                    await trio.sleep(0.01)
            reports = alice.drain_reports()
            triggered = [r for r in reports if isinstance(r, wire.OrderGroupUpdated)][-1]
            assert (triggered.order_group_id, triggered.filled, triggered.triggered) == (4, 5, 1)
            cancelled = [r for r in reports if isinstance(r, wire.OrderCancelled)]
            assert [(c.order_id, c.cancelled_quantity, c.reason) for c in cancelled] == [
                (second.order_id, 1, CancelReason.ORDER_GROUP_TRIGGERED)
            ]
            stopped = await alice.place(market, Side.BUY_YES, 38, 1, order_group_id=4)
            assert isinstance(stopped, wire.OrderRejected)
            assert stopped.reason == Reject.ORDER_GROUP_MUST_NOT_BE_TRIGGERED
            reset = await alice.reset_order_group(4)
            assert isinstance(reset, wire.OrderGroupUpdated) and reset.triggered == 0
            again = await alice.place(market, Side.BUY_YES, 38, 1, order_group_id=4)
            assert isinstance(again, wire.OrderAccepted)
        nursery.cancel_scope.cancel()


async def test_an_event_nets_converts_and_settles_through_the_protocol(tmp_path: Path) -> None:
    """An exhaustive event of three markets: NO on every candidate is released as its
    guaranteed payout (PayoutReleased), QueryEvent describes the event with the account's
    hold and release in it, a conversion is exactly once, and SettleEvent pays in full."""
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            _, traders = await open_market_with_traders(operator, ["alice", "bob"])
            created = await operator.operate(CreateEvent("ELECT", 1, 1))
            event_id = created.event_values()[0][1]
            markets = []
            for ticker in ("A", "B", "C"):
                made = await operator.operate(
                    CreateMarket(ticker, MarketKind.BINARY, 0, 0, 0, event_id=event_id)
                )
                markets.append(made.event_values()[0][1])
            for market_id in markets:
                await operator.operate(SetMarketStatus(market_id, MarketStatus.OPEN))
        (alice_id, alice_key), (bob_id, bob_key) = traders["alice"], traders["bob"]
        async with (
            Client(nodes, account_id=alice_id, key=alice_key) as alice,
            Client(nodes, account_id=bob_id, key=bob_key) as bob,
        ):
            for market_id, price in zip(markets, (45, 30, 20), strict=True):
                await bob.place(market_id, Side.BUY_YES, price, 1)
            for market_id, price in zip(markets, (55, 70, 80), strict=True):
                taken = await alice.place(market_id, Side.BUY_NO, price, 1)
                assert isinstance(taken, wire.OrderAccepted), taken
            with trio.fail_after(5):
                while not any(
                    isinstance(r, wire.PayoutReleased) and r.released == 200 for r in alice._reports
                ):
                    await trio.sleep(0.01)
            info = await alice.event(market_id=markets[1])
            assert (info.event_id, info.ticker, info.mutually_exclusive, info.exhaustive) == (
                event_id,
                "ELECT",
                1,
                1,
            )
            assert [entry.market_id for entry in info.markets] == markets
            assert (info.hold, info.released) == (0, 200)
            balance = await alice.balance()
            assert (balance.cash, balance.held) == (1_000_000 - 205 + 200, 0)
            converted = await alice.convert_no(markets[0], 1, client_order_id=777)
            assert isinstance(converted, wire.PositionsConverted), converted
            again = await alice.convert_no(markets[0], 1, client_order_id=777)
            assert isinstance(again, wire.OrderRejected) and again.reason == Reject.EXISTS
            positions = await alice.positions(converted.applied_index)
            assert not positions.positions  # the NO set went to the house
            missing = await alice.convert_no(markets[0], 1)
            assert isinstance(missing, wire.OrderRejected)
            assert missing.reason == Reject.NO_POSITION_MUST_COVER_CONVERSION
            with pytest.raises(ClientError) as raised:
                await alice.event(999)
            assert "event_must_exist" in str(raised.value) or "205" in str(raised.value)
        async with operator_client(layout, node) as operator:
            for market_id in markets:
                await operator.operate(SetMarketStatus(market_id, MarketStatus.CLOSED))
            settled = await operator.operate(SettleEvent(event_id, markets[1]))
            names = [EVENTS.from_canonical(e).__class__.__name__ for e in settled.event_values()]
            assert names[0] == "EventSettled" and names.count("MarketSettled") == 3
            retried = await operator.operate(SettleEvent(event_id, markets[1]))
            assert Reject(retried.event_values()[0][6]) == Reject.EXISTS
        async with Client(nodes, account_id=bob_id, key=bob_key) as bob:
            balance = await bob.balance()
            assert (balance.cash, balance.held) == (1_000_000 + 5, 0)  # paid 95 for 100
        nursery.cancel_scope.cancel()


async def test_a_futures_position_is_marked_and_liquidated_through_the_protocol(
    tmp_path: Path,
) -> None:
    """Margins, marks and liquidation as a client sees them: the short's margin drains by
    VariationMargin reports, then a PositionReduced (liquidated) closes most of it."""
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        nodes = [("127.0.0.1", node.gateway_port)]
        async with operator_client(layout, node) as operator:
            _, traders = await open_market_with_traders(operator, ["alice", "bob"], cash=300)
            made = await operator.operate(
                CreateMarket("FUT", MarketKind.FUTURE, 0, 0, 0, 1_000, 0, 100)
            )
            future = made.event_values()[0][1]
            await operator.operate(SetMargins(future, 20, 10, 5, 0))
            await operator.operate(SetMarketStatus(future, MarketStatus.OPEN))
            (alice_id, alice_key), (bob_id, bob_key) = traders["alice"], traders["bob"]
            async with (
                Client(nodes, account_id=alice_id, key=alice_key) as alice,
                Client(nodes, account_id=bob_id, key=bob_key) as bob,
            ):
                await alice.place(future, Side.BUY_YES, 50, 10)
                sold = await bob.place(future, Side.SELL_YES, 50, 10)
                assert isinstance(sold, wire.OrderAccepted), sold
                balance = await bob.balance(sold.applied_index)
                assert (balance.cash, balance.held) == (100, 200)
                for price in range(55, 80, 5):
                    marked = await operator.operate(MarkMarket(future, price))
                    assert EVENTS.from_canonical(marked.event_values()[0]).mark == price
                with trio.fail_after(5):
                    while not any(isinstance(r, wire.PositionReduced) for r in bob._reports):
                        await trio.sleep(0.01)
                reports = bob.drain_reports()
                variations = [r.variation for r in reports if isinstance(r, wire.VariationMargin)]
                assert variations == [-50] * 5
                reduced = next(r for r in reports if isinstance(r, wire.PositionReduced))
                # bob's 300: 200 of margin, 100 of cash; five marks of 50 leave 50 of
                # margin < 10 * 10: he keeps 50 // 20 = 2 contracts
                assert (reduced.quantity, reduced.position, reduced.reason) == (8, -2, 1)
                positions = await alice.positions(reduced.applied_index)
                assert [(p.market_id, p.position) for p in positions.positions] == [(future, 2)]
        nursery.cancel_scope.cancel()
