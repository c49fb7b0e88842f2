"""Scenario tables: one row per command with its outcome, then the book and the balances.

Every number below is worked by hand in the comments. Fees are Kalshi's taker formula
ceil(7 * C * p * (100 - p) / 10_000) unless the scenario says otherwise; makers pay 0.
Each account starts with 10_000 cents. The harness audits every invariant after each row.
"""

from __future__ import annotations

from evx.core import MarketKind
from support.scenario import Scenario


def test_a_trading_day_price_time_priority_fees_netting_settlement() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 10 @ 40        -> accepted; rests 10       # holds 10 * 40 = 400
    bob   sell_yes 4 @ 35        -> accepted; filled 4@40; fee 7
    # bob sells YES (buys NO) at the resting 40: pays 4 * 60 = 240 and
    # ceil(7 * 4 * 40 * 60 / 10_000) = ceil(6.72) = 7
    """)
    s.expect_book(bids="40x6")
    s.expect("alice", cash=9_600, held=240, position=4)
    s.expect("bob", cash=9_753, position=-4)

    s.run("""
    carol buy_yes 5 @ 40         -> accepted; rests 5        # behind alice at 40
    carol buy_yes 2 @ 41         -> accepted; rests 2        # a better price
    bob   sell_yes 9 @ 40        -> accepted; filled 2@41, 6@40, 1@40; fee 16
    # price first (41), then time at 40 (alice before carol). Fee rounded once per order:
    # basis 2*41*59 + 7*40*60 = 21_638, ceil(7 * 21_638 / 10_000) = 16, where three separate
    # fills would pay 4 + 11 + 2 = 17.
    """)
    s.expect_book(bids="40x4")
    s.expect("alice", cash=9_600, held=0, position=10)
    # bob pays NO prices 2 * 59 + 7 * 60 = 538 and 16 in fees: 9_753 - 554
    s.expect("bob", cash=9_199, position=-13)
    # carol held 2 * 41 + 5 * 40 = 282; 82 + 40 were paid, 4 * 40 are still held
    s.expect("carol", cash=9_718, held=160, position=3)
    assert s.fees() == 23

    s.run("""
    alice sell_yes 10 @ 45       -> accepted; rests 10       # closes her 10 YES: no hold
    bob   buy_yes 10 @ 50        -> accepted; filled 10@45; fee 18
    # bob closes 10 of his 13 NO: pays 450, the 10 pairs redeem for 1_000,
    # fee ceil(7 * 10 * 45 * 55 / 10_000) = ceil(17.325) = 18
    """)
    s.expect_book(bids="40x4")
    s.expect("alice", cash=10_050, position=0)  # paid 10 * 55, redeemed 1_000
    s.expect("bob", cash=9_731, position=-3)
    assert s.engine.markets[s.market_id].escrow == 300  # 3 contracts open

    s.run("""
    op close                     -> ok                       # cancels carol's 4 @ 40
    op settle yes                -> ok
    """)
    s.expect("alice", cash=10_050)
    s.expect("bob", cash=9_731)
    s.expect("carol", cash=10_178)  # 9_718 + 160 released + 3 YES * 100
    assert s.fees() == 41
    assert 10_050 + 9_731 + 10_178 + 41 == 30_000


def test_b_self_trade_prevention_modes() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 5 @ 40                     -> accepted; rests 5
    alice sell_yes 3 @ 40                    -> accepted; cancelled 3 self_trade_prevented
    alice sell_yes 3 @ 40 stp=resting        -> accepted; rests 3   # her bid is cancelled
    """)
    s.expect_book(asks="40x3")
    s.expect("alice", cash=9_820, held=180)  # the ask buys NO at 60: 3 * 60
    s.run("""
    bob   buy_yes 2 @ 39                     -> accepted; rests 2
    alice buy_yes 5 @ 45 stp=both            -> accepted; cancelled 5 self_trade_prevented
    """)
    s.expect_book(bids="39x2")  # alice's ask and her new bid are both gone
    s.expect("alice", cash=10_000)
    s.run("""
    carol sell_yes 2 @ 50                    -> accepted; rests 2
    alice sell_yes 2 @ 50                    -> accepted; rests 2   # behind carol
    alice buy_yes 4 @ 50 stp=resting         -> accepted; filled 2@50; fee 4; rests 2
    # fills carol's 2 first (ceil(7 * 2 * 2_500 / 10_000) = ceil(3.5) = 4), cancels her
    # own ask, and the rest of her bid rests
    """)
    s.expect_book(bids="50x2 39x2")
    # alice: 2 YES bought for 100 + 4 fee, 2 * 50 held for the resting bid
    s.expect("alice", cash=9_796, held=100, position=2)


