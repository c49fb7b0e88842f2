"""The codec of both ports, order entry and the market-data feed: every message
round-trips, and bad bytes only ever raise RemoteProtocolError.

Strategy: hypothesis strategies are derived from each message's own field table (so a new
message is covered the moment it is declared; a test fails if one has no strategy), with
overrides for the few fields the protocol restricts beyond their wire type. The generic
tests are parametrized by port and run on each port's own table, with Connections of that
port. Every message is sent by a Connection of the role that may send it and received by the
other role whole, one byte at a time, and followed by the start of the next frame. The fuzz
tests feed random bytes and mutated valid frames (bit flips, truncations, changed lengths
and counts, spliced frames) to both roles; the invariant is that the codec returns
messages, NEED_DATA or CLOSED, or raises RemoteProtocolError, and nothing else, and that
whatever it returns re-encodes to exactly the bytes it came from. The seeded fuzz loop
prints its seed; EVX_SOAK=1 runs it for longer. Then the rules of each port, checked one by
one, and last a client and a server Connection talk over a trio memory stream.
"""

from __future__ import annotations

import dataclasses
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from evx.core import constants
from evx.gateway import limits
from evx.gateway import messages as m
from evx.gateway.codec import (
    CLIENT,
    CLOSED,
    FEED_PORT,
    NEED_DATA,
    ORDER_ENTRY_PORT,
    SERVER,
    Connection,
    LocalProtocolError,
    Port,
    ProtocolError,
    RemoteProtocolError,
    Role,
    frame_size_max,
)
from evx.gateway.codes import ErrorCode
from evx.gateway.messages import MESSAGES_OF_PORT, Field, Message

PORTS = (ORDER_ENTRY_PORT, FEED_PORT)
MESSAGES_BY_PORT = {
    port: sorted(MESSAGES_OF_PORT[port].values(), key=lambda cls: cls.TYPE) for port in PORTS
}
# Every message of either port, once (Heartbeat and Error travel on both).
ALL_MESSAGES = sorted(
    {cls for port in PORTS for cls in MESSAGES_BY_PORT[port]}, key=lambda c: c.TYPE
)
ALL_TYPES = sorted(cls.TYPE for cls in ALL_MESSAGES)
CODEC_ERRORS = {code for code in ErrorCode if 1000 <= code < 1100}
GROUP_ENTRIES_MAX = 6  # entries per generated repeated group: enough to mean "several"
TEXT_CHARACTERS_MAX = limits.string_length_max // 4  # any text this long fits in bytes


def port_id(port: Port) -> str:
    return port.name.lower()


def port_messages(keep: Callable[[type[Message]], bool] = lambda cls: True) -> list[Any]:
    """(port, message class) for each message of each port that `keep`s, as test params."""
    return [
        pytest.param(port, cls, id=f"{port_id(port)}-{cls.__name__}")
        for port in PORTS
        for cls in MESSAGES_BY_PORT[port]
        if keep(cls)
    ]


def senders_of(cls: type[Message]) -> list[Role]:
    return [role for role in (CLIENT, SERVER) if cls.DIRECTION.sent_by(role)]


def other(role: Role) -> Role:
    return SERVER if role is CLIENT else CLIENT


# -- Hypothesis strategies, derived from the field tables -------------------------------------

msgpack_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=16),
    st.binary(max_size=16),
)
msgpack_values = st.lists(
    st.one_of(msgpack_scalars, st.lists(msgpack_scalars, max_size=4)), max_size=8
)
msgpack_arrays = msgpack_values.map(m.pack_msgpack_array)


def field_strategy(field: Field) -> st.SearchStrategy[Any]:
    if field.kind == "int":
        return st.integers(field.low, field.high)
    if field.kind == "bytes":
        return st.binary(min_size=field.length, max_size=field.length)
    if field.kind == "string":
        return st.text(max_size=TEXT_CHARACTERS_MAX)
    if field.kind == "msgpack":
        return msgpack_arrays
    assert field.kind == "group"
    return group_strategy(field)


def group_strategy(field: Field, **lists: Any) -> st.SearchStrategy[tuple[Any, ...]]:
    """Entries of a group; `lists` are further arguments of st.lists (unique_by)."""
    entry = st.builds(field.item, *(field_strategy(f) for f in field.item.LAYOUT.fields))
    return st.lists(entry, max_size=GROUP_ENTRIES_MAX, **lists).map(tuple)


def field_of(cls: type[Message], name: str) -> Field:
    (field,) = (field for field in cls.LAYOUT.fields if field.name == name)
    return field


SUBSCRIBE_FLAGS_MAX = int(m.SubscribeFlag.ALL_MARKETS)
SUBSCRIBED_FLAGS_MAX = int(m.SubscribedFlag.ALL_MARKETS | m.SubscribedFlag.TICKER)


# The fields the protocol restricts beyond their wire type (each class's `out_of_range`).
FIELD_OVERRIDES: dict[tuple[type[Message], str], st.SearchStrategy[Any]] = {
    (m.Login, "flags"): st.sampled_from([int(flag) for flag in m.LoginFlag]),
    (m.LoginAccepted, "heartbeat_interval_ms"): st.integers(
        limits.heartbeat_interval_ms_min, limits.heartbeat_interval_ms_max
    ),
    (m.Status, "role"): st.sampled_from([int(role) for role in m.NodeRole]),
    (m.Status, "peers_connected"): st.just(0),  # at most peers_total
    (m.Status, "flags"): st.sampled_from([int(flag) for flag in m.StatusFlag]),
    (m.NodeAdmin, "action"): st.sampled_from([int(action) for action in m.AdminAction]),
    (m.NodeAdminResult, "action"): st.sampled_from([int(action) for action in m.AdminAction]),
    (m.NodeAdminResult, "done"): st.integers(0, 1),
    (m.HashAt, "kept"): st.integers(0, 1),
    (m.EventInfo, "mutually_exclusive"): st.just(1),  # exhaustive only if mutually exclusive
    (m.EventInfo, "exhaustive"): st.integers(0, 1),
    (m.EventInfo, "settled"): st.integers(0, 1),
    # The feed port.
    (m.FeedHello, "heartbeat_interval_ms"): st.integers(
        limits.heartbeat_interval_ms_min, limits.heartbeat_interval_ms_max
    ),
    (m.Subscribe, "flags"): st.integers(0, SUBSCRIBE_FLAGS_MAX),
    (m.Subscribe, "markets"): group_strategy(
        field_of(m.Subscribe, "markets"), unique_by=lambda market: market.market_id
    ),
    (m.Subscribed, "flags"): st.integers(0, SUBSCRIBED_FLAGS_MAX),
    (m.BookSnapshot, "yes_payout"): st.integers(0, constants.contract_payout_cents),
    (m.BookSnapshot, "mark"): st.integers(0, constants.contract_payout_cents),
    (m.SettledUpdate, "yes_payout"): st.integers(0, constants.contract_payout_cents),
    (m.MarkUpdate, "mark"): st.integers(0, constants.contract_payout_cents),
}


