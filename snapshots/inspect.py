"""What `evx snapshot` reads and reports: sources, listings, views, differences, exports.

Strategy: everything here is read-only and returns plain data (dicts and lists of ints,
strings, hex), which tools/snapshot_cli.py prints either as tables or as JSON; the two
never disagree because they are the same data. A source is a node's data folder (its
`snapshots.lmdb`), an LMDB environment file, or a single snapshot file (the transfer file
`snapshot.evx`, or any copy of a blob); `path@index` picks one snapshot of a store. The
store is opened read-only without its lock file, so reading never writes anything.

`show` and `diff` rebuild the engine (core/state.py) and read it with the engine's own
query functions; `export` never builds it: it streams the stored rows one at a time, so a
state of any size exports in constant memory beyond the mapped file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from evx.core import (
    ACCOUNT_FIELDS,
    BANK_REFERENCE_FIELDS,
    EVENT_FIELDS,
    HEADER_FIELDS,
    MARKET_FIELDS,
    ORDER_FIELDS,
    Engine,
    MarketKind,
    MarketStatus,
    Side,
    queries,
)

from . import format as snapshot_format
from .format import SnapshotError, SnapshotHeader
from .store import SnapshotStore, StoreError
from .verify import load

STORE_NAME = "snapshots.lmdb"
TRANSFER_NAME = "snapshot.evx"


class SourceError(ValueError):
    """A path that holds no snapshot, or an index it does not have."""


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    kind: str  # "store" or "file"
    index: int | None  # chosen with path@index; None for the newest


def source(text: str) -> Source:
    """`path` or `path@index`: a data folder, an LMDB environment, or a snapshot file."""
    path_text, _, index_text = text.rpartition("@") if "@" in text else (text, "", "")
    index = None
    if index_text:
        if not index_text.isdigit():
            raise SourceError(f"{text}: after @ comes a log index")
        index = int(index_text)
    path = Path(path_text)
    if path.is_dir():
        if (path / STORE_NAME).is_file():
            return Source(path / STORE_NAME, "store", index)
        if (path / TRANSFER_NAME).is_file():
            return Source(path / TRANSFER_NAME, "file", index)
        raise SourceError(f"{path}: no {STORE_NAME} or {TRANSFER_NAME} in this folder")
    if not path.is_file():
        raise SourceError(f"{path}: no such file or folder")
    with open(path, "rb") as file:
        magic = file.read(len(snapshot_format.MAGIC))
    return Source(path, "file" if magic == snapshot_format.MAGIC else "store", index)


def _open_store(path: Path) -> SnapshotStore:
    try:
        return SnapshotStore(path, readonly=True)
    except StoreError as error:
        raise SourceError(str(error)) from None


@contextlib.contextmanager
def blob(src: Source) -> Iterator[memoryview]:
    """The chosen snapshot's bytes (mapped, for a store), valid inside the `with`."""
    if src.kind == "file":
        data = src.path.read_bytes()
        if src.index is not None:
            with contextlib.suppress(SnapshotError):
                if snapshot_format.read_header(data).index != src.index:
                    raise SourceError(f"{src.path} holds another index than {src.index}")
        yield memoryview(data)
        return
    with _open_store(src.path) as store:
        indexes = store.indexes()
        if not indexes:
            raise SourceError(f"{src.path}: the store holds no snapshot")
        index = src.index if src.index is not None else indexes[0]
        if index not in indexes:
            raise SourceError(f"{src.path}: no snapshot at index {index}; it has {indexes}")
        with store.view(index) as view:
            yield view


def engine_of(src: Source) -> tuple[SnapshotHeader, Engine]:
    with blob(src) as data:
        try:
            return load(data, full_audit=False)
        except SnapshotError as error:
            raise SourceError(f"{src.path}: cannot be read ({error}); run verify") from None


# -- list ---------------------------------------------------------------------------------


def listing(src: Source) -> list[dict[str, Any]]:
    """One row per snapshot, newest first; `valid` is the checksum and header checks
    (verify does the rest)."""
    rows = []
    if src.kind == "file":
        data = src.path.read_bytes()
        rows.append(_row(len(data), memoryview(data)))
        return rows
    with _open_store(src.path) as store:
        for index in store.indexes():
            with store.view(index) as view:
                row = _row(len(view), view)
                row["index"] = index  # the key, even when the header is unreadable
                rows.append(row)
    return rows


def _row(size: int, data: memoryview) -> dict[str, Any]:
    row: dict[str, Any] = {"index": None, "bytes": size}
    try:
        header = snapshot_format.parse(data).header
    except SnapshotError as error:
        row.update(valid=False, problem=str(error))
        with contextlib.suppress(SnapshotError):
            header = snapshot_format.read_header(data)
            row.update(_header_summary(header))
        return row
    row.update(_header_summary(header))
    row.update(valid=True, problem="")
    return row


def _header_summary(header: SnapshotHeader) -> dict[str, Any]:
    return {
        "index": header.index,
        "term": header.term,
        "time_ms": header.time_ms,
        "created_unix_ms": header.created_unix_ms,
        "node": header.node,
        "state_hash": header.state_hash.hex(),
        "state_digest": header.state_digest.hex(),
        "accounts": header.accounts,
        "markets": header.markets,
        "orders": header.orders,
    }


