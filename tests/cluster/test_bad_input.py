"""Bad input over a real socket gets its reject or one disconnect; the node stays up, the
other sessions go on, and nothing changes in the exchange."""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from pathlib import Path

import pytest
import trio

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client, ClientError
from evx.gateway.codec import Connection, Signal
from evx.gateway.codes import ErrorCode, RemoteProtocolError
from evx.gateway.keys import generate_private_key, public_bytes, sign
from evx.tools.config import load, render
from support.processes import ProcessCluster


@pytest.fixture
def cluster(tmp_path: Path):
    cluster = ProcessCluster(tmp_path, size=1)
    path = cluster.configs[0].path
    config = load(path)
    limits = dataclasses.replace(
        config.limits,
        messages_per_s_max=200,
        message_burst_max=400,
        outbound_messages_max=200,
        socket_send_buffer_bytes=4_096,
    )
    path.write_text(render(dataclasses.replace(config, limits=limits)))
    cluster.configs = cluster.layout.configs()
    cluster.start_all()
    yield cluster
    cluster.stop_all()


class Raw:
    """A blocking socket speaking bytes, with the real codec to read what comes back."""

    def __init__(self, address: tuple[str, int], receive_buffer_bytes: int = 0) -> None:
        self.socket = socket.socket()
        self.socket.settimeout(5)
        if receive_buffer_bytes:  # before connecting: it sets the window the peer sees
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.socket.connect(address)
        self.connection = Connection(wire.CLIENT)
        self.challenge = self.read()
        assert isinstance(self.challenge, wire.Challenge)

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def read(self) -> wire.Message | None:
        """The next message, or None once the server has closed the connection."""
        while True:
            event = self.connection.next_event()
            if event is Signal.NEED_DATA:
                try:
                    data = self.socket.recv(65_536)
                except ConnectionResetError:
                    data = b""
                self.connection.receive_data(data)
                continue
            return None if event is Signal.CLOSED else event  # type: ignore[return-value]

    def read_until_closed(self) -> list[wire.Message]:
        """Every message until the server closes. A session cut off for not reading may end
        in the middle of a frame (the write it was stuck in is abandoned): that is a close."""
        messages = []
        try:
            while (message := self.read()) is not None:
                messages.append(message)
        except RemoteProtocolError as error:
            assert error.code == ErrorCode.FRAME_MUST_BE_COMPLETE, error
        return messages

    def login(self, account_id: int, key: object, public_key: bytes | None = None) -> wire.Message:
        login = wire.Login(1, account_id, public_key or public_bytes(key), 0, 0, bytes(64))
        signature = sign(key, wire.login_signed_bytes(self.challenge.nonce, login))
        self.send(Connection(wire.CLIENT).send(dataclasses.replace(login, signature=signature)))
        answer = self.read()
        while isinstance(answer, wire.Heartbeat):
            answer = self.read()
        return answer

    def close(self) -> None:
        self.socket.close()


def _frame(message_type: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, message_type) + body


def _error_code(messages: list[wire.Message]) -> int:
    errors = [m for m in messages if isinstance(m, wire.Error | wire.LoginRejected)]
    assert errors, f"no Error before the close: {messages}"
    return errors[-1].code if isinstance(errors[-1], wire.Error) else errors[-1].reason


