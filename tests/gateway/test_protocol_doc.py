"""docs/protocol.md says what the code does: every table and example is checked against it.

Strategy: the specification is written for people (a meaning column, prose around the
tables), but its numbers come from the code. For each message and group entry this test
derives the rows a table must have (offset, size, type, field) from the same field table the
codec uses, and compares them with the rows under the message's heading; likewise the
message index, the error codes, the limits, the code tables against the enums, and the
example frames, which are rebuilt and compared byte for byte. So a change to a layout
without the spec, or to the spec without the layout, fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import struct
from enum import Enum
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evx.core import (
    COMMANDS,
    BookSide,
    CancelReason,
    Liquidity,
    MarketStatus,
    OrderFlag,
    OrderType,
    Reject,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from evx.gateway import limits
from evx.gateway import messages as m
from evx.gateway.codec import CLIENT, FEED_PORT, SERVER, Connection
from evx.gateway.codes import ErrorCode
from evx.gateway.messages import Layout

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
LINES = DOC.splitlines()
TIMES = "\N{MULTIPLICATION SIGN}"  # the spec writes a group as "OpenOrder TIMES k"
DIRECTIONS = {
    m.Direction.CLIENT_TO_SERVER: "client to server",
    m.Direction.SERVER_TO_CLIENT: "server to client",
    m.Direction.BOTH: "both directions",
}


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table after
    `heading`, up to the next heading; [] if there is none."""
    start = LINES.index(heading) + 1
    rows: list[list[str]] = []
    for line in LINES[start:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def text_after(heading: str) -> str:
    """The first paragraph line after `heading`."""
    start = LINES.index(heading) + 1
    return next(line for line in LINES[start:] if line.strip())


def expression(constant: int, terms: list[str]) -> str:
    return "+".join(([str(constant)] if constant or not terms else []) + terms)


def expected_rows(layout: Layout) -> tuple[list[list[str]], str]:
    """The (offset, size, type, field) rows of a layout as the spec writes them, and the
    body's size: n for a string's length, m for a payload's, k for a group's count (or
    the first letter of the group's name when a message has two)."""
    groups = [field for field in layout.fields if field.kind == "group"]
    rows: list[list[str]] = []
    constant, terms = 0, []
    for field in layout.fields:
        offset = expression(constant, terms)
        if field.kind == "int":
            size = struct.calcsize(">" + field.format)
            rows.append([offset, str(size), field.wire, field.name])
            constant += size
        elif field.kind == "bytes":
            rows.append([offset, str(field.length), f"bytes[{field.length}]", field.name])
            constant += field.length
        elif field.kind == "string":
            rows.append([offset, "2+n", "string", field.name])
            constant += 2
            terms.append("n")
        elif field.kind == "msgpack":
            rows.append([offset, "4+m", "msgpack", field.name])
            constant += 4
            terms.append("m")
        else:
            symbol = "k" if len(groups) == 1 else field.name[0]
            count_size = struct.calcsize(">" + field.format)
            count_type = {1: "u8", 2: "u16"}[count_size]
            rows.append([offset, str(count_size), count_type, f"{field.name} count ({symbol})"])
            constant += count_size
            term = f"{field.item.SIZE}·{symbol}"
            rows.append(
                [expression(constant, terms), term, f"{field.item.__name__} {TIMES} {symbol}"]
            )
            rows[-1].append(field.name)
            terms.append(term)
    return rows, expression(constant, terms)


ALL_MESSAGES = sorted({*m.MESSAGES.values(), *m.FEED_MESSAGES.values()}, key=lambda c: c.TYPE)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda cls: cls.__name__)
def test_each_message_table_matches_its_layout(cls: type[m.Message]) -> None:
    heading = f"#### {cls.TYPE:#04x} {cls.__name__}"
    assert heading in LINES, f"docs/protocol.md has no section {heading!r}"
    rows, size = expected_rows(cls.LAYOUT)
    assert [row[:4] for row in table_after(heading)] == rows
    assert all(len(row) == 5 and row[4] for row in table_after(heading)), "a meaning is empty"
    direction = DIRECTIONS[cls.DIRECTION].capitalize()
    assert text_after(heading).startswith(f"{direction}. Body: {size} bytes.")


@pytest.mark.parametrize("name", sorted(m.ITEMS))
def test_each_group_entry_table_matches_its_layout(name: str) -> None:
    heading = f"#### Entry {name}"
    assert heading in LINES
    item = m.ITEMS[name]
    rows, size = expected_rows(item.LAYOUT)
    assert [row[:4] for row in table_after(heading)] == rows
    assert text_after(heading) == f"{size} bytes." == f"{item.SIZE} bytes."


@pytest.mark.parametrize(
    ("heading", "table"),
    [
        ("## 4. The message table", m.MESSAGES),
        ("### 11.7 The feed's message table", m.FEED_MESSAGES),
    ],
    ids=["order-entry", "feed"],
)
def test_each_ports_message_index_lists_its_messages(
    heading: str, table: dict[int, type[m.Message]]
) -> None:
    expected = [
        [f"{cls.TYPE:#04x}", cls.__name__, DIRECTIONS[cls.DIRECTION], expected_rows(cls.LAYOUT)[1]]
        for cls in sorted(table.values(), key=lambda cls: cls.TYPE)
    ]
    assert table_after(heading) == expected


def test_every_error_code_is_documented_with_its_number_and_rule() -> None:
    rows = table_after("## 6. Error codes")
    assert [(int(row[0]), row[1]) for row in rows] == [(int(code), code.rule) for code in ErrorCode]


