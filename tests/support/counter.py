"""A trivial replicated state machine for testing replication without the engine."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from evx.replication.raft import RaftConfig, RaftNode
from evx.tools.layout import free_ports  # re-exported: what every test uses for its ports


class CounterMachine:
    """Entries are b"add N": the counter grows by N. The hash chains every entry, so two
    nodes agree on it only if they applied the same entries in the same order."""

    def __init__(self) -> None:
        self.value = 0
        self._applied_index = 0
        self._state_hash = bytes(32)
        self.applied: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()

    def apply(self, index: int, entry: bytes) -> int:
        if entry.startswith(b"poison"):
            raise RuntimeError("a poisoned entry: applying it is a bug on every node")
        with self.lock:
            self.value += int(entry.split()[1])
            self._applied_index = index
            self._state_hash = hashlib.blake2b(self._state_hash + entry, digest_size=32).digest()
            self.applied.append((index, entry))
        return self.value

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def state_hash(self) -> bytes:
        return self._state_hash


SECRET = "test cluster secret"


def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, tmp_path: Path, size: int = 3) -> None:
        self.tmp_path = tmp_path
        self.addresses = [f"127.0.0.1:{port}" for port in free_ports(size)]
        self.machines: dict[str, CounterMachine] = {}
        self.nodes: dict[str, RaftNode] = {}
        for address in self.addresses:
            self.start(address)

    def start(self, address: str) -> RaftNode:
        machine = CounterMachine()
        config = RaftConfig(
            self_address=address,
            peer_addresses=tuple(a for a in self.addresses if a != address),
            journal_path=str(self.tmp_path / address.replace(":", "_") / "raft.journal"),
            secret=SECRET,
        )
        node = RaftNode(config, machine)
        self.machines[address] = machine
        self.nodes[address] = node
        return node

    def stop(self, address: str) -> None:
        self.nodes.pop(address).destroy_synchronous()

    def leader(self) -> str:
        found: list[str] = []

        def has_leader() -> bool:
            found[:] = [
                a for a, n in self.nodes.items() if (s := n.status()) and s.role == "leader"
            ]
            return len(found) == 1

        wait_for(has_leader, what="one leader")
        return found[0]

    def propose(self, address: str, entry: bytes) -> int:
        done = threading.Event()
        outcome: list[tuple[object, int]] = []

        def callback(result: object, error: int) -> None:
            outcome.append((result, error))
            done.set()

        self.nodes[address].propose(entry, callback)
        assert done.wait(15), "no answer to a proposal"
        result, error = outcome[0]
        assert error == 0, f"proposal failed with {error}"
        return result  # type: ignore[return-value]

    def converged(self) -> bool:
        views = {
            (m.applied_index, m.state_hash) for a, m in self.machines.items() if a in self.nodes
        }
        return len(views) == 1

    def close(self) -> None:
        for address in list(self.nodes):
            self.stop(address)
