"""Fees, rounded up once per order over all of its fills.

The taker fee of an order is fee_cents(taker_bps, B) where B is the sum over its taker fills
of contracts * p * (100 - p), p the YES price of the fill (the formula is the same in NO
terms). At the default 700 bps this is Kalshi's fee,
ceil(7 * C * p * (100 - p) / 10_000).  # float-ok
After each fill the order's fee is recomputed on the new B and the fill is charged the
difference, so an order filled in many pieces never pays more than one equivalent fill.
Maker fills keep their own sum and rate.

Why a closing fill never costs more than it returns: closing c contracts at side price x
returns c * (100 - x) cents, and its fee is at most
ceil(bps * c * x * (100 - x) / 10**6),  # float-ok
because ceil(a + b) - ceil(a) <= ceil(b). With bps <= 10_000 that real number is at most
c * (100 - x), an integer, so the rounded fee is too.
"""

from __future__ import annotations

from .constants import fee_denominator


def fee_cents(bps: int, basis: int) -> int:
    """ceil(bps * basis / fee_denominator), in integers."""
    return -((-bps * basis) // fee_denominator)
