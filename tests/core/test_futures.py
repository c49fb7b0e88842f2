"""Futures: scenario tables for positions on margin, marks and variation margin,
liquidation and deleveraging, and settlement by marks, every number worked by hand.

The rules (docs/engine.md section 4): a futures market FUT on [0, 100] trades at prices
1-99 and settles at the scalar price. A fill settles its price's difference from the mark
at once (the buyer pays price - mark per contract to the seller), so every position is at
the mark. An account's margin must cover, for its position and orders,

    required = initial * max(|q + bids|, |q - asks|) + what its orders pay beyond the mark
               + fee bounds

A mark moves the price at most the band; each position is paid q * move (variation
margin), the loser's out of its cash first, then its margin. After a mark, margins are
topped up from cash; where that falls short the account's orders there are cancelled; a
position below maintenance * |q| is closed at the mark (liquidated) until its margin covers
the rest at the initial margin, against the largest opposite positions (deleveraged).
No fees here unless said; margins 20 / 10 and a band of 5 unless said.
"""

from __future__ import annotations

from evx.core import (
    CreateMarket,
    MarketKind,
    MarketMarked,
    MarketStatus,
    PositionReduced,
    SetMargins,
    SetMarketStatus,
    VariationMargin,
)
from support.scenario import Scenario


def futures(cash: dict[str, int] | None = None, **options: object) -> Scenario:
    cash = cash or {"alice": 1_000, "bob": 300, "carol": 1_000}
    s = Scenario(actors=tuple(cash), cash=0)
    for name, amount in cash.items():
        s.run(f"{name} deposit {amount} seed-{name} -> ok")
    s.add_future("FUT", **options)  # type: ignore[arg-type]
    return s


def long_and_short(s: Scenario) -> None:
    s.run("""
    alice FUT buy_yes 10 @ 52    -> accepted; rests 10
    # 20 * 10 of initial margin and (52 - 50) * 10 it pays beyond the mark: 220
    bob   FUT sell_yes 10 @ 52   -> accepted; filled 10@52
    # bob: 200 of margin; he is paid 2 * 10 by alice, who pays it out of her 220
    """)
    s.expect("alice", cash=780, held=200, position=10, market="FUT")
    s.expect("bob", cash=120, held=200, position=-10, market="FUT")


def test_marks_move_variation_margin_from_the_short_to_the_long() -> None:
    s = futures()
    long_and_short(s)
    s.run("""
    op FUT mark 55               -> ok     # 10 * 5: alice + 50, bob - 50 (from his cash)
    op FUT mark 60               -> ok
    """)
    s.expect("alice", cash=880, held=200, position=10, market="FUT")
    s.expect("bob", cash=20, held=200, position=-10, market="FUT")
    s.run("""
    op FUT mark 65               -> ok     # bob owes 50: his 20 of cash, then 30 of margin
    op FUT mark 70               -> ok     # 50 more of margin: 120, still >= 10 * 10
    """)
    s.expect("bob", cash=0, held=120, position=-10, market="FUT")
    variations = [e for e in s.last_events if isinstance(e, VariationMargin)]
    assert [(e.variation, e.margin, e.cash) for e in variations] == [(50, 200, 980), (-50, 120, 0)]


def test_a_margin_below_maintenance_is_liquidated_against_the_largest_opposite_position() -> None:
    s = futures()
    long_and_short(s)
    for price in (55, 60, 65, 70):
        s.run(f"op FUT mark {price} -> ok")
    s.run("""
    op FUT mark 75               -> ok
    # bob pays 50 out of his margin: 70 < 10 * 10. His 70 covers 70 // 20 = 3 contracts at
    # the initial margin: 7 are closed at the mark, against alice (the only long), and
    # 70 - 3 * 20 = 10 goes back to his cash
    """)
    reduced = [e for e in s.last_events if isinstance(e, PositionReduced)]
    assert [
        (e.account_id, e.quantity, e.position, e.reason, e.margin, e.cash) for e in reduced
    ] == [
        (s.actors["bob"].account_id, 7, -3, 1, 60, 10),
        # alice's margin needs only 3 * 20 now: 140 of it back; 780 + 5 * 50 + 140
        (s.actors["alice"].account_id, 7, 3, 2, 60, 1_170),
    ]
    s.expect("bob", cash=10, held=60, position=-3, market="FUT")
    s.expect("alice", cash=1_170, held=60, position=3, market="FUT")


def test_settlement_marks_its_way_to_the_price_and_no_one_owes_what_it_does_not_have() -> None:
    """FUT settles at 100 from a mark of 75: 85, 90, 95, 100 one band at a time, each with
    its variation margin, and the liquidations they cause; then every margin comes back."""
    s = futures()
    long_and_short(s)
    for price in (55, 60, 65, 70, 75, 80):
        s.run(f"op FUT mark {price} -> ok")
    # after 80: bob pays 15: 10 of cash, 5 of margin (55 >= 10 * 3); alice 1_185
    s.expect("bob", cash=0, held=55, position=-3, market="FUT")
    s.run("""
    op FUT close                 -> ok
    op FUT settle 100            -> ok
    # 85: bob 40 of margin. 90: 25 < 30: 1 contract kept (25 // 20), 2 closed against
    # alice, 5 back to bob. 95: bob pays his 5 of cash. 100: 5 of margin, 15 left.
    # alice: 1_185 + 15 + 15 + 40 (margin freed) + 5 + 5, then her 20 of margin back
    """)
    marks = [e.mark for e in s.last_events if isinstance(e, MarketMarked)]
    assert marks == [85, 90, 95, 100]
    s.expect("alice", cash=1_285, held=0)
    s.expect("bob", cash=15, held=0)
    assert 1_285 + 15 == 1_000 + 300  # every cent bob lost, alice won


