"""`evx snapshot list|show|verify|diff|export` and `evx replay`: looking inside the state.

Strategy: thin click commands over snapshots/inspect.py and snapshots/replay.py, which
return plain data; here that data becomes rich tables for a person or JSON (--json) for
a script. Every command only reads: a stopped node's data folder, a store file, or a
single snapshot file (docs/operations.md, "Looking inside a snapshot"). Exit status: 0,
or 1 when what was asked about is invalid (verify), or 2 for a source that cannot be read.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import click

from evx.snapshots import inspect
from evx.snapshots.format import SnapshotError
from evx.snapshots.replay import ReplayError, replay
from evx.snapshots.verify import verify

SOURCE_HELP = "a data folder, snapshots.lmdb or a snapshot file; PATH@INDEX picks one"


def _source(text: str) -> inspect.Source:
    try:
        return inspect.source(text)
    except inspect.SourceError as error:
        raise click.ClickException(str(error)) from None


def _print_tables(*tables: Any) -> None:
    from rich.console import Console  # noqa: PLC0415 - only for people

    console = Console(width=160)
    for table in tables:
        console.print(table)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*[str(value) for value in row])
    return table


_TEXT_COLUMNS = {"ticker", "name", "status", "kind", "node", "state hash", "check", "detail"}


def _time(ms: int) -> str:
    if not ms:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def snapshot() -> None:
    """Look inside snapshots (read-only)."""


@snapshot.command("list")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="print one JSON array")
def list_command(source: str, as_json: bool) -> None:
    """Every snapshot: index, term, time, size, hash, and whether it is intact."""
    src = _source(source)
    try:
        rows = inspect.listing(src)
    except inspect.SourceError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(rows))
        return
    _print_tables(
        _table(
            f"snapshots in {src.path}",
            ["index", "term", "exchange time", "bytes", "orders", "state hash", "valid"],
            [
                [
                    row["index"],
                    row.get("term", "?"),
                    _time(row.get("time_ms", 0)),
                    f"{row['bytes']:,}",
                    f"{row.get('orders', 0):,}",
                    row.get("state_hash", "")[:16],
                    "yes" if row["valid"] else f"NO: {row['problem']}",
                ]
                for row in rows
            ],
        )
    )


@snapshot.command("show")
@click.argument("source")
@click.option("--market", help="one market, by id or ticker")
@click.option("--account", help="one account, by id or name")
@click.option("--levels", default=10, show_default=True, help="book levels per side")
@click.option(
    "--section",
    type=click.Choice(["all", "markets", "events", "books", "accounts"]),
    default="all",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def show_command(
    source: str, market: str | None, account: str | None, levels: int, section: str, as_json: bool
) -> None:
    """Markets, books by level, and accounts with cash, holds and positions."""
    src = _source(source)
    try:
        header, engine = inspect.engine_of(src)
        view = inspect.show(header, engine, market=market, account=account, levels=levels)
    except inspect.SourceError as error:
        raise click.ClickException(str(error)) from None
    if section != "all":
        view = {"snapshot": view["snapshot"], section: view[section]}
    if as_json:
        click.echo(json.dumps(view))
        return
    summary = view["snapshot"]
    click.echo(
        f"snapshot {summary['index']} (term {summary['term']}) of {summary['node']}, "
        f"exchange time {_time(summary['time_ms'])}, state hash {summary['state_hash'][:16]}"
    )
    tables = []
    if "markets" in view:
        tables.append(
            _table(
                "markets",
                ["id", "ticker", "kind", "status", "orders", "open interest", "escrow", "mark"],
                [
                    [
                        m["market_id"],
                        m["ticker"],
                        m["kind"],
                        m["status"],
                        m["open_orders"],
                        m["open_interest"],
                        m["escrow"],
                        m["future"]["mark"] if m["future"] else "",
                    ]
                    for m in view["markets"]
                ],
            )
        )
    if view.get("events"):
        tables.append(
            _table(
                "events",
                ["id", "ticker", "kind", "markets", "settled", "house sets", "released"],
                [
                    [
                        e["event_id"],
                        e["ticker"],
                        "exhaustive"
                        if e["exhaustive"]
                        else "exclusive"
                        if e["mutually_exclusive"]
                        else "group",
                        " ".join(str(m) for m in e["markets"]),
                        f"won by {e['winner_market_id'] or 'none'}" if e["settled"] else "",
                        e["house_sets"],
                        e["released"],
                    ]
                    for e in view["events"]
                ],
            )
        )
    for book in view.get("books", []):
        depth = max(len(book["bids"]), len(book["asks"]))
        rows = []
        for level in range(depth):
            bid = book["bids"][level] if level < len(book["bids"]) else ["", "", ""]
            ask = book["asks"][level] if level < len(book["asks"]) else ["", "", ""]
            rows.append([bid[2], bid[1], bid[0], ask[0], ask[1], ask[2]])
        tables.append(
            _table(
                f"book {book['ticker']} (YES prices; {book['bid_levels']} bid, "
                f"{book['ask_levels']} ask levels)",
                ["orders", "bid qty", "bid", "ask", "ask qty", "orders "],
                rows,
            )
        )
    if "accounts" in view:
        tables.append(
            _table(
                "accounts",
                ["id", "name", "cash", "held", "released", "open orders", "positions", "groups"],
                [
                    [
                        a["account_id"],
                        a["name"],
                        a["cash"],
                        a["held"],
                        a["released"],
                        a["open_orders"],
                        _positions(a["markets"]),
                        " ".join(
                            f"{g['order_group_id']}:{g['filled']}/{g['contract_limit']}"
                            + ("!" if g["triggered"] else "")
                            for g in a["order_groups"]
                        ),
                    ]
                    for a in view["accounts"]
                ],
            )
        )
    _print_tables(*tables)


def _positions(holdings: list[dict[str, Any]]) -> str:
    return " ".join(f"{h['ticker']}:{h['position']:+d}" for h in holdings if h["position"])


@snapshot.command("verify")
@click.argument("source")
@click.option("--all", "every", is_flag=True, help="every snapshot of a store")
@click.option("--json", "as_json", is_flag=True, help="print one JSON array")
def verify_command(source: str, every: bool, as_json: bool) -> None:
    """Checksum, state hash recomputed from the state, and every invariant, by name."""
    src = _source(source)
    targets = [src]
    if every and src.kind == "store":
        targets = [inspect.Source(src.path, "store", row["index"]) for row in inspect.listing(src)]
    results = []
    for target in targets:
        try:
            with inspect.blob(target) as data:
                verification = verify(data)
        except inspect.SourceError as error:
            raise click.ClickException(str(error)) from None
        header = verification.header
        results.append(
            {
                "index": header.index if header is not None else target.index,
                "ok": verification.ok,
                "checks": [
                    {"name": check.name, "ok": check.ok, "detail": check.detail}
                    for check in verification.checks
                ],
            }
        )
    if as_json:
        click.echo(json.dumps(results))
    else:
        _print_tables(
            *[
                _table(
                    f"snapshot {result['index']}: {'valid' if result['ok'] else 'INVALID'}",
                    ["check", "result", "detail"],
                    [
                        [check["name"], "ok" if check["ok"] else "FAILED", check["detail"]]
                        for check in result["checks"]
                    ],
                )
                for result in results
            ]
        )
    sys.exit(0 if all(result["ok"] for result in results) else 1)


@snapshot.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--limit", default=20, show_default=True, help="rows per table on a terminal")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (every row)")
def diff_command(a: str, b: str, limit: int, as_json: bool) -> None:
    """What changed from snapshot A to snapshot B (PATH@INDEX picks from a store)."""
    try:
        changes = inspect.diff(inspect.engine_of(_source(a)), inspect.engine_of(_source(b)))
    except inspect.SourceError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(changes))
        return
    click.echo(
        f"from {changes['a']['index']} ({changes['a']['state_hash'][:16]}) "
        f"to {changes['b']['index']} ({changes['b']['state_hash'][:16]})"
    )
    orders = changes["orders"]
    tables = []
    for title, rows in (
        ("markets", changes["markets"]),
        ("accounts", changes["accounts"]),
        ("positions", changes["positions"]),
        ("orders added", orders["added"]),
        ("orders removed", orders["removed"]),
        ("orders changed", orders["changed"]),
    ):
        if not rows:
            click.echo(f"{title}: no change")
            continue
        columns = list(dict.fromkeys(key for row in rows[:limit] for key in row))
        shown = f" (first {limit} of {len(rows)})" if len(rows) > limit else f" ({len(rows)})"
        tables.append(
            _table(
                title + shown,
                columns,
                [[row.get(column, "") for column in columns] for row in rows[:limit]],
            )
        )
    _print_tables(*tables)


@snapshot.command("export")
@click.argument("source")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="a file (default: standard output)"
)
def export_command(source: str, output: Path | None) -> None:
    """The whole state as JSON, streamed row by row (any size)."""
    src = _source(source)
    try:
        with inspect.blob(src) as data:
            if output is None:
                inspect.export(data, sys.stdout)
            else:
                with open(output, "w") as out:
                    rows = inspect.export(data, out)
                click.echo(f"{rows:,} rows written to {output}", err=True)
    except (inspect.SourceError, SnapshotError) as error:
        raise click.ClickException(str(error)) from None


@click.command("replay")
@click.argument("data_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--from", "start", type=int, help="a snapshot's index, or 0 for empty")
@click.option("--to", type=int, help="stop after this index")
@click.option("--at", help="print only these indexes: 10,20,300")
@click.option("--every", type=int, help="print every Nth index (and the last)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def replay_command(
    data_dir: Path,
    start: int | None,
    to: int | None,
    at: str | None,
    every: int | None,
    as_json: bool,
) -> None:
    """Apply a node's log offline and print the state hash at each index."""
    wanted: set[int] | None = None
    if at:
        try:
            wanted = {int(part) for part in at.split(",") if part.strip()}
        except ValueError:
            raise click.ClickException("--at takes indexes separated by commas") from None
    try:
        begin, steps = replay(data_dir, start=start, to=to)
    except (ReplayError, SnapshotError, OSError) as error:
        raise click.ClickException(str(error)) from None
    origin = f"snapshot {begin.index}" if begin.header is not None else "the empty state"
    if not as_json:
        click.echo(f"from {origin}; journal {begin.journal_first}..{begin.journal_last}", err=True)
    last = None
    try:
        for step in steps:
            last = step
            if wanted is not None and step.index not in wanted:
                continue
            if every and step.index % every and step.index != begin.journal_last:
                continue
            _print_step(step, as_json)
    except ReplayError as error:
        raise click.ClickException(str(error)) from None
    if last is None:
        click.echo("nothing after the starting state", err=True)


def _print_step(step: Any, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "index": step.index,
                    "state_hash": step.state_hash.hex(),
                    "applied": step.applied,
                    "time_ms": step.time_ms,
                    "origin_node": step.origin_node,
                }
            )
        )
    else:
        origin = f"node {step.origin_node}" if step.origin_node else "-"
        click.echo(f"{step.index} {step.state_hash.hex()} {_time(step.time_ms)} {origin}")
