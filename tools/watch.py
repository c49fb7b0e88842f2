"""`evx watch MARKET`: a live view of one market's book and trades, from the feed of any node.

Strategy: the feed client library (gateway/feed_client.py) keeps the book and fails over
between the nodes by itself; this module only names the market and draws. MARKET is a
market id or a ticker: a ticker is looked up by subscribing to every market once and
reading their images (BookSnapshot carries the ticker). A person gets a table redrawn in
place (rich), refreshed at most `REFRESHES_PER_S` times a second; a script gets `--json`:
one JSON object per line for every frame of the market (the image, each change, each
heartbeat that names it), in the order the node sent them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import click
import trio

from evx.core import BookSide, MarketStatus
from evx.gateway import messages as wire
from evx.gateway.client import sole_exception
from evx.gateway.codec import Connection, Signal
from evx.gateway.feed import LocalBook
from evx.gateway.feed_client import FeedClient, FeedError

from .admin_cli import DATA_HELP
from .node import split_address

REFRESHES_PER_S = 10
_KINDS = {
    wire.BookSnapshot: "snapshot",
    wire.LevelUpdate: "level",
    wire.TradeUpdate: "trade",
    wire.StatusUpdate: "status",
    wire.SettledUpdate: "settled",
    wire.ConfigUpdate: "config",
    wire.MarkUpdate: "mark",
    wire.MarginUpdate: "margins",
}


class MarketNotFoundError(LookupError):
    pass


async def market_id_of(addresses: Sequence[tuple[str, int]], market: str) -> int:
    """The id of the market named by an id or a ticker (looked up on the first node that
    answers)."""
    if market.isdigit():
        return int(market)
    for host, port in addresses:
        try:
            return await _ticker_lookup(host, port, market)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            continue
    raise OSError("no node's feed answered")


async def _ticker_lookup(host: str, port: int, ticker: str) -> int:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        connection = Connection(wire.CLIENT, wire.FEED_PORT)
        try:
            await stream.send_all(
                connection.send(wire.Subscribe(1, int(wire.SubscribeFlag.ALL_MARKETS), ()))
            )
            expected: int | None = None
            images = 0
            while expected is None or images < expected:
                event = connection.next_event()
                if event is Signal.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65_536))
                    continue
                if event is Signal.CLOSED or isinstance(event, wire.Error):
                    raise OSError(f"the feed at {host}:{port} ended the lookup: {event}")
                if isinstance(event, wire.Subscribed):
                    expected = event.markets
                elif isinstance(event, wire.BookSnapshot):
                    images += 1
                    if event.ticker == ticker:
                        return event.market_id
        finally:
            await trio.aclose_forcefully(stream)
    raise MarketNotFoundError(f"no market has the ticker {ticker!r}")


def message_json(message: wire.Message, node_id: int) -> dict[str, Any] | None:
    """One JSON line's object for a feed frame of the watched market."""
    kind = _KINDS.get(type(message))
    if kind is None:
        return None
    values: dict[str, Any] = {"kind": kind, "node_id": node_id}
    for name in message.FIELDS:
        value = getattr(message, name)
        if isinstance(value, tuple):  # the levels of an image
            value = [[level.price, level.quantity, level.orders] for level in value]
        values[name] = value
    return values