# -- show ---------------------------------------------------------------------------------


def _find_market(engine: Engine, text: str) -> int:
    if text.isdigit() and int(text) in engine.markets:
        return int(text)
    market_id = engine.market_ids_by_ticker.get(text)
    if market_id is None:
        raise SourceError(f"no market {text!r} in this snapshot")
    return market_id


def _find_account(engine: Engine, text: str) -> int:
    if text.isdigit() and int(text) in engine.accounts:
        return int(text)
    account_id = engine.account_ids_by_name.get(text)
    if account_id is None:
        raise SourceError(f"no account {text!r} in this snapshot")
    return account_id


def show(
    header: SnapshotHeader,
    engine: Engine,
    *,
    market: str | None = None,
    account: str | None = None,
    levels: int = 10,
) -> dict[str, Any]:
    market_ids = sorted(engine.markets)
    account_ids = sorted(engine.accounts)
    if market is not None:
        market_ids = [_find_market(engine, market)]
    if account is not None:
        account_ids = [_find_account(engine, account)]
    markets = []
    books = []
    for market_id in market_ids:
        m = engine.markets[market_id]
        markets.append(
            {
                "market_id": market_id,
                "ticker": m.ticker,
                "kind": MarketKind(m.kind).name.lower(),
                "status": MarketStatus(m.status).name.lower(),
                "close_time_ms": m.close_time_ms,
                "taker_bps": m.taker_bps,
                "maker_bps": m.maker_bps,
                "position_limit": m.position_limit,
                "open_orders": m.open_orders,
                "open_interest": m.open_interest,
                "escrow": m.escrow,
                "outcome": m.outcome,
                "event_id": m.event.event_id if m.event is not None else 0,
                "future": None
                if m.future is None
                else {
                    "mark": m.future.mark,
                    "initial_margin": m.future.initial_margin,
                    "maintenance_margin": m.future.maintenance_margin,
                    "mark_band": m.future.mark_band,
                    "mark_interval_ms": m.future.mark_interval_ms,
                },
            }
        )
        view = queries.book(engine, market_id)
        assert view is not None
        books.append(
            {
                "market_id": market_id,
                "ticker": m.ticker,
                "bids": [[lv.price, lv.quantity, lv.orders] for lv in view.bids[:levels]],
                "asks": [[lv.price, lv.quantity, lv.orders] for lv in view.asks[:levels]],
                "bid_levels": len(view.bids),
                "ask_levels": len(view.asks),
            }
        )
    accounts = []
    shown_markets = set(market_ids)
    for account_id in account_ids:
        a = engine.accounts[account_id]
        holdings = [
            {
                "market_id": market_id,
                "ticker": engine.markets[market_id].ticker,
                "position": am.position,
                # a futures market's: its margin; 0 in a mutually exclusive event (the event
                # holds for its markets)
                "hold": am.hold,
                "open_orders": len(am.orders),
            }
            for market_id, am in sorted(a.markets.items())
            if market_id in shown_markets and (am.position or am.orders or am.hold)
        ]
        in_events = [
            {
                "event_id": event_id,
                "ticker": ae.event.ticker,
                "hold": ae.hold,
                "released": ae.released,
            }
            for event_id, ae in sorted(a.events.items())
            if any(market_id in shown_markets for market_id in ae.ams)
        ]
        if market is not None and not holdings:
            continue
        accounts.append(
            {
                "account_id": account_id,
                "name": a.name,
                "cash": a.cash,  # available: held and escrowed money are not in it
                "held": a.held,
                "released": sum(ae.released for ae in a.events.values()),  # part of cash
                "open_orders": len(a.orders),
                "markets": holdings,
                "events": in_events,
                "order_groups": [
                    {
                        "order_group_id": group.group_id,
                        "contract_limit": group.contract_limit,
                        "window_ms": group.window_ms,
                        "filled": group.filled,  # within the window as of the snapshot's time
                        "triggered": group.triggered,
                    }
                    for group in sorted(a.groups.values(), key=lambda g: g.group_id)
                ],
            }
        )
    return {
        "snapshot": _header_summary(header),
        "totals": {
            "deposits": engine.deposits_total,
            "withdrawals": engine.withdrawals_total,
            "fees_collected": engine.fees_collected,
        },
        "markets": markets,
        "events": [
            {
                "event_id": event.event_id,
                "ticker": event.ticker,
                "mutually_exclusive": event.mutually_exclusive,
                "exhaustive": event.exhaustive,
                "markets": [m.market_id for m in event.markets],
                "settled": event.settled,
                "winner_market_id": event.winner,
                "house_sets": event.house_sets,
                "released": event.released,
            }
            for event in sorted(engine.events.values(), key=lambda e: e.event_id)
            if market is None or int(market_ids[0]) in [m.market_id for m in event.markets]
        ],
        "books": books,
        "accounts": accounts,
    }


# -- diff ---------------------------------------------------------------------------------


