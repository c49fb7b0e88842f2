"""A node's Prometheus endpoint says what the node did: commands, orders, rejects by reason,
batch sizes, Raft's indexes, sessions, snapshots. One node in this process, scraped over
HTTP on 127.0.0.1 as Prometheus would."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from evx.core import Side
from evx.gateway import messages as wire
from evx.gateway.client import Client
from evx.gateway.feed_client import FeedClient
from support.nodes import open_market_with_traders, operator_client, single_node_layout, start_node

TEST_TIMEOUT_S = 30


def _scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_the_metrics_endpoint_counts_what_the_node_did(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path, metrics=True, feed=True)
    address = layout.configs()[0].metrics
    assert address.startswith("127.0.0.1:")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TEST_TIMEOUT_S):
            node = await start_node(nursery, layout)
            async with operator_client(layout, node) as operator:
                market, traders = await open_market_with_traders(operator, ["maker"])
            feed = FeedClient([("127.0.0.1", node.feed_port)], markets=[market])
            await nursery.start(feed.run)
            before = await trio.to_thread.run_sync(_scrape, address)
            account_id, key = traders["maker"]
            async with Client(
                [("127.0.0.1", node.gateway_port)], account_id=account_id, key=key
            ) as client:
                for price in (40, 41, 42):
                    accepted = await client.place(market, Side.BUY_YES, price, 5)
                    assert isinstance(accepted, wire.OrderAccepted)
                rejected = await client.place(market, Side.BUY_YES, 40, 10**9)
                assert isinstance(rejected, wire.OrderRejected)
                await feed.wait_for(lambda f: len(f.books[market].bids) == 3)
                after = await trio.to_thread.run_sync(_scrape, address)
        node.stop()
        nursery.cancel_scope.cancel()

    assert after["evx_orders_accepted_total"] - before["evx_orders_accepted_total"] == 3
    assert after["evx_commands_applied_total"] - before["evx_commands_applied_total"] == 4
    reason = "evx_rejects_total{reason=quantity_must_not_exceed_max}"
    assert after[reason] == 1, sorted(k for k in after if "reject" in k)
    assert after["evx_batch_commands_count"] >= 4 + before["evx_batch_commands_count"]
    assert after["evx_apply_seconds_count"] == after["evx_batch_commands_count"]
    assert after["evx_raft_role"] == 2 and after["evx_raft_term"] >= 1
    assert after["evx_raft_applied_index"] == after["evx_raft_commit_index"] > 0
    assert after["evx_sessions"] == 1 and after["evx_sessions_opened_total"] >= 2
    assert after["evx_journal_syncs_total"] > 0
    assert after["evx_snapshot_age_seconds"] == -1 and after["evx_snapshots_taken_total"] == 0
    assert after["evx_feed_subscribers"] == 1 and after["evx_feed_snapshots_sent_total"] == 1
    assert after["evx_feed_slow_consumers_cut_total"] == 0
    # Three level changes delivered to the one subscriber, one sample per applied entry.
    delivered = after["evx_feed_delivery_seconds_count"] - before["evx_feed_delivery_seconds_count"]
    assert 1 <= delivered <= 3