def render(book: LocalBook | None, feed: FeedClient, market_id: int, levels: int) -> Any:
    from rich.console import Group  # noqa: PLC0415 - only for people
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    if book is None:
        state = "repairing a gap" if market_id in feed.stale else "connecting"
        return Text(f"market {market_id}: {state}...")
    status = MarketStatus(book.status).name.lower()
    header = Text(
        f"{book.ticker or market_id}  (market {market_id}, {status}, market_seq "
        f"{book.market_seq})   node {feed.node_id}   applied {feed.applied_index}   "
        f"gaps repaired {feed.statistics.repairs}"
    )
    if book.mark:
        header.append(f"   mark {book.mark}c")
    if book.status == MarketStatus.SETTLED:
        header.append(f"\nsettled: outcome {book.outcome}, YES pays {book.yes_payout}c")
    ladder = Table(title="book (YES cents)", show_edge=False)
    for column in ("orders", "bid size", "bid", "ask", "ask size", "orders"):
        ladder.add_column(column, justify="right")
    bids = sorted(book.bids.items(), reverse=True)[:levels]
    asks = sorted(book.asks.items())[:levels]
    for row in range(max(len(bids), len(asks))):
        bid = bids[row] if row < len(bids) else None
        ask = asks[row] if row < len(asks) else None
        ladder.add_row(
            str(bid[1][1]) if bid else "",
            str(bid[1][0]) if bid else "",
            str(bid[0]) if bid else "",
            str(ask[0]) if ask else "",
            str(ask[1][0]) if ask else "",
            str(ask[1][1]) if ask else "",
        )
    trades = Table(title="last trades", show_edge=False)
    for column in ("trade", "price", "size", "taker"):
        trades.add_column(column, justify="right")
    for trade in reversed(list(book.trades)[-levels:]):
        taker = "bought YES" if trade.aggressor_side == BookSide.BID else "sold YES"
        trades.add_row(str(trade.trade_id), str(trade.price), str(trade.quantity), taker)
    return Group(header, ladder, trades)


async def watch(
    addresses: Sequence[tuple[str, int]],
    market: str,
    *,
    as_json: bool = False,
    levels: int = 10,
    seconds: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Watch until Ctrl-C (or `seconds`); returns the exit status."""
    market_id = await market_id_of(addresses, market)
    feed: FeedClient | None = None

    def on_message(message: wire.Message) -> None:
        if getattr(message, "market_id", None) != market_id or feed is None:
            return
        line = message_json(message, feed.node_id)
        if line is not None:
            out.write(json.dumps(line) + "\n")
            out.flush()

    feed = FeedClient(addresses, markets=[market_id], on_message=on_message if as_json else None)
    with trio.move_on_after(seconds if seconds is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            if not as_json:
                nursery.start_soon(_draw, feed, market_id, levels)
    return 0


async def _draw(feed: FeedClient, market_id: int, levels: int) -> None:
    from rich.live import Live  # noqa: PLC0415 - only for people

    with Live(render(None, feed, market_id, levels), auto_refresh=False) as live:
        while True:
            live.update(render(feed.current(market_id), feed, market_id, levels), refresh=True)
            await trio.sleep(1 / REFRESHES_PER_S)


@click.command("watch")
@click.argument("market")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help=DATA_HELP)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="a node's config")
@click.option("--node", "first_node", type=int, help="the node to watch from first")
@click.option("--levels", default=10, show_default=True, help="price levels a side, and trades")
@click.option("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, every change")
def watch_command(
    market: str,
    data_dir: Path | None,
    config_path: Path | None,
    first_node: int | None,
    levels: int,
    seconds: float | None,
    as_json: bool,
) -> None:
    """A live view of MARKET (an id or a ticker): its book and last trades, from the feed
    of any node, moving to another node if that one goes away."""
    from .admin_cli import EXIT_UNREACHABLE, UsageProblem, _nodes  # noqa: PLC0415

    nodes = [node for node in _nodes(data_dir, config_path) if node.feed]
    if not nodes:
        raise UsageProblem("no node of this cluster serves a feed ([node] feed in its config)")
    nodes.sort(key=lambda node: node.node_id != first_node)
    addresses = [split_address(node.feed) for node in nodes]
    try:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(
                lambda: watch(addresses, market, as_json=as_json, levels=levels, seconds=seconds)
            )
    except BaseException as raised:
        error = sole_exception(raised)
        if isinstance(error, MarketNotFoundError | FeedError):
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        if isinstance(error, OSError):
            click.echo(f"error: could not reach the feed: {error}", err=True)
            sys.exit(EXIT_UNREACHABLE)
        raise


__all__ = [
    "FeedError",
    "MarketNotFoundError",
    "market_id_of",
    "message_json",
    "render",
    "watch",
    "watch_command",
]
