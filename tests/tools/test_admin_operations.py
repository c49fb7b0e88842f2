"""`evx admin` runs the exchange: accounts, money, a market's whole life, each said in plain
words with its exit status, and what each changed checked through the engine's own state.
One node in this process; the command line runs as a separate process, as an operator's
would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from evx.core import MarketStatus, queries
from evx.gateway.keys import generate_private_key, public_bytes, write_private_key
from evx.tools import operations
from support.nodes import single_node_layout, start_node

TEST_TIMEOUT_S = 60


def _evx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evx.tools.cli", "admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "cents"), [("250", 25_000), ("250.5", 25_050), ("$0.07", 7), ("1,000", None)]
)
def test_amounts_are_dollars_parsed_exactly(text: str, cents: int | None) -> None:
    if cents is None:
        with pytest.raises(ValueError, match="not an amount"):
            operations.parse_cents(text)
    else:
        assert operations.parse_cents(text) == cents
    for bad in ("0", "0.00", "-5", "1.234", "1e3", ""):
        with pytest.raises(ValueError, match="amount"):
            operations.parse_cents(bad)


async def test_an_operator_runs_accounts_money_and_a_market_from_the_command_line(
    tmp_path: Path,
) -> None:
    layout = single_node_layout(tmp_path)
    data = ("--data", str(layout.data_dir))
    key_file = tmp_path / "alice.pem"
    alice_key = generate_private_key()
    write_private_key(key_file, alice_key)

    async def evx(*args: str) -> tuple[int, str]:
        completed = await trio.to_thread.run_sync(lambda: _evx(*args, *data))
        assert not completed.stderr or completed.returncode == 2, completed.stderr
        return completed.returncode, completed.stdout

    async with trio.open_nursery() as nursery:
        with trio.fail_after(TEST_TIMEOUT_S):
            node = await start_node(nursery, layout)
            engine = node.machine.engine

            code, out = await evx("account", "create", "alice", "--key-file", str(key_file))
            assert code == 0 and "account 1 'alice' created" in out, out
            assert engine.accounts[1].public_key == public_bytes(alice_key)
            code, out = await evx("account", "create", "alice", "--public-key", "00" * 32)
            assert code == 3 and "already done, nothing changed: account 1" in out, out

            code, out = await evx("deposit", "1", "250.50", "--reference", "WIRE-1")
            assert code == 0 and "its cash is now $250.50" in out, out
            code, out = await evx("deposit", "1", "250.50", "--reference", "WIRE-1")
            assert code == 3 and "'WIRE-1' was applied before" in out, out
            code, out = await evx("withdraw", "1", "300", "--reference", "ACH-1")
            assert code == 1, out
            assert "refused, nothing changed: withdrawal must not exceed available cash" in out
            code, out = await evx("withdraw", "1", "50", "--reference", "ACH-2", "--json")
            result = json.loads(out)
            assert code == 0 and result["done"] and result["events"][0]["cash"] == 20_050
            assert queries.balance(engine, 1) == (20_050, 0)
            code, out = await evx("deposit", "1", "1.234", "--reference", "WIRE-2")
            assert code == 2, out  # a usage error: nothing sent

            code, out = await evx(
                "market", "create", "CPI-DEC", "--scalar", "200", "400", "--position-limit", "500"
            )
            assert code == 0 and "market 1 CPI-DEC created (scalar on [200, 400])" in out, out
            for verb, status in (
                ("open", MarketStatus.OPEN),
                ("halt", MarketStatus.HALTED),
                ("resume", MarketStatus.OPEN),
            ):
                code, out = await evx("market", verb, "1")
                assert code == 0 and f"now {status.name.lower()}" in out, out
                assert engine.markets[1].status == status
            code, out = await evx("market", "settle", "1", "300")
            assert code == 1 and "market must be closed" in out, out
            code, out = await evx(
                "market",
                "configure",
                "1",
                "--taker-fee-bps",
                "350",
                "--maker-fee-bps",
                "0",
                "--position-limit",
                "100",
            )
            assert code == 0 and "taker fee 350 bps" in out, out
            assert engine.markets[1].taker_bps == 350 and engine.markets[1].position_limit == 100
            code, out = await evx("market", "close", "1")
            assert code == 0 and engine.markets[1].status == MarketStatus.CLOSED
            code, out = await evx("market", "settle", "1", "300")
            assert code == 0 and "YES pays 50 cents, NO 50" in out, out
            code, out = await evx("market", "settle", "1", "300")
            assert code == 3, out
            code, out = await evx("market", "halt", "7")
            assert code == 1 and "market must exist" in out, out

            code, out = await evx("event", "create", "ELECT")
            assert code == 2, out  # the kind is not guessed
            code, out = await evx("event", "create", "ELECT", "--kind", "exhaustive")
            assert code == 0 and "event 1 ELECT created (exhaustive" in out, out
            code, out = await evx("event", "create", "ELECT", "--kind", "exhaustive")
            assert code == 3 and "event 1 has ticker 'ELECT'" in out, out
            for ticker in ("ELECT-A", "ELECT-B"):
                code, out = await evx("market", "create", ticker, "--event", "1")
                assert code == 0 and "in event 1" in out, out
            assert [m.market_id for m in engine.events[1].markets] == [2, 3]
            for market_id in ("2", "3"):
                await evx("market", "open", market_id)
                await evx("market", "close", market_id)
            code, out = await evx("market", "settle", "2", "yes")
            assert code == 1 and "market must be settled with its event" in out, out
            code, out = await evx("event", "settle", "1", "none")
            assert code == 1 and "exhaustive event must have a winner" in out, out
            code, out = await evx("event", "settle", "1", "3")
            assert code == 0 and "event 1 settled: market 3 won" in out, out
            assert engine.markets[3].yes_payout == 100 and engine.markets[2].yes_payout == 0
            code, out = await evx("event", "settle", "1", "3")
            assert code == 3 and "event 1 is settled so" in out, out

            code, out = await evx("market", "create", "GDP-F", "--future", "0", "100")
            assert code == 0 and "market 4 GDP-F created (future on [0, 100])" in out, out
            code, out = await evx(
                "market", "margins", "4", "--initial", "20", "--maintenance", "30", "--band", "5"
            )
            assert code == 1 and "margins must be in order" in out, out
            code, out = await evx(
                "market", "margins", "4", "--initial", "30", "--maintenance", "15", "--band", "5"
            )
            assert code == 0 and "initial margin 30, maintenance 15" in out, out
            code, out = await evx("market", "mark", "4", "60")
            assert code == 0 and "marked at 60" in out, out  # nobody holds a position yet
            code, out = await evx("market", "mark", "4")
            assert code == 0 and "marked at 60" in out, out  # an empty book keeps it
            assert engine.markets[4].future.mark == 60
            code, out = await evx("market", "mark", "1", "60")
            assert code == 1 and "market must be a future" in out, out
        node.stop()
