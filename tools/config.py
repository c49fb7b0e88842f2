"""A node's configuration: one TOML file per node, checked before anything starts.

Strategy: every setting has a default that suits a three-node cluster on one machine, and
every limit is named with its unit last. A file that names an unknown key, misses the
secret or repeats an address is refused with a message that says which line to fix:
an operator at 3 a.m. must not learn of a typo from a node that half-started.

    [node]
    id = 1
    data_dir = "node1"                   # relative paths are relative to this file
    secret_file = "cluster.secret"       # the cluster secret: authenticates peer traffic
    operator_keys = ["9f0c...e1"]        # operators' Ed25519 public keys, hex
    raft = "127.0.0.1:7001"              # peer port (Raft); listen only where this says
    gateway = "127.0.0.1:7101"           # order-entry port for clients
    feed = "127.0.0.1:7301"              # market-data port (optional)

    [[peers]]
    id = 2
    raft = "127.0.0.1:7002"
    gateway = "127.0.0.1:7102"
    feed = "127.0.0.1:7302"

    [batching]        # batch_window_ms, batch_commands_max, clock_tick_ms
    [limits]          # the session limits of GatewayLimits
    [feed]            # the market-data feed's limits (FeedLimits)
    [logging]         # level ("debug", "info", "warning"), json (true, false, "auto")
    [raft]            # flush_journal (true; false only to measure what durability costs)
    [snapshots]       # every_entries, every_s, keep, full_audit (SnapshotSettings)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evx.gateway.limits import (
    heartbeat_interval_ms_max,
    heartbeat_interval_ms_min,
)


class ConfigError(ValueError):
    """The configuration cannot run a node; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    node_id: int
    raft: str
    gateway: str
    feed: str = ""  # the market-data port; empty: the node serves no feed


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    sessions_max: int = 1_000
    sessions_per_account_max: int = 16
    messages_per_s_max: int = 5_000  # per session: a token bucket this fast...
    message_burst_max: int = 10_000  # ...holding this many
    outbound_messages_max: int = 50_000  # queued for one session before it is cut off
    outbound_bytes_max: int = 4 * 1024 * 1024  # ...or this many bytes queued
    queries_open_max: int = 16  # answered at once per session; past it, reading waits
    # The kernel's send buffer per session: bounded, so a client that stops reading fills
    # it (and then the queue above) soon, instead of megabytes of autotuned buffer.
    socket_send_buffer_bytes: int = 262_144
    heartbeat_interval_ms: int = 1_000
    replay_window_events_per_account_max: int = 50_000
    login_timeout_s: float = 5.0
    query_wait_s_max: float = 5.0
    proposal_timeout_s: float = 5.0
    pending_commands_max: int = 100_000  # waiting for their entry, across sessions


@dataclass(frozen=True, slots=True)
class FeedLimits:
    subscribers_max: int = 1_000  # feed connections per node
    markets_per_subscriber_max: int = 10_000  # markets one connection may subscribe to
    # Kept per market for subscribers that resume after a gap or from another node, and
    # over all markets together (the oldest go first); older than that, they get an image.
    window_events_per_market: int = 10_000
    window_events_total: int = 1_000_000
    outbound_bytes_max: int = 8 * 1024 * 1024  # queued for one connection before it is cut
    socket_send_buffer_bytes: int = 262_144
    heartbeat_interval_ms: int = 1_000


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    batch_window_ms: float = 1.0
    batch_commands_max: int = 1_024
    clock_tick_ms: int = 100


@dataclass(frozen=True, slots=True)
class RaftSettings:
    # false only for measuring what durability costs: acknowledged entries then live in
    # the page cache of a majority, which an operating-system crash can lose
    flush_journal: bool = True


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    # A snapshot is taken (and the log compacted up to it) once the log holds more than
    # every_entries entries, or every_s seconds if anything was applied since the last.
    every_entries: int = 20_000
    every_s: float = 600.0
    keep: int = 3  # snapshots kept in the store, newest first
    # Audit every conservation invariant of a snapshot before serving from it (startup,
    # install): O(state), about a second per 300k resting orders (docs/benchmarks.md).
    full_audit: bool = True


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    json: bool | str = "auto"  # "auto": JSON unless standard error is a terminal


