"""Events: scenario tables for mutually exclusive markets, netted collateral, released
payouts, conversions and settlement, every number worked by hand in the comments.

Notation of the comments (docs/engine.md section 4): per market, b is what the account's
bids pay if they all fill, a what its asks pay (both fees included), q its position
(+YES, -NO); B is the sum of b over the event. In a mutually exclusive event

    hold     = B + 100 min(q) + max(a - b - 100 q)
    released = 100 (NO held + min(q))

where min and max also take 0 (the scenario of a market the account has nothing in, or
of "none wins") unless the event is exhaustive and the account is in every market.
Each account starts with 10,000 cents; the harness audits every invariant after each row.
"""

from __future__ import annotations

from evx.core import PayoutReleased
from support.scenario import Scenario


def election(taker_fee_bps: int = 0) -> Scenario:
    """Event ELECT: exactly one of A, B and C wins (exhaustive)."""
    s = Scenario(actors=("alice", "bob", "carol", "dave"))
    s.add_event("ELECT", "A", "B", "C", exhaustive=True, taker_fee_bps=taker_fee_bps)
    return s


def no_on_every_candidate(s: Scenario) -> None:
    """Bob bids YES 45, 30 and 20 on A, B and C; alice buys NO on each (55 + 70 + 80)."""
    s.run("""
    bob   A buy_yes 1 @ 45      -> accepted; rests 1    # B 45, only A touched: hold 45
    bob   B buy_yes 1 @ 30      -> accepted; rests 1    # B 75, max(d) 0: hold 75
    bob   C buy_yes 1 @ 20      -> accepted; rests 1    # every market: 95 + 0 - 20 = 75
    """)
    # If all three fill, bob holds a YES of every market, which pays 100 whoever wins: the
    # worst case is A and B filling and C winning, 45 + 30 lost.
    s.expect("bob", cash=9_925, held=75)
    s.run("""
    alice A buy_no 1 @ 55       -> accepted; filled 1@55   # a NO alone: hold 55, paid
    """)
    s.expect("alice", cash=9_945, position=-1, market="A")
    # bob: q (1, 0, 0), b (0, 30, 20): 50 + 0 + max(-100, -30, -20) = 30; he paid 45 and
    # 75 - 30 = 45 came out of his hold: cash unchanged
    s.expect("bob", cash=9_925, held=30, position=1, market="A")
    s.run("""
    alice B buy_no 1 @ 70       -> accepted; filled 1@70
    # her hold for it: q (-1), d (100, 70) and 0: 0 - 100 + 100 = 0. NO of A and of B pay
    # at least 100 whoever wins: 100 is released to her, so she paid 70 - 100 = -30
    """)
    assert s.released("alice", "ELECT") == 100
    s.expect("alice", cash=9_975, position=-1, market="B")
    s.expect("bob", cash=9_925, held=0)  # q (1, 1, 0), b_C 20: 20 + 0 - 20 = 0
    s.run("""
    alice C buy_no 1 @ 80       -> accepted; filled 1@80
    # NO on every candidate: every scenario pays 200, released; she paid 205
    """)
    assert s.released("alice", "ELECT") == 200
    s.expect("alice", cash=9_995, position=-1, market="C")
    # bob holds a YES of every market: 100 released; he paid 95
    assert s.released("bob", "ELECT") == 100
    s.expect("bob", cash=10_005, held=0, position=1, market="C")


def test_no_on_every_candidate_risks_at_most_a_dollar_and_settles_exactly() -> None:
    """The example of the issue: NO on each of n candidates costs the sum of the NO prices
    and pays 100 (n - 1) whoever wins; netting releases that at once, so the money at risk
    is 100 minus the sum of the YES prices (here 5), not the 205 paid."""
    s = election()
    no_on_every_candidate(s)
    s.run("""
    op A close                  -> ok
    op B close                  -> ok
    op C close                  -> ok
    op ELECT settle B           -> ok
    # alice: NO of A and C pay 200, less the 200 released: 9_995. bob: YES of B pays 100,
    # less the 100 released: 10_005
    """)
    s.expect("alice", cash=9_995)
    s.expect("bob", cash=10_005)
    released = [e for e in s.last_events if isinstance(e, PayoutReleased)]
    assert [(e.account_id, e.released, e.cash) for e in released] == [
        (s.actors["alice"].account_id, 0, 9_995),
        (s.actors["bob"].account_id, 0, 10_005),
    ]
    assert s.released("alice", "ELECT") == s.released("bob", "ELECT") == 0