def test_c_immediate_orders_post_only_and_market_orders() -> None:
    s = Scenario()
    s.run("""
    alice sell_yes 5 @ 60           -> accepted; rests 5
    alice sell_yes 5 @ 62           -> accepted; rests 5
    bob   buy_yes 7 @ 61 ioc        -> accepted; filled 5@60; fee 9; cancelled 2 immediate_remainder
    # ceil(7 * 5 * 60 * 40 / 10_000) = ceil(8.4) = 9
    bob   buy_yes 6 @ 62 fok        -> rejected fill_or_kill_must_fill_completely   # 5 at 62
    bob   buy_yes 5 @ 62 fok        -> accepted; filled 5@62; fee 9   # ceil(8.246) = 9
    carol buy_yes 3 @ 55 post_only  -> accepted; rests 3
    carol buy_no 2 @ 46 post_only   -> rejected post_only_must_not_take  # an ask at 54 <= 55
    carol buy_no 2 @ 44 post_only   -> accepted; rests 2                 # an ask at 56
    """)
    s.expect_book(bids="55x3", asks="56x2")
    s.run("""
    alice sell_yes 4 @ 70           -> accepted; rests 4
    alice sell_yes 4 @ 75           -> accepted; rests 4
    bob   buy_yes 10 market @ 72    -> accepted; filled 2@56, 4@70; fee 10; cancelled 4 immediate_remainder
    # carol's ask at 56 first, then 70; the worst price 72 stops it before 75.
    # fee basis 2 * 56 * 44 + 4 * 70 * 30 = 13_328: ceil(9.33) = 10
    """)
    s.expect_book(bids="55x3", asks="75x4")
    s.run("""
    bob   buy_yes 10 market         -> accepted; filled 4@75; fee 6; cancelled 6 immediate_remainder
    # no worst price: everything up to 99. ceil(7 * 4 * 75 * 25 / 10_000) = ceil(5.25) = 6
    alice sell_yes 10 @ 80          -> accepted; rests 10
    bob   buy_yes 10 market max_cost=250 -> accepted; filled 3@80; fee 4; cancelled 7 max_cost_reached
    # 3 contracts cost 240 + ceil(3.36) = 244 <= 250; a 4th would cost 320 + 5
    """)
    s.expect_book(bids="55x3", asks="80x7")
    s.run("""
    bob   buy_no 3 market @ 46      -> accepted; filled 3@45; fee 6
    # a NO buyer at worst 46 meets carol's bid at 55 (NO at 45): ceil(5.1975) = 6
    """)
    s.expect_book(asks="80x7")


def test_d_cancel_replace_keeps_priority_only_when_shrinking_at_same_price() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 5 @ 40            -> accepted; rests 5        # alice #1
    bob   buy_yes 5 @ 40            -> accepted; rests 5
    alice replace #1 3 @ 40         -> replaced kept; rests 3   # now alice #2, still first
    carol sell_yes 2 @ 40           -> accepted; filled 2@40; fee 4
    """)
    s.expect_book(bids="40x6")
    assert s.engine.accounts[1].markets[1].position == 2  # alice, not bob, was filled
    s.run("""
    alice replace #2 4 @ 40         -> replaced; rests 4        # more: to the back (#3)
    carol sell_yes 5 @ 40           -> accepted; filled 5@40; fee 9    # bob's 5 first
    """)
    s.expect_book(bids="40x4")
    s.expect("bob", cash=9_800, position=5)
    s.run("""
    alice replace #3 4 @ 38         -> replaced; rests 4        # a new price: #4
    alice replace #4 2 @ 38 id=9    -> replaced kept; rests 2
    alice replace #4 2 @ 38 id=9    -> exists                   # a retry is answered, not applied
    alice replace #4 2 @ 38         -> rejected order_must_exist    # #4 is now #9
    alice replace #9 2 @ 61 id=11   -> replaced; rests 2        # no asks: it rests at 61
    """)
    s.expect_book(bids="61x2")
    s.run("""
    carol sell_yes 1 @ 45           -> accepted; filled 1@61; fee 2
    alice cancel #11                -> cancelled 1 requested
    alice cancel #11                -> rejected order_must_exist
    """)
    s.expect_book()


def test_e_gtd_orders_expire_with_batch_time() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 5 @ 40 gtd=1000   -> accepted; rests 5
    alice buy_yes 5 @ 41 gtd=500    -> accepted; rests 5
    alice buy_yes 1 @ 42 gtd=5      -> rejected expire_time_must_be_in_future
    op    tick 499                  -> ok
    """)
    s.expect_book(bids="41x5 40x5")
    s.run("""
    op    tick 500                  -> ok
    """)
    s.expect_book(bids="40x5")
    s.expect("alice", cash=9_800, held=200)
    s.run("""
    op    tick 2000                 -> ok
    """)
    s.expect_book()
    s.expect("alice", cash=10_000)