@dataclass(frozen=True, slots=True)
class NodeConfig:
    path: Path
    node_id: int
    data_dir: Path
    secret_file: Path
    raft: str
    gateway: str
    peers: tuple[PeerConfig, ...]
    operator_keys: tuple[bytes, ...] = ()
    metrics: str = ""  # "host:port" of the Prometheus endpoint; empty: none
    feed: str = ""  # "host:port" of the market-data feed; empty: none
    feed_limits: FeedLimits = field(default_factory=FeedLimits)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    raft_settings: RaftSettings = field(default_factory=RaftSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "raft.journal"

    @property
    def snapshot_store_path(self) -> Path:
        return self.data_dir / "snapshots.lmdb"

    @property
    def snapshot_transfer_path(self) -> Path:
        """The newest snapshot as one file: what a follower that fell behind is sent."""
        return self.data_dir / "snapshot.evx"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "node.lock"

    def secret(self) -> str:
        try:
            secret = self.secret_file.read_text().strip()
        except OSError as error:
            raise ConfigError(
                f"cannot read the cluster secret {self.secret_file}: {error}"
            ) from None
        if len(secret) < 16:
            raise ConfigError(f"{self.secret_file}: the cluster secret needs 16 characters")
        return secret

    def all_nodes(self) -> tuple[PeerConfig, ...]:
        me = PeerConfig(self.node_id, self.raft, self.gateway, self.feed)
        return tuple(sorted((me, *self.peers), key=lambda peer: peer.node_id))


def load(path: str | Path) -> NodeConfig:
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> NodeConfig:
    _only(
        raw,
        {"node", "peers", "batching", "limits", "feed", "logging", "raft", "snapshots"},
        f"{path}",
    )
    node = raw.get("node")
    if not isinstance(node, dict):
        raise ConfigError(f"{path}: a [node] table is required")
    _only(
        node,
        {"id", "data_dir", "secret_file", "operator_keys", "raft", "gateway", "feed", "metrics"},
        "[node]",
    )
    base = path.parent
    try:
        node_id = _int(node, "id", "[node]")
        peers = tuple(
            PeerConfig(
                _int(peer, "id", "[[peers]]"),
                _address(peer, "raft", "[[peers]]"),
                _address(peer, "gateway", "[[peers]]"),
                _address(peer, "feed", "[[peers]]") if "feed" in peer else "",
            )
            for peer in raw.get("peers", [])
            if _only(peer, {"id", "raft", "gateway", "feed"}, "[[peers]]")
        )
        config = NodeConfig(
            path=path,
            node_id=node_id,
            data_dir=(base / _str(node, "data_dir", "[node]")).resolve(),
            secret_file=(base / _str(node, "secret_file", "[node]")).resolve(),
            raft=_address(node, "raft", "[node]"),
            gateway=_address(node, "gateway", "[node]"),
            metrics=_address(node, "metrics", "[node]") if "metrics" in node else "",
            feed=_address(node, "feed", "[node]") if "feed" in node else "",
            feed_limits=_table(raw, "feed", FeedLimits),
            peers=peers,
            operator_keys=tuple(
                _hex_key(key, "[node] operator_keys") for key in node.get("operator_keys", [])
            ),
            batching=_table(raw, "batching", BatchingConfig),
            limits=_table(raw, "limits", GatewayLimits),
            logging=_table(raw, "logging", LoggingConfig),
            raft_settings=_table(raw, "raft", RaftSettings),
            snapshots=_table(raw, "snapshots", SnapshotSettings),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None
    _check(config)
    return config


def _check(config: NodeConfig) -> None:
    nodes = config.all_nodes()
    ids = [node.node_id for node in nodes]
    if len(set(ids)) != len(ids) or min(ids) < 1 or max(ids) > 65_535:
        raise ConfigError(f"{config.path}: node ids must be distinct, from 1 to 65535: {ids}")
    addresses = [node.raft for node in nodes] + [node.gateway for node in nodes]
    addresses += [node.feed for node in nodes if node.feed]
    addresses += [config.metrics] if config.metrics else []
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{config.path}: an address is used twice: {addresses}")
    if len(nodes) not in (1, 3, 5):
        raise ConfigError(f"{config.path}: a cluster has 1, 3 or 5 nodes, not {len(nodes)}")
    if config.snapshots.every_entries < 100 or config.snapshots.every_s <= 0:
        raise ConfigError(f"{config.path}: [snapshots] every_entries >= 100, every_s > 0")
    if config.limits.queries_open_max < 1 or config.limits.outbound_bytes_max < 65_536:
        raise ConfigError(
            f"{config.path}: [limits] queries_open_max >= 1, outbound_bytes_max >= 65536"
        )
    feed = config.feed_limits
    if (
        min(feed.subscribers_max, feed.markets_per_subscriber_max, feed.window_events_per_market)
        < 1
        or feed.window_events_total < feed.window_events_per_market
        or feed.outbound_bytes_max < 65_536
        or not heartbeat_interval_ms_min <= feed.heartbeat_interval_ms <= heartbeat_interval_ms_max
    ):
        raise ConfigError(
            f"{config.path}: [feed] subscribers_max, markets_per_subscriber_max and "
            "window_events_per_market >= 1, window_events_total >= window_events_per_market, "
            "outbound_bytes_max >= 65536, heartbeat_interval_ms within "
            f"{heartbeat_interval_ms_min}-{heartbeat_interval_ms_max}"
        )
    if config.snapshots.keep < 1:
        raise ConfigError(f"{config.path}: [snapshots] keep must be at least 1")
    if config.logging.level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{config.path}: [logging] level {config.logging.level!r}")


def _only(table: Any, allowed: set[str], where: str) -> bool:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(allowed)}")
    return True


def _int(table: dict[str, Any], key: str, where: str) -> int:
    value = table.get(key)
    if type(value) is not int:
        raise ConfigError(f"{where} {key} must be an integer")
    return value


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a non-empty string")
    return value


def _address(table: dict[str, Any], key: str, where: str) -> str:
    value = _str(table, key, where)
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ConfigError(f"{where} {key} must be host:port, not {value!r}")
    return value


def _hex_key(value: Any, where: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not hex") from None
    if len(key) != 32:
        raise ConfigError(f"{where}: an Ed25519 public key is 32 bytes, not {len(key)}")
    return key


def _table(raw: dict[str, Any], name: str, cls: type) -> Any:
    table = raw.get(name, {})
    names = {f.name for f in fields(cls)}
    _only(table, names, f"[{name}]")
    defaults = cls()
    for key, value in table.items():
        if key == "json":
            if value != "auto" and type(value) is not bool:
                raise ConfigError(f'[{name}] json must be true, false or "auto"')
            continue
        expected = type(getattr(defaults, key))
        if expected is float and type(value) is int:
            continue
        if type(value) is not expected:
            raise ConfigError(f"[{name}] {key} must be {expected.__name__}, not {value!r}")
    return cls(**table)


def render(config: NodeConfig) -> str:
    """The TOML text of a configuration, paths relative to its file."""
    base = config.path.parent

    def relative(value: Path) -> str:
        try:
            return str(value.relative_to(base))
        except ValueError:
            return str(value)

    lines = [
        "[node]",
        f"id = {config.node_id}",
        f'data_dir = "{relative(config.data_dir)}"',
        f'secret_file = "{relative(config.secret_file)}"',
        "operator_keys = [" + ", ".join(f'"{key.hex()}"' for key in config.operator_keys) + "]",
        f'raft = "{config.raft}"',
        f'gateway = "{config.gateway}"',
    ]
    if config.feed:
        lines.append(f'feed = "{config.feed}"')
    if config.metrics:
        lines.append(f'metrics = "{config.metrics}"')
    for peer in config.peers:
        lines += [
            "",
            "[[peers]]",
            f"id = {peer.node_id}",
            f'raft = "{peer.raft}"',
            f'gateway = "{peer.gateway}"',
        ]
        if peer.feed:
            lines.append(f'feed = "{peer.feed}"')
    for name, attribute in (
        ("batching", "batching"),
        ("limits", "limits"),
        ("feed", "feed_limits"),
        ("logging", "logging"),
        ("raft", "raft_settings"),
        ("snapshots", "snapshots"),
    ):
        table = getattr(config, attribute)
        defaults = type(table)()
        changed = [f for f in fields(table) if getattr(table, f.name) != getattr(defaults, f.name)]
        if changed:
            lines += ["", f"[{name}]"]
            for f in changed:
                value = getattr(table, f.name)
                text = f'"{value}"' if isinstance(value, str) else str(value).lower()
                lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"
