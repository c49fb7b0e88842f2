"""The `evx` command: one console script, one subcommand per tool.

Strategy: click groups, thin: each subcommand parses its options and calls a function in
its own module, which tests call directly. Output is for a person on a terminal, or one
JSON object with --json for scripts.
"""

from __future__ import annotations

import json
import statistics

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
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_engine(
    commands: int, seed: int, batch_size: int, reference_commands: int, repeat: int, as_json: bool
) -> None:
    """The engine alone: commands per second and per-command latency."""
    from evx.tools import bench_engine as engine_bench  # noqa: PLC0415 - slow to import

    results = [
        engine_bench.run(commands, seed, batch_size, reference_commands) for _ in range(repeat)
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


@main.command("demo")
@click.option("--seed", default=7, show_default=True)
@click.option("--steps", default=12, show_default=True)
def demo(seed: int, steps: int) -> None:
    """A market maker and two takers trading one market, printed as it happens."""
    from evx.tools import demo as engine_demo  # noqa: PLC0415

    for line in engine_demo.run(seed, steps):
        click.echo(line)


if __name__ == "__main__":
    main()
