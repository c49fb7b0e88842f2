"""A node's snapshots: written by a forked child while the node goes on, committed only
when whole, never half-written whatever is killed when, and installed from a leader only
after every check."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE

from evx.core import Engine
from evx.gateway.exchange import ExchangeMachine
from evx.replication.journal import DurableJournal
from evx.snapshots import format as snapshot_format
from evx.snapshots.recovery import recover
from evx.snapshots.store import SnapshotStore
from evx.snapshots.verify import load, verify
from evx.snapshots.writer import EXIT_SNAPSHOT_FAILED, NodeSnapshots
from evx.tools.state_builder import build_resting_state
from support.snapshot_logs import CLUSTER, apply_through, journal_entries, snapshot_at

SEED = 20261125


class Stopped(Exception):  # noqa: N818 - the node's stop, not an error
    pass


def _stop(reason: str, code: int) -> None:
    raise Stopped(code, reason)


def _snapshots(folder: Path, machine: ExchangeMachine, **options: Any) -> NodeSnapshots:
    return NodeSnapshots(
        machine,
        folder / "snapshots.lmdb",
        folder / "snapshot.evx",
        node=CLUSTER[0],
        cluster=CLUSTER,
        stop=_stop,
        **options,
    )


def _serialize(snapshots: NodeSnapshots, last: tuple, before: tuple) -> None:
    """What pysyncobj does: call the serializer, then rename its temp file over the
    transfer file (serializer.py:84-93)."""
    tmp_file = str(snapshots.transfer_path) + ".tmp"
    snapshots.serialize(tmp_file, (last, before, set()))
    if os.path.exists(tmp_file):
        os.replace(tmp_file, snapshots.transfer_path)


def _finish(snapshots: NodeSnapshots, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = snapshots.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.005)
    raise AssertionError("the snapshot writer did not finish")


def _transfer_index(snapshots: NodeSnapshots) -> int:
    return snapshot_format.read_header(snapshots.transfer_path.read_bytes()).index


def test_the_snapshot_is_of_the_index_asked_while_the_node_goes_on(tmp_path: Path) -> None:
    entries = journal_entries(SEED, 80)
    machine = ExchangeMachine()
    apply_through(machine, entries, 40)
    at_40 = machine.state_hash
    snapshots = _snapshots(tmp_path, machine)
    assert snapshots.check() == SERIALIZER_STATE.NOT_SERIALIZING
    _serialize(snapshots, entries[39], entries[38])
    apply_through(machine, entries, 80)  # the node applies on while the child writes
    assert _finish(snapshots) == SERIALIZER_STATE.SUCCESS
    header, engine = load(snapshots.transfer_path.read_bytes())
    assert (header.index, engine.state_hash) == (40, at_40)
    with SnapshotStore(snapshots.store_path) as store:
        assert store.indexes() == [40]
        assert store.get(40) == snapshots.transfer_path.read_bytes()
    statistics = snapshots.statistics()
    assert statistics.taken == 1 and statistics.last_index == 40 and not statistics.writing
    assert statistics.last_pause_ms < statistics.last_write_s * 1000


def test_a_killed_writer_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    # A state big enough that the writer takes a while; one whole write first, timed.
    machine = ExchangeMachine(build_resting_state(100_000, seed=SEED), 1_000)
    snapshots = _snapshots(tmp_path, machine)
    started = time.monotonic()
    _serialize(snapshots, (b"y", 1_000, 1), (b"x", 999, 1))
    assert _finish(snapshots) == SERIALIZER_STATE.SUCCESS
    write_s = time.monotonic() - started
    previous = snapshots.transfer_path.read_bytes()
    kills = 0
    for attempt in range(20):  # until 5 writers were killed before they finished
        index = 1_001 + attempt
        _serialize(snapshots, (b"y", index, 1), (b"x", index - 1, 1))
        pid = snapshots.writer_pid
        assert pid is not None
        time.sleep(rng.uniform(0.0, 0.8 * write_s) / 2 ** (attempt - kills))  # shorter after a miss
        os.kill(pid, signal.SIGSTOP)  # frozen where it is (a writer already done is a zombie)
        deadline = time.monotonic() + 5
        while _process_state(pid) not in ("T", "Z") and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)
        if _finish(snapshots) == SERIALIZER_STATE.SUCCESS:
            # A loaded machine let this write finish before the kill: not a test of it.
            previous = snapshots.transfer_path.read_bytes()
            continue
        kills += 1
        assert snapshots.transfer_path.read_bytes() == previous
        assert not snapshots.next_path.exists()
        if kills == 5:
            break
    assert kills == 5
    # What a kill may not do is leave anything damaged: every snapshot in the store and the
    # transfer file verify whole, and recovery takes the newest. (A writer killed after its
    # store transaction committed leaves the store ahead of the transfer file, never behind.)
    assert verify(previous).ok
    with SnapshotStore(snapshots.store_path) as store:
        stored = store.indexes()
        for stored_index in stored:
            assert verify(store.get(stored_index)).ok, stored_index
    newest = stored[0]  # newest first
    assert snapshot_format.read_header(previous).index <= newest
    journal = DurableJournal(str(tmp_path / "raft.journal"))
    try:
        recovered = recover(snapshots.store_path, snapshots.transfer_path, journal)
        assert recovered.header is not None and recovered.header.index == newest
        assert recovered.engine is not None and len(recovered.engine.orders) == 100_000
        assert [entry[1] for entry in journal] == [newest - 1, newest]
    finally:
        journal._destroy()


def _process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat: R, S, T (stopped), Z (exited, not reaped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


_NODE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from evx.gateway.exchange import ExchangeMachine
    from evx.snapshots.writer import NodeSnapshots
    from evx.tools.state_builder import build_resting_state
    folder = Path(sys.argv[1])
    machine = ExchangeMachine(build_resting_state(150_000), 1_000)
    snapshots = NodeSnapshots(machine, folder / "snapshots.lmdb", folder / "snapshot.evx",
                              node="n", cluster=("n",))
    snapshots.serialize(str(folder / "snapshot.evx.tmp"), ((b"y", 1000, 1), (b"x", 999, 1), ()))
    print(snapshots.writer_pid, flush=True)
    time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killing_the_node_kills_its_snapshot_writer(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _NODE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as node:
        try:
            assert node.stdout is not None
            writer_pid = int(node.stdout.readline())
            assert _alive(writer_pid)
        finally:
            os.kill(node.pid, signal.SIGKILL)
            node.wait(10)
    deadline = time.monotonic() + 10
    while _alive(writer_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(writer_pid), "the writer outlived its node"
    if (tmp_path / "snapshots.lmdb").exists():
        with SnapshotStore(tmp_path / "snapshots.lmdb") as store:
            assert store.indexes() in ([], [1000])  # never a half-written one


def _leader_snapshot(entries: list, index: int) -> tuple[bytes, bytes]:
    machine = ExchangeMachine()
    apply_through(machine, entries, index)
    return snapshot_at(machine.engine, entries, index), machine.state_hash


def test_a_snapshot_from_the_leader_replaces_the_state(tmp_path: Path) -> None:
    entries = journal_entries(SEED, 60)
    blob, state_hash = _leader_snapshot(entries, 50)
    machine = ExchangeMachine()
    apply_through(machine, entries, 10)  # a follower far behind
    installed: list[tuple[int, Engine]] = []
    snapshots = _snapshots(tmp_path, machine, on_installed=lambda i, e: installed.append((i, e)))
    received = tmp_path / "snapshot.evx"
    received.write_bytes(blob)
    last, before, _ = snapshots.deserialize(str(received))
    assert (last, before) == (entries[49], entries[48])
    assert (machine.applied_index, machine.state_hash) == (50, state_hash)
    assert [index for index, _ in installed] == [50]
    with SnapshotStore(snapshots.store_path) as store:
        assert store.get(50) == blob
    assert snapshots.deserialize(str(received))[0] == entries[49]  # the same again: no reload
    assert len(installed) == 1


@pytest.mark.parametrize("damage", ["flipped", "truncated", "money"])
def test_a_bad_snapshot_from_the_leader_stops_the_node(tmp_path: Path, damage: str) -> None:
    entries = journal_entries(SEED, 60)
    blob, _ = _leader_snapshot(entries, 50)
    if damage == "flipped":
        blob = blob[:100] + bytes([blob[100] ^ 4]) + blob[101:]
    elif damage == "truncated":
        blob = blob[: len(blob) // 3]
    else:
        machine = ExchangeMachine()
        apply_through(machine, entries, 50)
        next(iter(machine.engine.accounts.values())).cash -= 7
        blob = snapshot_at(machine.engine, entries, 50)
    machine = ExchangeMachine()
    apply_through(machine, entries, 10)
    before = machine.state_hash
    snapshots = _snapshots(tmp_path, machine)
    received = tmp_path / "snapshot.evx"
    received.write_bytes(blob)
    with pytest.raises(Stopped) as stopped:
        snapshots.deserialize(str(received))
    assert stopped.value.args[0] == EXIT_SNAPSHOT_FAILED
    assert (machine.applied_index, machine.state_hash) == (10, before)
    assert not snapshots.store_path.exists() or SnapshotStore(snapshots.store_path).indexes() == []
