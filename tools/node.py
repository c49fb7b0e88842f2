"""`evx node --config FILE`: one node of the cluster, in one process.

Strategy: compose the parts in the one order that loses nothing. The data folder is
locked first (a second process on the same folder would cut the live journal). Recovery
then loads the newest good snapshot and fits the journal to it (snapshots/recovery.py),
before anything can be served. Then the engine's state machine and the bridge, the
gateway subscribed to the applied stream, and only then the Raft node, whose tick thread
starts applying the journal after the snapshot at once (that replay rebuilds the engine
and every account's report window). Then the batcher and the order-entry port.
SIGTERM or SIGINT stops the node: the port closes, pysyncobj stops and syncs its journal.
An exception while applying an entry never reaches here: the tick thread stops the process
(replication/raft.py).

The garbage collector is tuned once the journal is replayed: long-lived state is frozen
out of the young generations, and collections run less often, so a pause lands on an
order rarely (docs/benchmarks.md measures the engine with the collector off).
"""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from evx.core import Engine
from evx.gateway.exchange import ExchangeMachine, StateInstalled, account_seqs
from evx.gateway.feed_server import FeedServer
from evx.gateway.server import Gateway, NodeView
from evx.replication.batcher import Batcher, BatcherConfig
from evx.replication.bridge import Bridge
from evx.replication.control import NodeControl
from evx.replication.raft import (
    EXIT_GATEWAY_FAILED,
    RaftConfig,
    RaftNode,
    open_journal,
    stop_node,
)
from evx.snapshots.format import SnapshotHeader
from evx.snapshots.recovery import REFUSED_NAME, audit_in_background, recover, refuse
from evx.snapshots.writer import EXIT_SNAPSHOT_FAILED, NodeSnapshots

from . import logs
from . import metrics as metrics_module
from .config import NodeConfig
from .metrics import NodeMetrics

log = logs.get("evx.node")


@dataclass
class RunningNode:
    """A started node's parts, for tests and tools that run nodes in-process."""

    config: NodeConfig
    machine: ExchangeMachine
    raft: RaftNode
    snapshots: NodeSnapshots
    gateway: Gateway
    batcher: Batcher
    gateway_port: int
    stop: Callable[[], None]
    feed: FeedServer | None = None
    feed_port: int = 0  # 0: no feed


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def run_node(
    config: NodeConfig,
    *,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[RunningNode] = trio.TASK_STATUS_IGNORED,
) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_data_dir(config)
    secret = config.secret()
    raft_config = RaftConfig(
        self_address=config.raft,
        peer_addresses=tuple(peer.raft for peer in config.peers),
        journal_path=str(config.journal_path),
        secret=secret,
        flush_journal=config.raft_settings.flush_journal,
        transfer_path=str(config.snapshot_transfer_path),
        snapshot_every_entries=config.snapshots.every_entries,
        snapshot_every_s=config.snapshots.every_s,
    )
    journal = open_journal(raft_config)
    recovered = recover(
        config.snapshot_store_path,
        config.snapshot_transfer_path,
        journal,
        full_audit=False,
        freeze=True,
    )
    # The invariants are audited in a forked child while the node starts serving (the
    # integrity checks have passed already): forked now, before any other thread exists.
    auditor = None
    if config.snapshots.full_audit and recovered.header is not None:
        assert recovered.engine is not None
        auditor = (audit_in_background(recovered.engine), recovered.header)
    machine = ExchangeMachine(
        recovered.engine, recovered.header.index if recovered.header is not None else 0
    )
    bridge = Bridge(
        trio.lowlevel.current_trio_token(),
        on_failure=lambda where: stop_node(f"{where} failed", EXIT_GATEWAY_FAILED),
    )
    node_view = NodeView(
        node_id=config.node_id,
        node_ids_by_address={node.raft: node.node_id for node in config.all_nodes()},
    )

    def is_leader() -> bool:
        status = raft.status()
        return status is not None and status.role == "leader"

    batcher = Batcher(
        bridge,
        BatcherConfig(
            node_id=config.node_id,
            window_ms=config.batching.batch_window_ms,
            commands_max=config.batching.batch_commands_max,
            clock_tick_ms=config.batching.clock_tick_ms,
            propose_timeout_s=config.limits.proposal_timeout_s,
        ),
        is_leader=is_leader,
    )
    gateway = Gateway(machine, batcher, node_view, config.limits, config.operator_keys)
    bridge.on_applied(gateway.on_applied)
    feed = None
    if config.feed:
        feed = FeedServer(machine, config.node_id, config.feed_limits)
        bridge.on_applied(feed.on_applied)
    raft_built: list[RaftNode] = []

    def installed(index: int, engine: Engine) -> None:  # tick thread
        bridge.applied_in_raft_thread(index, StateInstalled(index, account_seqs(engine)))

    snapshots = NodeSnapshots(
        machine,
        config.snapshot_store_path,
        config.snapshot_transfer_path,
        node=config.raft,
        cluster=tuple(node.raft for node in config.all_nodes()),
        keep=config.snapshots.keep,
        full_audit=config.snapshots.full_audit,
        loaded=recovered.header,
        on_installed=installed,
    )
    metrics = NodeMetrics(
        config.node_id,
        gateway,
        batcher,
        lambda: raft_built[0] if raft_built else None,
        snapshots,
        feed,
    )
    bridge.on_applied(metrics.on_applied)  # before the Raft node starts: it sees the replay
    metrics_server = None
    if config.metrics:  # bound before anything starts: a port in use stops the start cleanly
        try:
            metrics_server = metrics_module.serve(metrics, config.metrics)
        except OSError as error:
            os.close(lock_fd)
            raise MetricsPortError(f"cannot serve metrics on {config.metrics}: {error}") from None
    # Built on this thread: pysyncobj's tick thread stops when the thread that built the
    # node ends, so it must not be one of trio's worker threads.
    raft = RaftNode(
        raft_config,
        machine,
        bridge.applied_in_raft_thread,
        snapshots=snapshots,
        journal=journal,
    )
    bridge.proposer = raft
    raft_built.append(raft)
    node_view.raft_status = raft.status
    node_view.ready = raft.isReady
    node_view.last_snapshot_index = lambda: snapshots.statistics().last_index
    node_view.control = NodeControl(
        raft,
        bridge,
        batcher,
        node_view.node_ids_by_address,
        node_view.last_snapshot_index,
    )
    host, port = split_address(config.gateway)
    log.info(
        "node_started",
        node_id=config.node_id,
        raft=config.raft,
        gateway=config.gateway,
        feed=config.feed or None,
        metrics=config.metrics or None,
        data_dir=str(config.data_dir),
        snapshot_index=machine.applied_index,
        recovery_s=round(recovered.seconds, 3),
    )
    try:
        # Both client ports are bound before anything is served: a port in use stops the
        # start with one line that names it.
        listeners = await _listen("order entry", host, port)
        feed_listeners = []
        if feed is not None:
            try:
                feed_listeners = await _listen("market data", *split_address(config.feed))
            except ClientPortError:
                for listener in listeners:
                    await listener.aclose()
                raise
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            await nursery.start(trio.serve_listeners, gateway.handle_connection, listeners)
            bound_port = listeners[0].socket.getsockname()[1]
            feed_port = 0
            if feed is not None:
                await nursery.start(trio.serve_listeners, feed.handle_connection, feed_listeners)
                feed_port = feed_listeners[0].socket.getsockname()[1]
            nursery.start_soon(_tune_collector_when_ready, raft)
            if auditor is not None:
                nursery.start_soon(_watch_audit, config, *auditor)
            if handle_signals:
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
            task_status.started(
                RunningNode(
                    config,
                    machine,
                    raft,
                    snapshots,
                    gateway,
                    batcher,
                    bound_port,
                    nursery.cancel_scope.cancel,
                    feed,
                    feed_port,
                )
            )
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(raft.destroy_synchronous)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        snapshots.stop_writer()
        os.close(lock_fd)
        log.info(
            "node_stopped",
            node_id=config.node_id,
            applied_index=machine.applied_index,
            state_hash=machine.state_hash.hex(),
        )