@st.composite
def operator_results(draw: st.DrawFn) -> m.OperatorResult:
    events = draw(msgpack_values)
    return m.OperatorResult(
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**64 - 1)),
        draw(st.integers(len(events), 2**32 - 1)),
        m.pack_msgpack_array(events),
    )


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    if cls is m.OperatorResult:
        return operator_results()
    return st.builds(
        cls,
        *(
            FIELD_OVERRIDES.get((cls, field.name), field_strategy(field))
            for field in cls.LAYOUT.fields
        ),
    )


STRATEGIES = {cls: message_strategy(cls) for cls in ALL_MESSAGES}
SENT_BY = {
    (role, port): st.one_of(
        *(STRATEGIES[cls] for cls in MESSAGES_BY_PORT[port] if cls.DIRECTION.sent_by(role))
    )
    for role in (CLIENT, SERVER)
    for port in PORTS
}


def messages_sent_by(role: Role, port: Port) -> st.SearchStrategy[Message]:
    return SENT_BY[role, port]


@pytest.mark.parametrize("port", PORTS, ids=port_id)
def test_every_restricted_field_has_an_override(port: Port) -> None:
    """A message that restricts a field must say how to generate valid values for it."""
    messages = set(MESSAGES_BY_PORT[port])
    restricted = {cls for cls in messages if cls.out_of_range is not Message.out_of_range}
    overridden = {cls for cls, _ in FIELD_OVERRIDES} | {m.OperatorResult}
    assert restricted == overridden & messages
    assert {cls for cls, _ in FIELD_OVERRIDES} <= set(ALL_MESSAGES)


# -- Helpers ----------------------------------------------------------------------------------


def drain(connection: Connection) -> list[Message | Any]:
    """Every event until NEED_DATA or CLOSED, that signal last."""
    events: list[Message | Any] = []
    while True:
        event = connection.next_event()
        events.append(event)
        if event is NEED_DATA or event is CLOSED:
            return events


def receive(
    role: Role, data: bytes, *, close: bool = False, port: Port = ORDER_ENTRY_PORT
) -> list[Message | Any]:
    connection = Connection(role, port)
    connection.receive_data(data)
    if close:
        connection.receive_data(b"")
    return drain(connection)


def frame(message_type: int, body: bytes) -> bytes:
    return struct.pack(">IB", 1 + len(body), message_type) + body


def raises_remote(
    role: Role,
    data: bytes,
    code: ErrorCode,
    *,
    close: bool = False,
    port: Port = ORDER_ENTRY_PORT,
) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        receive(role, data, close=close, port=port)
    assert caught.value.code == code, caught.value
    return caught.value


def raises_local(
    role: Role, message: Any, code: ErrorCode, *, port: Port = ORDER_ENTRY_PORT
) -> LocalProtocolError:
    """Sending `message` fails with `code`, writing nothing: the connection still sends."""
    connection = Connection(role, port)
    with pytest.raises(LocalProtocolError) as caught:
        connection.send(message)
    assert caught.value.code == code, caught.value
    assert connection.send(m.Heartbeat(0))
    return caught.value


# -- Round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "cls"), port_messages())
@settings(max_examples=30)
@given(data=st.data())
def test_every_message_round_trips_whole_byte_at_a_time_and_with_trailing_bytes(
    port: Port, cls: type[Message], data: st.DataObject
) -> None:
    message = data.draw(STRATEGIES[cls])
    assert cls.decode_body(message.encode_body()) == message
    for sender in senders_of(cls):
        receiver = other(sender)
        encoded = Connection(sender, port).send(message)

        assert receive(receiver, encoded, close=True, port=port) == [message, CLOSED]

        connection = Connection(receiver, port)
        for position in range(len(encoded)):
            assert connection.next_event() is NEED_DATA
            connection.receive_data(encoded[position : position + 1])
        assert drain(connection) == [message, NEED_DATA]

        following = data.draw(messages_sent_by(sender, port))
        next_frame = Connection(sender, port).send(following)
        cut = data.draw(st.integers(0, len(next_frame) - 1))
        connection = Connection(receiver, port)
        connection.receive_data(encoded + next_frame[:cut])
        assert drain(connection) == [message, NEED_DATA]
        connection.receive_data(next_frame[cut:])
        assert drain(connection) == [following, NEED_DATA]