def test_selling_a_no_out_of_a_set_gives_back_what_was_released() -> None:
    """A fill can lower the guaranteed payout: the hold must cover what goes back."""
    s = election()
    no_on_every_candidate(s)
    s.run("""
    alice A sell_no 1 @ 50      -> accepted; rests 1
    # a bid of YES at 50 on A: b_A 50, q (-1, -1, -1), d (50, 100, 100):
    # 50 - 100 + 100 = 50 held. If it fills, NO of B and C are left: they are sure to pay
    # only 100, so 100 of the 200 released goes back
    """)
    s.expect("alice", cash=9_945, held=50)
    s.run("""
    carol A sell_yes 1 @ 50     -> accepted; filled 1@50   # carol buys the NO at 50
    # alice pays 50, the pair of A redeems for 100, 100 goes back: 9_945 + 50 - 50 + 100 - 100
    """)
    s.expect("alice", cash=9_945, held=0)
    s.expect_positions("alice", A=0, B=-1, C=-1)
    assert s.released("alice", "ELECT") == 100
    s.expect("carol", cash=9_950, position=-1, market="A")
    s.run("""
    op A close                  -> ok
    op B close                  -> ok
    op C close                  -> ok
    op ELECT settle A           -> ok
    # alice: NO of B and C pay 200, less 100 released; carol's NO of A pays 0
    """)
    s.expect("alice", cash=10_045)
    s.expect("carol", cash=9_950)
    s.expect("bob", cash=10_005)


def test_an_account_without_the_cash_cannot_sell_a_no_out_of_its_set() -> None:
    s = election()
    no_on_every_candidate(s)
    s.run("""
    alice withdraw 9995 out-1   -> ok
    alice A sell_no 1 @ 50      -> rejected collateral_must_cover_order   # needs 50
    alice A sell_no 1 @ 99      -> rejected collateral_must_cover_order   # needs 1
    alice deposit 1 in-1        -> ok
    alice A sell_no 1 @ 99      -> accepted; rests 1                      # a bid of YES at 1
    """)
    s.expect("alice", cash=0, held=1)


def test_a_market_maker_quoting_no_on_every_candidate_holds_the_dearest_one() -> None:
    s = election()
    s.run("""
    carol A buy_no 1 @ 90       -> accepted; rests 1    # a: 90; hold 90
    carol B buy_no 1 @ 90       -> accepted; rests 1    # d (90, 90) and 0: hold 90
    carol C buy_no 1 @ 90       -> accepted; rests 1    # d (90, 90, 90): hold 90, not 270
    """)
    # the worst case is one NO filling and its market winning; two or more NO are sure
    # to pay 100 or more
    s.expect("carol", cash=9_910, held=90)
    s.run("""
    bob   A buy_yes 1 @ 10      -> accepted; filled 1@10
    # carol: q (-1, 0, 0), a (0, 90, 90): 0 - 100 + max(100, 90, 90) = 0 held; she paid 90
    bob   B buy_yes 1 @ 10      -> accepted; filled 1@10
    # NO of A and B: 100 released; she paid 90: cash up 10
    bob   C buy_yes 1 @ 10      -> accepted; filled 1@10
    """)
    s.expect("carol", cash=9_930, held=0, position=-1, market="C")  # 270 paid, 200 released
    assert s.released("carol", "ELECT") == 200
    # bob bought a YES of every market for 30: it pays 100 whoever wins, released at once
    assert s.released("bob", "ELECT") == 100
    s.expect("bob", cash=10_070, held=0, position=1, market="A")


