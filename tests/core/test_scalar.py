"""Scalar settlement (DESIGN.md section 2): YES pays round(100 * (v - floor) / (cap - floor)),
halves rounded up, NO the rest of 100; checked at the edges against exact fractions, and
through settlement with positions on both sides."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evx.core import MarketKind, constants, scalar_yes_payout
from support.scenario import Scenario


def reference(value: int, floor: int, cap: int) -> int:
    """The formula in exact arithmetic: floor(x + 1/2) rounds halves up."""
    return math.floor(Fraction(100 * (value - floor), cap - floor) + Fraction(1, 2))


EDGES = [
    # (floor, cap, value, YES payout)
    (0, 1_000, 0, 0),  # the floor pays NO in full
    (0, 1_000, 1_000, 100),  # the cap pays YES in full
    (0, 1_000, 4, 0),  # 0.4
    (0, 1_000, 5, 1),  # 0.5: a half, up
    (0, 1_000, 994, 99),  # 99.4
    (0, 1_000, 995, 100),  # 99.5: up, all of it to YES
    (0, 1_000, 455, 46),  # 45.5
    (-500, 1_500, -500, 0),  # a negative floor
    (-500, 1_500, -490, 1),  # 0.5
    (-500, 1_500, 500, 50),
    (0, 1, 0, 0),  # the narrowest range
    (0, 1, 1, 100),
    (0, 3, 1, 33),  # 33.33...
    (0, 3, 2, 67),  # 66.66...
    (0, 200, 1, 1),  # 0.5
    (0, 200, 199, 100),  # 99.5
    (-(10**15), 0, -(10**15) + 5 * 10**12, 1),  # the widest range: 0.5
    (-(10**15), 0, -1, 100),  # 99.9999...
]


@pytest.mark.parametrize(("floor", "cap", "value", "payout"), EDGES)
def test_the_payout_at_the_edges(floor: int, cap: int, value: int, payout: int) -> None:
    assert scalar_yes_payout(value, floor, cap) == payout == reference(value, floor, cap)


@given(
    bounds=st.tuples(
        st.integers(-constants.scalar_bound_abs_max, constants.scalar_bound_abs_max),
        st.integers(1, constants.scalar_range_max),
    ),
    place=st.floats(0, 1),
)
def test_the_payout_is_the_exact_formula_everywhere(bounds: tuple[int, int], place: float) -> None:
    floor, span = bounds
    cap = floor + span
    value = floor + round(span * place)  # a test may use floats; the engine never does
    payout = scalar_yes_payout(value, floor, cap)
    assert payout == reference(value, floor, cap)
    assert 0 <= payout <= constants.contract_payout_cents


@pytest.mark.parametrize(("value", "yes"), [(0, 0), (5, 1), (995, 100), (1_000, 100)])
def test_settlement_at_an_edge_pays_both_sides_exactly(value: int, yes: int) -> None:
    s = Scenario(kind=MarketKind.SCALAR, floor=0, cap=1_000, taker_fee_bps=0)
    s.run(f"""
    alice buy_yes 10 @ 30           -> accepted; rests 10
    bob   sell_yes 10 @ 30          -> accepted; filled 10@30
    op    close                     -> ok
    op    settle {value}            -> ok
    """)
    s.expect("alice", cash=10_000 - 300 + 10 * yes)
    s.expect("bob", cash=10_000 - 700 + 10 * (100 - yes))
    assert s.engine.markets[s.market_id].escrow == 0
