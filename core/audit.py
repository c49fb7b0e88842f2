"""The full audit of an engine's state: every invariant of DESIGN.md section 3, by name.

Strategy: recompute everything from the primary facts (orders, positions, cash) and compare
with what the engine keeps incrementally. `audit` returns the violations, each named after
the invariant, so the snapshot verifier can report them; `check_invariants` raises on the
first run that finds any. Tests run it after every command; it is O(state), not for the
hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import constants
from .model import Account, AccountMarket, event_risk, futures_requirement, market_hold

if TYPE_CHECKING:
    from .engine import Engine

PAYOUT = constants.contract_payout_cents

INVARIANTS = (
    "book_not_crossed",
    "levels_add_up",
    "no_empty_levels",
    "orders_indexed",
    "holds_cover_resting_orders",
    "cash_not_negative",
    "money_conserved",
    "open_interest_balanced",
    "escrow_matches_open_interest",
    "reduce_only_within_position",
    "order_groups_consistent",
    "events_consistent",
    "released_payout_matches_positions",
    "futures_margins_cover_positions",
)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str


class InvariantError(AssertionError):
    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        lines = "; ".join(f"{v.invariant}: {v.detail}" for v in violations[:10])
        super().__init__(f"{len(violations)} invariant violation(s): {lines}")


def check_invariants(engine: Engine) -> None:
    violations = audit(engine)
    if violations:
        raise InvariantError(violations)


def audit(engine: Engine) -> list[Violation]:
    found: list[Violation] = []

    def fail(invariant: str, detail: str) -> None:
        assert invariant in INVARIANTS
        found.append(Violation(invariant, detail))

    booked: set[int] = set()
    for market in engine.markets.values():
        mid = market.market_id
        for is_bid, levels, mask in (
            (True, market.bid_levels, market.bid_mask),
            (False, market.ask_levels, market.ask_mask),
        ):
            for price, level in enumerate(levels):
                has_bit = bool(mask >> price & 1)
                if level is None:
                    if has_bit:
                        fail("no_empty_levels", f"market {mid} mask has {price} without a level")
                    continue
                if not has_bit:
                    fail("levels_add_up", f"market {mid} level {price} missing from the mask")
                orders = level.orders()
                if not orders or level.quantity <= 0:
                    fail("no_empty_levels", f"market {mid} level {price} is empty")
                if sum(o.remaining for o in orders) != level.quantity or len(orders) != (
                    level.count
                ):
                    fail("levels_add_up", f"market {mid} level {price} totals differ")
                for order in orders:
                    booked.add(order.order_id)
                    if (
                        order.price != price
                        or order.is_bid is not is_bid
                        or order.remaining <= 0
                        or order.level is not level
                        or engine.orders.get(order.order_id) is not order
                    ):
                        fail("orders_indexed", f"order {order.order_id} misplaced in {mid}")
        best_bid, best_ask = market.best_bid(), market.best_ask()
        if best_bid >= 0 and best_ask >= 0 and best_bid >= best_ask:
            fail("book_not_crossed", f"market {mid} bid {best_bid} >= ask {best_ask}")
        open_orders = sum(level.count for level in market.bid_levels if level) + sum(
            level.count for level in market.ask_levels if level
        )
        if open_orders != market.open_orders:
            fail("orders_indexed", f"market {mid} counts {market.open_orders} open orders")

    if set(engine.orders) != booked:
        fail("orders_indexed", "the order index and the books hold different orders")

    orders_by_account: dict[int, set[int]] = {}
    for order_id, order in engine.orders.items():
        orders_by_account.setdefault(order.account.account_id, set()).add(order_id)
    cash_total = held_total = 0
    yes_interest: dict[int, int] = {}
    no_interest: dict[int, int] = {}
    for account in engine.accounts.values():
        aid = account.account_id
        cash_total += account.cash
        held_total += account.held
        if account.cash < 0:
            fail("cash_not_negative", f"account {aid} cash {account.cash}")
        if set(account.orders) != orders_by_account.get(aid, set()):
            fail("orders_indexed", f"account {aid} open orders differ from the books")
        if {o.client_order_id: o for o in account.orders.values()} != account.open_by_client_id:
            fail("orders_indexed", f"account {aid} client order ids differ from its orders")
        account_held = 0
        expected_by_event: dict[int, list[AccountMarket]] = {}
        for market_id, am in account.markets.items():
            expected = _audit_account_market(engine, am, market_id, fail)
            if expected is not None and am.market.exclusive is not None:
                event_id = am.market.exclusive.event_id
                expected_by_event.setdefault(event_id, []).append(expected)
            elif expected is not None:
                account_held += am.hold
            if am.position > 0:
                yes_interest[market_id] = yes_interest.get(market_id, 0) + am.position
            elif am.position < 0:
                no_interest[market_id] = no_interest.get(market_id, 0) - am.position
        account_held += _audit_account_events(engine, account, expected_by_event, fail)
        if account_held != account.held:
            fail("holds_cover_resting_orders", f"account {aid} held {account.held}")
        _audit_order_groups(account, engine.time_ms, fail)

    escrow_total = 0
    for market in engine.markets.values():
        mid = market.market_id
        escrow_total += market.escrow
        yes, no = yes_interest.get(mid, 0), no_interest.get(mid, 0)
        event = market.exclusive
        if event is not None and not event.settled:
            no += event.house_sets  # the house holds a NO of every market per set
        if yes != no or yes != market.open_interest:
            fail("open_interest_balanced", f"market {mid} YES {yes} NO {no}")
        if market.future is not None:
            _audit_future(market, fail)
        elif market.escrow != PAYOUT * market.open_interest:
            fail("escrow_matches_open_interest", f"market {mid} escrow {market.escrow}")
    released_total = _audit_events(engine, fail)

    money = cash_total + held_total + escrow_total - released_total + engine.fees_collected
    if money != engine.deposits_total - engine.withdrawals_total:
        fail(
            "money_conserved",
            f"cash {cash_total} + held {held_total} + escrow {escrow_total} - released "
            f"{released_total} + fees {engine.fees_collected} != deposits "
            f"{engine.deposits_total} - withdrawals {engine.withdrawals_total}",
        )
    return found


def _audit_events(engine: Engine, fail: Callable[[str, str], None]) -> int:
    """Every event lists its markets in id order and they name it back; a mutually
    exclusive event's markets are binary, and its released payout is its accounts' plus the
    house's; a settled one has settled every market and holds nothing. Returns what all
    events have released."""
    released_total = 0
    listed: dict[int, int] = {}
    for event_id, event in engine.events.items():
        eid = event.event_id
        ids = [market.market_id for market in event.markets]
        listed.update(dict.fromkeys(ids, eid))
        if (
            eid != event_id
            or ids != sorted(set(ids))
            or len(ids) > constants.markets_per_event_max
            or engine.event_ids_by_ticker.get(event.ticker) != eid
            or (event.exhaustive and not event.mutually_exclusive)
            or any(engine.markets.get(market.market_id) is not market for market in event.markets)
        ):
            fail("events_consistent", f"event {eid} lists its markets wrongly")
        for market in event.markets:
            exclusive = event if event.mutually_exclusive else None
            if market.event is not event or market.exclusive is not exclusive:
                fail("events_consistent", f"market {market.market_id} names another event")
            if exclusive is not None and market.kind != 1:
                fail("events_consistent", f"market {market.market_id} is not binary")
        released_total += event.released
        accounts = sum(ae.released for ae in event.accounts.values())
        if event.released != accounts + event.house_released():
            fail(
                "released_payout_matches_positions",
                f"event {eid} released {event.released}, its accounts {accounts} and "
                f"the house {event.house_released()}",
            )
        if event.settled and (
            event.accounts
            or event.house_sets
            or any(market.status != 5 for market in event.markets)
        ):
            fail("events_consistent", f"event {eid} is settled with something left")
        if event.house_sets < 0 or (event.house_sets and not event.exhaustive):
            fail("events_consistent", f"event {eid} has {event.house_sets} house sets")
    for market_id, market in engine.markets.items():
        named = market.event.event_id if market.event is not None else 0
        if listed.get(market_id, 0) != named:
            fail("events_consistent", f"market {market_id} is not listed by its event")
    return released_total


def _audit_future(market: Any, fail: Callable[[str, str], None]) -> None:
    """A futures market holds no escrow (positions are on margin, marked to market); its
    terms are in order; every account's margin is at least the maintenance margin of its
    position and at most what its position and orders need."""
    mid = market.market_id
    terms = market.future
    if market.escrow:
        fail("escrow_matches_open_interest", f"futures market {mid} escrow {market.escrow}")
    if not (
        1 <= terms.mark_band <= terms.maintenance_margin <= terms.initial_margin <= PAYOUT
        and 0 <= terms.mark <= PAYOUT
        and terms.mark_interval_ms >= 0
    ):
        fail("futures_margins_cover_positions", f"futures market {mid} terms out of order")
    for account_id, am in market.ams.items():
        required = futures_requirement(am, terms)
        if not terms.maintenance_margin * abs(am.position) <= am.hold <= required:
            fail(
                "futures_margins_cover_positions",
                f"account {account_id} market {mid} margin {am.hold}: maintenance "
                f"{terms.maintenance_margin * abs(am.position)}, requirement {required}",
            )


def _audit_account_events(
    engine: Engine,
    account: Account,
    expected_by_event: dict[int, list[AccountMarket]],
    fail: Callable[[str, str], None],
) -> int:
    """Each mutually exclusive event the account has markets in holds and releases what
    its positions and orders there require, recomputed from scratch. Returns its holds."""
    aid = account.account_id
    held = 0
    if set(account.events) != set(expected_by_event):
        fail("holds_cover_resting_orders", f"account {aid} events differ from its markets")
    for event_id, ae in account.events.items():
        event = engine.events.get(event_id)
        if event is None or ae.event is not event or event.accounts.get(aid) is not ae:
            fail("holds_cover_resting_orders", f"account {aid} event {event_id} not indexed")
            continue
        held += ae.hold
        expected = expected_by_event.get(event_id, [])
        hold, released = event_risk(event, expected, len(expected))
        if ae.hold != hold:
            fail(
                "holds_cover_resting_orders",
                f"account {aid} event {event_id} holds {ae.hold}, needs {hold}",
            )
        if ae.released != released:
            fail(
                "released_payout_matches_positions",
                f"account {aid} event {event_id} released {ae.released}, its positions "
                f"guarantee {released}",
            )
        if ae.dirty:
            fail("released_payout_matches_positions", f"account {aid} event {event_id} dirty")
        for market_id, am in ae.ams.items():
            if account.markets.get(market_id) is not am or am.account_event is not ae:
                fail("holds_cover_resting_orders", f"account {aid} market {market_id} event")
    for event in engine.events.values():
        if (
            aid in event.accounts
            and account.events.get(event.event_id) is not (event.accounts[aid])
        ):
            fail("holds_cover_resting_orders", f"event {event.event_id} names account {aid}")
    return held


def _audit_order_groups(account: Account, now_ms: int, fail: Callable[[str, str], None]) -> None:
    """Every order's group is one of its account's; a group's count is the sum of its
    window's fills (positive, in time order, none in the future); one that reached its
    limit has triggered, and a triggered group has no open orders (cancelled with it)."""
    aid = account.account_id
    if len(account.groups) > constants.order_groups_per_account_max:
        fail("order_groups_consistent", f"account {aid} has {len(account.groups)} groups")
    for group_id, group in account.groups.items():
        times = [time_ms for time_ms, _ in group.fills]
        if (
            group.group_id != group_id
            or group.filled != sum(n for _, n in group.fills)
            or any(n <= 0 for _, n in group.fills)
            or times != sorted(set(times))
            or (times and times[-1] > now_ms)
            or not 0 < group_id <= constants.order_group_id_max
            or not 0 < group.contract_limit <= constants.order_group_contract_limit_max
            or not 0 < group.window_ms <= constants.order_group_window_ms_max
        ):
            fail("order_groups_consistent", f"account {aid} group {group_id} counts")
        if not group.triggered and group.filled >= group.contract_limit:
            fail("order_groups_consistent", f"account {aid} group {group_id} passed its limit")
    for order in account.orders.values():
        group = order.group
        if group is None:
            continue
        if account.groups.get(group.group_id) is not group:
            fail("order_groups_consistent", f"order {order.order_id} in a foreign group")
        elif group.triggered:
            fail("order_groups_consistent", f"order {order.order_id} open in a triggered group")


def _audit_account_market(
    engine: Engine, am: AccountMarket, market_id: int, fail: Callable[[str, str], None]
) -> AccountMarket | None:
    """Check one AccountMarket against a copy rebuilt from its position and orders; returns
    the copy (for its event's hold), or None if it is not even indexed."""
    aid = am.account.account_id
    market = engine.markets.get(market_id)
    if market is None or am.market is not market or market.ams.get(aid) is not am:
        fail("orders_indexed", f"account {aid} market {market_id} is not indexed both ways")
        return None
    expected = AccountMarket(am.account, market)
    expected.position = am.position
    for order in am.orders.values():
        if engine.orders.get(order.order_id) is not order or order.am is not am:
            fail("orders_indexed", f"order {order.order_id} of account {aid} not in the books")
        if order.maker_bound != order.maker_fee_bound():
            fail("holds_cover_resting_orders", f"order {order.order_id} maker fee bound")
        expected.add(order)
    for name in (
        "bid_qty",
        "bid_notional",
        "bid_fee_bound",
        "ask_qty",
        "ask_notional",
        "ask_fee_bound",
        "reduce_bid_qty",
        "reduce_ask_qty",
    ):
        if getattr(expected, name) != getattr(am, name):
            fail("holds_cover_resting_orders", f"account {aid} market {market_id} {name}")
    if am.taker_bound:
        fail("holds_cover_resting_orders", f"account {aid} market {market_id} taker bound left")
    if market.future is not None:
        if am.account_event is not None:
            fail("holds_cover_resting_orders", f"account {aid} market {market_id} in an event")
    elif market.exclusive is None:
        if am.account_event is not None or market_hold(expected) != am.hold:
            fail(
                "holds_cover_resting_orders",
                f"account {aid} market {market_id} holds {am.hold}, needs {market_hold(expected)}",
            )
    elif am.hold or am.account_event is None:
        fail("holds_cover_resting_orders", f"account {aid} market {market_id} holds alone")
    capacity_bids = -am.position if am.position < 0 else 0
    capacity_asks = am.position if am.position > 0 else 0
    if am.reduce_bid_qty > capacity_bids or am.reduce_ask_qty > capacity_asks:
        fail("reduce_only_within_position", f"account {aid} market {market_id}")
    return expected
