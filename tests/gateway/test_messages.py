"""The message catalogue: stable numbers, engine events and commands mapped field for field,
the login signature, and a codec that stays pure.

Strategy: the numbers and sizes that clients in other languages hard-code are frozen in
tables here, so a change to any of them is a deliberate edit of this file. Execution reports
are checked against the engine in two ways: every account event type at the extremes of the
engine's limits, and every account event a seeded random log produces in a real engine, each
converted, sent through the codec, decoded and converted back.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import evx.gateway
from evx.core import (
    ACCOUNT_EVENT_CODES,
    COMMANDS,
    EVENTS,
    CancelReason,
    Engine,
    Liquidity,
    OrderFlag,
    OrderType,
    Reject,
    Side,
    TimeInForce,
    constants,
)
from evx.gateway import messages as m
from evx.gateway.codec import CLIENT, NEED_DATA, SERVER, Connection, LocalProtocolError
from evx.gateway.codes import ErrorCode
from support.logs import random_log

# (type, direction, body size or None when it varies). Part of the wire format.
EXPECTED_MESSAGES = {
    "Challenge": (0x01, "SERVER_TO_CLIENT", 44),
    "Login": (0x02, "CLIENT_TO_SERVER", 115),
    "LoginAccepted": (0x03, "SERVER_TO_CLIENT", 36),
    "LoginRejected": (0x04, "SERVER_TO_CLIENT", None),
    "Heartbeat": (0x05, "BOTH", 8),
    "Logout": (0x06, "CLIENT_TO_SERVER", 0),
    "Error": (0x07, "SERVER_TO_CLIENT", None),
    "NewOrder": (0x10, "CLIENT_TO_SERVER", 42),
    "CancelOrder": (0x11, "CLIENT_TO_SERVER", 16),
    "ReplaceOrder": (0x12, "CLIENT_TO_SERVER", 29),
    "MassCancel": (0x13, "CLIENT_TO_SERVER", 4),
    "SetOrderGroup": (0x14, "CLIENT_TO_SERVER", 12),
    "ResetOrderGroup": (0x15, "CLIENT_TO_SERVER", 4),
    "ConvertNo": (0x16, "CLIENT_TO_SERVER", 16),
    "OrderAccepted": (0x20, "SERVER_TO_CLIENT", 53),
    "OrderRejected": (0x21, "SERVER_TO_CLIENT", 35),
    "OrderFilled": (0x22, "SERVER_TO_CLIENT", 71),
    "OrderCancelled": (0x23, "SERVER_TO_CLIENT", 41),
    "OrderReplaced": (0x24, "SERVER_TO_CLIENT", 50),
    "MassCancelled": (0x25, "SERVER_TO_CLIENT", 24),
    "AccountCreated": (0x26, "SERVER_TO_CLIENT", None),
    "Deposited": (0x27, "SERVER_TO_CLIENT", None),
    "Withdrawn": (0x28, "SERVER_TO_CLIENT", None),
    "PositionSettled": (0x29, "SERVER_TO_CLIENT", 44),
    "OrderGroupUpdated": (0x2A, "SERVER_TO_CLIENT", 37),
    "PositionsConverted": (0x2B, "SERVER_TO_CLIENT", 36),
    "PayoutReleased": (0x2C, "SERVER_TO_CLIENT", 36),
    "VariationMargin": (0x2D, "SERVER_TO_CLIENT", 45),
    "PositionReduced": (0x2E, "SERVER_TO_CLIENT", 49),
    "QueryOpenOrders": (0x30, "CLIENT_TO_SERVER", 12),
    "QueryPositions": (0x31, "CLIENT_TO_SERVER", 12),
    "QueryBalance": (0x32, "CLIENT_TO_SERVER", 12),
    "QueryBook": (0x33, "CLIENT_TO_SERVER", 16),
    "QueryEvent": (0x34, "CLIENT_TO_SERVER", 20),
    "OpenOrders": (0x40, "SERVER_TO_CLIENT", None),
    "Positions": (0x41, "SERVER_TO_CLIENT", None),
    "Balance": (0x42, "SERVER_TO_CLIENT", 28),
    "Book": (0x43, "SERVER_TO_CLIENT", None),
    "EventInfo": (0x44, "SERVER_TO_CLIENT", None),
    "OperatorCommand": (0x50, "CLIENT_TO_SERVER", None),
    "OperatorResult": (0x51, "SERVER_TO_CLIENT", None),
    "NodeAdmin": (0x52, "CLIENT_TO_SERVER", None),
    "NodeAdminResult": (0x53, "SERVER_TO_CLIENT", None),
    "QueryStatus": (0x60, "CLIENT_TO_SERVER", 4),
    "Status": (0x61, "SERVER_TO_CLIENT", 88),
    "QueryHash": (0x62, "CLIENT_TO_SERVER", 12),
    "HashAt": (0x63, "SERVER_TO_CLIENT", 53),
}

EXPECTED_ERROR_CODES = {
    "frame_must_fit_max": 1000,
    "frame_must_be_complete": 1001,
    "message_type_must_be_known": 1002,
    "message_must_travel_its_direction": 1003,
    "body_must_match_layout": 1004,
    "string_must_be_utf8": 1005,
    "value_must_be_in_range": 1006,
    "payload_must_be_a_msgpack_array": 1007,
    "version_must_be_supported": 1100,
    "login_must_come_first": 1101,
    "login_must_come_once": 1102,
    "signature_must_verify": 1103,
    "account_must_exist_for_login": 1104,
    "public_key_must_match_account": 1105,
    "operator_key_required": 1106,
    "account_login_required": 1107,
    "sessions_must_not_exceed_max": 1108,
    "replay_must_be_within_window": 1109,
    "messages_must_not_exceed_rate": 1200,
    "reader_must_keep_up": 1201,
    "heartbeat_must_arrive": 1202,
    "node_must_be_ready": 1300,
    "query_index_not_reached": 1301,
    "outcome_unknown": 1302,
    "reports_must_be_continuous": 1303,
    "subscriptions_must_not_exceed_max": 1400,
}


def test_message_types_directions_and_sizes_are_stable() -> None:
    actual = {
        cls.__name__: (cls.TYPE, cls.DIRECTION.name, cls.LAYOUT.size) for cls in m.MESSAGES.values()
    }
    assert actual == EXPECTED_MESSAGES


def test_error_codes_are_stable_and_clear_of_the_engine_reject_range() -> None:
    assert {code.rule: int(code) for code in ErrorCode} == EXPECTED_ERROR_CODES
    assert max(Reject) < min(ErrorCode) and max(ErrorCode) < 2**16


# -- Execution reports ------------------------------------------------------------------------

ACCOUNT_EVENTS = [
    EVENTS.by_code[code] for code in sorted(EVENTS.by_code) if code in ACCOUNT_EVENT_CODES
]

# The largest value the engine can put in each field, by name (docs/engine.md section 6).
LARGEST_BY_FIELD = {
    "account_id": constants.id_max,
    "account_seq": constants.id_max,
    "order_id": constants.id_max,
    "client_order_id": constants.id_max,
    "previous_client_order_id": constants.id_max,
    "related_id": constants.id_max,
    "trade_id": constants.id_max,
    "market_id": constants.markets_max,
    "side": max(Side),
    "order_type": max(OrderType),
    "time_in_force": max(TimeInForce),
    "price": constants.price_max_cents,
    "quantity": constants.order_quantity_max,
    "leaves_quantity": constants.order_quantity_max,
    "cancelled_quantity": constants.order_quantity_max,
    "flags": int(OrderFlag.POST_ONLY | OrderFlag.REDUCE_ONLY),
    "expire_time_ms": constants.time_ms_max,
    "command_code": max(COMMANDS.by_code),
    "fee": constants.account_cash_max_cents,
    "liquidity": max(Liquidity),
    "position": constants.position_limit_max,
    "cancelled_orders": constants.open_orders_per_account_max,
    "priority_kept": 1,
    "amount": constants.deposit_amount_max_cents,
    "cash": constants.account_cash_max_cents,
    "payout": constants.position_limit_max * constants.contract_payout_cents,
    "name": "n" * constants.account_name_length_max,
    "public_key": b"\xff" * constants.public_key_length,
    "bank_reference": "~" * constants.bank_reference_length_max,
    "order_group_id": constants.order_group_id_max,
    "contract_limit": constants.order_group_contract_limit_max,
    "window_ms": constants.order_group_window_ms_max,
    "filled": constants.id_max,
    "event_id": constants.events_max,
    "released": constants.exchange_money_max_cents,
    "mark": constants.contract_payout_cents,
    "variation": constants.account_cash_max_cents,
    "margin": constants.account_cash_max_cents,
    "triggered": 1,
}
LARGEST_REASON = {
    "CommandRejected": max(Reject),
    "OrderCancelled": max(CancelReason),
    "PositionReduced": 2,  # deleveraged
}


def extreme_events(event_class: type) -> list[Any]:
    """The event at the engine's largest values, and at its smallest (0, an empty string,
    the most negative position)."""
    largest = {
        name: LARGEST_REASON[event_class.__name__] if name == "reason" else LARGEST_BY_FIELD[name]
        for name in event_class.FIELDS
    }
    largest = {name: int(v) if isinstance(v, int) else v for name, v in largest.items()}
    smallest = {
        name: -value if name == "position" else {int: 0, str: "", bytes: value}[type(value)]
        for name, value in largest.items()
    }
    return [event_class(**largest), event_class(**smallest)]


def through_the_codec(report: m.Message) -> m.Message:
    server, client = Connection(SERVER), Connection(CLIENT)
    client.receive_data(server.send(report))
    message = client.next_event()
    assert client.next_event() is NEED_DATA
    assert isinstance(message, m.Message)
    return message


@pytest.mark.parametrize("event_class", ACCOUNT_EVENTS, ids=lambda cls: cls.__name__)
def test_every_account_event_converts_to_its_report_and_back(event_class: type) -> None:
    for event in extreme_events(event_class):
        report = m.report_from_event(event.to_canonical(), applied_index=2**64 - 1)
        assert type(report) is m.REPORTS[event_class.CODE]
        assert (report.account_seq, report.applied_index) == (event.account_seq, 2**64 - 1)
        for name in event_class.FIELDS[2:]:
            assert getattr(report, name) == getattr(event, name), name
        received = through_the_codec(report)
        assert received == report
        back = m.event_from_report(received, event.account_id)
        assert EVENTS.from_canonical(back) == event


def test_every_account_event_of_a_real_engine_run_converts() -> None:
    engine = Engine()
    converted: set[str] = set()
    for index, batch in enumerate(random_log(seed=7), start=1):
        for event in engine.apply(batch).events:
            if event[0] not in ACCOUNT_EVENT_CODES or event[1] == 0:
                continue  # market events, and rejects of commands that name no account
            report = through_the_codec(m.report_from_event(event, index))
            assert m.event_from_report(report, event[1]) == event
            converted.add(type(report).__name__)
    assert converted == {cls.__name__ for cls in m.REPORTS.values()}  # the log reaches them all


def test_only_account_events_have_reports() -> None:
    market_event = (35, 1, 1, 1, 40, 10, 1)  # LevelUpdated
    with pytest.raises(LocalProtocolError) as caught:
        m.report_from_event(market_event, 1)
    assert caught.value.code == ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN
    with pytest.raises(LocalProtocolError):
        m.report_from_event((1, 7, 1, 900), 1)  # an OrderAccepted without most of its fields
    assert set(m.REPORTS) == {code for code in EVENTS.by_code if code in ACCOUNT_EVENT_CODES}


# -- Order entry becomes engine commands ------------------------------------------------------


@pytest.mark.parametrize("cls", m.ORDER_ENTRY, ids=lambda cls: cls.__name__)
def test_each_order_entry_message_becomes_its_engine_command(cls: type[m.Message]) -> None:
    # Distinct values per field, so that a field sent to the wrong place shows.
    values = {name: 10 + position for position, name in enumerate(cls.FIELDS)}
    message = cls(**values)
    command = COMMANDS.from_canonical(m.command_from_order_entry(message, account_id=7))
    assert type(command).__name__ == cls.__name__
    assert command.account_id == 7
    for name, value in values.items():
        assert getattr(command, name) == value, name


# -- The login signature ----------------------------------------------------------------------


def test_a_login_signature_binds_the_nonce_and_every_field() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = key.public_key()
    nonce = bytes(32)
    unsigned = m.Login(1, 7, public.public_bytes_raw(), 12, 1, bytes(64))
    signed = m.login_signed_bytes(nonce, unsigned)
    assert signed == m.LOGIN_SIGNATURE_CONTEXT + nonce + unsigned.encode_body()[:51]
    login = dataclasses.replace(unsigned, signature=key.sign(signed))
    public.verify(login.signature, m.login_signed_bytes(nonce, login))  # the signature is excluded
    changes = {"protocol_version": 2, "account_id": 8, "next_seq": 13, "flags": 0}
    for name, value in changes.items():
        altered = dataclasses.replace(login, **{name: value})
        with pytest.raises(InvalidSignature):
            public.verify(login.signature, m.login_signed_bytes(nonce, altered))
    with pytest.raises(InvalidSignature):
        public.verify(login.signature, m.login_signed_bytes(b"\x01" * 32, login))


# -- Operator messages ------------------------------------------------------------------------


def test_an_operator_result_too_big_for_a_frame_keeps_its_first_events_and_the_count() -> None:
    events = [(2, 0, 0, 66, 0, 1, 612)] + [
        (10, account, 5, 1, -(10**8), 10**10, 10**12) for account in range(1, 100_001)
    ]
    result = m.OperatorResult.of(request_id=3, applied_index=9, events=events)
    listed = result.event_values()
    assert result.event_count == len(events) > len(listed) > 1_000
    assert listed == tuple(events[: len(listed)])
    received = through_the_codec(result)
    assert received == result
    small = m.OperatorResult.of(3, 9, events[:2])
    assert (small.event_count, small.event_values()) == (2, tuple(events[:2]))


# -- Purity -----------------------------------------------------------------------------------

CODEC_MODULES = ("codec.py", "codes.py", "limits.py", "messages.py")
ALLOWED_IMPORTS = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "enum",
    "re",
    "struct",
    "typing",
    "msgpack",
    "evx.core",
}


@pytest.mark.parametrize("name", CODEC_MODULES)
def test_the_codec_modules_do_no_io(name: str) -> None:
    """Sans-IO: no sockets, clocks, threads, trio or logging; the shell owns all of those."""
    path = Path(evx.gateway.__file__).parent / name
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add(node.module or "")
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
