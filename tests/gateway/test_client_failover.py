"""The client library when a connection goes wrong: cut before a report, a node that is full
or silent, a caller that gave up, an Error that must name the right message. Real nodes in
this process on 127.0.0.1, fake nodes and a cutting proxy (support/fake_nodes.py) where a
test needs a node to misbehave on cue; every wait bounded by a timeout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client, ClientError, query_status
from evx.gateway.codes import ErrorCode
from evx.gateway.keys import generate_private_key
from evx.tools.node import RunningNode
from support.fake_nodes import FakeNode, Peer, Proxy, Verdict, silent
from support.nodes import open_market_with_traders, operator_client, single_node_layout, start_node

TEST_TIMEOUT_S = 20  # for a whole test: a client that never fails over fails here instead


async def _node_with_trader(
    nursery: trio.Nursery, tmp_path: Path, **limits: object
) -> tuple[RunningNode, int, int, object]:
    """A node with one open market and one trader: (node, market_id, account_id, key)."""
    layout = single_node_layout(tmp_path, **limits)
    node = await start_node(nursery, layout)
    async with operator_client(layout, node) as operator:
        market, traders = await open_market_with_traders(operator, ["maker"])
    account_id, key = traders["maker"]
    return node, market, account_id, key


def _address(node: RunningNode) -> tuple[str, int]:
    return ("127.0.0.1", node.gateway_port)


# -- A fresh client cut off before its first report --------------------------------------------


async def test_a_fresh_client_cut_off_before_its_first_report_still_gets_it(
    tmp_path: Path,
) -> None:
    """The client logs in with next_seq 0 ("from now on"), sends a NewOrder, and the
    connection ends before any report comes back. The order is applied before the client
    can log in again, so only a login that names the report after the last one the first
    login started from gets it back."""
    async with trio.open_nursery() as nursery:
        node, market, maker_id, maker_key = await _node_with_trader(nursery, tmp_path)

        def account_last_seq() -> int:
            return node.gateway.streams.stream(maker_id).last_seq

        reports_before = account_last_seq()  # AccountCreated, Deposited
        assert reports_before > 0
        proxy = Proxy(_address(node))
        proxy.rule = lambda number, message: (
            Verdict.CUT if number == 1 and isinstance(message, wire.NewOrder) else Verdict.FORWARD
        )

        async def admit(number: int) -> None:
            if number > 1:
                with trio.fail_after(5):
                    while account_last_seq() == reports_before:
                        await trio.sleep(0.01)

        proxy.admit = admit
        address = await proxy.start(nursery)
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(
                [address], account_id=maker_id, key=maker_key, request_timeout_s=5
            ) as maker:
                assert maker.last_seq == reports_before, "known from LoginAccepted"
                accepted = await maker.place(market, Side.BUY_YES, 40, 10)
                assert isinstance(accepted, wire.OrderAccepted), accepted
                assert maker.failovers == 1 and proxy.connections == 2
                assert [r.account_seq for r in maker.drain_reports()] == [reports_before + 1]
                orders = await maker.open_orders()
                assert [o.order_id for o in orders.orders] == [accepted.order_id]
        logins = [message for _, message in proxy.sent if isinstance(message, wire.Login)]
        assert [login.next_seq for login in logins] == [0, reports_before + 1]
        nursery.cancel_scope.cancel()


# -- A caller that gave up -----------------------------------------------------------------


async def test_a_command_or_query_whose_caller_gave_up_is_never_resent() -> None:
    """A fake node that answers nothing: a place and a query time out, a mass cancel is
    cancelled by its caller. After a failover none of them is sent again."""

    async def script(peer: Peer) -> None:
        # On the second connection the client's first heartbeat, an interval after its
        # login, is the mark that it has sent whatever it resends at login.
        await peer.accept_login(heartbeat_interval_ms=60_000 if peer.number == 1 else 500)
        while await peer.receive() is not None:
            pass  # answers nothing

    fake = FakeNode(script)
    async with trio.open_nursery() as nursery:
        address = await fake.start(nursery)
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(
                [address], account_id=7, key=generate_private_key(), request_timeout_s=0.2
            ) as client:
                with pytest.raises(trio.TooSlowError):
                    await client.place(1, Side.BUY_YES, 40, 10, client_order_id=11)
                with pytest.raises(trio.TooSlowError):
                    await client.balance()
                with trio.move_on_after(0.1) as gave_up:
                    await client.mass_cancel(5)
                assert gave_up.cancelled_caught
                assert not client._pending and not client._queries, "forgotten"

                first = await fake.wait_peer(1)
                given_up = wire.NewOrder | wire.QueryBalance | wire.MassCancel
                for kind in (wire.NewOrder, wire.QueryBalance, wire.MassCancel):
                    await first.wait_received(lambda m, kind=kind: isinstance(m, kind))
                await first.stream.aclose()  # the node goes: the client fails over
                second = await fake.wait_peer(2)
                with trio.fail_after(5):
                    await second.wait_received(lambda m: isinstance(m, wire.Heartbeat))
                assert client.failovers == 1
        assert not [m for m in second.received if isinstance(m, given_up)], "resent"
        nursery.cancel_scope.cancel()


async def test_a_request_made_as_the_session_starts_is_sent_once() -> None:
    """A query made right after connecting is sent by its caller; the resend that runs once
    a session starts must not send it a second time (a NodeAdmin would run twice). Many
    sessions, since which task trio runs first varies."""

    async def script(peer: Peer) -> None:
        await peer.accept_login()
        while (message := await peer.receive()) is not None:
            if isinstance(message, wire.QueryStatus):
                await peer.send(
                    wire.Status(message.request_id, 9, 2, 9, 1, 1, 1, bytes(32), 0, 0, 0, 0, 0, 0)
                )

    fake = FakeNode(script)
    async with trio.open_nursery() as nursery:
        address = await fake.start(nursery)
        with trio.fail_after(TEST_TIMEOUT_S):
            for _ in range(30):
                async with Client([address], account_id=0, key=generate_private_key()) as client:
                    await client.status()
        sent = [
            sum(isinstance(message, wire.QueryStatus) for message in peer.received)
            for peer in fake.peers
        ]
        assert sent == [1] * 30, sent
        nursery.cancel_scope.cancel()


# -- A full node -----------------------------------------------------------------------------


async def _full(peer: Peer) -> None:
    """A node past its sessions_max: LoginRejected instead of a Challenge."""
    await peer.send(wire.LoginRejected(int(ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX), "node is full"))


async def test_a_full_node_is_passed_over_for_the_next(tmp_path: Path) -> None:
    full = FakeNode(_full)
    async with trio.open_nursery() as nursery:
        node, market, maker_id, maker_key = await _node_with_trader(nursery, tmp_path)
        nodes = [await full.start(nursery), _address(node)]
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(nodes, account_id=maker_id, key=maker_key) as maker:
                assert maker.node == _address(node)
                accepted = await maker.place(market, Side.BUY_YES, 40, 10)
                assert isinstance(accepted, wire.OrderAccepted), accepted
        assert len(full.peers) >= 1
        nursery.cancel_scope.cancel()


async def test_a_client_every_node_refuses_as_full_says_so(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node, _, maker_id, maker_key = await _node_with_trader(nursery, tmp_path, sessions_max=1)
        nodes = [_address(node)]
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(nodes, account_id=maker_id, key=maker_key) as maker:
                assert maker.node == nodes[0]
                with pytest.raises(ClientError, match="sessions_must_not_exceed_max") as refused:
                    async with Client(nodes, account_id=maker_id, key=maker_key):
                        pass
                assert refused.value.code == ErrorCode.SESSIONS_MUST_NOT_EXCEED_MAX
                assert "node is full" in str(refused.value)
                assert (await maker.status()).role == 2, "the first client is unharmed"
        nursery.cancel_scope.cancel()


async def test_a_full_node_asked_for_its_status_says_it_is_full() -> None:
    full = FakeNode(_full)
    async with trio.open_nursery() as nursery:
        address = await full.start(nursery)
        with pytest.raises(ClientError, match="sessions_must_not_exceed_max: node is full"):
            await query_status(*address, timeout_s=5)
        nursery.cancel_scope.cancel()


# -- A silent node ---------------------------------------------------------------------------


async def test_a_node_silent_before_its_challenge_is_passed_over(tmp_path: Path) -> None:
    mute = FakeNode(silent)
    async with trio.open_nursery() as nursery:
        node, market, maker_id, maker_key = await _node_with_trader(nursery, tmp_path)
        nodes = [await mute.start(nursery), _address(node)]
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(
                nodes, account_id=maker_id, key=maker_key, login_timeout_s=0.5
            ) as maker:
                assert maker.node == _address(node)
                accepted = await maker.place(market, Side.BUY_YES, 40, 10)
                assert isinstance(accepted, wire.OrderAccepted), accepted
        assert len(mute.peers) == 1
        nursery.cancel_scope.cancel()


async def test_a_node_silent_after_login_is_given_up_after_three_heartbeat_intervals(
    tmp_path: Path,
) -> None:
    async def logs_in_then_goes_silent(peer: Peer) -> None:
        await peer.accept_login(next_seq=1, last_seq=0, heartbeat_interval_ms=100)
        while await peer.receive() is not None:
            pass  # reads everything, answers nothing, not even a heartbeat

    mute = FakeNode(logs_in_then_goes_silent)
    async with trio.open_nursery() as nursery:
        node, market, maker_id, maker_key = await _node_with_trader(nursery, tmp_path)
        nodes = [await mute.start(nursery), _address(node)]
        with trio.fail_after(TEST_TIMEOUT_S):
            async with Client(
                nodes, account_id=maker_id, key=maker_key, request_timeout_s=5
            ) as maker:
                assert maker.node == nodes[0]
                accepted = await maker.place(market, Side.BUY_YES, 40, 10)
                assert isinstance(accepted, wire.OrderAccepted), accepted
                assert maker.node == _address(node) and maker.failovers == 1
                # Everything from next_seq 1 on, as the first (fake) login started there.
                seqs = [r.account_seq for r in maker.drain_reports()]
                assert seqs == list(range(1, accepted.account_seq + 1))
        assert any(isinstance(m, wire.NewOrder) for m in mute.peers[0].received)
        nursery.cancel_scope.cancel()


# -- Which message an Error names ------------------------------------------------------------


def _reference_as(naming: str) -> Callable[[wire.Message], int]:
    """How a node names an order-entry message in an Error: as docs/protocol.md 5.1 says,
    or by its client_order_id for CancelOrder and ReplaceOrder too."""

    def reference(message: wire.Message) -> int:
        if isinstance(message, wire.NewOrder):
            return message.client_order_id
        if isinstance(message, wire.CancelOrder | wire.ReplaceOrder) and naming != "protocol":
            return message.client_order_id
        if isinstance(message, wire.CancelOrder):
            return message.order_id or message.client_order_id
        if isinstance(message, wire.ReplaceOrder):
            return message.new_client_order_id
        assert isinstance(message, wire.MassCancel)
        return message.market_id

    return reference


@pytest.mark.parametrize("naming", ["protocol", "client_order_id"])
async def test_an_error_names_its_message_by_type_then_reference(naming: str) -> None:
    """Every id here is 1, the request_id of a query that is still waiting: each Error must
    reach the command of its type, never the query. The first CancelOrder is answered
    `outcome_unknown`, and must be resent unchanged."""
    reference = _reference_as(naming)

    async def refuses_every_command(peer: Peer) -> None:
        await peer.accept_login()
        cancels = 0
        while (message := await peer.receive()) is not None:
            if not isinstance(message, wire.ORDER_ENTRY):
                continue  # a query: never answered
            code = ErrorCode.MESSAGES_MUST_NOT_EXCEED_RATE
            if isinstance(message, wire.CancelOrder):
                cancels += 1
                if cancels == 1:
                    code = ErrorCode.OUTCOME_UNKNOWN
            await peer.send(wire.Error(int(code), message.TYPE, reference(message), "no"))

    fake = FakeNode(refuses_every_command)
    async with trio.open_nursery() as nursery:
        address = await fake.start(nursery)
        with trio.fail_after(TEST_TIMEOUT_S):
            async with (
                Client(
                    [address], account_id=7, key=generate_private_key(), request_timeout_s=5
                ) as client,
                trio.open_nursery() as waiting,
            ):
                waiting.start_soon(client.balance)
                peer = await fake.wait_peer(1)
                await peer.wait_received(lambda m: isinstance(m, wire.QueryBalance))
                assert list(client._queries) == [1]

                throttled = "messages_must_not_exceed_rate"
                with pytest.raises(ClientError, match=throttled):
                    await client.place(1, Side.BUY_YES, 40, 10, client_order_id=1)
                with pytest.raises(ClientError, match=throttled):
                    await client.cancel(1)
                with pytest.raises(ClientError, match=throttled):
                    await client.replace(1, 41, 5, new_client_order_id=1)
                with pytest.raises(ClientError, match=throttled):
                    await client.mass_cancel(1)
                assert list(client._queries) == [1], "the query still waits"
                assert not client._queries[1].done.is_set()
                waiting.cancel_scope.cancel()
        cancels = [m for m in peer.received if isinstance(m, wire.CancelOrder)]
        assert cancels == [wire.CancelOrder(1, 0)] * 2, "resent unchanged after outcome_unknown"
        nursery.cancel_scope.cancel()


async def test_order_entry_refused_by_a_real_node_reaches_its_caller(tmp_path: Path) -> None:
    """An operator session may not enter orders: the node refuses each with an Error, and
    the client gives each refusal to the right caller, a cancel and a replace named by
    order_id included, whichever reference the node gives them."""
    layout = single_node_layout(tmp_path)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        with trio.fail_after(TEST_TIMEOUT_S):
            async with operator_client(layout, node) as operator:
                market, _ = await open_market_with_traders(operator, [])
                refused = "account_login_required"
                with pytest.raises(ClientError, match=refused):
                    await operator.place(market, Side.BUY_YES, 40, 10, client_order_id=1)
                with pytest.raises(ClientError, match=refused):
                    await operator.cancel(5)
                with pytest.raises(ClientError, match=refused):
                    await operator.replace(5, 41, 5)
                with pytest.raises(ClientError, match=refused):
                    await operator.mass_cancel(market)
        nursery.cancel_scope.cancel()