def test_a_mark_that_leaves_margin_short_cancels_the_orders_it_cannot_cover() -> None:
    s = futures()
    long_and_short(s)
    s.run("""
    bob   FUT sell_yes 5 @ 60    -> accepted; rests 5
    # exposure 15: 20 * 15 = 300; the ask sells above the mark: nothing beyond it. 100 more
    """)
    s.expect("bob", cash=20, held=300, position=-10, market="FUT")
    s.run("""
    op FUT mark 55               -> ok
    # bob owes 50: 20 of cash, 30 of margin: 270 < 300 and no cash left: his ask is
    # cancelled (margin_short); 200 covers the position: 70 back to his cash
    """)
    cancels = [e for e in s.last_events if type(e).__name__ == "OrderCancelled"]
    assert [(c.cancelled_quantity, c.reason) for c in cancels] == [(5, 11)]
    s.expect("bob", cash=70, held=200, position=-10, market="FUT")


def test_what_a_fill_pays_beyond_the_mark_is_held_and_settled_at_once() -> None:
    s = futures(taker_fee_bps=700)
    s.run("""
    op FUT mark 50               -> ok
    bob   FUT buy_yes 4 @ 40     -> accepted; rests 4
    # below the mark a bid pays nothing beyond it: 20 * 4 = 80
    alice FUT sell_yes 4 @ 40    -> accepted; filled 4@40; fee 7
    # alice sells 10 below the mark: she pays 4 * 10 to bob; her hold while it takes:
    # 20 * 4 + 40 + the fee bound ceil(7 * 4 * 2_500 / 10_000) = 7: 127. Fee
    # ceil(7 * 4 * 40 * 60 / 10_000) = ceil(6.72) = 7
    """)
    s.expect("alice", cash=1_000 - 80 - 40 - 7, held=80, position=-4, market="FUT")
    s.expect("bob", cash=300 - 80 + 40, held=80, position=4, market="FUT")
    assert s.fees() == 7


def test_higher_margins_apply_at_once() -> None:
    s = futures()
    long_and_short(s)
    s.run("""
    op FUT margins 40 25 5 0     -> ok
    # bob's 200 of margin needs 40 * 10 = 400: his 120 of cash goes in: 320, short of it
    # (no orders to cancel) but >= 25 * 10: kept. alice tops up 200 from her 780
    """)
    s.expect("bob", cash=0, held=320, position=-10, market="FUT")
    s.expect("alice", cash=580, held=400, position=10, market="FUT")
    s.run("""
    op FUT margins 40 35 5 0     -> ok
    # 320 < 35 * 10: bob keeps 320 // 40 = 8, 2 closed against alice; his 0 back
    """)
    s.expect("bob", cash=0, held=320, position=-8, market="FUT")
    s.expect("alice", cash=660, held=320, position=8, market="FUT")


def test_the_engine_marks_by_itself_from_the_middle_of_the_book() -> None:
    s = futures(mark_interval_ms=10)
    long_and_short(s)
    s.run("""
    carol FUT buy_yes 1 @ 56     -> accepted; rests 1
    carol FUT sell_yes 1 @ 60    -> accepted; rests 1
    """)
    start = s.harness.time_ms
    applied = s.harness.tick(start + 10)  # the mark was set at the market's creation time
    marks = [e for e in s.harness.time_events(applied) if isinstance(e, MarketMarked)]
    # the middle of 56 and 60 is 58, but a mark moves at most the band: 55
    assert [e.mark for e in marks] == [55]
    assert s.engine.markets[s.markets["FUT"]].future.mark == 55


def test_marks_out_of_band_and_futures_budgets_are_refused() -> None:
    s = futures()
    long_and_short(s)
    s.run("""
    op FUT mark 56               -> rejected mark_must_be_within_band
    op FUT mark 100              -> rejected price_must_be_between_1_and_99
    op MKT mark 50               -> rejected market_must_be_a_future
    op FUT margins 20 10 11 0    -> rejected margins_must_be_in_order
    alice FUT buy_yes 1 market max_cost=100 -> rejected max_cost_must_not_be_set_for_futures
    op FUT mark 0                -> ok     # from the book: empty; its last trade, 52
    """)
    assert s.engine.markets[s.markets["FUT"]].future.mark == 52


def test_marks_by_time_wait_for_the_market_to_open_and_stop_when_it_closes() -> None:
    s = futures()
    harness = s.harness
    made = harness.do(CreateMarket("LATER", MarketKind.FUTURE, 0, 0, 0, 1_000, 0, 100))
    later = made[0].market_id
    harness.do(SetMargins(later, 20, 10, 5, 10))  # every 10 ms, from now on
    start = harness.time_ms

    def marks_at(time_ms: int) -> list[int]:
        applied = harness.tick(time_ms)
        return [e.market_id for e in harness.time_events(applied) if isinstance(e, MarketMarked)]

    assert marks_at(start + 10) == []  # proposed: no mark, the next one 10 ms on
    harness.do(SetMarketStatus(later, MarketStatus.OPEN), time_ms=start + 11)
    assert marks_at(start + 20) == [later]
    harness.do(SetMarketStatus(later, MarketStatus.CLOSED), time_ms=start + 21)
    assert marks_at(start + 40) == []
    assert s.engine.markets[later].future.next_mark_ms == 0
