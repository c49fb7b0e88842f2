"""A node's config with its market-data feed: written and read back the same, and refused
with the line to fix when a [feed] key or value is wrong or an address repeats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evx.tools.config import ConfigError, FeedLimits, NodeConfig, load, render
from evx.tools.layout import ClusterLayout, create


def _layout_config(tmp_path: Path) -> tuple[ClusterLayout, NodeConfig]:
    layout = create(
        tmp_path / "c", [7001, 7002, 7003], [7101, 7102, 7103], feed_ports=[7301, 7302, 7303]
    )
    return layout, load(layout.config_paths()[0])


def test_feed_addresses_and_limits_round_trip(tmp_path: Path) -> None:
    layout, config = _layout_config(tmp_path)
    assert config.feed == "127.0.0.1:7301"
    assert [peer.feed for peer in config.all_nodes()] == [f"127.0.0.1:730{n}" for n in (1, 2, 3)]
    limits = FeedLimits(subscribers_max=7, window_events_per_market=20, heartbeat_interval_ms=250)
    changed = dataclasses.replace(config, feed_limits=limits)
    path = layout.config_paths()[0]
    path.write_text(render(changed))
    assert "[feed]" in path.read_text() and "subscribers_max = 7" in path.read_text()
    assert load(path) == changed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("\n[feed]\nsubscriber_max = 3\n", "unknown key"),
        ("\n[feed]\noutbound_bytes_max = 1000\n", "outbound_bytes_max >= 65536"),
        ("\n[feed]\nheartbeat_interval_ms = 50\n", "heartbeat_interval_ms within"),
        ("\n[feed]\nwindow_events_total = 5\n", "window_events_total >= window_events_per_market"),
        ('\n[feed]\nsubscribers_max = "many"\n', "must be int"),
    ],
)
def test_a_wrong_feed_setting_is_refused_with_what_to_fix(
    tmp_path: Path, text: str, problem: str
) -> None:
    layout, _ = _layout_config(tmp_path)
    path = layout.config_paths()[0]
    path.write_text(path.read_text() + text)
    with pytest.raises(ConfigError, match=problem):
        load(path)


def test_a_feed_address_used_twice_is_refused(tmp_path: Path) -> None:
    layout, config = _layout_config(tmp_path)
    path = layout.config_paths()[0]
    path.write_text(render(dataclasses.replace(config, feed=config.gateway)))
    with pytest.raises(ConfigError, match="an address is used twice"):
        load(path)
