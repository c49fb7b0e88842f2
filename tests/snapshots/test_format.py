"""A snapshot's bytes: every kind of damage is refused, by the check it fails, and a state
whose money does not add up is refused by the audit and reported by `verify` by name."""

from __future__ import annotations

import random
import struct

import pytest

from evx.core import Engine
from evx.core.state import STATE_VERSION, encode_state
from evx.gateway.exchange import ExchangeMachine
from evx.snapshots import format as snapshot_format
from evx.snapshots.format import SnapshotError, SnapshotHeader
from evx.snapshots.verify import CHECKS, load, verify
from support.snapshot_logs import apply_through, journal_entries, snapshot_at

SEED = 20261125


@pytest.fixture(scope="module")
def traded() -> tuple[Engine, bytes, list]:
    entries = journal_entries(SEED, batches=60)
    machine = ExchangeMachine()
    apply_through(machine, entries, entries[-1][1])
    assert len(machine.engine.orders) >= 3 and machine.engine.next_trade_id > 10
    return machine.engine, snapshot_at(machine.engine, entries, entries[-1][1]), entries


def _reencode(blob: bytes, **changes: object) -> bytes:
    """The same state under a changed header, with a correct checksum."""
    snapshot = snapshot_format.parse(blob)
    fields = {name: getattr(snapshot.header, name) for name in SnapshotHeader.__slots__}
    fields.update(changes)
    return snapshot_format.encode(SnapshotHeader(**fields), bytes(snapshot.state))


def test_a_snapshot_loads_to_the_same_state(traded: tuple[Engine, bytes, list]) -> None:
    engine, blob, entries = traded
    header, loaded = load(blob)
    assert encode_state(loaded) == encode_state(engine)
    assert loaded.state_hash == engine.state_hash == header.state_hash
    assert (header.index, header.term) == (entries[-1][1], 1)
    assert header.entry_last == entries[-1] and header.entry_before == entries[-2]
    assert header.orders == len(engine.orders)
    assert verify(blob).ok


def test_every_flipped_bit_is_refused(traded: tuple[Engine, bytes, list]) -> None:
    _, blob, _ = traded
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    positions = [rng.randrange(len(blob)) for _ in range(300)]
    positions += [*range(24), len(blob) - 1]  # the preamble, and the checksum itself
    for position in positions:
        damaged = bytearray(blob)
        damaged[position] ^= 1 << rng.randrange(8)
        with pytest.raises(SnapshotError) as refused:
            load(bytes(damaged))
        assert refused.value.check in ("format", "length", "checksum"), position


def test_a_truncated_snapshot_is_refused(traded: tuple[Engine, bytes, list]) -> None:
    _, blob, _ = traded
    for length in (0, 5, 8, 16, 100, len(blob) // 2, len(blob) - 33, len(blob) - 1):
        with pytest.raises(SnapshotError) as refused:
            load(blob[:length])
        assert refused.value.check in ("format", "length", "checksum"), length
    check = verify(blob[: len(blob) // 2])
    assert not check.ok and check.failed()[0].name == "checksum"


def test_another_format_version_is_refused(traded: tuple[Engine, bytes, list]) -> None:
    _, blob, _ = traded
    body = bytearray(blob[: -snapshot_format.CHECKSUM_BYTES])
    struct.pack_into("<I", body, 8, snapshot_format.FORMAT_VERSION + 1)
    with pytest.raises(SnapshotError) as refused:
        load(snapshot_format.seal(bytes(body)))
    assert refused.value.check == "format"
    assert "format version 2" in refused.value.detail


def test_another_state_version_is_refused(traded: tuple[Engine, bytes, list]) -> None:
    _, blob, _ = traded
    with pytest.raises(SnapshotError) as refused:
        load(_reencode(blob, state_version=STATE_VERSION + 1))
    assert refused.value.check == "state_version"


def test_a_state_that_is_not_its_header_hash_is_refused(
    traded: tuple[Engine, bytes, list],
) -> None:
    _, blob, _ = traded
    with pytest.raises(SnapshotError) as refused:
        load(_reencode(blob, state_hash=bytes(32)))
    assert refused.value.check == "state_hash"
    report = verify(_reencode(blob, state_hash=bytes(32)))
    assert [check.name for check in report.failed()] == ["state_hash"]


def test_money_that_does_not_add_up_is_refused_and_named(
    traded: tuple[Engine, bytes, list],
) -> None:
    _, _, entries = traded
    machine = ExchangeMachine()
    apply_through(machine, entries, entries[-1][1])
    account = next(iter(machine.engine.accounts.values()))
    account.cash += 1  # a cent from nowhere: written by a bug, with a valid checksum
    blob = snapshot_at(machine.engine, entries, entries[-1][1])
    with pytest.raises(SnapshotError) as refused:
        load(blob)
    assert refused.value.check == "money_conserved"
    header, _ = load(blob, full_audit=False)  # the cheap checks cannot see it
    assert header.index == entries[-1][1]
    report = verify(blob)
    assert not report.ok
    assert [check.name for check in report.failed()] == ["money_conserved"]
    assert {check.name for check in report.checks} == set(CHECKS)
