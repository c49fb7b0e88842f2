"""Each gap of pysyncobj that evx closes: first the fault, shown on pysyncobj itself, then
the same situation with evx's node (../shared/notes/pysyncobj.md lists them)."""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import socket
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport, Transport

from evx.replication.journal import DurableJournal
from evx.replication.raft import RaftConfig, RaftNode, guard_append
from support.counter import Cluster, CounterMachine, free_ports

SECRET = "gap test secret"
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- 1. The journal is never flushed --------------------------------------------------------


def test_fault_pysyncobj_file_journal_never_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda fd: flushes.append("fsync"))
    monkeypatch.setattr(os, "fdatasync", lambda fd: flushes.append("fdatasync"), raising=False)
    original_flush = mmap.mmap.flush

    class CountingMmap(mmap.mmap):
        def flush(self, *args: Any) -> Any:
            flushes.append("msync")
            return original_flush(self, *args)

    monkeypatch.setattr(mmap, "mmap", CountingMmap)
    journal = FileJournal(str(tmp_path / "pysyncobj.journal"))
    for index in range(1, 20):
        journal.add(b"entry", index, 1)
    journal.setCurrentTerm(1, None)  # even term and vote: replaced, never synced
    journal.onOneSecondTimer()
    flushed_while_running = list(flushes)
    journal._destroy()  # it flushes only here, at shutdown
    assert flushed_while_running == [], "pysyncobj flushes now: the note is out of date"


