"""The `evx` command: the benchmark and the demo run and say what they measured."""

from __future__ import annotations

import json

from click.testing import CliRunner

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


def test_demo_trades_and_settles() -> None:
    result = CliRunner().invoke(main, ["demo", "--engine", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "trade 1:" in result.output
    assert "market closed and settled" in result.output
    assert "exchange fees: $" in result.output