def test_fees_are_part_of_the_worst_case() -> None:
    """Kalshi's taker fee (7 %) on each fill; the hold counts the fee bound of the incoming
    order at the worst price its limit allows."""
    s = election(taker_fee_bps=700)
    s.run("""
    bob   A buy_yes 1 @ 40      -> accepted; rests 1
    bob   B buy_yes 1 @ 30      -> accepted; rests 1
    alice A buy_no 1 @ 60       -> accepted; filled 1@60; fee 2
    # hold while it takes: a 60 + the fee at the worst price (p (100 - p) at most 2_500:
    # ceil(7 * 2_500 / 10_000) = 2) = 62. Paid 60 and ceil(7 * 40 * 60 / 10_000) = 2
    """)
    s.expect("alice", cash=9_938, position=-1, market="A")
    s.run("""
    alice B buy_no 1 @ 70       -> accepted; filled 1@70; fee 2
    # hold: d_A 100, d_B 70 + 2: 0 - 100 + 100 = 0. Paid 70 + ceil(7 * 30 * 70 / 10_000) = 2,
    # and 100 released: 9_938 - 72 + 100
    """)
    s.expect("alice", cash=9_966, position=-1, market="B")
    assert s.released("alice", "ELECT") == 100
    assert s.fees() == 4


def test_a_no_converts_into_a_yes_of_every_other_market() -> None:
    """Polymarket's neg-risk conversion: in an exhaustive event NO of A pays exactly when
    B or C wins, as a YES of B and a YES of C do. The exchange keeps the NO set the
    conversion leaves (the house's), which pays 100 (n - 1) whoever wins."""
    s = election()
    s.run("""
    bob   A buy_yes 2 @ 40      -> accepted; rests 2
    alice A buy_no 2 @ 60       -> accepted; filled 2@60
    alice A convert 1           -> converted
    # q (-2, 0, 0) becomes (-1, 1, 1): every scenario pays her 100 less, as the 100
    # (k - 1) = 0 she is paid. Released before: 100 (2 + min(-2, 0)) = 0; after:
    # 100 (1 + min(-1, 1, 1)) = 0. Cash and hold unchanged.
    """)
    s.expect_positions("alice", A=-1, B=1, C=1)
    s.expect("alice", cash=9_880, held=0, position=-1, market="A")
    event = s.engine.events[s.events["ELECT"]]
    assert event.house_sets == 1
    # escrow: A 2 contracts open (bob's YES, alice's and the house's NO), B 1, C 1; the
    # house's set released 100 * (3 - 1) = 200 of it
    assert [s.engine.markets[s.markets[t]].escrow for t in "ABC"] == [200, 100, 100]
    assert event.released == 200
    s.run("""
    carol B buy_yes 1 @ 35      -> accepted; rests 1
    alice B sell_yes 1 @ 35     -> accepted; filled 1@35
    # she sells her new YES of B: pays 65 for the NO, the pair redeems for 100: +35.
    # hold for it: d (100, 65 - 100, -100), min -1: -100 + 100 = 0
    """)
    s.expect("alice", cash=9_915, held=0)
    s.expect_positions("alice", A=-1, B=0, C=1)
    s.run("""
    op A close                  -> ok
    op B close                  -> ok
    op C close                  -> ok
    op ELECT settle C           -> ok
    # alice: NO of A 100 + YES of C 100; bob: YES of A 0; carol: YES of B 0; the house's
    # NO of A and B pay its 200 back to the escrow
    """)
    s.expect("alice", cash=10_115)
    s.expect("bob", cash=9_920)
    s.expect("carol", cash=9_965)
    assert s.engine.events[s.events["ELECT"]].released == 0
    assert 10_115 + 9_920 + 9_965 + 10_000 == 40_000


def test_a_whole_no_set_converts_into_the_payout_it_had_released() -> None:
    """Converting a NO of every market: her positions are gone, and the 200 released to
    her is hers for good (Polymarket pays 100 (n - 1) per set at conversion; here it was
    released when the set was bought)."""
    s = election()
    no_on_every_candidate(s)
    s.run("""
    alice A convert 1           -> converted
    """)
    s.expect_positions("alice", A=0, B=0, C=0)
    s.expect("alice", cash=9_995, held=0)
    assert s.released("alice", "ELECT") == 0
    released = [e for e in s.last_events if isinstance(e, PayoutReleased)]
    assert [(e.released, e.cash) for e in released] == [(0, 9_995)]
    s.run("""
    op A close                  -> ok
    op B close                  -> ok
    op C close                  -> ok
    op ELECT settle A           -> ok
    """)
    s.expect("alice", cash=9_995)
    s.expect("bob", cash=10_005)