async def test_bad_input_is_refused_and_nothing_else_notices(cluster: ProcessCluster) -> None:
    await cluster.wait_leader()
    market, traders = await cluster.open_market(["victim", "intruder"])
    victim_id, victim_key = traders["victim"]
    intruder_id, intruder_key = traders["intruder"]
    address = cluster.address(1)
    async with Client([address], account_id=victim_id, key=victim_key) as victim:
        order = await victim.place(market, Side.BUY_YES, 40, 10)
        assert isinstance(order, wire.OrderAccepted)
        before = (await victim.balance(), await victim.open_orders())

        cases = {
            "garbage": b"\xde\xad\xbe\xef" * 8,
            "oversized frame": struct.pack(">I", 10_000_000) + b"\x10",
            "unknown type": _frame(0x7F, b""),
            "body too short": _frame(0x10, b"\x00" * 5),
            "server-only type": _frame(0x20, b"\x00" * 53),
            "order before login": Connection(wire.CLIENT).send(
                wire.NewOrder(1, market, 1, 1, 1, 0, 2, 40, 1, 0, 0, 0)
            ),
        }
        expected = {
            "garbage": ErrorCode.FRAME_MUST_FIT_MAX,
            "oversized frame": ErrorCode.FRAME_MUST_FIT_MAX,
            "unknown type": ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN,
            "body too short": ErrorCode.BODY_MUST_MATCH_LAYOUT,
            "server-only type": ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
            "order before login": ErrorCode.LOGIN_MUST_COME_FIRST,
        }
        for name, data in cases.items():
            raw = Raw(address)
            raw.send(data)
            assert _error_code(raw.read_until_closed()) == expected[name], name
            raw.close()

        truncated = Raw(address)  # half a frame, then gone
        truncated.send(_frame(0x10, b"\x00" * 38)[:20])
        truncated.close()

        raw = Raw(address)  # a signature made with another key
        other = generate_private_key()
        answer = raw.login(intruder_id, other, public_key=public_bytes(intruder_key))
        assert isinstance(answer, wire.LoginRejected)
        assert answer.reason == ErrorCode.SIGNATURE_MUST_VERIFY
        raw.close()

        async with Client([address], account_id=intruder_id, key=intruder_key) as intruder:
            stolen = await intruder.cancel(order.order_id)  # the victim's order
            assert isinstance(stolen, wire.OrderRejected) and stolen.reason == 204
            replaced = await intruder.replace(order.order_id, 41, 1)
            assert isinstance(replaced, wire.OrderRejected) and replaced.reason == 204
            with pytest.raises(ClientError, match="operator_key_required"):
                await intruder.operate((33, intruder_id, 10**9, "free-money"))

        raw = Raw(address)  # a flood past the throttle
        assert isinstance(raw.login(intruder_id, intruder_key), wire.LoginAccepted)
        query = Connection(wire.CLIENT).send(wire.QueryBalance(1, 0))
        raw.send(query * 1_000)
        answered = throttled = 0
        deadline = time.monotonic() + 10
        while answered + throttled < 1_000 and time.monotonic() < deadline:
            message = raw.read()
            if isinstance(message, wire.Error):
                assert message.code == ErrorCode.MESSAGES_MUST_NOT_EXCEED_RATE, message
                throttled += 1
            elif isinstance(message, wire.Balance):
                answered += 1
        # every message got exactly one answer; past the burst (400) and the rate (200 a
        # second), most were refused, and the session went on
        assert answered + throttled == 1_000 and throttled >= 300, (answered, throttled)
        raw.send(Connection(wire.CLIENT).send(wire.QueryBalance(2, 0)))
        assert isinstance(raw.read(), wire.Balance | wire.Error)
        raw.close()

        # A reader that never reads: reports keep coming to it (its account trades in
        # another session), its queue passes outbound_messages_max (200), it is cut off,
        # and the other session goes on.
        reader = Raw(address, receive_buffer_bytes=4_096)
        assert isinstance(reader.login(intruder_id, intruder_key), wire.LoginAccepted)
        async with Client([address], account_id=intruder_id, key=intruder_key) as busy:
            for _ in range(3):
                async with trio.open_nursery() as nursery:
                    for price in range(130):
                        nursery.start_soon(busy.place, market, Side.BUY_YES, 1 + price % 30, 1)
                cancelled = await busy.mass_cancel(market)
                assert isinstance(cancelled, wire.MassCancelled)
            with trio.fail_after(10):
                while '"reason": "reader_must_keep_up"' not in cluster.log(1):
                    await trio.sleep(0.1)
            assert isinstance(await busy.balance(), wire.Balance)  # unaffected
        try:
            leftovers = reader.read_until_closed()  # what it never read, then the close
        finally:
            reader.close()
        assert len(leftovers) < 3 * 261, "it was cut off before all of it was queued"

        after = (await victim.balance(), await victim.open_orders())
        assert [dataclasses.replace(m, applied_index=0, request_id=0) for m in after] == [
            dataclasses.replace(m, applied_index=0, request_id=0) for m in before
        ]
        still = await victim.place(market, Side.BUY_YES, 41, 1)  # this session never noticed
        assert isinstance(still, wire.OrderAccepted)
    assert cluster.exit_codes() == {1: None}, "the node is still running"