class DataDirInUseError(RuntimeError):
    """Another process holds this node's data folder."""


class MetricsPortError(RuntimeError):
    """The metrics address cannot be listened on."""


class ClientPortError(RuntimeError):
    """The order-entry or market-data address cannot be listened on."""


async def _listen(what: str, host: str, port: int) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        raise ClientPortError(f"cannot listen for {what} on {host}:{port}: {error}") from None


def lock_data_dir(config: NodeConfig) -> int:
    """Hold an exclusive lock on the data folder for this process's life (a snapshot
    writer it forks holds it too): a second node on the same folder is refused before it
    reads anything."""
    fd = os.open(config.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUseError(
            f"{config.data_dir} is in use by another evx node (it holds {config.lock_path})"
        ) from None
    return fd


async def _watch_audit(config: NodeConfig, pid: int, header: SnapshotHeader) -> None:
    started = time.perf_counter()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        await trio.sleep(0.05)
    if os.waitstatus_to_exitcode(status) == 0:
        log.info(
            "snapshot_audited", index=header.index, seconds=round(time.perf_counter() - started, 3)
        )
        return
    refuse(config.data_dir, header.state_digest)
    stop_node(
        f"the snapshot at index {header.index} fails its audit (the violations are above); "
        f"it is listed in {REFUSED_NAME} and will not be loaded again",
        EXIT_SNAPSHOT_FAILED,
    )


async def _tune_collector_when_ready(raft: RaftNode) -> None:
    while not raft.isReady():
        await trio.sleep(0.1)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signal_number in signals:
            log.info("signal_received", signal=signal.Signals(signal_number).name)
            scope.cancel()
            return


def main(config_path: str) -> None:
    from .config import load  # noqa: PLC0415

    config = load(config_path)
    logs.configure(config.logging.level, config.logging.json)

    async def serve() -> Any:
        await run_node(config, handle_signals=True)

    trio.run(serve)
