"""`evx watch`: a ticker is found, the JSON lines are the market's frames in order, and the
table a person sees shows the book and trades."""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio
from rich.console import Console

from evx.core import Side
from evx.gateway.client import Client
from evx.gateway.feed import BookImage, LocalBook
from evx.gateway.feed_client import FeedClient
from evx.tools.watch import MarketNotFoundError, market_id_of, render, watch
from support.nodes import open_market_with_traders, operator_client, single_node_layout, start_node


async def test_watch_json_lines_follow_the_market_from_its_ticker(tmp_path: Path) -> None:
    layout = single_node_layout(tmp_path, feed=True)
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, layout)
        async with operator_client(layout, node) as operator:
            market_id, traders = await open_market_with_traders(operator, ["a"], ticker="WATCH-ME")
        addresses = [("127.0.0.1", node.feed_port)]
        assert await market_id_of(addresses, "WATCH-ME") == market_id
        assert await market_id_of(addresses, str(market_id)) == market_id
        try:
            await market_id_of(addresses, "NO-SUCH")
        except MarketNotFoundError as error:
            assert "NO-SUCH" in str(error)
        else:
            raise AssertionError("an unknown ticker was found")

        async def trade() -> None:
            await trio.sleep(0.3)
            account_id, key = traders["a"]
            address = [("127.0.0.1", node.gateway_port)]
            async with Client(address, account_id=account_id, key=key) as a:
                await a.place(market_id=market_id, side=Side.BUY_YES, price=44, quantity=5)

        nursery.start_soon(trade)
        await watch(addresses, "WATCH-ME", as_json=True, seconds=1.5, out=out)
        nursery.cancel_scope.cancel()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["kind"] == "snapshot" and lines[0]["ticker"] == "WATCH-ME"
    level = [line for line in lines if line["kind"] == "level"]
    assert level == [
        {
            "kind": "level",
            "node_id": 1,
            "market_id": market_id,
            "market_seq": lines[0]["market_seq"] + 1,
            "side": 1,
            "price": 44,
            "quantity": 5,
            "orders": 1,
        }
    ]


def test_the_table_shows_both_sides_the_last_trades_and_the_state() -> None:
    book = LocalBook.from_image(
        BookImage(4, 17, 2, ((45, 10, 1), (44, 5, 2)), ((55, 3, 1),), ticker="RAIN")
    )
    book.apply((36, 4, 18, 901, 55, 2, 1))
    feed = FeedClient([("127.0.0.1", 1)], markets=[4])
    console = Console(file=io.StringIO(), width=100)
    console.print(render(book, feed, 4, levels=10))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "RAIN" in text and "open" in text and "market_seq 18" in text
    for value in ("45", "44", "55", "901", "bought YES"):
        assert value in text
    console = Console(file=io.StringIO(), width=100)
    console.print(render(None, feed, 4, levels=10))
    assert "connecting" in console.file.getvalue()  # type: ignore[attr-defined]
