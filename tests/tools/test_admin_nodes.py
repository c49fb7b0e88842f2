"""Which nodes `evx admin` talks to, from a cluster's folder: every node any config names,
each node's own config giving its addresses (as after a membership change, when the new
node's config exists and the others' are not edited yet)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from evx.tools import admin
from evx.tools.config import PeerConfig, load, render
from evx.tools.layout import create
from support.counter import free_ports


def test_the_nodes_of_a_folder_are_every_node_its_configs_name(tmp_path: Path) -> None:
    ports = free_ports(8)
    layout = create(tmp_path / "cluster", ports[:3], ports[3:6])
    assert [peer.node_id for peer in admin.cluster_nodes(layout.data_dir, None)] == [1, 2, 3]
    first, second = layout.configs()[:2]
    new = dataclasses.replace(
        first,
        path=layout.data_dir / "node4.toml",
        node_id=4,
        data_dir=layout.data_dir / "node4",
        raft=f"127.0.0.1:{ports[6]}",
        gateway=f"127.0.0.1:{ports[7]}",
        peers=(
            PeerConfig(1, first.raft, first.gateway),
            PeerConfig(2, second.raft, second.gateway),
        ),
    )
    new.path.write_text(render(new))
    assert load(new.path).node_id == 4
    nodes = admin.cluster_nodes(layout.data_dir, None)
    assert [(peer.node_id, peer.gateway) for peer in nodes] == [
        (1, first.gateway),
        (2, second.gateway),
        (3, layout.configs()[2].gateway),
        (4, f"127.0.0.1:{ports[7]}"),
    ]
    (layout.data_dir / "node3.toml").rename(tmp_path / "node3.toml.removed")
    still_named = admin.cluster_nodes(layout.data_dir, None)  # by nodes 1 and 2's configs
    assert [peer.node_id for peer in still_named] == [1, 2, 3, 4]