LIMITS_DOCUMENTED = {
    "client_frame_size_max",
    "server_frame_size_max",
    "string_length_max",
    "query_results_max",
    "book_levels_per_side_max",
    "subscribe_markets_max",
    "heartbeat_markets_max",
    "msgpack_nesting_max",
    "heartbeat_interval_ms_min",
    "heartbeat_interval_ms_max",
    "heartbeat_intervals_silent_max",
}


def test_every_limit_is_documented_with_its_value() -> None:
    rows = table_after("## 7. Limits")
    documented = {row[0].strip("`"): int(row[1].split()[0].replace(",", "")) for row in rows}
    assert documented == {name: getattr(limits, name) for name in LIMITS_DOCUMENTED}
    public = {
        name
        for name, value in vars(limits).items()
        if type(value) is int and not name.startswith("_")
    }
    assert public - LIMITS_DOCUMENTED == {"frame_length_prefix_size"}  # a size, not a limit


def test_the_largest_answers_quoted_in_the_limits_section_are_right() -> None:
    sizes = {
        cls.__name__: m.FRAME_HEADER_SIZE + cls.LAYOUT.size_max
        for cls in (m.OpenOrders, m.Positions, m.Book)
    }
    assert sizes == {"OpenOrders": 400_019, "Positions": 120_019, "Book": 2_598}
    assert "400,019 bytes" in DOC and "120,019" in DOC and "a full book 2,598" in DOC


CODE_TABLES: list[tuple[str, type[Enum]]] = [
    ("### Side (u8)", Side),
    ("### OrderType (u8)", OrderType),
    ("### TimeInForce (u8)", TimeInForce),
    ("### OrderFlag (u8 bits)", OrderFlag),
    ("### SelfTradePrevention (u8)", SelfTradePrevention),
    ("### Liquidity (u8)", Liquidity),
    ("### CancelReason (u8)", CancelReason),
    ("### MarketStatus (u8)", MarketStatus),
    ("### NodeRole (u8)", m.NodeRole),
    ("### StatusFlag (u8 bits)", m.StatusFlag),
    ("### AdminAction (u8)", m.AdminAction),
    ("### LoginFlag (u8 bits)", m.LoginFlag),
    ("### Reject (u16)", Reject),
    ("#### SubscribeFlag (u8 bits)", m.SubscribeFlag),
    ("#### SubscribedFlag (u8 bits)", m.SubscribedFlag),
    ("#### BookSide (u8)", BookSide),
]


@pytest.mark.parametrize(
    ("heading", "enum"), CODE_TABLES, ids=[enum.__name__ for _, enum in CODE_TABLES]
)
def test_each_code_table_matches_its_enum(heading: str, enum: type[Enum]) -> None:
    rows = table_after(heading)
    # Flags are documented bit by bit; their "no flags" member is 0.
    members = [
        member
        for member in enum
        if member.value
        or enum not in (OrderFlag, m.LoginFlag, m.StatusFlag, m.SubscribeFlag, m.SubscribedFlag)
    ]
    assert [(int(row[0]), row[1]) for row in rows] == [
        (int(member.value), str(member.name).lower()) for member in members
    ]


def hexdump(data: bytes) -> str:
    lines = (data[start : start + 16] for start in range(0, len(data), 16))
    return "\n".join(" ".join(f"{byte:02x}" for byte in line) for line in lines)


def test_the_new_order_example_is_the_frame_the_codec_writes() -> None:
    order = m.NewOrder(
        1001, 3, Side.BUY_YES, OrderType.LIMIT, TimeInForce.GTC, 0, 2, 40, 10, 0, 0, 0
    )
    assert f"```\n{hexdump(Connection(CLIENT).send(order))}\n```" in DOC


def test_the_login_example_is_the_frames_and_bytes_the_codec_writes() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public_key = key.public_key().public_bytes_raw()
    assert f"`{public_key.hex()}`" in DOC
    nonce = bytes(range(0xA0, 0xC0))
    challenge = m.Challenge(1, 2, nonce, 12_345)
    assert f"```\n{hexdump(Connection(SERVER).send(challenge))}\n```" in DOC
    unsigned = m.Login(1, 7, public_key, 0, m.LoginFlag.CANCEL_ON_DISCONNECT, bytes(64))
    signed = m.login_signed_bytes(nonce, unsigned)
    assert len(signed) == 96 and signed.startswith(b"evx-login-v1\x00")
    assert f"```\n{hexdump(signed)}\n```" in DOC
    login = dataclasses.replace(unsigned, signature=key.sign(signed))
    assert f"```\n{hexdump(Connection(CLIENT).send(login))}\n```" in DOC
    assert hexdump(m.LOGIN_SIGNATURE_CONTEXT) in DOC


def test_the_operator_command_example_is_a_canonical_command() -> None:
    match = re.search(r"`(\[64, [^`]*\])` for CreateMarket", DOC)
    assert match, "the CreateMarket example is gone"
    example = ast.literal_eval(match[1])
    assert COMMANDS.from_canonical(example).to_canonical() == tuple(example)
    assert m.OperatorCommand.of(1, example).command_value() == tuple(example)


def test_the_feed_examples_are_the_frames_the_codec_writes() -> None:
    subscribe = m.Subscribe(9, 0, (m.MarketFrom(3, 41),))
    assert f"```\n{hexdump(Connection(CLIENT, FEED_PORT).send(subscribe))}\n```" in DOC
    level = m.LevelUpdate(3, 42, BookSide.BID, 45, 120, 2)
    assert f"```\n{hexdump(Connection(SERVER, FEED_PORT).send(level))}\n```" in DOC