def test_closed_every_acknowledgement_and_self_count_comes_after_a_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a live three-node cluster, no node sends `next_node_idx` (its acknowledgement)
    while its journal holds unsynced entries, and no leader starts a tick (where it counts
    its own copy toward the commit) with unsynced entries."""
    violations: list[str] = []
    original_send = TCPTransport.send
    original_tick = SyncObj._onTick

    def send(self: TCPTransport, node: Any, message: Any) -> bool:
        acknowledgement = type(message) is dict and message.get("type") == "next_node_idx"
        if acknowledgement and self._syncObj.journal.dirty:
            violations.append("acknowledged unsynced entries")
        return original_send(self, node, message)

    def on_tick(self: SyncObj, *args: Any) -> None:
        if self._isLeader() and self.journal.dirty:
            violations.append("leader counted an unsynced copy")
        original_tick(self, *args)

    monkeypatch.setattr(TCPTransport, "send", send)
    monkeypatch.setattr(SyncObj, "_onTick", on_tick)
    cluster = Cluster(tmp_path)
    try:
        cluster.leader()
        for number in range(40):
            cluster.propose(cluster.addresses[number % 3], b"add 1")
        syncs = [cluster.nodes[a].journal.statistics().syncs for a in cluster.addresses]
    finally:
        cluster.close()
    assert violations == []
    assert all(count > 0 for count in syncs), syncs


# -- 2. Followers truncate entries they already hold ----------------------------------------


class _Wire(Transport):
    """A transport that delivers nothing: the test hands messages in and reads replies."""

    def __init__(self) -> None:
        super().__init__(None, None, [])
        self.sent: list[tuple[Any, Any]] = []

    def send(self, node: Any, message: Any) -> bool:
        self.sent.append((node, message))
        return True


def _follower() -> tuple[SyncObj, _Wire, TCPNode]:
    wire = _Wire()
    leader = TCPNode("127.0.0.1:1")
    node = SyncObj(
        "127.0.0.1:2",
        ["127.0.0.1:1", "127.0.0.1:3"],
        SyncObjConf(autoTick=False, appendEntriesUseBatch=True),
        transport=wire,
    )
    return node, wire, leader


def _append(prev: int, prev_term: int, entries: list[tuple[bytes, int, int]]) -> dict:
    return {
        "type": "append_entries",
        "term": 1,
        "commit_index": 1,
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
        "entries": entries,
    }


def _log_indexes(node: SyncObj) -> list[int]:
    return [entry[1] for entry in node._SyncObj__raftLog]


def _entries(first: int, last: int) -> list[tuple[bytes, int, int]]:
    return [(b"\x00cmd %d" % index, index, 1) for index in range(first, last + 1)]


def test_fault_pysyncobj_follower_truncates_entries_it_already_holds() -> None:
    node, wire, leader = _follower()
    try:
        wire._onMessageReceived(leader, _append(1, 0, _entries(2, 6)))
        assert _log_indexes(node) == [1, 2, 3, 4, 5, 6]
        assert wire.sent[-1][1]["next_node_idx"] == 7  # acknowledged through 6
        # A resend of entries 2-3 (the leader's next index went back after an early
        # answer): nothing conflicts, yet pysyncobj cuts 4-6, which it acknowledged.
        wire._onMessageReceived(leader, _append(1, 0, _entries(2, 3)))
        assert _log_indexes(node) == [1, 2, 3], "pysyncobj no longer truncates here"
    finally:
        node._doDestroy()


def test_closed_the_guard_keeps_held_entries_and_cuts_only_at_a_conflict() -> None:
    node, wire, leader = _follower()
    journal = node._SyncObj__raftLog

    def deliver(message: dict) -> None:
        guarded = guard_append(journal, message)
        if guarded is not None:
            wire._onMessageReceived(leader, guarded)

    try:
        deliver(_append(1, 0, _entries(2, 6)))
        deliver(_append(1, 0, _entries(2, 3)))  # the same resend: dropped, nothing cut
        assert _log_indexes(node) == [1, 2, 3, 4, 5, 6]
        deliver(_append(1, 0, _entries(2, 8)))  # overlaps then extends: only 7-8 added
        assert _log_indexes(node) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert wire.sent[-1][1]["next_node_idx"] == 9
        conflicting = [*_entries(2, 4), (b"\x00other", 5, 2)]  # index 5 from term 2
        message = _append(1, 0, conflicting)
        message["term"] = 2
        deliver(message)  # a real conflict at 5: Raft cuts from there
        assert [e[1:] for e in journal][-2:] == [(4, 1), (5, 2)]
        assert _log_indexes(node) == [1, 2, 3, 4, 5]
    finally:
        node._doDestroy()


# -- 3. An exception in apply wedges the node -----------------------------------------------


class _Wedging(SyncObj):
    def __init__(self) -> None:
        self.calls = 0
        super().__init__(f"127.0.0.1:{free_ports(1)[0]}", [], SyncObjConf(autoTick=False))

    @replicated
    def poison(self) -> None:
        self.calls += 1
        raise RuntimeError("a bug in the state machine")


def test_fault_pysyncobj_retries_a_failing_entry_forever() -> None:
    node = _Wedging()
    try:
        node.poison()
        deadline = time.monotonic() + 10
        while node.calls < 5 and time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):  # each tick raises again
                node.doTick(0.01)
        assert node.calls >= 5, "pysyncobj stopped retrying: the note is out of date"
        assert node.raftLastApplied < node.raftCommitIndex
    finally:
        node._doDestroy()


_POISON_NODE = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, sys.argv[2])
    from support.counter import Cluster, CounterMachine, free_ports
    from evx.replication.raft import RaftConfig, RaftNode
    address = "127.0.0.1:%d" % free_ports(1)[0]
    node = RaftNode(RaftConfig(address, (), sys.argv[1], secret="s"), CounterMachine())
    node.propose(b"add 1", lambda result, error: None)
    node.propose(b"poison", lambda result, error: None)
    threading.Event().wait(30)
    print("still running: the node did not stop")
    """
)


def test_closed_a_failing_entry_stops_the_node(tmp_path: Path) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-c", _POISON_NODE, str(tmp_path / "journal"), TESTS_DIR],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 70, completed.stdout + completed.stderr
    assert "applying log entry" in completed.stderr
    assert "a poisoned entry" in completed.stderr
    assert time.monotonic() - started < 25


# -- 4. A cut-off leader goes on acting as leader -------------------------------------------


def _leader_of(nodes: list[SyncObj]) -> SyncObj:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        leaders = [node for node in nodes if node._isLeader()]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.05)
    raise AssertionError("no leader")


def _cut_off_leader(nodes: list[SyncObj], wait_s: float) -> bool:
    """Stop the leader's two followers; True if it still calls itself leader after."""
    leader = _leader_of(nodes)
    for node in nodes:
        if node is not leader:
            node.destroy_synchronous()
    time.sleep(wait_s)
    still = leader._isLeader()
    leader.destroy_synchronous()
    return still


