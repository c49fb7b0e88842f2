"""Stand-ins for a node, for client tests: a scripted node, and a proxy in front of a real one.

A `FakeNode` listens on 127.0.0.1 and runs a script for every connection: a node that does
only what a test needs (goes silent, is full, answers every command with an Error), with
the real codec. A `Proxy` passes connections through to a real node, parsing what the
client sends, so a test can drop a message or cut the connection right after one; it can
also hold a new connection back until the test says so. Both record every message a client
sent, per connection, numbered from 1.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from enum import Enum

import trio

from evx.gateway import messages as wire
from evx.gateway.codec import Connection, Signal

_READ_BYTES_MAX = 65_536


class Peer:
    """The node's side of one connection to a fake node."""

    def __init__(self, number: int, stream: trio.SocketStream) -> None:
        self.number = number
        self.stream = stream
        self.connection = Connection(wire.SERVER)
        self.received: list[wire.Message] = []
        self.message_arrived = trio.Event()

    async def send(self, message: wire.Message) -> None:
        await self.stream.send_all(self.connection.send(message))

    async def receive(self) -> wire.Message | None:
        """The next message from the client; None once it closed the connection."""
        while True:
            event = self.connection.next_event()
            if event is Signal.NEED_DATA:
                try:
                    data = await self.stream.receive_some(_READ_BYTES_MAX)
                except trio.BrokenResourceError:
                    data = b""
                self.connection.receive_data(data)
                continue
            if event is Signal.CLOSED:
                return None
            self.received.append(event)  # type: ignore[arg-type]
            self.message_arrived.set()
            self.message_arrived = trio.Event()
            return event  # type: ignore[return-value]

    async def accept_login(
        self, *, next_seq: int = 1, last_seq: int = 0, heartbeat_interval_ms: int = 60_000
    ) -> wire.Login:
        """Challenge, then take whatever Login comes (no signature check) with
        LoginAccepted. A long heartbeat interval keeps the client from finding a fake that
        sends nothing silent."""
        await self.send(wire.Challenge(wire.PROTOCOL_VERSION, 9, os.urandom(32), 0))
        login = await self.receive()
        assert isinstance(login, wire.Login), login
        accepted = wire.LoginAccepted(
            login.account_id, next_seq, last_seq, 0, heartbeat_interval_ms
        )
        await self.send(accepted)
        return login

    async def wait_received(self, predicate: Callable[[wire.Message], bool]) -> wire.Message:
        """The first message received that satisfies `predicate`, once the script (the one
        task that reads this connection) has received it."""
        while True:
            for message in self.received:
                if predicate(message):
                    return message
            await self.message_arrived.wait()


class FakeNode:
    def __init__(self, script: Callable[[Peer], Awaitable[None]]) -> None:
        self.script = script
        self.peers: list[Peer] = []
        self.connected = trio.Event()  # set, and replaced, at each new connection
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def start(self, nursery: trio.Nursery) -> tuple[str, int]:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        return self.address

    async def wait_peer(self, number: int) -> Peer:
        while len(self.peers) < number:
            await self.connected.wait()
        return self.peers[number - 1]

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer = Peer(len(self.peers) + 1, stream)
        self.peers.append(peer)
        self.connected.set()
        self.connected = trio.Event()
        try:
            await self.script(peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: that ends this connection's script
        finally:
            await trio.aclose_forcefully(stream)


async def silent(peer: Peer) -> None:
    """Accepts the connection and never sends a byte."""
    await trio.sleep_forever()


class Verdict(Enum):
    FORWARD = "forward"
    DROP = "drop"  # never reaches the node
    CUT = "cut"  # reaches the node; then the connection ends, and nothing more comes back


class Proxy:
    """Passes connections to `target`. `rule(connection_number, message)` decides the fate of
    each message the client sends; `admit(connection_number)` may hold a connection back
    before it reaches the node."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.rule: Callable[[int, wire.Message], Verdict] = lambda number, message: Verdict.FORWARD
        self.admit: Callable[[int], Awaitable[None]] | None = None
        self.sent: list[tuple[int, wire.Message]] = []  # (connection number, message)
        self.connections = 0

    async def start(self, nursery: trio.Nursery) -> tuple[str, int]:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        return ("127.0.0.1", listeners[0].socket.getsockname()[1])

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        if self.admit is not None:
            await self.admit(number)
        node = await trio.open_tcp_stream(*self.target)
        cut = False

        async def to_node() -> None:
            nonlocal cut
            decoder = Connection(wire.SERVER)  # reads what a client sends
            encoder = Connection(wire.CLIENT)
            while True:
                event = decoder.next_event()
                if event is Signal.NEED_DATA:
                    decoder.receive_data(await client.receive_some(_READ_BYTES_MAX))
                    continue
                if event is Signal.CLOSED:
                    await node.send_eof()
                    return
                self.sent.append((number, event))  # type: ignore[arg-type]
                verdict = self.rule(number, event)  # type: ignore[arg-type]
                if verdict is Verdict.DROP:
                    continue
                if verdict is Verdict.CUT:
                    cut = True  # before the send: no answer to it may reach the client
                await node.send_all(encoder.send(event))  # type: ignore[arg-type]
                if cut:
                    # The node reads the message, then the end of its stream, and closes;
                    # then so does the client's connection (below).
                    await node.send_eof()
                    return

        async def to_client() -> None:
            while data := await node.receive_some(_READ_BYTES_MAX):
                if not cut:
                    await client.send_all(data)
            # The node closed; what it sent after a cut was read and thrown away.

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(to_node)
                nursery.start_soon(to_client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # either side went away: so does this connection
        finally:
            # Shielded: under a cancellation the first close's checkpoint would raise before
            # the second close ran.
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(node)
