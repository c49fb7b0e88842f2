"""The folder of a cluster on one machine, as `evx up` makes it.

    DATA/
      cluster.secret              the cluster secret (peer traffic), mode 0600
      operator.pem                the operator's Ed25519 key, mode 0600
      node1.toml node2.toml ...   one config per node
      node1/ node2/ ...           each node's data (its Raft journal)
      accounts/NAME.pem           demo accounts' keys (evx up), with accounts.json

Strategy: created once and then only read: started again on the same folder, the cluster
resumes the same exchange. Everything a tool needs to find the cluster (`--data DIR`) is
in the node configs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from evx.gateway.keys import generate_private_key, public_bytes, read_private_key, write_private_key

from .config import LoggingConfig, NodeConfig, PeerConfig, SnapshotSettings, load, render


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    data_dir: Path

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "cluster.secret"

    @property
    def operator_key_file(self) -> Path:
        return self.data_dir / "operator.pem"

    @property
    def accounts_file(self) -> Path:
        return self.data_dir / "accounts" / "accounts.json"

    def config_paths(self) -> list[Path]:
        return sorted(self.data_dir.glob("node*.toml"), key=lambda p: int(p.stem[4:]))

    def configs(self) -> list[NodeConfig]:
        return [load(path) for path in self.config_paths()]

    def exists(self) -> bool:
        return bool(self.config_paths())

    def accounts(self) -> dict[str, dict[str, object]]:
        if not self.accounts_file.exists():
            return {}
        return json.loads(self.accounts_file.read_text())


def create(
    data_dir: Path,
    raft_ports: list[int],
    gateway_ports: list[int],
    *,
    host: str = "127.0.0.1",
    logging: LoggingConfig | None = None,
    snapshots: SnapshotSettings | None = None,
    metrics_ports: list[int] | None = None,
    feed_ports: list[int] | None = None,
) -> ClusterLayout:
    """Make a new cluster's folder; refuses to overwrite one."""
    layout = ClusterLayout(data_dir.resolve())
    if layout.exists():
        raise FileExistsError(f"{data_dir} already holds a cluster")
    assert len(raft_ports) == len(gateway_ports) and len(raft_ports) in (1, 3, 5)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as secret_file:
        secret_file.write(secrets.token_urlsafe(32) + "\n")
    operator = generate_private_key()
    write_private_key(layout.operator_key_file, operator)
    nodes = [
        PeerConfig(
            number,
            f"{host}:{raft}",
            f"{host}:{gateway}",
            f"{host}:{feed_ports[number - 1]}" if feed_ports else "",
        )
        for number, (raft, gateway) in enumerate(zip(raft_ports, gateway_ports, strict=True), 1)
    ]
    for node in nodes:
        path = layout.data_dir / f"node{node.node_id}.toml"
        config = NodeConfig(
            path=path,
            node_id=node.node_id,
            data_dir=layout.data_dir / f"node{node.node_id}",
            secret_file=layout.secret_file,
            raft=node.raft,
            gateway=node.gateway,
            feed=node.feed,
            peers=tuple(peer for peer in nodes if peer is not node),
            operator_keys=(public_bytes(operator),),
            metrics=f"{host}:{metrics_ports[node.node_id - 1]}" if metrics_ports else "",
        )
        if logging is not None:
            config = replace(config, logging=logging)
        if snapshots is not None:
            config = replace(config, snapshots=snapshots)
        path.write_text(render(config))
    return layout


def add_account_key(layout: ClusterLayout, name: str) -> Path:
    """A new key file for a demo account (created once; kept if it exists)."""
    folder = layout.data_dir / "accounts"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.pem"
    if not path.exists():
        write_private_key(path, generate_private_key())
    return path


def record_account(layout: ClusterLayout, name: str, account_id: int, key_file: Path) -> None:
    accounts = layout.accounts()
    accounts[name] = {
        "account_id": account_id,
        "key_file": str(key_file),
        "public_key": public_bytes(read_private_key(key_file)).hex(),
    }
    layout.accounts_file.parent.mkdir(exist_ok=True)
    layout.accounts_file.write_text(json.dumps(accounts, indent=2, sort_keys=True) + "\n")


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago, closed again (for tests and
    benchmarks: a small race with other programs is accepted)."""
    sockets = []
    for _ in range(count):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        sockets.append(server)
    ports = [server.getsockname()[1] for server in sockets]
    for server in sockets:
        server.close()
    return ports