def test_fault_pysyncobj_leader_without_majority_stays_leader() -> None:
    assert SyncObjConf().leaderFallbackTimeout == 30.0
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    conf = {"raftMinTimeout": 0.3, "raftMaxTimeout": 0.6, "appendEntriesPeriod": 0.05}
    nodes = [SyncObj(a, [b for b in addresses if b != a], SyncObjConf(**conf)) for a in addresses]
    assert _cut_off_leader(nodes, wait_s=4.0), "it stepped down: the note is out of date"


def test_closed_a_cut_off_leader_steps_down_within_seconds(tmp_path: Path) -> None:
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    nodes = [
        RaftNode(
            RaftConfig(
                a,
                tuple(b for b in addresses if b != a),
                str(tmp_path / a.replace(":", "_")),
                secret=SECRET,
            ),
            CounterMachine(),
        )
        for a in addresses
    ]
    assert RaftConfig(addresses[0], (), "j", secret="s").leader_fallback_s <= 3.0
    assert not _cut_off_leader(nodes, wait_s=4.0)


# -- 5. Without a password, the peer port runs any pickle -----------------------------------


class _Marker:
    """Unpickling this creates a file: proof that the receiver ran code it was sent."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def _send_pickle(port: int, payload: object) -> None:
    data = zlib.compress(pickle.dumps(payload), 3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(struct.pack("i", len(data)) + data)
        time.sleep(0.5)


def test_fault_pysyncobj_without_password_unpickles_what_it_is_sent(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    node = SyncObj(f"127.0.0.1:{port}", [], SyncObjConf())
    marker = tmp_path / "ran-code"
    try:
        node.waitBinded()
        _send_pickle(port, _Marker(str(marker)))
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        node.destroy_synchronous()
    assert marker.exists(), "the pickle did not run: the note is out of date"


def test_closed_with_the_cluster_secret_the_same_pickle_is_refused(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    node = RaftNode(
        RaftConfig(address, (), str(tmp_path / "journal"), secret=SECRET), CounterMachine()
    )
    marker = tmp_path / "ran-code"
    try:
        node.waitBinded()
        _send_pickle(port, _Marker(str(marker)))
        time.sleep(0.5)
        assert node.tick_thread_alive()
    finally:
        node.destroy_synchronous()
    assert not marker.exists()


def test_the_durable_journal_is_what_an_evx_node_uses(tmp_path: Path) -> None:
    node = RaftNode(
        RaftConfig(f"127.0.0.1:{free_ports(1)[0]}", (), str(tmp_path / "journal"), secret=SECRET),
        CounterMachine(),
    )
    try:
        assert isinstance(node._SyncObj__raftLog, DurableJournal)
        assert node._SyncObj__raftLog is node.journal
    finally:
        node.destroy_synchronous()


_FAILING_DISK_NODE = textwrap.dedent(
    """
    import os, sys, threading
    sys.path.insert(0, sys.argv[2])
    from support.counter import CounterMachine, free_ports
    from evx.replication.raft import RaftConfig, RaftNode
    real = os.fdatasync
    calls = [0]
    def fdatasync(fd):
        calls[0] += 1
        if calls[0] > 1:
            raise OSError(5, "Input/output error")
        real(fd)
    os.fdatasync = fdatasync
    address = "127.0.0.1:%d" % free_ports(1)[0]
    node = RaftNode(RaftConfig(address, (), sys.argv[1], secret="s"), CounterMachine())
    for number in range(50):
        node.propose(b"add 1", lambda result, error: None)
        threading.Event().wait(0.05)
    threading.Event().wait(30)
    print("still running: the node went on after a failed flush")
    """
)


def test_closed_a_failed_journal_flush_stops_the_node(tmp_path: Path) -> None:
    """pysyncobj catches every exception of a tick and retries it; a flush that failed
    must not be retried (the data may be gone from the page cache): the node stops."""
    completed = subprocess.run(
        [sys.executable, "-c", _FAILING_DISK_NODE, str(tmp_path / "journal"), TESTS_DIR],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 71, completed.stdout + completed.stderr
    assert "flushing the journal" in completed.stderr
