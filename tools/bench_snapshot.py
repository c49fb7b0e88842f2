"""`evx bench snapshot`: the snapshot pause and the recovery time, against state size.

Strategy: for each size, a state with that many resting orders is built by applying
commands (tools/state_builder.py; not timed). Then:

- pause: a NodeSnapshots takes snapshots of it exactly as a node does; the pause is how
  long `serialize` keeps the calling thread (the fork), the write is the child's whole
  run in the background. Several snapshots; the median is reported.
- recovery: the snapshot is put in a fresh node's data folder, and a new process runs the
  node's recovery on it, timing each step: read and checksum, decode and rebuild, audit.
- serving: a one-node cluster is started on that folder with `evx node`, and the time from
  the process start to its first answer with the snapshot's state (a Status at the
  snapshot's index) is measured from outside.

The figures go to docs/benchmarks.md with the command, the machine and the date.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from evx.gateway.client import query_status
from evx.gateway.exchange import ExchangeMachine
from evx.snapshots.store import SnapshotStore
from evx.snapshots.writer import NodeSnapshots

from . import logs
from .layout import create, free_ports
from .node import split_address
from .state_builder import build_resting_state

INDEX = 1_000  # the log index the benchmark's snapshots claim


@dataclass(frozen=True, slots=True)
class SnapshotBenchResult:
    orders: int
    accounts: int
    snapshot_bytes: int
    pause_ms_median: float
    pause_ms_max: float
    write_s_median: float
    recovery_read_s: float
    recovery_rebuild_s: float
    recovery_audit_s: float
    recovery_s: float
    serving_s: float  # process start to the first Status at the snapshot's index
    node_rss_mb: float


def run(orders: int, snapshots: int = 5, serve: bool = True) -> SnapshotBenchResult:
    logs.configure("warning", json=False)
    engine = build_resting_state(orders)
    gc.collect()
    gc.freeze()  # as a node does once it is ready (tools/node.py)
    machine = ExchangeMachine(engine, INDEX)
    with tempfile.TemporaryDirectory(prefix="evx-bench-snapshot-") as folder:
        base = Path(folder)
        writer = NodeSnapshots(
            machine,
            base / "snapshots.lmdb",
            base / "snapshot.evx",
            node="bench",
            cluster=("bench",),
        )
        pauses, writes = [], []
        for number in range(snapshots):
            index = INDEX + number
            tmp_file = str(writer.transfer_path) + ".tmp"
            writer.serialize(tmp_file, ((b"\x01", index, 1), (b"\x01", index - 1, 1), ()))
            with contextlib.suppress(FileNotFoundError):
                os.replace(tmp_file, writer.transfer_path)
            while writer.statistics().writing:
                writer.check()
                time.sleep(0.002)
            stats = writer.statistics()
            assert stats.taken == number + 1, "a benchmark snapshot failed"
            pauses.append(stats.last_pause_ms)
            writes.append(stats.last_write_s)
        blob = writer.transfer_path.read_bytes()
        del engine, machine
        recovery = _recovery_in_new_process(blob)
        serving_s, rss_mb = _serving_time(base, blob) if serve else (0.0, 0.0)
    return SnapshotBenchResult(
        orders=orders,
        accounts=recovery["accounts"],
        snapshot_bytes=len(blob),
        pause_ms_median=round(statistics.median(pauses), 2),
        pause_ms_max=round(max(pauses), 2),
        write_s_median=round(statistics.median(writes), 3),
        recovery_read_s=recovery["read_s"],
        recovery_rebuild_s=recovery["rebuild_s"],
        recovery_audit_s=recovery["audit_s"],
        recovery_s=recovery["total_s"],
        serving_s=serving_s,
        node_rss_mb=rss_mb,
    )


_RECOVER = textwrap.dedent(
    """
    import gc, json, sys, time
    from evx.core import audit
    from evx.snapshots import format as snapshot_format
    from evx.snapshots.verify import _check_against_header, _rebuild
    gc.disable()
    started = time.perf_counter()
    data = open(sys.argv[1], "rb").read()
    snapshot = snapshot_format.parse(data)
    read = time.perf_counter()
    engine = _rebuild(snapshot)
    _check_against_header(snapshot.header, engine)
    rebuilt = time.perf_counter()
    assert not audit(engine)
    audited = time.perf_counter()
    print(json.dumps({
        "accounts": len(engine.accounts),
        "read_s": round(read - started, 3),
        "rebuild_s": round(rebuilt - read, 3),
        "audit_s": round(audited - rebuilt, 3),
        "total_s": round(audited - started, 3),
    }))
    """
)


def _recovery_in_new_process(blob: bytes) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".evx") as file:
        file.write(blob)
        file.flush()
        completed = subprocess.run(
            [sys.executable, "-c", _RECOVER, file.name],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    return json.loads(completed.stdout)


def _serving_time(base: Path, blob: bytes) -> tuple[float, float]:
    raft_port, gateway_port = free_ports(2)
    layout = create(base / "cluster", [raft_port], [gateway_port])
    config = layout.configs()[0]
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with SnapshotStore(config.snapshot_store_path) as store:
        store.put(INDEX, blob)
    host, port = split_address(config.gateway)
    started = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-m", "evx.tools.cli", "node", "--config", str(config.path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as node:
        try:
            serving_s = trio.run(_first_status_at, host, port, started)
            rss_mb = _rss_mb(node.pid)
        finally:
            node.kill()
            node.wait(30)
    return serving_s, rss_mb


async def _first_status_at(host: str, port: int, started: float) -> float:
    """Until the node answers as leader (a one-node cluster) with the snapshot's state."""
    with trio.fail_after(600):
        while True:
            with contextlib.suppress(Exception):
                status = await query_status(host, port, timeout_s=1)
                if status.role == 2 and status.applied_index >= INDEX:
                    return round(time.perf_counter() - started, 3)
            await trio.sleep(0.02)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def summary(results: list[SnapshotBenchResult]) -> str:
    lines = [
        "| resting orders | snapshot | pause median (max) | write | recovery: read / rebuild"
        " / audit = total | serving after start | node RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.orders:,} | {r.snapshot_bytes / 1e6:.1f} MB | {r.pause_ms_median} ms "
            f"({r.pause_ms_max}) | {r.write_s_median} s | {r.recovery_read_s} / "
            f"{r.recovery_rebuild_s} / {r.recovery_audit_s} = {r.recovery_s} s | "
            f"{r.serving_s} s | {r.node_rss_mb} MB |"
        )
    return "\n".join(lines)


def as_json(results: list[SnapshotBenchResult]) -> str:
    return json.dumps([asdict(result) for result in results])
