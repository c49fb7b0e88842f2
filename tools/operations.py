"""`evx admin`, the exchange half: accounts, money, markets and settlement.

Strategy: each operation is one engine command, sent over an operator session (the
operator's Ed25519 key) to any node, which proposes it through the log and answers with
its events once applied. The outcome is told in plain words, from the engine's own events:
what changed, or the rule that refused it (a refused command changed nothing). A command
resent with the same name or bank reference is answered `exists` by the engine: told as
"already done, nothing changed", with its own exit code, so a script that retries after a
time-out can tell a repeat from a refusal.

Money on the command line is in dollars with at most two decimals ("250", "250.50"),
parsed exactly into cents; the engine only ever sees cents.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evx.core import (
    EVENTS,
    AccountCreated,
    CommandRejected,
    Deposited,
    EventCreated,
    EventSettled,
    MarginsSet,
    MarketConfigured,
    MarketCreated,
    MarketKind,
    MarketMarked,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    PositionReduced,
    PositionSettled,
    Reject,
    VariationMargin,
    Withdrawn,
)
from evx.gateway.client import Client, sole_exception

from .config import PeerConfig
from .node import split_address

EXIT_DONE = 0
EXIT_REFUSED = 1
EXIT_EXISTS = 3  # already done earlier: nothing changed now

_DOLLARS = re.compile(r"(\d{1,12})(?:\.(\d{1,2}))?\Z")


def parse_cents(text: str) -> int:
    """'250' -> 25000, '0.5' -> 50, '12.34' -> 1234; ValueError for anything else."""
    match = _DOLLARS.match(text.strip().lstrip("$"))
    if match is None:
        raise ValueError(f"{text!r} is not an amount in dollars, such as 250 or 250.50")
    whole, fraction = match.group(1), (match.group(2) or "").ljust(2, "0")
    cents = int(whole) * 100 + int(fraction)
    if cents <= 0:
        raise ValueError(f"{text!r}: the amount must be more than zero")
    return cents


def dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


@dataclass(frozen=True, slots=True)
class OperationResult:
    exit_code: int  # EXIT_DONE, EXIT_REFUSED or EXIT_EXISTS
    text: str
    index: int  # the log index it was applied at
    event_count: int
    events: tuple[dict[str, Any], ...]  # the first of them, named (all that fit a frame)

    @property
    def done(self) -> bool:
        return self.exit_code == EXIT_DONE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"done": self.done}


async def operate(
    nodes: list[PeerConfig], key: Ed25519PrivateKey, command: Any, timeout_s: float = 30.0
) -> OperationResult:
    """Send one operator command to the cluster and describe what it did."""
    addresses = [split_address(peer.gateway) for peer in nodes]
    try:
        # The whole exchange is bounded: with every node down the client retries forever.
        with trio.fail_after(timeout_s):
            async with Client(addresses, account_id=0, key=key) as client:
                answer = await client.operate(command)
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
    events = [EVENTS.from_canonical(value) for value in answer.event_values()]
    return describe(command, answer.applied_index, answer.event_count, events)


def describe(command: Any, index: int, event_count: int, events: list[Any]) -> OperationResult:
    named = tuple({"event": type(e).__name__} | asdict(e) for e in events)
    outcome = events[0]
    if isinstance(outcome, CommandRejected):
        reason = Reject(outcome.reason)
        if reason is Reject.EXISTS:
            code, text = EXIT_EXISTS, _exists(command, outcome)
        else:
            words = reason.rule.replace("_", " ")
            code = EXIT_REFUSED
            text = f"refused, nothing changed: {words} (reject {int(reason)} {reason.rule})"
        return OperationResult(code, text, index, event_count, named)
    text = _done(outcome, events, event_count)
    return OperationResult(EXIT_DONE, text, index, event_count, named)


def _exists(command: Any, rejected: CommandRejected) -> str:
    what = type(command).__name__
    if what == "CreateAccount":
        return (
            f"already done, nothing changed: account {rejected.related_id} is named "
            f"{command.name!r}"
        )
    if what == "CreateMarket":
        return (
            f"already done, nothing changed: market {rejected.related_id} has ticker "
            f"{command.ticker!r}"
        )
    if what in ("Deposit", "Withdraw"):
        return (
            f"already done, nothing changed: bank reference {command.bank_reference!r} was "
            "applied before (a reference is applied at most once)"
        )
    if what == "SettleMarket":
        return f"already done, nothing changed: market {command.market_id} is settled so"
    if what == "CreateEvent":
        return (
            f"already done, nothing changed: event {rejected.related_id} has ticker "
            f"{command.ticker!r}"
        )
    if what == "SettleEvent":
        return f"already done, nothing changed: event {command.event_id} is settled so"
    return "already done, nothing changed"


def _done(outcome: Any, events: list[Any], event_count: int) -> str:
    if isinstance(outcome, AccountCreated):
        return f"account {outcome.account_id} {outcome.name!r} created"
    if isinstance(outcome, Deposited):
        return (
            f"deposited {dollars(outcome.amount)} to account {outcome.account_id} "
            f"(reference {outcome.bank_reference}); its cash is now {dollars(outcome.cash)}"
        )
    if isinstance(outcome, Withdrawn):
        return (
            f"withdrew {dollars(outcome.amount)} from account {outcome.account_id} "
            f"(reference {outcome.bank_reference}); its cash is now {dollars(outcome.cash)}"
        )
    if isinstance(outcome, MarketCreated):
        kind = MarketKind(outcome.kind).name.lower()
        scalar = ""
        if outcome.kind in (MarketKind.SCALAR, MarketKind.FUTURE):
            scalar = f" on [{outcome.floor}, {outcome.cap}]"
        event = f" in event {outcome.event_id}" if outcome.event_id else ""
        return (
            f"market {outcome.market_id} {outcome.ticker} created ({kind}{scalar}){event}, "
            f"proposed: open it to trade"
        )
    if isinstance(outcome, MarginsSet):
        return (
            f"market {outcome.market_id}: initial margin {outcome.initial_margin}, maintenance "
            f"{outcome.maintenance_margin} cents a contract; marks move at most "
            f"{outcome.mark_band}, "
            + (f"every {outcome.mark_interval_ms} ms" if outcome.mark_interval_ms else "when told")
        )
    if isinstance(outcome, MarketMarked):
        paid = sum(1 for event in events if isinstance(event, VariationMargin))
        cut = sum(1 for event in events if isinstance(event, PositionReduced))
        shown = "" if len(events) == event_count else f" (of {event_count} events)"
        return (
            f"market {outcome.market_id} marked at {outcome.mark}: {paid} positions paid "
            f"variation margin, {cut} reduced{shown}"
        )
    if isinstance(outcome, EventCreated):
        kind = (
            "exhaustive: exactly one market wins"
            if outcome.exhaustive
            else "mutually exclusive: at most one market wins"
            if outcome.mutually_exclusive
            else "a group: its markets stay on their own"
        )
        return (
            f"event {outcome.event_id} {outcome.ticker} created ({kind}); add its markets "
            f"with market create --event {outcome.event_id}"
        )
    if isinstance(outcome, EventSettled):
        paid = sum(1 for event in events if isinstance(event, PositionSettled))
        shown = "" if len(events) == event_count else f" (of {event_count} events, {paid} shown)"
        won = f"market {outcome.winner_market_id} won" if outcome.winner_market_id else "none won"
        return (
            f"event {outcome.event_id} settled: {won}, every other market NO; "
            f"{event_count - 1} events{shown}"
        )
    if isinstance(outcome, MarketStatusChanged):
        status = MarketStatus(outcome.status).name.lower()
        cancelled = event_count - 1
        extra = f"; {cancelled} events (resting orders cancelled)" if cancelled else ""
        return f"market {outcome.market_id} is now {status}{extra}"
    if isinstance(outcome, MarketConfigured):
        return (
            f"market {outcome.market_id}: taker fee {outcome.taker_fee_bps} bps, maker fee "
            f"{outcome.maker_fee_bps} bps, position limit {outcome.position_limit:,}"
        )
    if isinstance(outcome, MarketSettled):
        paid = sum(1 for event in events if isinstance(event, PositionSettled))
        shown = "" if len(events) == event_count else f" (of {event_count} events, {paid} shown)"
        return (
            f"market {outcome.market_id} settled at {outcome.outcome}: YES pays "
            f"{outcome.yes_payout} cents, NO {100 - outcome.yes_payout}; "
            f"{event_count - 1} events{shown}"
        )
    return f"done: {type(outcome).__name__}"
