"""The collateral rule against a naive reference: every way the orders can fill.

The engine holds, per market on its own or per mutually exclusive event, a closed form
(core/model.py): the worst scenario's losing orders. The reference below knows nothing of
that form. It takes the account's positions and resting orders, tries every way they can
fill (each order by any number of its contracts, each at its own price, paying the maker
fee the per-order rounding gives), and for each computes what the fills cost less what
they add to the least the positions pay in any scenario (with YES and NO counted apart,
so a redeemed pair is 100 in every scenario). The hold must be the largest of these, and
the released payout the least payout of the positions: exactly, not just at least, for
the rule is both safe (no way of filling costs more than is held) and the least that is.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evx.core import constants
from evx.core.fees import fee_cents
from evx.core.model import (
    Account,
    AccountMarket,
    Event,
    Market,
    Order,
    event_risk,
    market_hold,
)

PAYOUT = constants.contract_payout_cents

# One resting order: (market index, is_bid, YES price, contracts).
ORDERS = st.lists(
    st.tuples(st.integers(0, 3), st.booleans(), st.integers(1, 99), st.integers(1, 2)),
    max_size=4,
)
POSITIONS = st.lists(st.integers(-3, 3), min_size=4, max_size=4)


def build(
    markets: int, exhaustive: bool, positions: list[int], orders: list[Any], maker_bps: int
) -> tuple[Event, list[AccountMarket], list[Order]]:
    event = Event(1, "E", True, exhaustive)
    account = Account(1, "a", b"k" * 32)
    ams: dict[int, AccountMarket] = {}
    for index in range(markets):
        market = Market(index + 1, f"M{index}", 1, 0, 0, maker_bps, 1_000_000, 0, 0)
        event.markets.append(market)
        if positions[index]:
            ams[index] = AccountMarket(account, market)
            ams[index].position = positions[index]
    placed = []
    for number, (index, is_bid, price, quantity) in enumerate(orders, start=1):
        if index >= markets:
            continue
        market = event.markets[index]
        am = ams.setdefault(index, AccountMarket(account, market))
        side = 1 if is_bid else 2
        # a GTC limit order paying the market's maker fee (no taker fee: it rests)
        order = Order(
            number, number, account, am, market, side, is_bid, price, quantity,
            1, 1, 0, 2, 0, 0, maker_bps,
        )  # fmt: skip
        if maker_bps:
            order.maker_bound = order.maker_fee_bound()
        am.add(order)
        placed.append(order)
    return event, list(ams.values()), placed


def least_payout(yes: list[int], no: list[int], exhaustive: bool) -> int:
    """The least the gross positions pay over the scenarios "market k wins" (and "none
    wins" unless exhaustive)."""
    total_no = sum(no)
    payouts = [PAYOUT * (yes[k] + total_no - no[k]) for k in range(len(yes))]
    if not exhaustive:
        payouts.append(PAYOUT * total_no)
    return min(payouts)


def reference(
    markets: int, exhaustive: bool, positions: list[int], orders: list[Order], maker_bps: int
) -> tuple[int, int]:
    """(the most any way of filling costs, less what it adds to the least payout; the
    least payout of the positions as they are)."""
    yes0 = [max(q, 0) for q in positions[:markets]]
    no0 = [max(-q, 0) for q in positions[:markets]]
    before = least_payout(yes0, no0, exhaustive)
    worst = 0
    for fills in itertools.product(*(range(order.remaining + 1) for order in orders)):
        yes, no, cost = list(yes0), list(no0), 0
        for order, filled in zip(orders, fills, strict=True):
            index = order.market.market_id - 1
            cost += order.x * filled + fee_cents(maker_bps, filled * order.b)
            if order.is_bid:
                yes[index] += filled
            else:
                no[index] += filled
        worst = max(worst, cost - (least_payout(yes, no, exhaustive) - before))
    return worst, before


@settings(max_examples=400)
@given(
    markets=st.integers(2, 4),
    exhaustive=st.booleans(),
    positions=POSITIONS,
    orders=ORDERS,
    maker_bps=st.sampled_from([0, 175, 700, constants.fee_bps_max]),
)
def test_the_event_hold_is_the_worst_way_of_filling(
    markets: int, exhaustive: bool, positions: list[int], orders: list[Any], maker_bps: int
) -> None:
    event, ams, placed = build(markets, exhaustive, positions, orders, maker_bps)
    hold, released = event_risk(event, ams, len(ams))
    assert (hold, released) == reference(markets, exhaustive, positions, placed, maker_bps)


@settings(max_examples=400)
@given(
    position=st.integers(-3, 3),
    orders=ORDERS,
    maker_bps=st.sampled_from([0, 175, 700, constants.fee_bps_max]),
)
def test_a_market_on_its_own_holds_the_worse_of_its_two_scenarios(
    position: int, orders: list[Any], maker_bps: int
) -> None:
    """A market on its own is the event of one market that "none" (NO) can win."""
    orders = [(0, *rest) for _, *rest in orders]
    event, ams, placed = build(1, False, [position, 0, 0, 0], orders, maker_bps)
    hold = market_hold(ams[0]) if ams else 0
    worst, least = reference(1, False, [position], placed, maker_bps)
    assert (hold, least) == (worst, 0)
    assert event_risk(event, ams, len(ams)) == (hold, 0)


def test_the_reference_finds_the_example_of_docs_engine_md() -> None:
    """NO bids of 90 on each of three candidates: one fill alone is the worst case."""
    orders = [(index, False, 10, 1) for index in range(3)]
    event, ams, placed = build(3, True, [0, 0, 0, 0], orders, 0)
    assert reference(3, True, [0, 0, 0], placed, 0) == (90, 0)
    assert event_risk(event, ams, len(ams)) == (90, 0)