def test_a_conversion_needs_the_no_and_room_in_the_other_markets() -> None:
    s = election()
    s.run("""
    bob   A buy_yes 2 @ 40      -> accepted; rests 2
    alice A buy_no 2 @ 60       -> accepted; filled 2@60
    alice A convert 3           -> rejected no_position_must_cover_conversion
    bob   A convert 1           -> rejected no_position_must_cover_conversion  # YES held
    alice B convert 1           -> rejected no_position_must_cover_conversion
    alice MKT convert 1         -> rejected event_must_be_exhaustive
    op    C configure 0 0 2     -> ok
    alice C buy_yes 1 @ 10      -> accepted; rests 1
    alice A convert 2           -> rejected position_must_stay_within_limit
    # C: 2 YES more with a bid of 1 would pass its limit of 2
    alice A convert 1           -> converted
    """)
    s.expect_positions("alice", A=-1, B=1, C=1)


def test_a_conversion_trims_reduce_only_orders_that_no_longer_fit() -> None:
    s = election()
    s.run("""
    bob   A buy_yes 2 @ 40      -> accepted; rests 2
    alice A buy_no 2 @ 60       -> accepted; filled 2@60
    alice A sell_no 2 @ 30 reduce_only -> accepted; rests 2   # closes her 2 NO
    alice A convert 1           -> converted
    """)
    cancels = [e for e in s.last_events if type(e).__name__ == "OrderCancelled"]
    assert [(e.cancelled_quantity, e.reason) for e in cancels] == [(1, 8)]  # trimmed to 1


def test_none_may_win_an_event_that_is_not_exhaustive() -> None:
    s = Scenario()
    s.add_event("RACE", "X", "Y", taker_fee_bps=0)
    s.run("""
    bob   X buy_yes 1 @ 40      -> accepted; rests 1
    bob   Y buy_yes 1 @ 30      -> accepted; rests 1    # none may win: both lose, hold 70
    """)
    s.expect("bob", cash=9_930, held=70)
    s.run("""
    alice X buy_no 1 @ 60       -> accepted; filled 1@60
    alice Y buy_no 1 @ 70       -> accepted; filled 1@70
    # NO of X and of Y: "none wins" pays 200, X or Y 100: 100 released
    alice X convert 1           -> rejected event_must_be_exhaustive
    """)
    assert s.released("alice", "RACE") == 100
    s.expect("alice", cash=9_970, position=-1, market="Y")
    s.run("""
    op X close                  -> ok
    op Y close                  -> ok
    op RACE settle none         -> ok
    # alice: both NO pay: 200 - 100; bob: nothing
    """)
    s.expect("alice", cash=10_070)
    s.expect("bob", cash=9_930)


def test_an_exhaustive_event_settles_with_a_winner() -> None:
    s = election()
    s.run("""
    op A close                  -> ok
    op B close                  -> ok
    op ELECT settle A           -> rejected event_markets_must_be_closed
    op C close                  -> ok
    op ELECT settle none        -> rejected exhaustive_event_must_have_a_winner
    op A settle yes             -> rejected market_must_be_settled_with_its_event
    op ELECT settle MKT         -> rejected winner_must_be_a_market_of_the_event
    op ELECT settle A           -> ok
    op ELECT settle A           -> exists
    op ELECT settle B           -> rejected event_must_not_be_settled
    """)
    markets = s.engine.markets
    assert [(markets[s.markets[t]].status, markets[s.markets[t]].yes_payout) for t in "ABC"] == [
        (5, 100),
        (5, 0),
        (5, 0),
    ]


def test_markets_of_a_plain_group_stay_on_their_own() -> None:
    """An event that is not mutually exclusive only groups markets: no netting, and each
    settles alone."""
    s = Scenario()
    s.add_event("WEEK", "G1", "G2", mutually_exclusive=False, taker_fee_bps=0)
    s.run("""
    bob   G1 buy_yes 1 @ 40     -> accepted; rests 1
    bob   G2 buy_yes 1 @ 30     -> accepted; rests 1
    alice G1 buy_no 1 @ 60      -> accepted; filled 1@60
    alice G2 buy_no 1 @ 70      -> accepted; filled 1@70
    op WEEK settle G1           -> rejected event_must_be_mutually_exclusive
    op G1 close                 -> ok
    op G1 settle no             -> ok
    """)
    s.expect("alice", cash=9_970, position=-1, market="G2")  # paid 130; NO of G1 paid 100
    s.expect("bob", cash=9_930)
    assert not s.engine.accounts[s.actors["alice"].account_id].events
