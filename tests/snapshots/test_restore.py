"""Snapshot, restore, continue: the same hashes as never snapshotting, wherever the cut.

The snapshot goes the whole way a node's does: written as a blob, committed to an LMDB
store, read back, checked and loaded, then the rest of the log applied to it.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from evx.gateway.exchange import ExchangeMachine
from evx.snapshots.store import SnapshotStore
from evx.snapshots.verify import load
from support.snapshot_logs import apply_through, journal_entries, snapshot_at


@settings(max_examples=25)
@given(seed=st.integers(1, 10**6), cut=st.floats(0.0, 1.0), batches=st.integers(5, 80))
def test_restore_and_continue_matches_never_snapshotting(
    tmp_path_factory, seed: int, cut: float, batches: int
) -> None:
    entries = journal_entries(seed, batches)
    last = entries[-1][1]
    at = 2 + int(cut * (last - 2))  # any index from the first batch to the last
    straight = ExchangeMachine()
    hashes = {}
    for command, index, term in entries:
        apply_through(straight, [(command, index, term)], index)
        hashes[index] = straight.state_hash

    machine = ExchangeMachine()
    apply_through(machine, entries, at)
    store = SnapshotStore(tmp_path_factory.mktemp("store") / "snapshots.lmdb")
    try:
        store.put(at, snapshot_at(machine.engine, entries, at))
        header, engine = load(store.get(at))
    finally:
        store.close()
    assert header.index == at
    restored = ExchangeMachine(engine, at)
    assert restored.state_hash == hashes[at]
    for command, index, term in entries[at:]:
        apply_through(restored, [(command, index, term)], index)
        assert restored.state_hash == hashes[index], f"seed={seed} cut at {at}, index {index}"
    assert restored.applied_index == last


def test_restore_keeps_what_the_hash_does_not_show(tmp_path: Path) -> None:
    """Beyond the hash: queries after a restore answer as on the engine never restored."""
    from evx.core import queries

    entries = journal_entries(77, 50)
    machine = ExchangeMachine()
    apply_through(machine, entries, 30)
    _, engine = load(snapshot_at(machine.engine, entries, 30))
    restored = ExchangeMachine(engine, 30)
    apply_through(machine, entries, entries[-1][1])
    apply_through(restored, entries, entries[-1][1])
    for account_id in machine.engine.accounts:
        assert queries.open_orders(restored.engine, account_id) == queries.open_orders(
            machine.engine, account_id
        )
        assert queries.balance(restored.engine, account_id) == queries.balance(
            machine.engine, account_id
        )
    for market_id in machine.engine.markets:
        assert queries.book(restored.engine, market_id) == queries.book(machine.engine, market_id)
