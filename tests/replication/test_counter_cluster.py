"""Replication without the engine: three nodes in one process replicate a counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from evx.replication.raft import RaftConfig, SecretRequiredError
from support.counter import Cluster, wait_for


@pytest.fixture
def cluster(tmp_path: Path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


def test_three_nodes_apply_the_same_entries_in_the_same_order(cluster: Cluster) -> None:
    leader = cluster.leader()
    total = 0
    for number, address in enumerate(cluster.addresses * 10):
        total = cluster.propose(address, b"add %d" % number)
    assert total == sum(range(30))
    wait_for(cluster.converged, what="the same index and hash everywhere")
    assert {m.value for m in cluster.machines.values()} == {total}
    statuses = [cluster.nodes[a].status() for a in cluster.addresses]
    assert all(s is not None and s.leader == leader for s in statuses)
    # group commit: far fewer flushes than entries on every node
    assert all(s is not None and s.journal_syncs > 0 for s in statuses)


def test_a_new_leader_takes_over_and_a_restarted_node_catches_up(cluster: Cluster) -> None:
    old_leader = cluster.leader()
    for number in range(10):
        cluster.propose(old_leader, b"add %d" % number)
    cluster.stop(old_leader)
    new_leader = cluster.leader()
    assert new_leader != old_leader
    for number in range(10, 20):
        cluster.propose(new_leader, b"add %d" % number)
    cluster.start(old_leader)  # the same journal: it resumes, then catches up
    wait_for(cluster.converged, what="the restarted node to catch up")
    assert cluster.machines[old_leader].value == sum(range(20))


def test_a_node_refuses_to_start_without_a_cluster_secret(tmp_path: Path) -> None:
    with pytest.raises(SecretRequiredError, match="cluster secret"):
        RaftConfig("127.0.0.1:1", (), str(tmp_path / "j"), secret="")