def test_f_reduce_only_needs_no_cash_and_is_trimmed_when_the_position_shrinks() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 5 @ 40                -> accepted; rests 5
    bob   sell_yes 5 @ 40               -> accepted; filled 5@40; fee 9
    alice sell_yes 6 @ 50 reduce_only   -> rejected reduce_only_must_reduce_position
    alice sell_yes 3 @ 50 reduce_only   -> accepted; rests 3
    alice sell_yes 2 @ 52 reduce_only   -> accepted; rests 2
    alice sell_yes 1 @ 55 reduce_only   -> rejected reduce_only_must_reduce_position
    """)
    s.expect("alice", cash=9_800, held=0, position=5)  # closing orders hold nothing
    s.run("""
    carol buy_yes 2 @ 45                -> accepted; rests 2
    alice sell_yes 2 @ 45               -> accepted; filled 2@45; fee 4
    # her position falls to 3, so the newest reduce-only order (2 @ 52) is cancelled
    """)
    s.expect_book(asks="50x3")
    # alice sold 2 YES at 45: paid 2 * 55 for NO, redeemed 200, fee ceil(3.465) = 4
    s.expect("alice", cash=9_886, held=0, position=3)


def test_g_collateral_withdrawals_and_bank_references() -> None:
    s = Scenario(actors=("carol", "dave"))
    s.run("""
    carol buy_yes 250 @ 40          -> accepted; rests 250       # exactly 10_000
    carol buy_yes 1 @ 1             -> rejected collateral_must_cover_order
    carol withdraw 1 w-1            -> rejected withdrawal_must_not_exceed_available_cash
    carol cancel #1                 -> cancelled 250 requested
    carol withdraw 10000 w-2        -> ok
    carol deposit 500 w-2           -> exists                    # a reference applies once
    carol deposit 518 w-3           -> ok
    dave  sell_yes 10 @ 50          -> accepted; rests 10
    carol buy_yes 10 @ 50           -> accepted; filled 10@50; fee 18
    # it takes: 500 for the contracts and ceil(7 * 10 * 2_500 / 10_000) = 18 at most
    """)
    s.expect("carol", cash=0, position=10)
    s.run("""
    carol withdraw 1 w-4            -> rejected withdrawal_must_not_exceed_available_cash
    dave  sell_yes 1 @ 50           -> accepted; rests 1
    carol deposit 517 w-5           -> ok
    carol buy_yes 10 @ 50           -> rejected collateral_must_cover_order  # needs 518
    """)


def test_h_scalar_market_settles_by_the_formula_with_halves_rounded_up() -> None:
    s = Scenario(kind=MarketKind.SCALAR, floor=0, cap=1_000)
    s.run("""
    alice buy_yes 10 @ 30           -> accepted; rests 10
    bob   sell_yes 10 @ 30          -> accepted; filled 10@30; fee 15
    # ceil(7 * 10 * 30 * 70 / 10_000) = ceil(14.7) = 15
    op    close                     -> ok
    op    settle 1001               -> rejected outcome_must_be_valid
    op    settle 455                -> ok
    # YES pays round(100 * 455 / 1_000) = round(45.5) = 46, NO pays 54
    """)
    s.expect("alice", cash=10_000 - 300 + 460)
    s.expect("bob", cash=10_000 - 700 - 15 + 540)


def test_i_market_lifecycle() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 5 @ 40            -> accepted; rests 5
    op    settle yes                -> rejected market_must_be_closed
    op    halt                      -> ok
    bob   sell_yes 5 @ 40           -> rejected market_must_be_open
    alice replace #1 4 @ 40         -> rejected market_must_be_open
    alice buy_yes 1 @ 41            -> rejected market_must_be_open
    op    halt                      -> exists                   # already halted: a retry
    op    open                      -> ok
    bob   sell_yes 2 @ 40           -> accepted; filled 2@40; fee 4
    op    halt                      -> ok
    alice cancel #1                 -> cancelled 3 requested      # cancels work while halted
    op    close                     -> ok
    op    open                      -> rejected market_status_transition_must_be_allowed
    bob   buy_yes 1 @ 40            -> rejected market_must_be_open
    op    settle no                 -> ok
    op    settle no                 -> exists                   # a retried settlement
    op    settle yes                -> rejected market_must_be_closed
    op    configure 100 0 10        -> rejected market_must_not_be_settled
    """)
    s.expect("alice", cash=10_000 - 80)  # her 2 YES lost
    s.expect("bob", cash=10_000 - 120 - 4 + 200)  # his 2 NO won


