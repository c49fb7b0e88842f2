"""`evx snapshot` and `evx replay` against known states: the tables and the JSON say what
the states hold, verify names what is wrong, and nothing read is changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evx.core import queries
from evx.gateway.exchange import ExchangeMachine
from evx.replication.journal import DurableJournal
from evx.snapshots.store import SnapshotStore
from evx.tools.cli import main
from support.snapshot_logs import apply_through, journal_entries, snapshot_at

SEED = 424242
FIRST, SECOND = 30, 60


@pytest.fixture
def node_dir(tmp_path: Path) -> tuple[Path, list, dict[int, ExchangeMachine]]:
    """A stopped node's folder: snapshots at FIRST and SECOND, the journal from FIRST."""
    folder = tmp_path / "node1"
    folder.mkdir()
    entries = journal_entries(SEED, 80)
    machines = {}
    with SnapshotStore(folder / "snapshots.lmdb") as store:
        for index in (FIRST, SECOND):
            machine = ExchangeMachine()
            apply_through(machine, entries, index)
            machines[index] = machine
            store.put(index, snapshot_at(machine.engine, entries, index))
    (folder / "snapshot.evx").write_bytes(snapshot_at(machines[SECOND].engine, entries, SECOND))
    journal = DurableJournal(str(folder / "raft.journal"))
    for entry in entries[FIRST - 2 :]:
        journal.add(*entry)
    journal._destroy()
    return folder, entries, machines


def _run(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments), catch_exceptions=False)
    return result.exit_code, result.output


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
    }


def test_list_show_diff_export_say_what_the_states_hold(node_dir) -> None:
    folder, _, machines = node_dir
    before = _fingerprint(folder)
    code, out = _run("snapshot", "list", str(folder), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(row["index"], row["valid"]) for row in rows] == [(SECOND, True), (FIRST, True)]
    assert rows[0]["state_hash"] == machines[SECOND].state_hash.hex()

    engine = machines[FIRST].engine
    code, out = _run("snapshot", "show", f"{folder}@{FIRST}", "--json")
    assert code == 0
    view = json.loads(out)
    assert view["snapshot"]["index"] == FIRST
    for account in view["accounts"]:
        assert (account["cash"], account["held"]) == queries.balance(engine, account["account_id"])
        groups = engine.accounts[account["account_id"]].groups
        assert [(g["order_group_id"], g["filled"]) for g in account["order_groups"]] == [
            (group_id, groups[group_id].filled) for group_id in sorted(groups)
        ]
    assert any(account["order_groups"] for account in view["accounts"])  # the log sets them
    market = next(iter(engine.markets.values()))
    code, out = _run("snapshot", "show", f"{folder}@{FIRST}", "--market", market.ticker, "--json")
    book = json.loads(out)["books"][0]
    expected = queries.book(engine, market.market_id)
    assert book["bids"] == [[lv.price, lv.quantity, lv.orders] for lv in expected.bids[:10]]
    assert book["asks"] == [[lv.price, lv.quantity, lv.orders] for lv in expected.asks[:10]]
    code, out = _run("snapshot", "show", str(folder), "--account", "acct1")
    assert code == 0 and "acct1" in out and "accounts" in out

    code, out = _run("snapshot", "diff", f"{folder}@{FIRST}", f"{folder}@{SECOND}", "--json")
    assert code == 0
    changes = json.loads(out)
    old, new = machines[FIRST].engine, machines[SECOND].engine
    assert {row["order_id"] for row in changes["orders"]["added"]} == set(new.orders) - set(
        old.orders
    )
    assert {row["order_id"] for row in changes["orders"]["removed"]} == set(old.orders) - set(
        new.orders
    )
    code, out = _run("snapshot", "diff", f"{folder}@{FIRST}", f"{folder}@{SECOND}")
    assert code == 0 and f"from {FIRST}" in out

    code, out = _run("snapshot", "export", str(folder / "snapshot.evx"))
    assert code == 0
    exported = json.loads(out)
    assert len(exported["orders"]) == len(new.orders)
    assert {row["account_id"]: row["cash"] for row in exported["accounts"]} == {
        account_id: account.cash for account_id, account in new.accounts.items()
    }
    assert exported["engine"]["state_hash"] == new.state_hash.hex()
    assert _fingerprint(folder) == before, "the inspector wrote to what it read"


def test_verify_names_money_that_does_not_add_up(node_dir, tmp_path: Path) -> None:
    folder, entries, _ = node_dir
    code, out = _run("snapshot", "verify", str(folder), "--all", "--json")
    assert code == 0
    assert [result["ok"] for result in json.loads(out)] == [True, True]
    machine = ExchangeMachine()
    apply_through(machine, entries, SECOND)
    machine.engine.accounts[2].cash += 500  # money from nowhere
    bad = tmp_path / "bad.evx"
    bad.write_bytes(snapshot_at(machine.engine, entries, SECOND))
    code, out = _run("snapshot", "verify", str(bad), "--json")
    assert code == 1
    failed = [check["name"] for check in json.loads(out)[0]["checks"] if not check["ok"]]
    assert failed == ["money_conserved"]
    code, out = _run("snapshot", "verify", str(bad))
    assert code == 1 and "money_conserved" in out and "FAILED" in out and "INVALID" in out


def test_a_path_without_snapshots_is_a_clear_error(tmp_path: Path) -> None:
    code, out = _run("snapshot", "list", str(tmp_path))
    assert code != 0 and "no snapshots.lmdb or snapshot.evx" in out
    code, out = _run("snapshot", "show", f"{tmp_path}@x")
    assert code != 0


def test_replay_prints_the_hash_a_node_had_at_each_index(node_dir) -> None:
    folder, entries, _ = node_dir
    straight = ExchangeMachine()
    expected = {}
    for entry in entries:
        apply_through(straight, [entry], entry[1])
        expected[entry[1]] = straight.state_hash.hex()
    code, out = _run("replay", str(folder), "--json")
    assert code == 0
    steps = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert steps[0]["index"] == SECOND + 1, "from the newest snapshot the journal continues"
    times = [step["time_ms"] for step in steps]
    assert times == sorted(times) and times[-1] > 0, "exchange time never goes back"
    assert {step["index"]: step["state_hash"] for step in steps} == {
        index: expected[index] for index in range(SECOND + 1, entries[-1][1] + 1)
    }
    code, out = _run("replay", str(folder), "--from", str(FIRST), "--at", "45,70")
    assert code == 0
    printed = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [fields[:2] for fields in printed] == [["45", expected[45]], ["70", expected[70]]]
    assert all(
        fields[-2:] in (["node", "1"], ["node", "2"], ["node", "3"]) or fields[-1] == "-"
        for fields in printed
    )
    code, out = _run("replay", str(folder), "--from", "0")
    assert code != 0 and "compacted" in out
