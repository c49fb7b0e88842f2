"""README's first command: `evx up` starts a cluster with a demo market, `evx demo` trades
on it, SIGTERM stops every node, and `evx up` on the same folder resumes the exchange."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evx.tools.layout import ClusterLayout
from support.counter import free_ports


def _start(data: Path, base_port: int) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evx.tools.cli",
            "up",
            "--data",
            str(data),
            "--base-port",
            str(base_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops the cluster" in line:
            return process, lines
    process.kill()
    raise AssertionError("evx up did not come up: " + "".join(lines))


def _status(data: Path) -> list[dict]:
    completed = subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", "admin", "status", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(completed.stdout)


def _stop(process: subprocess.Popen[str]) -> int:
    os.kill(process.pid, signal.SIGTERM)
    assert process.stdout is not None
    process.stdout.read()  # what it says while it stops
    process.stdout.close()
    return process.wait(30)


def test_evx_up_starts_trades_stops_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "evx-data"
    base_port = free_ports(1)[0] // 2  # room for base+1..3, +101..103, +201..203, +301..303
    process, lines = _start(data, base_port)
    try:
        text = "".join(lines)
        assert "demo market: DEMO-RAIN-TOMORROW" in text and "maker: account 1" in text
        demo = subprocess.run(
            [sys.executable, "-m", "evx.tools.cli", "demo", "--data", str(data), "--steps", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "filled" in demo.stdout, demo.stdout
        command = ["watch", "DEMO-RAIN-TOMORROW", "--data", str(data), "--json", "--seconds", "2"]
        watch = subprocess.run(
            [sys.executable, "-m", "evx.tools.cli", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        image = json.loads(watch.stdout.splitlines()[0])
        assert image["kind"] == "snapshot" and image["ticker"] == "DEMO-RAIN-TOMORROW", image
        assert image["market_seq"] > 1 and image["status"] == 2  # traded, open
        before = _status(data)
        assert (
            len(
                {
                    row["state_hash"]
                    for row in before
                    if row["applied_index"] == before[0]["applied_index"]
                }
            )
            == 1
        )
    finally:
        assert _stop(process) == 0
    layout = ClusterLayout(data)
    for config in layout.configs():
        log = (data / f"node{config.node_id}.log").read_text()
        assert '"event": "node_stopped"' in log, "each node stopped cleanly"
    process, _ = _start(data, base_port)  # the same folder: the same exchange
    try:
        after = _status(data)
        assert min(row["applied_index"] for row in after) >= max(
            row["applied_index"] for row in before
        )
        assert (
            json.loads((data / "accounts" / "accounts.json").read_text())["maker"]["account_id"]
            == 1
        )
    finally:
        assert _stop(process) == 0