def test_j_maker_fees_are_held_and_charged_once_per_order() -> None:
    s = Scenario(maker_fee_bps=175)
    s.run("""
    alice buy_yes 10 @ 50           -> accepted; rests 10
    # holds 500 + ceil(175 * 10 * 2_500 / 1_000_000) = 500 + ceil(4.375) = 505
    """)
    s.expect("alice", cash=9_495, held=505)
    s.run("""
    bob sell_yes 3 @ 50             -> accepted; filled 3@50; fee 6
    bob sell_yes 3 @ 50             -> accepted; filled 3@50; fee 6
    bob sell_yes 4 @ 50             -> accepted; filled 4@50; fee 7
    # alice's maker fee: ceil(1.3125) = 2, then ceil(2.625) - 2 = 1, then ceil(4.375) - 3 = 2
    """)
    s.expect("alice", cash=9_495, held=0, position=10)  # 500 + 5 taken from the hold
    assert s.fees() == 6 + 6 + 7 + 5


def test_k_position_limits_count_resting_orders() -> None:
    s = Scenario(position_limit=10)
    s.run("""
    alice buy_yes 8 @ 40            -> accepted; rests 8
    alice buy_yes 3 @ 41            -> rejected position_must_stay_within_limit
    alice buy_yes 2 @ 41            -> accepted; rests 2
    alice sell_yes 11 @ 60          -> rejected position_must_stay_within_limit
    alice sell_yes 10 @ 60          -> accepted; rests 10
    """)


def test_l_client_order_ids_are_answered_exists() -> None:
    s = Scenario()
    s.run("""
    alice buy_yes 1 @ 10 id=7       -> accepted; rests 1
    alice buy_yes 1 @ 11 id=7       -> exists
    alice cancel #7                 -> cancelled 1 requested
    alice buy_yes 1 @ 11 id=7       -> exists                   # remembered after it ended
    alice buy_yes 1 @ 11 id=0       -> rejected client_order_id_must_be_in_range
    """)
    s.expect_book()


def test_m_the_worked_collateral_example_of_docs_engine_md() -> None:
    """docs/engine.md section 4, row by row: the hold is the worse of the two scenarios,
    YES wins (the asks lose what they pay, the YES held pays 100 each) or NO wins (the
    bids lose, the NO held pays)."""
    s = Scenario()
    s.run("""
    alice buy_yes 10 @ 40           -> accepted; rests 10       # NO wins: bids lose 400
    """)
    s.expect("alice", cash=9_600, held=400)
    s.run("""
    bob   sell_yes 4 @ 40           -> accepted; filled 4@40; fee 7
    """)
    s.expect("alice", cash=9_600, held=240, position=4)  # 6 * 40 left to lose
    s.run("""
    alice sell_yes 4 @ 45           -> accepted; rests 4        # YES: 4 * 55 - 400 < 240
    """)
    s.expect("alice", cash=9_600, held=240, position=4)
    s.run("""
    alice sell_yes 2 @ 46           -> accepted; rests 2        # YES: 220 + 2 * 54 - 400
    """)
    s.expect("alice", cash=9_600, held=240, position=4)
    s.run("""
    alice sell_yes 8 @ 45           -> accepted; rests 8        # YES: 328 + 8 * 55 - 400
    """)
    s.expect("alice", cash=9_472, held=368, position=4)  # 368 > 240: YES is the worse now


def test_an_immediate_order_never_holds_a_maker_fee_bound_while_it_fills() -> None:
    # Found by the stateful test: an IOC (or FOK) order in a market with maker fees, which
    # never rests, was given a maker fee bound after its first fill, and a second fill then
    # took more than its account held (the engine stops on that assertion).
    s = Scenario(cash=0, maker_fee_bps=175)
    s.run("""
    alice deposit 10000 a-1          -> ok
    bob   deposit 10000 b-1          -> ok
    carol deposit 100 c-1            -> ok
    alice buy_yes 1 @ 52             -> accepted; rests 1
    bob   buy_yes 1 @ 52             -> accepted; rests 1
    carol buy_no 2 @ 48 ioc          -> accepted; filled 1@48, 1@48; fee 4
    # carol needs 2 * 48 = 96 and the taker bound ceil(7 * 2 * 52 * 48 / 10_000) =
    # ceil(3.49) = 4: exactly her 100. Her fee is ceil(3.49) = 4 over both fills, and no
    # maker bound is ever held for her IOC order (it cannot rest)
    """)
    s.expect("carol", cash=0, position=-2)