def largest(cls: type[Message]) -> Message:
    """`cls` at the largest size the limits allow: every string and group full."""

    def value(field: Field) -> Any:
        if field.kind == "int":
            return field.high
        if field.kind == "bytes":
            return b"\xff" * field.length
        if field.kind == "string":
            return "é" * (limits.string_length_max // 2)  # two bytes each in UTF-8
        assert field.kind == "group"
        entry = field.item(*(value(f) for f in field.item.LAYOUT.fields))
        return (entry,) * field.count_max

    values = {field.name: value(field) for field in cls.LAYOUT.fields}
    fixes = {
        m.Login: {"flags": int(m.LoginFlag.CANCEL_ON_DISCONNECT)},
        m.Status: {"role": int(m.NodeRole.LEADER), "flags": int(m.StatusFlag.TRANSFERRING)},
        m.NodeAdmin: {"action": int(m.AdminAction.TRANSFER)},
        m.NodeAdminResult: {"action": int(m.AdminAction.TRANSFER), "done": 1},
        m.HashAt: {"kept": 1},
        m.EventInfo: {"mutually_exclusive": 1, "exhaustive": 1, "settled": 1},
        m.LoginAccepted: {"heartbeat_interval_ms": limits.heartbeat_interval_ms_max},
        m.FeedHello: {"heartbeat_interval_ms": limits.heartbeat_interval_ms_max},
        m.Subscribe: {
            "flags": SUBSCRIBE_FLAGS_MAX,
            "markets": tuple(  # each market once
                m.MarketFrom(2**32 - 1 - index, 2**64 - 1)
                for index in range(limits.subscribe_markets_max)
            ),
        },
        m.Subscribed: {"flags": SUBSCRIBED_FLAGS_MAX},
        m.BookSnapshot: {
            "yes_payout": constants.contract_payout_cents,
            "mark": constants.contract_payout_cents,
        },
        m.SettledUpdate: {"yes_payout": constants.contract_payout_cents},
        m.MarkUpdate: {"mark": constants.contract_payout_cents},
    }
    return cls(**(values | fixes.get(cls, {})))


@pytest.mark.parametrize(
    ("port", "cls"), port_messages(lambda cls: cls.LAYOUT.size_max is not None)
)
def test_every_message_at_its_largest_round_trips_and_fits_its_frames(
    port: Port, cls: type[Message]
) -> None:
    message = largest(cls)
    for sender in senders_of(cls):
        encoded = Connection(sender, port).send(message)
        assert len(encoded) == m.FRAME_HEADER_SIZE + cls.LAYOUT.size_max
        assert len(encoded) <= frame_size_max(sender)
        assert receive(other(sender), encoded, port=port) == [message, NEED_DATA]


def test_many_frames_in_one_read_come_out_in_order() -> None:
    sent = [m.Heartbeat(index) for index in range(1_000)] + [m.Logout()]
    client = Connection(CLIENT)
    assert receive(SERVER, b"".join(client.send(message) for message in sent)) == [
        *sent,
        NEED_DATA,
    ]


# -- Fuzz: random bytes -----------------------------------------------------------------------

frame_like = st.builds(
    lambda length, message_type, body: struct.pack(">IB", length, message_type) + body,
    st.one_of(st.integers(0, 400), st.integers(0, 2**32 - 1)),
    st.sampled_from(ALL_TYPES) | st.integers(0, 255),  # either port's: each refuses the other's
    st.binary(max_size=400),
)


def parses_or_raises_remote_protocol_error(
    role: Role, chunks: list[bytes], close: bool, port: Port
) -> None:
    """The fuzz invariant. Returns normally if it holds; fails the test otherwise."""
    connection = Connection(role, port)
    received: list[Message] = []
    try:
        # An empty chunk would mean "closed": only `close` closes.
        for chunk in [*(chunk for chunk in chunks if chunk), *([b""] if close else [])]:
            connection.receive_data(chunk)
            while isinstance(event := connection.next_event(), Message):
                received.append(event)
    except RemoteProtocolError as error:
        assert error.code in CODEC_ERRORS
        with pytest.raises(RemoteProtocolError):  # and it stays raised
            connection.next_event()
    # What was parsed is exactly what was sent: it re-encodes to the bytes it came from.
    sender = Connection(other(role), port)
    reencoded = b"".join(sender.send(message) for message in received)
    assert b"".join(chunks).startswith(reencoded)


@pytest.mark.parametrize("port", PORTS, ids=port_id)
@settings(max_examples=400)
@given(
    role=st.sampled_from([CLIENT, SERVER]),
    chunks=st.lists(st.one_of(st.binary(max_size=64), frame_like), max_size=6),
    close=st.booleans(),
)
def test_random_bytes_parse_or_raise_remote_protocol_error(
    port: Port, role: Role, chunks: list[bytes], close: bool
) -> None:
    parses_or_raises_remote_protocol_error(role, chunks, close, port)


# -- Fuzz: mutations of valid frames ----------------------------------------------------------

MUTATIONS = (
    "flip_bits",
    "truncate",
    "set_length",
    "nudge_length",
    "set_type",
    "set_byte",
    "insert_bytes",
    "delete_bytes",
    "nudge_u16",
    "splice",
)


def mutate(data: bytes, kind: str, choose: Callable[[int, int], int]) -> bytes:
    """`data` changed by one mutation; `choose(low, high)` picks an integer in [low, high]
    (hypothesis draws or a seeded generator)."""
    buffer = bytearray(data)
    if not buffer:
        return bytes([choose(0, 255)])
    if kind == "flip_bits":
        for _ in range(choose(1, 3)):
            position = choose(0, len(buffer) - 1)
            buffer[position] ^= 1 << choose(0, 7)
    elif kind == "truncate":
        del buffer[choose(0, len(buffer) - 1) :]
    elif kind == "set_length" and len(buffer) >= 4:
        buffer[0:4] = struct.pack(
            ">I", choose(0, 2**32 - 1) if choose(0, 3) == 0 else choose(0, 600)
        )
    elif kind == "nudge_length" and len(buffer) >= 4:
        (length,) = struct.unpack_from(">I", buffer)
        buffer[0:4] = struct.pack(">I", max(0, min(2**32 - 1, length + choose(-8, 8))))
    elif kind == "set_type" and len(buffer) >= 5:
        buffer[4] = choose(0, 255)
    elif kind == "set_byte":
        buffer[choose(0, len(buffer) - 1)] = choose(0, 255)
    elif kind == "insert_bytes":
        position = choose(0, len(buffer))
        buffer[position:position] = bytes(choose(0, 255) for _ in range(choose(1, 8)))
    elif kind == "delete_bytes":
        position = choose(0, len(buffer) - 1)
        del buffer[position : position + choose(1, 8)]
    elif kind == "nudge_u16" and len(buffer) >= 7:
        # Counts and string lengths are u16 (or u8) fields inside the body.
        position = choose(5, len(buffer) - 2)
        (value,) = struct.unpack_from(">H", buffer, position)
        struct.pack_into(">H", buffer, position, (value + choose(-3, 3)) % 2**16)
    elif kind == "splice":
        cut = choose(0, len(buffer))
        buffer = buffer[:cut] + buffer[choose(0, len(buffer)) :]
    return bytes(buffer)


@pytest.mark.parametrize("port", PORTS, ids=port_id)
@settings(max_examples=600)
@given(
    data=st.data(),
    sender=st.sampled_from([CLIENT, SERVER]),
    kinds=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3),
    wrong_receiver=st.booleans(),
    close=st.booleans(),
)
def test_mutated_frames_parse_or_raise_remote_protocol_error(
    port: Port,
    data: st.DataObject,
    sender: Role,
    kinds: list[str],
    wrong_receiver: bool,
    close: bool,
) -> None:
    messages = data.draw(st.lists(messages_sent_by(sender, port), min_size=1, max_size=3))
    connection = Connection(sender, port)
    stream = b"".join(connection.send(message) for message in messages)

    def choose(low: int, high: int) -> int:
        return data.draw(st.integers(low, high))

    for kind in kinds:
        stream = mutate(stream, kind, choose)
    receiver = sender if wrong_receiver else other(sender)
    cut = choose(0, len(stream))
    parses_or_raises_remote_protocol_error(receiver, [stream[:cut], stream[cut:]], close, port)


