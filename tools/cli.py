"""The `evx` command: one console script, one subcommand per tool.

Strategy: click groups, thin: each subcommand parses its options and calls a function in
its own module, which tests call directly. Output is for a person on a terminal, or one
JSON object with --json for scripts.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import click


@click.group()
@click.version_option(package_name="evx")
def main() -> None:
    """evx: a prediction-market exchange on a Raft log."""


@main.group()
def bench() -> None:
    """Measure the standard workloads (docs/benchmarks.md)."""


@bench.command("engine")
@click.option("--commands", default=200_000, show_default=True, help="commands in the stream")
@click.option("--seed", default=1, show_default=True)
@click.option("--batch-size", default=256, show_default=True, help="commands per log entry")
@click.option(
    "--reference-commands",
    default=20_000,
    show_default=True,
    help="how much of the stream the naive reference book also applies (0: none)",
)
@click.option("--repeat", default=1, show_default=True, help="runs; the median is reported")
@click.option(
    "--event-size",
    default=0,
    show_default=True,
    help="group the markets into exhaustive events of this many (0: each on its own)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_engine(
    commands: int,
    seed: int,
    batch_size: int,
    reference_commands: int,
    repeat: int,
    event_size: int,
    as_json: bool,
) -> None:
    """The engine alone: commands per second and per-command latency."""
    from evx.tools import bench_engine as engine_bench  # noqa: PLC0415 - slow to import

    results = [
        engine_bench.run(commands, seed, batch_size, reference_commands, event_size)
        for _ in range(repeat)
    ]
    result = sorted(results, key=lambda r: r.commands_per_s)[len(results) // 2]
    if as_json:
        payload = result.as_dict()
        if repeat > 1:
            payload["runs_commands_per_s"] = [r.commands_per_s for r in results]
            payload["median_commands_per_s"] = statistics.median(r.commands_per_s for r in results)
        click.echo(json.dumps(payload))
    else:
        click.echo(engine_bench.summary(result))
        if repeat > 1:
            click.echo(f"runs: {', '.join(f'{r.commands_per_s:,.0f}' for r in results)}/s")


DATA_HELP = "the cluster's folder (made by evx up)"


@main.command("node")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True))
def node(config_path: str) -> None:
    """Run one node of a cluster."""
    from evx.replication.journal import JournalCorruptError  # noqa: PLC0415
    from evx.tools import node as node_module  # noqa: PLC0415
    from evx.tools.config import ConfigError  # noqa: PLC0415

    try:
        node_module.main(config_path)
    except (
        ConfigError,
        node_module.DataDirInUseError,
        node_module.MetricsPortError,
        node_module.ClientPortError,
        JournalCorruptError,
    ) as error:
        raise click.ClickException(str(error)) from None


@main.command("up")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help=DATA_HELP)
@click.option(
    "--base-port",
    default=7000,
    show_default=True,
    help="raft N+i, order entry N+100+i, metrics N+200+i",
)
def up(data_dir: Path | None, base_port: int) -> None:
    """Start a three-node cluster on this machine with a demo market (Ctrl-C stops it)."""
    from evx.tools import up as up_module  # noqa: PLC0415

    sys.exit(up_module.run(data_dir or up_module.default_data_dir(), base_port))


@bench.command("cluster")
@click.option("--sessions", default=8, show_default=True, help="client sessions (one account each)")
@click.option("--in-flight", default=8, show_default=True, help="commands in flight per session")
@click.option("--seconds", default=10.0, show_default=True, help="measured time, after 3 s warmup")
@click.option("--no-flush", is_flag=True, help="journal not flushed: to measure what it costs")
@click.option("--batch-window-ms", default=1.0, show_default=True, help="each node's batcher")
@click.option(
    "--snapshot-every",
    default=20_000,
    show_default=True,
    help="each node's [snapshots] every_entries: small to measure snapshots under load",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_cluster(
    sessions: int,
    in_flight: int,
    seconds: float,
    no_flush: bool,
    batch_window_ms: float,
    snapshot_every: int,
    as_json: bool,
) -> None:
    """Acknowledged orders per second through a three-node cluster on this machine."""
    from evx.tools import bench_cluster as cluster_bench  # noqa: PLC0415

    result = cluster_bench.run(
        sessions,
        in_flight,
        measure_s=seconds,
        flush=not no_flush,
        window_ms=batch_window_ms,
        snapshot_every=snapshot_every,
    )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(cluster_bench.summary(result))


@bench.command("feed")
@click.option("--subscribers", default=100, show_default=True, help="feed subscribers, one node")
@click.option(
    "--subscriber-processes",
    default=2,
    show_default=True,
    help="processes the subscribers are spread over (none is the load generator's)",
)
@click.option(
    "--subscriber-mode",
    type=click.Choice(["raw", "client"]),
    default="raw",
    show_default=True,
    help="raw: all but --checked-subscribers only read and count bytes (a fast native "
    "client); client: every subscriber is a full Python FeedClient",
)
@click.option(
    "--checked-subscribers",
    default=2,
    show_default=True,
    help="raw mode: subscribers that are full FeedClients, their books checked",
)
@click.option("--sessions", default=8, show_default=True, help="order sessions (one account each)")
@click.option("--in-flight", default=8, show_default=True, help="commands in flight per session")
@click.option(
    "--seconds", default=10.0, show_default=True, help="measured time per phase, after 3 s warmup"
)
@click.option(
    "--rounds",
    default=2,
    show_default=True,
    help="rounds of both phases, in alternating order; rates are the rounds' median",
)
@click.option("--feed-node", default=1, show_default=True, help="the node the subscribers use")
@click.option(
    "--subscriber-markets",
    default=0,
    show_default=True,
    help="each subscriber follows markets 1..N of the benchmark's 10 (0: every market)",
)
@click.option("--no-flush", is_flag=True, help="journal not flushed")
@click.option("--batch-window-ms", default=1.0, show_default=True, help="each node's batcher")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_feed(
    subscribers: int,
    subscriber_processes: int,
    subscriber_mode: str,
    checked_subscribers: int,
    sessions: int,
    in_flight: int,
    seconds: float,
    rounds: int,
    feed_node: int,
    subscriber_markets: int,
    no_flush: bool,
    batch_window_ms: float,
    as_json: bool,
) -> None:
    """Feed fan-out under the order load: delivery delay, and orders/s with and without."""
    from evx.tools import bench_feed as feed_bench  # noqa: PLC0415

    if subscribers < 1 or subscriber_processes < 1 or rounds < 1 or feed_node not in (1, 2, 3):
        raise click.BadParameter("subscribers, processes and rounds >= 1; feed node 1, 2 or 3")
    if not 0 <= subscriber_markets <= 10:
        raise click.BadParameter("--subscriber-markets: 0 (every market) to 10")
    if checked_subscribers < 1:
        raise click.BadParameter("--checked-subscribers: at least 1, for the books check")
    result = feed_bench.run(
        subscribers,
        subscriber_processes,
        subscriber_mode,
        checked_subscribers,
        sessions,
        in_flight,
        measure_s=seconds,
        rounds=rounds,
        feed_node=feed_node,
        subscriber_markets=subscriber_markets,
        flush=not no_flush,
        window_ms=batch_window_ms,
    )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(feed_bench.summary(result))


@bench.command("snapshot")
@click.option(
    "--orders", default="10000,100000", show_default=True, help="resting orders, comma-separated"
)
@click.option("--snapshots", default=5, show_default=True, help="snapshots timed per size")
@click.option("--no-serve", is_flag=True, help="skip starting a node on each snapshot")
@click.option("--json", "as_json", is_flag=True, help="print one JSON array")
def bench_snapshot(orders: str, snapshots: int, no_serve: bool, as_json: bool) -> None:
    """Snapshot pause and recovery time against the number of resting orders."""
    from evx.tools import bench_snapshot as snapshot_bench  # noqa: PLC0415

    sizes = [int(part) for part in orders.split(",") if part.strip()]
    results = []
    for size in sizes:
        results.append(snapshot_bench.run(size, snapshots, serve=not no_serve))
        if not as_json:
            click.echo(f"{size:,} orders done", err=True)
    click.echo(snapshot_bench.as_json(results) if as_json else snapshot_bench.summary(results))


@main.command("demo")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help=DATA_HELP)
@click.option("--engine", "engine_only", is_flag=True, help="no cluster: the engine alone")
@click.option("--seed", default=7, show_default=True)
@click.option("--steps", default=12, show_default=True)
def demo(data_dir: Path | None, engine_only: bool, seed: int, steps: int) -> None:
    """A market maker quoting both sides and two takers, printed as it happens."""
    if engine_only:
        from evx.tools import demo as engine_demo  # noqa: PLC0415

        for line in engine_demo.run(seed, steps):
            click.echo(line)
        return
    from evx.tools import cluster_demo  # noqa: PLC0415
    from evx.tools import up as up_module  # noqa: PLC0415

    sys.exit(cluster_demo.main(data_dir or up_module.default_data_dir(), seed, steps))


def _register_tools() -> None:
    from evx.tools.admin_cli import admin  # noqa: PLC0415
    from evx.tools.snapshot_cli import replay_command, snapshot  # noqa: PLC0415
    from evx.tools.watch import watch_command  # noqa: PLC0415

    main.add_command(admin)
    main.add_command(snapshot)
    main.add_command(replay_command)
    main.add_command(watch_command)


_register_tools()

if __name__ == "__main__":
    main()
