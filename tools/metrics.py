"""A node's Prometheus endpoint (`[node] metrics = "host:port"`, docs/operations.md).

Strategy: one registry per node (tests run several nodes in one process). What the node
already counts (the gateway's, batcher's, Raft's, journal's and snapshots' statistics) is
read at scrape time by a collector, so the order path pays nothing for it; what is only
visible per applied entry (commands, orders, rejects by reason, batch size, the engine's
apply time) is counted by one more handler on the applied stream, on the trio thread.
prometheus-client serves the page from its own thread; everything it reads is a plain
number, or a status object replaced whole.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from evx.core import Reject
from evx.gateway.exchange import ExchangeResult
from evx.gateway.feed_server import FeedServer
from evx.gateway.server import Gateway
from evx.replication.batcher import Batcher
from evx.replication.raft import RaftNode
from evx.snapshots.writer import NodeSnapshots

_ORDER_ACCEPTED = 1  # event codes (core/events.py)
_COMMAND_REJECTED = 2
_REJECT_REASON = 6  # position of `reason` in a CommandRejected's canonical form
_ROLES = {"follower": 0, "candidate": 1, "leader": 2}
# Fine at the low end: `evx bench feed` reads its percentiles from this histogram.
_FEED_DELIVERY_BUCKETS_S = (
    *(0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005),
    *(0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0),
)


def _reason_name(code: int) -> str:
    try:
        return Reject(code).rule
    except ValueError:
        return str(code)


class NodeMetrics(Collector):
    def __init__(
        self,
        node_id: int,
        gateway: Gateway,
        batcher: Batcher,
        raft: Callable[[], RaftNode | None],
        snapshots: NodeSnapshots,
        feed: FeedServer | None = None,
    ) -> None:
        self.node_id = node_id
        self._gateway = gateway
        self._batcher = batcher
        self._raft = raft
        self._snapshots = snapshots
        self._feed = feed
        self.commands = 0
        self.orders_accepted = 0
        self.rejects: Counter[int] = Counter()
        self.registry = CollectorRegistry()
        self.batch_commands = Histogram(
            "evx_batch_commands",
            "Commands in each applied log entry",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "evx_apply_seconds",
            "The engine's time applying one log entry",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
            registry=self.registry,
        )
        self.feed_delivery_seconds = Histogram(
            "evx_feed_delivery_seconds",
            "From a log entry applied to its market data written to a subscriber's socket "
            "(the oldest data of each write)",
            buckets=_FEED_DELIVERY_BUCKETS_S,
            registry=self.registry,
        )
        if feed is not None:
            feed.on_delivery = self.feed_delivery_seconds.observe
        self.registry.register(self)

    def on_applied(self, index: int, result: Any) -> None:  # trio thread, every entry
        if not isinstance(result, ExchangeResult):
            return
        applied = result.applied
        commands = len(applied.outcome_offsets)
        self.commands += commands
        for event in applied.events:
            code = event[0]
            if code == _ORDER_ACCEPTED:
                self.orders_accepted += 1
            elif code == _COMMAND_REJECTED:
                self.rejects[event[_REJECT_REASON]] += 1
        if commands:  # the leader's clock entries would drown the distribution
            self.batch_commands.observe(commands)
            self.apply_seconds.observe(result.apply_s)

    def collect(self) -> Iterator[Any]:  # prometheus-client's thread, at each scrape
        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, value=value)

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, value=value)

        yield counter("evx_commands_applied", "Commands applied by the engine", self.commands)
        yield counter("evx_orders_accepted", "Orders the engine accepted", self.orders_accepted)
        rejects = CounterMetricFamily(
            "evx_rejects", "Commands the engine refused, by reason", labels=["reason"]
        )
        for code, count in sorted(dict(self.rejects).items()):  # a copy: trio adds to it
            rejects.add_metric([_reason_name(code)], count)
        yield rejects

        gateway = self._gateway.statistics
        yield gauge("evx_sessions", "Open order-entry sessions", gateway.sessions)
        yield counter("evx_sessions_opened", "Sessions opened", gateway.sessions_opened)
        yield counter(
            "evx_sessions_throttled", "Sessions throttled at least once", gateway.sessions_throttled
        )
        yield counter(
            "evx_throttled_messages",
            "Messages refused by the rate limit",
            gateway.throttled_messages,
        )
        yield counter(
            "evx_slow_consumers_cut", "Sessions cut off for not reading", gateway.slow_consumers_cut
        )
        yield counter("evx_protocol_errors", "Sessions ended by bad bytes", gateway.protocol_errors)
        yield counter(
            "evx_outcome_unknown", "Commands answered outcome unknown", gateway.outcome_unknown
        )

        if self._feed is not None:
            feed = self._feed.statistics
            yield gauge("evx_feed_subscribers", "Open market-data connections", feed.subscribers)
            yield counter(
                "evx_feed_slow_consumers_cut",
                "Feed connections cut off for not reading",
                feed.slow_consumers_cut,
            )
            yield counter(
                "evx_feed_silent_cut",
                "Feed connections ended for sending no heartbeat for 3 intervals",
                feed.silent_cut,
            )
            yield counter(
                "evx_feed_snapshots_sent", "Book images sent to subscribers", feed.snapshots_sent
            )
            yield counter(
                "evx_feed_resumes_served",
                "Markets resumed from the window without an image",
                feed.resumes_served,
            )
            yield counter("evx_feed_bytes_queued", "Feed bytes queued", feed.bytes_queued)

        batcher = self._batcher.statistics()
        yield counter(
            "evx_entries_proposed", "Log entries this node proposed", batcher.entries_proposed
        )
        yield gauge(
            "evx_commands_waiting", "Commands queued or in flight here", self._batcher.waiting
        )

        raft = self._raft()
        status = raft.status() if raft is not None else None
        if status is not None:
            yield gauge(
                "evx_raft_role", "0 follower, 1 candidate, 2 leader", _ROLES.get(status.role, -1)
            )
            yield gauge("evx_raft_term", "The Raft term", status.term)
            yield gauge(
                "evx_raft_commit_index", "Highest index known committed", status.commit_index
            )
            yield gauge(
                "evx_raft_applied_index", "Highest index applied here", status.applied_index
            )
            yield gauge(
                "evx_raft_lag_entries",
                "Committed entries not yet applied here",
                max(status.commit_index - status.applied_index, 0),
            )
            yield gauge(
                "evx_raft_log_entries", "Entries in the log since compaction", status.log_entries
            )
            yield gauge(
                "evx_raft_peers_connected",
                "Other nodes this node reaches",
                len(status.connected_peers),
            )
            yield counter("evx_journal_syncs", "Journal flushes to disk", status.journal_syncs)

        snapshots = self._snapshots.statistics()
        yield counter("evx_snapshots_taken", "Snapshots written here", snapshots.taken)
        yield counter("evx_snapshots_failed", "Snapshot writes that failed", snapshots.failed)
        yield counter(
            "evx_snapshots_installed", "Snapshots installed from the leader", snapshots.installed
        )
        yield gauge(
            "evx_snapshot_last_index", "Log index of the newest snapshot", snapshots.last_index
        )
        age = time.time() - snapshots.last_created_unix_s if snapshots.last_created_unix_s else -1
        yield gauge("evx_snapshot_age_seconds", "Age of the newest snapshot (-1: none)", age)
        yield gauge(
            "evx_snapshot_pause_seconds",
            "The last snapshot's pause of the applying thread",
            snapshots.last_pause_ms / 1000,
        )
        yield gauge(
            "evx_snapshot_write_seconds",
            "The last snapshot's write, in the background",
            snapshots.last_write_s,
        )


def serve(metrics: NodeMetrics, address: str) -> Any:
    """Serve /metrics on `address` ("host:port") from a daemon thread; returns the server
    (call .shutdown() to stop it)."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host, registry=metrics.registry)
    return server
