"""Order groups (the kill switch, docs/engine.md section 3): scenario tables with every
number worked by hand. Each account starts with 10,000 cents; fees are Kalshi's taker
formula, makers pay 0. The harness audits every invariant after each row, the
order-group invariant included."""

from __future__ import annotations

from evx.core import OrderGroupUpdated, from_state, to_state
from evx.core.model import OrderGroup
from support.scenario import Scenario


def test_the_worked_example_of_the_engine_doc() -> None:
    s = Scenario()
    s.run("""
    alice group 7 10 60000         -> group armed 0
    alice buy_yes 6 @ 40 group=7   -> accepted; rests 6        # holds 240
    alice buy_yes 6 @ 39 group=7   -> accepted; rests 6        # holds 234
    alice buy_yes 6 @ 30           -> accepted; rests 6        # outside the group: 180
    bob   sell_yes 5 @ 40          -> accepted; filled 5@40; fee 9
    # ceil(7 * 5 * 40 * 60 / 10_000) = ceil(8.4) = 9; alice's group has filled 5
    """)
    assert s.engine.accounts[s.actors["alice"].account_id].groups[7].filled == 5
    s.run("""
    bob   sell_yes 6 @ 39          -> accepted; filled 1@40, 5@39; fee 11
    # 1 at 40 and 5 at 39: basis 40*60 + 5*39*61 = 14_295, ceil(7 * 14_295 / 10_000) = 11.
    # alice's group reaches 11 >= 10 and triggers once bob's order is done: her last
    # contract at 39 is cancelled (the one at 30 is not in the group)
    """)
    triggered = [e for e in s.last_events if isinstance(e, OrderGroupUpdated)]
    assert [(e.order_group_id, e.filled, e.triggered) for e in triggered] == [(7, 11, 1)]
    s.expect_book(bids="30x6")
    # alice paid 6 * 40 + 5 * 39 = 435 for 11 YES; 180 is held for her bid at 30
    s.expect("alice", cash=10_000 - 435 - 180, held=180, position=11)
    s.expect("bob", cash=10_000 - (6 * 60 + 5 * 61) - 20, position=-11)
    s.run("""
    alice buy_yes 1 @ 35 group=7   -> rejected order_group_must_not_be_triggered
    alice buy_yes 1 @ 35           -> accepted; rests 1        # outside the group: fine
    alice reset_group 7            -> group armed 0
    alice buy_yes 1 @ 36 group=7   -> accepted; rests 1
    """)


def test_the_window_is_batch_time_and_forgets_old_fills() -> None:
    s = Scenario()
    # Each row is one batch, one millisecond after the last (the harness's clock).
    s.run("""
    alice group 1 4 10             -> group armed 0            # 4 contracts per 10 ms
    alice buy_yes 3 @ 40 group=1   -> accepted; rests 3
    bob   sell_yes 3 @ 40          -> accepted; filled 3@40; fee 6
    # ceil(7 * 3 * 40 * 60 / 10_000) = ceil(5.04) = 6; the group has 3 of 4
    op    tick 100                 -> ok                       # 3 contracts are old now
    alice buy_yes 3 @ 40 group=1   -> accepted; rests 3
    bob   sell_yes 3 @ 40          -> accepted; filled 3@40; fee 6
    # 3 within the window, not 6: the group does not trigger
    """)
    s.expect_book()
    group = s.engine.accounts[s.actors["alice"].account_id].groups[1]
    assert (group.filled, group.triggered) == (3, False)


def test_a_taker_in_a_group_fills_completely_then_its_group_stops_it_resting() -> None:
    s = Scenario()
    s.run("""
    bob   sell_yes 3 @ 40          -> accepted; rests 3
    bob   sell_yes 3 @ 41          -> accepted; rests 3
    alice group 2 4 60000          -> group armed 0
    alice buy_yes 8 @ 41 fok group=2 -> rejected fill_or_kill_must_fill_completely
    alice buy_yes 6 @ 41 fok group=2 -> accepted; filled 3@40, 3@41; fee 11
    # a fill-or-kill in a group fills wholly even past the limit (6 >= 4): the group
    # triggers after it. basis 3*40*60 + 3*41*59 = 14_457, ceil(10.12) = 11
    alice buy_yes 5 @ 38 group=2   -> rejected order_group_must_not_be_triggered
    """)
    s.run("""
    alice reset_group 2            -> group armed 0
    bob   sell_yes 4 @ 39          -> accepted; rests 4
    alice buy_yes 9 @ 39 group=2   -> accepted; filled 4@39; fee 7; cancelled 5 order_group_triggered
    # 4 fills reach the limit of 4: the group triggers at the end of alice's own order,
    # so its 5 contracts left are cancelled instead of resting. 7 = ceil(7*4*39*61/10_000)
    """)
    s.expect_book()


def test_lowering_the_limit_to_what_the_window_holds_triggers_at_once() -> None:
    s = Scenario()
    s.run("""
    alice group 3 100 60000        -> group armed 0
    alice buy_yes 5 @ 40 group=3   -> accepted; rests 5
    bob   sell_yes 2 @ 40          -> accepted; filled 2@40; fee 4
    alice group 3 2 60000          -> group triggered 2
    """)
    s.expect_book()  # alice's 3 contracts left were cancelled with the group
    s.expect("alice", cash=10_000 - 80, position=2)


def test_groups_belong_to_their_account_and_survive_a_snapshot() -> None:
    s = Scenario()
    s.run("""
    alice group 9 5 60000          -> group armed 0
    bob   buy_yes 1 @ 40 group=9   -> rejected order_group_must_exist
    alice buy_yes 2 @ 40 group=9   -> accepted; rests 2
    carol sell_yes 1 @ 40          -> accepted; filled 1@40; fee 2
    """)
    copy = from_state(to_state(s.engine))
    alice = s.actors["alice"].account_id
    group = copy.accounts[alice].groups[9]
    assert (group.contract_limit, group.window_ms, group.filled, group.triggered) == (
        5,
        60_000,
        1,
        False,
    )
    resting = next(iter(copy.accounts[alice].orders.values()))
    assert resting.group is group
    assert to_state(copy) == to_state(s.engine)


def test_a_group_keeps_at_most_about_a_thousand_buckets_however_it_trades() -> None:
    group = OrderGroup(1, 10**8, 2_048)  # 2 ms buckets
    for now_ms in range(1, 20_000):
        group.add_fill(now_ms, 1)
        assert len(group.fills) <= 1_025
    # what is counted is the window, to one bucket
    assert 2_046 <= group.filled <= 2_048
    day = OrderGroup(2, 10**8, 24 * 3_600 * 1_000)
    for now_ms in range(0, 10_000_000, 997):
        day.add_fill(now_ms, 2)
    assert len(day.fills) <= 1_025 and day.filled == 2 * len(range(0, 10_000_000, 997))