def diff(a: tuple[SnapshotHeader, Engine], b: tuple[SnapshotHeader, Engine]) -> dict[str, Any]:
    """What changed from snapshot A to snapshot B: markets, accounts, positions, orders."""
    (header_a, engine_a), (header_b, engine_b) = a, b
    market_fields = ("status", "outcome", "open_interest", "escrow", "open_orders")
    markets = []
    for market_id in sorted(set(engine_a.markets) | set(engine_b.markets)):
        ma, mb = engine_a.markets.get(market_id), engine_b.markets.get(market_id)
        if ma is None or mb is None:
            kept = mb if ma is None else ma
            assert kept is not None
            markets.append(
                {
                    "market_id": market_id,
                    "ticker": kept.ticker,
                    "change": "added" if ma is None else "removed",
                }
            )
            continue
        for name in market_fields:
            if getattr(ma, name) != getattr(mb, name):
                markets.append(
                    {
                        "market_id": market_id,
                        "ticker": mb.ticker,
                        "field": name,
                        "a": getattr(ma, name),
                        "b": getattr(mb, name),
                    }
                )
    accounts = []
    positions = []
    for account_id in sorted(set(engine_a.accounts) | set(engine_b.accounts)):
        aa, ab = engine_a.accounts.get(account_id), engine_b.accounts.get(account_id)
        if aa is None or ab is None:
            kept_account = ab if aa is None else aa
            assert kept_account is not None
            accounts.append(
                {
                    "account_id": account_id,
                    "name": kept_account.name,
                    "change": "added" if aa is None else "removed",
                    "cash": kept_account.cash,
                }
            )
        elif (aa.cash, aa.held) != (ab.cash, ab.held):
            accounts.append(
                {
                    "account_id": account_id,
                    "name": ab.name,
                    "cash_a": aa.cash,
                    "cash_b": ab.cash,
                    "held_a": aa.held,
                    "held_b": ab.held,
                }
            )
        before = dict(queries.positions(engine_a, account_id))
        after = dict(queries.positions(engine_b, account_id))
        for market_id in sorted(set(before) | set(after)):
            if before.get(market_id, 0) != after.get(market_id, 0):
                positions.append(
                    {
                        "account_id": account_id,
                        "market_id": market_id,
                        "a": before.get(market_id, 0),
                        "b": after.get(market_id, 0),
                    }
                )
    added, removed, changed = [], [], []
    for order_id in sorted(set(engine_a.orders) | set(engine_b.orders)):
        oa, ob = engine_a.orders.get(order_id), engine_b.orders.get(order_id)
        if oa is None:
            assert ob is not None
            added.append(_order_row(ob))
        elif ob is None:
            removed.append(_order_row(oa))
        elif (oa.remaining, oa.price) != (ob.remaining, ob.price):
            changed.append(
                {
                    "order_id": order_id,
                    "remaining_a": oa.remaining,
                    "remaining_b": ob.remaining,
                    "price_a": oa.own_price(oa.price),
                    "price_b": ob.own_price(ob.price),
                }
            )
    return {
        "a": _header_summary(header_a),
        "b": _header_summary(header_b),
        "markets": markets,
        "accounts": accounts,
        "positions": positions,
        "orders": {"added": added, "removed": removed, "changed": changed},
    }


def _order_row(order: Any) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "account_id": order.account.account_id,
        "market_id": order.market.market_id,
        "side": Side(order.side).name.lower(),
        "price": order.own_price(order.price),
        "remaining": order.remaining,
    }


# -- export -------------------------------------------------------------------------------


class _ViewReader:
    """A file-like reader over a memoryview, for msgpack's streaming Unpacker."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._position + size)
        chunk = bytes(self._view[self._position : end])
        self._position = end
        return chunk


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def export(data: memoryview, out: IO[str]) -> int:
    """Write the snapshot as one JSON object, row by row; returns the rows written.
    Only a snapshot that passes its checksum is exported."""
    snapshot = snapshot_format.parse(data)
    unpacker = msgpack.Unpacker(
        _ViewReader(snapshot.state), raw=False, strict_map_key=True, read_size=1 << 20
    )
    if unpacker.read_array_header() != 7:
        raise SnapshotError("state_decodes", "the state is not seven sections")
    version = unpacker.unpack()
    state_header = unpacker.unpack()
    out.write('{"snapshot": ')
    json.dump(_jsonable(_header_summary(snapshot.header)), out)
    out.write(f', "state_version": {json.dumps(version)}, "engine": ')
    json.dump(_jsonable(dict(zip(HEADER_FIELDS, state_header, strict=True))), out)
    rows = 0
    for name, row_fields in (
        ("bank_references", BANK_REFERENCE_FIELDS),
        ("accounts", ACCOUNT_FIELDS),
        ("markets", MARKET_FIELDS),
        ("orders", ORDER_FIELDS),
        ("events", EVENT_FIELDS),
    ):
        out.write(f', "{name}": [')
        for number in range(unpacker.read_array_header()):
            row = unpacker.unpack()
            out.write(",\n" if number else "\n")
            json.dump(_jsonable(dict(zip(row_fields, row, strict=True))), out)
            rows += 1
        out.write("]")
    out.write("}\n")
    return rows
