"""The same log gives the same events and hashes: in two processes with different hash
seeds, and across a snapshot taken anywhere in it (restore and continue)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evx.core import Engine, check_invariants, decode_state, encode_state, from_state, to_state
from support.logs import random_log

SEED = 20261125

_RUN_LOG = textwrap.dedent(
    """
    import hashlib, sys
    sys.path.insert(0, sys.argv[2])
    from support.logs import random_log
    from evx.core import Engine
    engine = Engine()
    events = hashlib.blake2b()
    for batch in random_log(int(sys.argv[1]), batches=300):
        applied = engine.apply(batch)
        events.update(repr(applied.events).encode())
    print(engine.state_hash.hex(), events.hexdigest(), engine.next_trade_id)
    """
)


def _run_in_process(seed: int, hash_seed: str) -> str:
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
    completed = subprocess.run(
        [sys.executable, "-c", _RUN_LOG, str(seed), tests_dir],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout.strip()


def test_two_processes_with_different_hash_seeds_agree() -> None:
    print(f"seed={SEED}")
    first = _run_in_process(SEED, "1")
    second = _run_in_process(SEED, "4242")
    assert first == second
    assert int(first.split()[2]) > 100, "the log must really trade"


def _replay(log: list, engine: Engine | None = None) -> tuple[Engine, list[bytes]]:
    engine = engine or Engine()
    hashes = []
    for batch in log:
        applied = engine.apply(batch)
        hashes.append(hashlib.blake2b(msgpack.packb(applied.events)).digest() + applied.state_hash)
    return engine, hashes


@given(seed=st.integers(0, 10**6), cut=st.integers(0, 150))
def test_snapshot_restore_continue_gives_the_same_hashes(seed: int, cut: int) -> None:
    print(f"seed={seed} cut={cut}")
    log = random_log(seed, batches=150)
    whole, whole_hashes = _replay(log)
    head, head_hashes = _replay(log[: cut + 1])
    restored = decode_state(encode_state(head))
    check_invariants(restored)
    assert to_state(restored) == to_state(head)
    continued, tail_hashes = _replay(log[cut + 1 :], restored)
    assert head_hashes + tail_hashes == whole_hashes
    assert to_state(continued) == to_state(whole)


def test_state_round_trip_is_exact_and_versioned() -> None:
    engine, _ = _replay(random_log(SEED, batches=120))
    assert engine.orders, "the log must leave resting orders to carry over"
    state = to_state(engine)
    assert to_state(from_state(state)) == state
    wrong = [99, *state[1:]]
    with pytest.raises(ValueError, match="version"):
        from_state(wrong)
