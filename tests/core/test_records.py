"""Commands and events: stable codes, canonical forms that round-trip, strict decoding."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from evx.core import (
    COMMANDS,
    EVENTS,
    Batch,
    NewOrder,
    RecordError,
    Side,
    command_from_canonical,
    event_from_canonical,
)

# Codes are part of the log format: changing one breaks every stored log.
EXPECTED_COMMAND_CODES = {
    "NewOrder": 1,
    "CancelOrder": 2,
    "ReplaceOrder": 3,
    "MassCancel": 4,
    "SetOrderGroup": 5,
    "ResetOrderGroup": 6,
    "ConvertNo": 7,
    "CreateAccount": 32,
    "Deposit": 33,
    "Withdraw": 34,
    "CreateMarket": 64,
    "SetMarketStatus": 65,
    "SettleMarket": 66,
    "ConfigureMarket": 67,
    "CreateEvent": 68,
    "SettleEvent": 69,
    "SetMargins": 70,
    "MarkMarket": 71,
}
EXPECTED_EVENT_CODES = {
    "OrderAccepted": 1,
    "CommandRejected": 2,
    "OrderFilled": 3,
    "OrderCancelled": 4,
    "OrderReplaced": 5,
    "MassCancelled": 6,
    "AccountCreated": 7,
    "Deposited": 8,
    "Withdrawn": 9,
    "PositionSettled": 10,
    "OrderGroupUpdated": 11,
    "PositionsConverted": 12,
    "PayoutReleased": 13,
    "VariationMargin": 14,
    "PositionReduced": 15,
    "MarketCreated": 32,
    "MarketStatusChanged": 33,
    "MarketConfigured": 34,
    "LevelUpdated": 35,
    "TradePrinted": 36,
    "MarketSettled": 37,
    "MarketMarked": 38,
    "MarginsSet": 39,
    "EventCreated": 64,
    "EventSettled": 65,
}


def _sample(cls: type) -> object:
    values = {int: 7, str: "ref-1", bytes: b"k" * 32}
    return cls(*(values[t] for t in cls.TYPES))


def test_codes_are_stable() -> None:
    assert {c.__name__: code for code, c in COMMANDS.by_code.items()} == EXPECTED_COMMAND_CODES
    assert {c.__name__: code for code, c in EVENTS.by_code.items()} == EXPECTED_EVENT_CODES


@pytest.mark.parametrize(
    "cls", [*COMMANDS.by_code.values(), *EVENTS.by_code.values()], ids=lambda c: c.__name__
)
def test_every_record_round_trips_through_msgpack(cls: type) -> None:
    record = _sample(cls)
    assert dataclasses.is_dataclass(record)
    assert type(record).__slots__  # slotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.__setattr__(cls.FIELDS[0], 1)
    canonical = record.to_canonical()
    wire = msgpack.packb(canonical, use_bin_type=True)
    back = msgpack.unpackb(wire, raw=False)
    registry = COMMANDS if cls in COMMANDS.by_code.values() else EVENTS
    assert registry.from_canonical(back) == record
    assert registry.from_canonical(tuple(back)) == record


def test_enum_fields_are_written_as_plain_ints() -> None:
    canonical = NewOrder(1, 2, 3, Side.SELL_NO, 40, 5).to_canonical()
    assert all(type(value) is int for value in canonical)
    assert canonical[4] == 4


@pytest.mark.parametrize(
    "bad",
    [
        None,
        (),
        [],
        (999, 1),
        ("1", 1, 2),
        (1, 1, 2),  # too few fields
        (*NewOrder(1, 2, 3, 1, 40, 5).to_canonical(), 0),  # too many
        (1, 1, 2, 3, 1, 40, 5.0, 1, 1, 0, 2, 0, 0),  # a float
        (1, 1, 2, 3, 1, 40, True, 1, 1, 0, 2, 0, 0),  # a bool is not an int
        (32, b"name", b"k" * 32),  # bytes for str
    ],
)
def test_decoding_rejects_what_is_not_a_record(bad: object) -> None:
    with pytest.raises(RecordError):
        command_from_canonical(bad)


def test_event_decoding_is_strict_too() -> None:
    with pytest.raises(RecordError):
        event_from_canonical((35, 1, 1, 1, 40))


def test_batches_round_trip_as_log_entries() -> None:
    batch = Batch.of(1_234, [NewOrder(1, 2, 3, Side.BUY_YES, 40, 5)])
    assert Batch.decode(batch.encode()) == batch
    for garbage in (b"", b"\xc1", msgpack.packb([1]), msgpack.packb({"a": 1}), b"\x93\x01"):
        with pytest.raises(RecordError):
            Batch.decode(garbage)
