"""README's scripts (the market maker's, then the market-data one) run as written against
a real cluster, and `evx admin status` reports every node of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from evx.gateway.keys import public_bytes, read_private_key
from evx.tools.node import split_address
from evx.tools.up import bootstrap_demo
from support.processes import ProcessCluster

ROOT = Path(__file__).resolve().parents[2]


def _readme_scripts() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 2, "README has two Python examples: order entry, market data"
    return blocks


def _run_for_three_seconds(script: str) -> subprocess.CompletedProcess[str]:
    """The scripts run forever; here each gets three seconds."""
    assert script.rstrip().endswith("trio.run(main)")
    runner = script.rstrip().removesuffix("trio.run(main)") + (
        "async def bounded() -> None:\n"
        "    with trio.move_on_after(3):\n"
        "        await main()\n\n\n"
        "trio.run(bounded)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", runner], capture_output=True, text=True, timeout=60, check=False
    )


async def test_the_readme_script_quotes_and_admin_status_sees_every_node(
    cluster: ProcessCluster,
) -> None:
    await cluster.wait_leader()
    await bootstrap_demo(cluster.layout)  # what `evx up` does: demo accounts, market 1
    maker = cluster.layout.accounts()["maker"]
    assert public_bytes(read_private_key(maker["key_file"])).hex() == maker["public_key"]
    nodes = [cluster.address(node) for node in cluster.node_ids]
    script, feed_script = _readme_scripts()
    script = re.sub(r"NODES = \[.*?\]\n", f"NODES = {nodes!r}\n", script)
    script = script.replace('"evx-data/accounts/maker.pem"', repr(maker["key_file"]))
    script = script.replace("account_id=1", f"account_id={maker['account_id']}")
    completed = _run_for_three_seconds(script)
    assert completed.returncode == 0, completed.stderr
    assert "quoting:" in completed.stdout
    assert "OrderAccepted" in completed.stdout

    feeds = [split_address(config.feed) for config in cluster.configs]
    feed_script = re.sub(r"FEEDS = \[.*?\]\n", f"FEEDS = {feeds!r}\n", feed_script)
    completed = _run_for_three_seconds(feed_script)
    assert completed.returncode == 0, completed.stderr
    assert "best bid, ask: (45, 55)" in completed.stdout, completed.stdout  # the maker's quotes

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "evx.tools.cli",
            "admin",
            "status",
            "--data",
            str(cluster.layout.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(status.stdout)
    assert [row["node"] for row in rows] == [1, 2, 3]
    assert all(row["up"] for row in rows)
    assert sum(row["role"] == "leader" for row in rows) == 1
    await cluster.wait_converged()
    cluster.kill(3)
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "evx.tools.cli",
            "admin",
            "status",
            "--data",
            str(cluster.layout.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1, "a node down makes the command fail, for scripts"
    assert "down" in down.stdout
