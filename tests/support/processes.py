"""A real cluster for tests: one `evx node` process per node on 127.0.0.1.

Every process is started here and stopped here, by its own process id (SIGKILL for a crash,
SIGTERM for a clean stop); the fixture's teardown kills whatever is still running. Ports
come from the kernel, data from the test's temporary folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from evx.gateway.client import Client, query_status
from evx.gateway.keys import read_private_key
from evx.gateway.messages import Status
from evx.tools.config import SnapshotSettings
from evx.tools.layout import ClusterLayout, create
from evx.tools.node import split_address

from .counter import free_ports
from .nodes import open_market_with_traders


class ProcessCluster:
    def __init__(
        self, tmp_path: Path, size: int = 3, snapshots: SnapshotSettings | None = None
    ) -> None:
        ports = free_ports(3 * size)
        self.layout: ClusterLayout = create(
            tmp_path / "cluster",
            ports[:size],
            ports[size : 2 * size],
            snapshots=snapshots,
            feed_ports=ports[2 * size :],
        )
        self.configs = self.layout.configs()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def node_ids(self) -> list[int]:
        return [config.node_id for config in self.configs]

    def address(self, node_id: int) -> tuple[str, int]:
        return split_address(self.configs[node_id - 1].gateway)

    def feed_addresses(self, first: int | None = None) -> list[tuple[str, int]]:
        """Every node's market-data address, `first` first."""
        ids = self.node_ids
        if first is not None:
            ids = [first] + [node for node in ids if node != first]
        return [split_address(self.configs[node - 1].feed) for node in ids]

    def addresses(self, first: int | None = None) -> list[tuple[str, int]]:
        """Every node's order-entry address, `first` first."""
        ids = self.node_ids
        if first is not None:
            ids = [first] + [node for node in ids if node != first]
        return [self.address(node) for node in ids]

    def start(self, node_id: int) -> None:
        assert node_id not in self.processes or self.processes[node_id].poll() is not None
        config = self.configs[node_id - 1]
        log = open(self.layout.data_dir / f"node{node_id}.log", "ab")  # noqa: SIM115
        self.processes[node_id] = subprocess.Popen(
            [sys.executable, "-m", "evx.tools.cli", "node", "--config", str(config.path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def start_all(self) -> None:
        for node_id in self.node_ids:
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        """A crash: SIGKILL, nothing flushed that was not already on disk."""
        process = self.processes.pop(node_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for node_id in list(self.processes):
            process = self.processes.pop(node_id)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def exit_codes(self) -> dict[int, int | None]:
        return {node_id: process.poll() for node_id, process in self.processes.items()}

    def log(self, node_id: int) -> str:
        return (self.layout.data_dir / f"node{node_id}.log").read_text(errors="replace")

    # -- Waiting ---------------------------------------------------------------------------

    async def statuses(self, node_ids: list[int] | None = None) -> dict[int, Status | None]:
        result: dict[int, Status | None] = {}
        for node_id in node_ids or list(self.processes):
            host, port = self.address(node_id)
            try:
                result[node_id] = await query_status(host, port, timeout_s=1)
            except Exception:
                result[node_id] = None
        return result

    async def wait_leader(self, node_ids: list[int] | None = None, timeout_s: float = 30) -> int:
        with trio.fail_after(timeout_s):
            while True:
                statuses = await self.statuses(node_ids)
                leaders = {s.node_id for s in statuses.values() if s is not None and s.role == 2}
                followers_agree = all(
                    s is not None and s.leader_node_id in leaders for s in statuses.values()
                )
                if len(leaders) == 1 and followers_agree:
                    return leaders.pop()
                await trio.sleep(0.1)

    async def wait_converged(
        self, node_ids: list[int] | None = None, timeout_s: float = 30, min_index: int = 0
    ) -> Status:
        """Until the nodes show the same applied index (at least `min_index`) and hash."""
        with trio.fail_after(timeout_s):
            while True:
                statuses = await self.statuses(node_ids)
                views = {
                    (s.applied_index, s.state_hash) if s is not None else None
                    for s in statuses.values()
                }
                if len(views) == 1 and None not in views:
                    status = next(s for s in statuses.values() if s is not None)
                    if status.applied_index >= min_index:
                        return status
                await trio.sleep(0.1)

    # -- Clients ---------------------------------------------------------------------------

    def operator(self, first: int | None = None) -> Client:
        key = read_private_key(self.layout.operator_key_file)
        return Client(self.addresses(first), account_id=0, key=key)

    async def open_market(self, names: list[str], cash: int = 10_000_000) -> tuple[int, dict]:
        """Accounts with keys and cash, and one open market, through an operator session."""
        async with self.operator() as operator:
            return await open_market_with_traders(operator, names, cash, ticker="PROC-TEST")
