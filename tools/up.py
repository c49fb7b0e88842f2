"""`evx up`: a three-node cluster on this machine, with a demo market, in one command.

Strategy: the first run lays out DATA (tools/layout.py): configs, the cluster secret, the
operator's key. Every run starts one `evx node` process per config, waits until the
cluster has a leader, then (once per folder) creates the demo accounts with their key
files and deposits, and a demo market, through an operator session. Ctrl-C or SIGTERM
stops the nodes cleanly (SIGTERM to each, by its own process id); started again on the
same folder, the cluster resumes the same exchange from its journals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from evx.core import CreateAccount, CreateMarket, Deposit, MarketKind, MarketStatus, SetMarketStatus
from evx.gateway.client import Client, query_status
from evx.gateway.keys import public_bytes, read_private_key

from . import layout as layouts
from .node import split_address

DEMO_ACCOUNTS = ("maker", "taker-a", "taker-b")
DEMO_CASH_CENTS = 1_000_000  # $10,000 each
DEMO_TICKER = "DEMO-RAIN-TOMORROW"


def ensure_layout(data_dir: Path, base_port: int, nodes: int = 3) -> layouts.ClusterLayout:
    layout = layouts.ClusterLayout(data_dir.resolve())
    if layout.exists():
        return layout
    raft = [base_port + number for number in range(1, nodes + 1)]
    gateway = [base_port + 100 + number for number in range(1, nodes + 1)]
    metrics = [base_port + 200 + number for number in range(1, nodes + 1)]
    feed = [base_port + 300 + number for number in range(1, nodes + 1)]
    return layouts.create(data_dir, raft, gateway, metrics_ports=metrics, feed_ports=feed)


@contextmanager
def node_processes(layout: layouts.ClusterLayout) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One `evx node` process per config, logging to DATA/nodeN.log; stopped on exit."""
    processes = []
    try:
        for path in layout.config_paths():
            log_file = open(layout.data_dir / f"{path.stem}.log", "ab")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "evx.tools.cli", "node", "--config", str(path)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches evx up, which stops them in order
                )
            )
            log_file.close()
        yield processes
    finally:
        stop_processes(processes)


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout_s: float = 10) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_for_leader(layout: layouts.ClusterLayout, timeout_s: float = 30) -> int:
    """The node id of the leader, once every node answers and one of them leads."""
    addresses = [split_address(config.gateway) for config in layout.configs()]
    with trio.fail_after(timeout_s):
        while True:
            statuses = []
            for host, port in addresses:
                try:
                    statuses.append(await query_status(host, port, timeout_s=1))
                except Exception:  # a node not up yet, in any way: ask again
                    statuses.append(None)
            leaders = [s.node_id for s in statuses if s is not None and s.role == 2]
            if len(leaders) == 1 and all(s is not None for s in statuses):
                return leaders[0]
            await trio.sleep(0.2)


async def bootstrap_demo(layout: layouts.ClusterLayout) -> None:
    """Demo accounts (with key files) and an open demo market, once per folder."""
    if layout.accounts():
        return
    nodes = [split_address(config.gateway) for config in layout.configs()]
    operator_key = read_private_key(layout.operator_key_file)
    async with Client(nodes, account_id=0, key=operator_key) as operator:
        for name in DEMO_ACCOUNTS:
            key_file = layouts.add_account_key(layout, name)
            public_key = public_bytes(read_private_key(key_file))
            result = await operator.operate(CreateAccount(name, public_key))
            first = result.event_values()[0]
            account_id = first[1] if first[0] == 7 else first[5]  # created, or `exists`
            await operator.operate(Deposit(account_id, DEMO_CASH_CENTS, f"demo-seed-{name}"))
            layouts.record_account(layout, name, account_id, key_file)
        created = await operator.operate(CreateMarket(DEMO_TICKER, MarketKind.BINARY))
        first = created.event_values()[0]
        market_id = first[1] if first[0] == 32 else first[5]
        await operator.operate(SetMarketStatus(market_id, MarketStatus.OPEN))


def describe(layout: layouts.ClusterLayout) -> str:
    configs = layout.configs()
    accounts = layout.accounts()
    lines = [
        f"evx cluster in {layout.data_dir}",
        "  nodes (order entry): " + ", ".join(f"node{c.node_id} {c.gateway}" for c in configs),
        "  market data (feed):  "
        + (", ".join(f"node{c.node_id} {c.feed}" for c in configs if c.feed) or "none"),
        f"  demo market: {DEMO_TICKER} (market 1)",
        "  demo accounts:",
    ]
    for name, account in sorted(accounts.items()):
        lines.append(f"    {name}: account {account['account_id']}, key {account['key_file']}")
    lines += [
        "",
        f"  status:     evx admin status --data {layout.data_dir}",
        f"  traders:    evx demo --data {layout.data_dir}",
        f"  watch:      evx watch {DEMO_TICKER} --data {layout.data_dir}",
        f"  node logs:  {layout.data_dir}/node*.log",
        "  metrics:    "
        + (", ".join(f"http://{c.metrics}/metrics" for c in configs if c.metrics) or "none"),
        "  Ctrl-C stops the cluster; `evx up` on the same folder resumes it.",
    ]
    return "\n".join(lines)


def run(data_dir: Path, base_port: int) -> int:
    layout = ensure_layout(data_dir, base_port)
    stop = {"requested": False}

    def request_stop(signal_number: int, frame: object) -> None:
        stop["requested"] = True

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        with node_processes(layout) as processes:
            try:
                leader = trio.run(wait_for_leader, layout)
                trio.run(bootstrap_demo, layout)
                print(f"leader: node{leader}")
                print(describe(layout), flush=True)
                while not stop["requested"]:
                    if any(process.poll() is not None for process in processes):
                        codes = [process.poll() for process in processes]
                        print(f"a node stopped (exit codes {codes}); stopping the cluster")
                        return 1
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            print("stopping the cluster", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def default_data_dir() -> Path:
    return Path(os.environ.get("EVX_DATA", "evx-data"))
