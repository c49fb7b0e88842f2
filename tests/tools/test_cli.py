"""The `evx` command: the benchmark and the demo run and say what they measured."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from evx.core import Batch, Engine, check_invariants
from evx.tools.bench_engine import Workload
from evx.tools.cli import main


def test_bench_engine_prints_one_json_object_with_the_agreed_keys() -> None:
    result = CliRunner().invoke(
        main,
        ["bench", "engine", "--commands", "3000", "--reference-commands", "500", "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    for key in (
        "commands_per_s",
        "latency_us_p50",
        "latency_us_p99",
        "latency_us_p999",
        "reference_ratio",
    ):
        assert payload[key] > 0, key
    assert payload["latency_us_p50"] <= payload["latency_us_p99"] <= payload["latency_us_p999"]
    assert payload["trades"] > 0


def test_bench_engine_prints_a_summary_for_a_person() -> None:
    result = CliRunner().invoke(
        main, ["bench", "engine", "--commands", "2000", "--reference-commands", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "commands/s" in result.output and "p99.9" in result.output


def test_bench_engine_runs_the_flow_on_events_and_stays_audited() -> None:
    """The event workload: markets in exhaustive events of 10, the full audit at the end."""
    workload = Workload(seed=3, markets=20, accounts=200, event_size=10)
    engine = Engine()
    for time_ms, command in enumerate([*workload.setup(), *workload.stream(3_000)], start=1):
        engine.apply(Batch.of(time_ms, [command]))
    check_invariants(engine)
    assert len(engine.events) == 2 and all(e.exhaustive for e in engine.events.values())
    assert any(account.events for account in engine.accounts.values())
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "engine",
            "--commands",
            "2000",
            "--reference-commands",
            "0",
            "--event-size",
            "10",
        ],
    )
    assert result.exit_code == 0 and "in exhaustive events of 10" in result.output, result.output


def test_demo_trades_and_settles() -> None:
    result = CliRunner().invoke(main, ["demo", "--engine", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "trade 1:" in result.output
    assert "market closed and settled" in result.output
    assert "exchange fees: $" in result.output


def test_bench_feed_runs_a_short_fan_out_and_checks_the_books() -> None:
    # A real three-node cluster and subscriber processes, briefly: the benchmark's own
    # checks must hold (no gap, no framing error, books equal to another node's).
    short = ["--seconds", "1", "--rounds", "1", "--subscribers", "3", "--subscriber-processes", "1"]
    completed = subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", "bench", "feed", "--json", *short],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(completed.stdout)
    assert payload["orders_per_s_without"] > 0 and payload["orders_per_s_with"] > 0
    assert payload["delivery_samples"] > 0 and payload["delivery_ms_p50"] > 0
    assert payload["gaps"] == 0 and payload["raw_protocol_errors"] == 0
    assert payload["books_identical"] and payload["subscribers_caught_up"] == 2
    assert payload["raw_frames_received"] > 0