def random_value(field: Field, rng: random.Random) -> Any:
    if field.kind == "int":
        # Edges are where a layout breaks; pick them often.
        return rng.choice((field.low, field.high, rng.randint(field.low, field.high), 1))
    if field.kind == "bytes":
        return rng.randbytes(field.length)
    if field.kind == "string":
        alphabet = "abcXYZ09 _-é€😀"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
    if field.kind == "msgpack":
        return m.pack_msgpack_array([rng.randint(-5, 2**40) for _ in range(rng.randint(0, 6))])
    assert field.kind == "group"
    entries = rng.randint(0, 4)
    return tuple(
        field.item(*(random_value(f, rng) for f in field.item.LAYOUT.fields))
        for _ in range(entries)
    )


def random_message(cls: type[Message], rng: random.Random) -> Message:
    values = [random_value(field, rng) for field in cls.LAYOUT.fields]
    if cls is m.Subscribe:  # each market once: the last of those named twice
        values[-1] = tuple({entry.market_id: entry for entry in values[-1]}.values())
    message = cls(*values)
    fixes = {
        m.Login: {"flags": rng.randint(0, 1)},
        m.Status: {"role": rng.randint(0, 2), "peers_connected": 0, "flags": rng.randint(0, 1)},
        m.NodeAdmin: {"action": rng.randint(1, 2)},
        m.NodeAdminResult: {"action": rng.randint(1, 2), "done": rng.randint(0, 1)},
        m.HashAt: {"kept": rng.randint(0, 1)},
        m.EventInfo: {
            "mutually_exclusive": 1,
            "exhaustive": rng.randint(0, 1),
            "settled": rng.randint(0, 1),
        },
        m.LoginAccepted: {"heartbeat_interval_ms": limits.heartbeat_interval_ms_min},
        m.OperatorResult: {"event_count": 2**32 - 1},
        m.FeedHello: {"heartbeat_interval_ms": limits.heartbeat_interval_ms_max},
        m.Subscribe: {"flags": rng.randint(0, SUBSCRIBE_FLAGS_MAX)},
        m.Subscribed: {"flags": rng.randint(0, SUBSCRIBED_FLAGS_MAX)},
        m.BookSnapshot: {
            "yes_payout": rng.randint(0, constants.contract_payout_cents),
            "mark": rng.randint(0, constants.contract_payout_cents),
        },
        m.SettledUpdate: {"yes_payout": rng.randint(0, constants.contract_payout_cents)},
        m.MarkUpdate: {"mark": rng.randint(0, constants.contract_payout_cents)},
    }
    return dataclasses.replace(message, **fixes.get(cls, {}))


def run_fuzz(seed: int, iterations: int, port: Port) -> Counter[str]:
    """Mutate valid frames of `port` `iterations` times and feed each stream, in chunks of
    random sizes, to a fresh Connection of `port`; return how the streams ended, by
    outcome."""
    rng = random.Random(seed)
    encoders = {CLIENT: Connection(CLIENT, port), SERVER: Connection(SERVER, port)}
    corpus = {
        role: [
            encoders[role].send(random_message(cls, rng))
            for cls in MESSAGES_BY_PORT[port]
            if cls.DIRECTION.sent_by(role)
            for _ in range(8)
        ]
        for role in (CLIENT, SERVER)
    }
    outcomes: Counter[str] = Counter()
    for _ in range(iterations):
        sender = rng.choice((CLIENT, SERVER))
        stream = b"".join(rng.choice(corpus[sender]) for _ in range(rng.randint(1, 3)))
        for _ in range(rng.randint(1, 3)):
            stream = mutate(stream, rng.choice(MUTATIONS), rng.randint)
        receiver = sender if rng.random() < 0.05 else other(sender)
        connection = Connection(receiver, port)
        received: list[Message] = []
        position = 0
        try:
            while position < len(stream):
                step = rng.choice((1, 7, 64, len(stream)))
                connection.receive_data(stream[position : position + step])
                position += step
                while isinstance(event := connection.next_event(), Message):
                    received.append(event)
            connection.receive_data(b"")
            while isinstance(event := connection.next_event(), Message):
                received.append(event)
            assert event is CLOSED
            outcomes["closed"] += 1
        except RemoteProtocolError as error:
            outcomes[error.code.rule] += 1
        outcomes["message"] += len(received)
        reencoded = b"".join(encoders[other(receiver)].send(message) for message in received)
        assert stream.startswith(reencoded), (seed, stream.hex())
    return outcomes


def codec_errors_of(port: Port) -> set[ErrorCode]:
    """The codec rules bytes sent on `port` can break: msgpack payloads only where a
    message of the port has one (the feed has none)."""
    kinds = {field.kind for cls in MESSAGES_BY_PORT[port] for field in cls.LAYOUT.fields}
    if "msgpack" in kinds:
        return CODEC_ERRORS
    return CODEC_ERRORS - {ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY}


# Mutated streams per port (EVX_SOAK=1: the second number); the feed's frames are small and
# few, so fewer streams reach every rule of its parser.
FUZZ_ITERATIONS = {ORDER_ENTRY_PORT: (150_000, 2_000_000), FEED_PORT: (100_000, 1_000_000)}


@pytest.mark.slow
@pytest.mark.parametrize("port", PORTS, ids=port_id)
def test_seeded_mutation_fuzz_parses_or_raises_remote_protocol_error(port: Port) -> None:
    """The volume fuzz, per port: 150,000 mutated order-entry streams and 100,000 feed
    streams (EVX_SOAK=1: two million and one million), in seconds. Any exception but
    RemoteProtocolError fails the test; every codec rule the port's messages can break must
    be hit, so a generator that stopped reaching one would be noticed."""
    soak = os.environ.get("EVX_SOAK") == "1"
    seed = int(os.environ.get("EVX_FUZZ_SEED", "20_240_611"))
    iterations = FUZZ_ITERATIONS[port][soak]
    print(f"seed={seed} iterations={iterations} port={port_id(port)}")
    started = time.perf_counter()
    outcomes = run_fuzz(seed, iterations, port)
    print(f"{time.perf_counter() - started:.1f} s: {dict(outcomes)}")
    assert {ErrorCode[rule.upper()] for rule in outcomes if rule not in ("message", "closed")} == (
        codec_errors_of(port)
    )
    assert outcomes["message"] > 0 and outcomes["closed"] > 0


# -- Errors on receipt: each rule, and stickiness ---------------------------------------------


def body_of(message: Message) -> bytes:
    return message.encode_body()


GOOD_ORDER = m.NewOrder(1, 2, 1, 1, 1, 0, 2, 40, 10, 0, 0, 0)
A_NONCE = bytes(range(32))


@pytest.mark.parametrize(
    ("role", "data", "code"),
    [
        (SERVER, b"\x00\x00\x00\x00", ErrorCode.FRAME_MUST_BE_COMPLETE),
        # Oversized frames fail on their 4 length bytes, before any body is buffered.
        (SERVER, struct.pack(">I", limits.client_frame_size_max - 3), ErrorCode.FRAME_MUST_FIT_MAX),
        (CLIENT, struct.pack(">I", limits.server_frame_size_max - 3), ErrorCode.FRAME_MUST_FIT_MAX),
        (SERVER, b"\xff\xff\xff\xff", ErrorCode.FRAME_MUST_FIT_MAX),
        (SERVER, struct.pack(">IB", 100, 0xEE), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),
        (SERVER, struct.pack(">IB", 100, 0x00), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),
        (
            SERVER,
            struct.pack(">IB", 45, m.Challenge.TYPE),
            ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
        ),
        (
            CLIENT,
            struct.pack(">IB", 39, m.NewOrder.TYPE),
            ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
        ),
        (SERVER, frame(0x10, body_of(GOOD_ORDER)[:-1]), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (SERVER, frame(0x10, body_of(GOOD_ORDER) + b"\x00"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (SERVER, frame(0x06, b"\x00"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (CLIENT, frame(0x04, b"\x03\xe8\x00\x01\xff"), ErrorCode.STRING_MUST_BE_UTF8),
        (CLIENT, frame(0x04, b"\x03\xe8\x00\x02\xc0\x80"), ErrorCode.STRING_MUST_BE_UTF8),
        (CLIENT, frame(0x04, b"\x03\xe8\x00\x03\xed\xa0\x80"), ErrorCode.STRING_MUST_BE_UTF8),
        (CLIENT, frame(0x04, b"\x03\xe8\x00\x05abc"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (CLIENT, frame(0x04, b"\x03\xe8\x00\x02abc"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (CLIENT, frame(0x04, b"\x03\xe8\x01\x01" + b"a" * 257), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x04, b"\x03\xe8\x00"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (
            SERVER,
            frame(
                0x02, body_of(m.Login(1, 1, A_NONCE, 0, 0, bytes(64)))[:-65] + b"\x02" + bytes(64)
            ),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (
            CLIENT,
            frame(0x40, bytes(12) + b"\x00\x02" + bytes(40)),
            ErrorCode.BODY_MUST_MATCH_LAYOUT,
        ),
        (
            CLIENT,
            frame(0x40, bytes(12) + b"\x00\x01" + bytes(80)),
            ErrorCode.BODY_MUST_MATCH_LAYOUT,
        ),
        (CLIENT, frame(0x40, bytes(12) + b"\x27\x11"), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x43, bytes(17) + b"\x64"), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x43, bytes(17) + b"\x00"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (CLIENT, frame(0x61, bytes(4 + 2) + b"\x03" + bytes(81)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x03, bytes(32) + struct.pack(">I", 99)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            SERVER,
            frame(0x50, bytes(4) + b"\x00\x00\x00\x01\xc1"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (
            SERVER,
            frame(0x50, bytes(4) + b"\x00\x00\x00\x01\x07"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (
            SERVER,
            frame(0x50, bytes(4) + b"\x00\x00\x00\x02\x90\x90"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (
            SERVER,
            frame(0x50, bytes(4) + b"\x00\x00\x00\x03\x91\x81\x00"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (SERVER, frame(0x50, bytes(4) + b"\x00\x00\x00\x02\x91"), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (
            SERVER,
            frame(0x50, bytes(4) + b"\x00\x00\x00\x00"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (
            SERVER,
            frame(0x50, bytes(4) + struct.pack(">I", 1001) + b"\x91" * 1000 + b"\xc0"),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (
            CLIENT,
            frame(0x51, bytes(12) + struct.pack(">I", 1) + b"\x00\x00\x00\x03\x92\x01\x02"),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
    ],
)
def test_each_rule_is_reported_with_its_code(role: Role, data: bytes, code: ErrorCode) -> None:
    raises_remote(role, data, code)


def test_a_frame_of_exactly_the_maximum_is_accepted_and_one_byte_more_is_not() -> None:
    base = [b"x" * 200] * 19
    for extra in range(limits.string_length_max):
        message = m.OperatorCommand.of(1, [*base, b"y" * extra])
        if m.FRAME_HEADER_SIZE + len(message.encode_body()) == limits.client_frame_size_max:
            break
    encoded = Connection(CLIENT).send(message)
    assert len(encoded) == limits.client_frame_size_max
    assert receive(SERVER, encoded) == [message, NEED_DATA]
    longer = m.OperatorCommand.of(1, [*base, b"y" * (extra + 1)])
    with pytest.raises(LocalProtocolError) as local:
        Connection(CLIENT).send(longer)
    assert local.value.code == ErrorCode.FRAME_MUST_FIT_MAX
    raises_remote(SERVER, frame(longer.TYPE, longer.encode_body()), ErrorCode.FRAME_MUST_FIT_MAX)


def test_closing_mid_frame_is_an_incomplete_frame_and_a_clean_close_is_closed() -> None:
    encoded = Connection(CLIENT).send(GOOD_ORDER)
    for cut in (1, 3, 4, 5, len(encoded) - 1):
        raises_remote(SERVER, encoded[:cut], ErrorCode.FRAME_MUST_BE_COMPLETE, close=True)
    connection = Connection(SERVER)
    connection.receive_data(encoded)
    connection.receive_data(b"")
    assert drain(connection) == [GOOD_ORDER, CLOSED]
    assert connection.next_event() is CLOSED
    connection.receive_data(b"")  # closing twice is harmless
    with pytest.raises(RuntimeError):
        connection.receive_data(b"more")


def test_a_remote_error_is_sticky() -> None:
    connection = Connection(SERVER)
    connection.receive_data(frame(0xEE, b""))
    for _ in range(3):
        with pytest.raises(RemoteProtocolError) as caught:
            connection.next_event()
        assert caught.value.code == ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN
        assert caught.value.message_type == 0xEE
    # Valid frames after the error are neither parsed nor kept.
    connection.receive_data(Connection(CLIENT).send(GOOD_ORDER))
    assert connection.bytes_buffered == 0
    with pytest.raises(RemoteProtocolError):
        connection.next_event()
    assert connection.error is not None
    # The server can still send its one Error frame.
    error_frame = connection.send(m.Error.about(connection.error))
    assert receive(CLIENT, error_frame) == [
        m.Error(1002, 0xEE, 0, "message type 0xee is not a message of the order entry port"),
        NEED_DATA,
    ]


def test_an_oversized_frame_is_refused_before_its_body_arrives() -> None:
    connection = Connection(SERVER)
    connection.receive_data(struct.pack(">I", 10_000_000))
    with pytest.raises(RemoteProtocolError) as caught:
        connection.next_event()
    assert caught.value.code == ErrorCode.FRAME_MUST_FIT_MAX
    # A client accepts large frames from a server, up to the server's maximum.
    connection = Connection(CLIENT)
    connection.receive_data(struct.pack(">IB", 500_000, m.OpenOrders.TYPE))
    assert connection.next_event() is NEED_DATA


# -- Direction --------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "cls"), port_messages())
def test_each_message_travels_only_its_direction(port: Port, cls: type[Message]) -> None:
    message = random_message(cls, random.Random(cls.TYPE))  # small enough for any frame
    for role in (CLIENT, SERVER):
        if cls.DIRECTION.sent_by(role):
            encoded = Connection(role, port).send(message)
            assert receive(other(role), encoded, port=port) == [message, NEED_DATA]
        else:
            raises_local(role, message, ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION, port=port)
            encoded = Connection(other(role), port).send(message)
            raises_remote(
                other(role), encoded, ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION, port=port
            )
    assert m.Heartbeat.DIRECTION is m.Direction.BOTH


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda cls: cls.__name__)
def test_each_message_travels_only_its_ports(cls: type[Message]) -> None:
    """A message is sent and parsed on the ports it names; on any other port sending it is
    our bug and receiving its type byte is an unknown type, refused before its body."""
    message = random_message(cls, random.Random(cls.TYPE))
    assert cls.PORTS and set(cls.PORTS) <= set(PORTS)
    sender = senders_of(cls)[0]
    (own_port, *_) = cls.PORTS
    encoded = Connection(sender, own_port).send(message)
    for port in PORTS:
        assert (MESSAGES_OF_PORT[port].get(cls.TYPE) is cls) == (port in cls.PORTS)
        if port in cls.PORTS:
            assert receive(other(sender), encoded, port=port) == [message, NEED_DATA]
        else:
            raises_local(sender, message, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN, port=port)
            error = raises_remote(
                other(sender),
                encoded[: m.FRAME_HEADER_SIZE],
                ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN,
                port=port,
            )
            assert error.message_type == cls.TYPE


# -- Errors on sending ------------------------------------------------------------------------

huge_events = m.pack_msgpack_array([b"e" * 250] * 4_300)


@pytest.mark.parametrize(
    ("role", "message", "code"),
    [
        (CLIENT, dataclasses.replace(GOOD_ORDER, price=256), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            CLIENT,
            dataclasses.replace(GOOD_ORDER, client_order_id=-1),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, dataclasses.replace(GOOD_ORDER, max_cost=2**64), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, dataclasses.replace(GOOD_ORDER, side=True), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, dataclasses.replace(GOOD_ORDER, quantity="10"), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.Login(1, 1, bytes(31), 0, 0, bytes(64)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.Login(1, 1, bytes(32), 0, 0, bytes(65)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.Login(1, 1, bytes(32), 0, 2, bytes(64)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.OperatorCommand(1, b"\xc1"), ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY),
        (
            CLIENT,
            m.OperatorCommand(1, msgpack.packb({"a": 1})),
            ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY,
        ),
        (CLIENT, m.OperatorCommand(1, "[]"), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.OperatorCommand.of(1, [b"x" * 200] * 21), ErrorCode.FRAME_MUST_FIT_MAX),
        (SERVER, m.OperatorResult(1, 1, 4_300, huge_events), ErrorCode.FRAME_MUST_FIT_MAX),
        (
            SERVER,
            m.OperatorResult(1, 1, 0, m.pack_msgpack_array([1])),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (SERVER, m.LoginRejected(1000, "\udc80"), ErrorCode.STRING_MUST_BE_UTF8),
        (SERVER, m.LoginRejected(1000, "x" * 257), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.LoginRejected(1000, b"text"), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.LoginAccepted(1, 1, 0, 0, 0), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            SERVER,
            m.Status(1, 1, 3, 0, 0, 0, 0, bytes(32), 0, 0, 0, 0, 2, 0),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (
            SERVER,
            m.Status(1, 1, 2, 0, 0, 0, 0, bytes(32), 0, 0, 0, 3, 2, 0),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (
            SERVER,
            m.Status(1, 1, 2, 0, 0, 0, 0, bytes(32), 0, 0, 0, 2, 2, 2),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, m.NodeAdmin(1, 5, 0, ""), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.NodeAdminResult(1, 1, 2, 0, 0, 0, ""), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.HashAt(1, 1, 2, bytes(32), 0), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            SERVER,
            m.Book(1, 1, 1, 2, (m.BookLevel(1, 1, 1),) * 100, ()),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (SERVER, m.Book(1, 1, 1, 2, (m.Position(1, 1),), ()), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.Book(1, 1, 1, 2, None, ()), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.Positions(1, 1, (m.Position(1, 2**63),)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
    ],
)
def test_sending_an_invalid_message_is_a_local_protocol_error(
    role: Role, message: Message, code: ErrorCode
) -> None:
    raises_local(role, message, code)  # and nothing was written: the connection still sends


def test_only_messages_can_be_sent_and_protocol_error_names_a_side() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        Connection(CLIENT).send("hello")  # type: ignore[arg-type]
    assert caught.value.code == ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN
    with pytest.raises(TypeError):
        ProtocolError(ErrorCode.FRAME_MUST_FIT_MAX, "whose fault?")


def test_an_error_frame_cuts_a_long_text_on_a_character_boundary() -> None:
    error = RemoteProtocolError(ErrorCode.BODY_MUST_MATCH_LAYOUT, "€" * 200, m.NewOrder.TYPE)
    answer = m.Error.about(error, reference=42)
    assert answer.text == "€" * (limits.string_length_max // 3)
    assert (answer.code, answer.message_type, answer.reference) == (1004, 0x10, 42)
    assert receive(CLIENT, Connection(SERVER).send(answer)) == [answer, NEED_DATA]


# -- The feed port ----------------------------------------------------------------------------


def subscribe_body(flags: int, market_ids: list[int], count: int | None = None) -> bytes:
    """A Subscribe body as raw bytes, so that it may break the rules `send` enforces."""
    entries = b"".join(struct.pack(">IQ", market_id, 0) for market_id in market_ids)
    return struct.pack(">IBH", 7, flags, len(market_ids) if count is None else count) + entries


A_SUBSCRIBE = m.Subscribe(7, 0, (m.MarketFrom(1, 0), m.MarketFrom(2, 5)))
A_SNAPSHOT = m.BookSnapshot(1, 9, 3, 1, 100, 0, "RAIN", (m.BookLevel(40, 10, 1),), ())
TOO_MANY_MARKETS = list(range(1, limits.subscribe_markets_max + 2))


def test_each_port_refuses_the_other_ports_messages() -> None:
    # A feed connection knows no order-entry type, and order entry no feed type.
    order = frame(m.NewOrder.TYPE, body_of(GOOD_ORDER))
    error = raises_remote(SERVER, order, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN, port=FEED_PORT)
    assert error.message_type == 0x10
    assert error.text == "message type 0x10 is not a message of the feed port"
    subscribe = frame(m.Subscribe.TYPE, body_of(A_SUBSCRIBE))
    assert m.Subscribe.TYPE == 0x71
    error = raises_remote(SERVER, subscribe, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN)
    assert error.text == "message type 0x71 is not a message of the order entry port"
    # Valid on its own port.
    assert receive(SERVER, subscribe, port=FEED_PORT) == [A_SUBSCRIBE, NEED_DATA]
    assert receive(SERVER, order) == [GOOD_ORDER, NEED_DATA]
    # Sending across is our bug.
    raises_local(CLIENT, GOOD_ORDER, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN, port=FEED_PORT)
    raises_local(CLIENT, A_SUBSCRIBE, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN)
    raises_local(SERVER, A_SNAPSHOT, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN)


@pytest.mark.parametrize("port", PORTS, ids=port_id)
def test_heartbeat_and_error_are_messages_of_both_ports(port: Port) -> None:
    assert m.Heartbeat.PORTS == m.Error.PORTS == PORTS
    for sender in (CLIENT, SERVER):
        encoded = Connection(sender, port).send(m.Heartbeat(42))
        assert encoded == frame(0x05, struct.pack(">Q", 42))
        assert receive(other(sender), encoded, port=port) == [m.Heartbeat(42), NEED_DATA]
    error = m.Error(1002, 0x10, 0, "message type 0x10 is not a message of the feed port")
    encoded = Connection(SERVER, port).send(error)
    assert receive(CLIENT, encoded, port=port) == [error, NEED_DATA]
    raises_remote(SERVER, encoded, ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION, port=port)


@pytest.mark.parametrize(
    ("role", "data", "code"),
    [
        (SERVER, frame(0x71, subscribe_body(0, [1, 2])), None),
        (SERVER, frame(0x71, subscribe_body(1, [])), None),
        (SERVER, frame(0x71, subscribe_body(0, [1, 2, 1])), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, frame(0x71, subscribe_body(2, [1])), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, frame(0x71, subscribe_body(0x81, [])), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        # 257 markets: the count is above the maximum, though the frame would fit.
        (
            SERVER,
            frame(0x71, subscribe_body(0, TOO_MANY_MARKETS)),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (SERVER, frame(0x71, subscribe_body(0, [1], count=2)), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (SERVER, frame(0x71, subscribe_body(0, [1, 2], count=1)), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (SERVER, frame(0x72, bytes(7)), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (
            SERVER,
            struct.pack(">IB", 25, m.FeedHello.TYPE),
            ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
        ),
        (
            CLIENT,
            struct.pack(">IB", 8, m.Subscribe.TYPE),
            ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
        ),
        (SERVER, struct.pack(">IB", 100, 0x02), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),  # Login
        (CLIENT, struct.pack(">IB", 100, 0x01), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),  # Challenge
        (CLIENT, struct.pack(">IB", 100, 0x7F), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),
        (
            CLIENT,
            frame(0x70, struct.pack(">HHQIII", 1, 1, 0, 99, 0, 0)),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, frame(0x74, struct.pack(">IIBQ", 1, 0, 4, 0)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x74, struct.pack(">IIBQ", 1, 0, 3, 0)), None),
        (  # yes_payout (after u32, u64, u8, i64) of 101
            CLIENT,
            frame(0x75, body_of(A_SNAPSHOT)[:21] + b"\x65" + body_of(A_SNAPSHOT)[22:]),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, frame(0x75, body_of(A_SNAPSHOT)[:-1]), ErrorCode.BODY_MUST_MATCH_LAYOUT),
        (CLIENT, frame(0x79, struct.pack(">IQqB", 1, 1, 1, 101)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, frame(0x79, struct.pack(">IQqB", 1, 1, 1, 100)), None),
        (
            CLIENT,
            frame(0x7C, struct.pack(">QH", 1, limits.heartbeat_markets_max + 1)),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, frame(0x7C, struct.pack(">QH", 1, 1)), ErrorCode.BODY_MUST_MATCH_LAYOUT),
    ],
)
def test_each_feed_rule_is_reported_with_its_code(
    role: Role, data: bytes, code: ErrorCode | None
) -> None:
    """`None`: the frame is valid, next to the ones that break a rule by a little."""
    if code is None:
        [message, signal] = receive(role, data, port=FEED_PORT)
        assert signal is NEED_DATA
        assert Connection(other(role), FEED_PORT).send(message) == data
    else:
        raises_remote(role, data, code, port=FEED_PORT)


@pytest.mark.parametrize(
    ("role", "message", "code"),
    [
        (
            CLIENT,
            m.Subscribe(7, 0, tuple(m.MarketFrom(market, 0) for market in TOO_MANY_MARKETS)),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, m.Subscribe(7, 0, (m.MarketFrom(1, 0),) * 2), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.Subscribe(7, 2, ()), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (CLIENT, m.Subscribe(7, 0, (m.MarketSeq(1, 0),)), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.FeedHello(1, 1, 0, 60_001, 0, 0), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (SERVER, m.Subscribed(7, 0, 4, 0), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            SERVER,
            dataclasses.replace(A_SNAPSHOT, yes_payout=101),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (SERVER, m.SettledUpdate(1, 1, 1, 101), ErrorCode.VALUE_MUST_BE_IN_RANGE),
        (
            SERVER,
            m.FeedHeartbeat(1, (m.MarketSeq(1, 1),) * (limits.heartbeat_markets_max + 1)),
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
        ),
        (CLIENT, A_SNAPSHOT, ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION),
        (CLIENT, GOOD_ORDER, ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),
        (CLIENT, m.Logout(), ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN),
    ],
)
def test_sending_an_invalid_feed_message_is_a_local_protocol_error(
    role: Role, message: Message, code: ErrorCode
) -> None:
    raises_local(role, message, code, port=FEED_PORT)


# -- End to end over a trio memory stream -----------------------------------------------------


async def next_message(stream: trio.abc.ReceiveStream, connection: Connection) -> Any:
    """The next event, reading as needed; small reads so frames arrive in pieces."""
    while True:
        event = connection.next_event()
        if event is not NEED_DATA:
            return event
        connection.receive_data(await stream.receive_some(7))


async def test_a_client_and_a_server_codec_talk_over_a_stream() -> None:
    """Just the codec on both ends, with the server's part played by this test: challenge,
    signed login, an order and its reports, a query, a heartbeat, a logout, a close."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    nonce = bytes(range(100, 132))
    seen_by_server: list[Any] = []
    seen_by_client: list[Any] = []

    async def server() -> None:
        connection = Connection(SERVER)

        async def send(message: Message) -> None:
            await server_stream.send_all(connection.send(message))

        await send(m.Challenge(m.PROTOCOL_VERSION, 1, nonce, 40))
        login = await next_message(server_stream, connection)
        assert isinstance(login, m.Login)
        Ed25519PublicKey.from_public_bytes(login.public_key).verify(
            login.signature, m.login_signed_bytes(nonce, login)
        )
        await send(m.LoginAccepted(login.account_id, 5, 4, 41, 1_000))
        while not isinstance(event := await next_message(server_stream, connection), m.Logout):
            seen_by_server.append(event)
            if isinstance(event, m.NewOrder):
                accepted = (1, 7, 5, 900, event.client_order_id, event.market_id, event.side)
                accepted += (event.order_type, event.time_in_force, event.price, event.quantity)
                accepted += (event.flags, event.expire_time_ms)
                await send(m.report_from_event(accepted, 42))
                filled = (3, 7, 6, 900, event.client_order_id, event.market_id, 1, event.side)
                filled += (event.price, 4, 2, 6, 2, 4)
                await send(m.report_from_event(filled, 42))
            elif isinstance(event, m.QueryOpenOrders):
                order = m.OpenOrder(900, 11, 3, 1, 40, 6, 10, 1, 0, 0)
                await send(m.OpenOrders(event.request_id, 42, (order,)))
            elif isinstance(event, m.Heartbeat):
                await send(m.Heartbeat(42))
        seen_by_server.append(event)
        # The server answers a Logout by closing; the client reads that as CLOSED.
        await server_stream.aclose()

    async def client() -> None:
        connection = Connection(CLIENT)

        async def send(message: Message) -> None:
            await client_stream.send_all(connection.send(message))

        challenge = await next_message(client_stream, connection)
        assert isinstance(challenge, m.Challenge) and challenge.protocol_version == 1
        unsigned = m.Login(1, 7, key.public_key().public_bytes_raw(), 5, 1, bytes(64))
        signature = key.sign(m.login_signed_bytes(challenge.nonce, unsigned))
        await send(dataclasses.replace(unsigned, signature=signature))
        assert await next_message(client_stream, connection) == m.LoginAccepted(7, 5, 4, 41, 1_000)
        await send(m.NewOrder(11, 3, 1, 1, 1, 0, 2, 40, 10, 0, 0, 0))
        seen_by_client.append(await next_message(client_stream, connection))
        seen_by_client.append(await next_message(client_stream, connection))
        await send(m.QueryOpenOrders(1, 42))
        seen_by_client.append(await next_message(client_stream, connection))
        await send(m.Heartbeat(0))
        seen_by_client.append(await next_message(client_stream, connection))
        await send(m.Logout())
        seen_by_client.append(await next_message(client_stream, connection))
        await client_stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        nursery.start_soon(client)

    assert seen_by_server == [
        m.NewOrder(11, 3, 1, 1, 1, 0, 2, 40, 10, 0, 0, 0),
        m.QueryOpenOrders(1, 42),
        m.Heartbeat(0),
        m.Logout(),
    ]
    assert seen_by_client == [
        m.OrderAccepted(5, 42, 900, 11, 3, 1, 1, 1, 40, 10, 0, 0),
        m.OrderFilled(6, 42, 900, 11, 3, 1, 1, 40, 4, 2, 6, 2, 4),
        m.OpenOrders(1, 42, (m.OpenOrder(900, 11, 3, 1, 40, 6, 10, 1, 0, 0),)),
        m.Heartbeat(42),
        CLOSED,
    ]
