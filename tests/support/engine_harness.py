"""The engine test harness: every command in its own batch, the full audit after each.

Every engine test drives the engine through `Harness.do`, which also checks the two rules
that hold for every command whatever it is: the first event of a command is its outcome,
and a rejected command changes nothing but its account's event counter.
"""

from __future__ import annotations

from typing import Any

from evx.core import (
    AppliedBatch,
    Batch,
    CommandRejected,
    Engine,
    Record,
    check_invariants,
    event_from_canonical,
    to_state,
)

OUTCOME_TYPES = frozenset(
    {
        "OrderAccepted",
        "CommandRejected",
        "OrderCancelled",
        "OrderReplaced",
        "MassCancelled",
        "AccountCreated",
        "Deposited",
        "Withdrawn",
        "MarketCreated",
        "MarketStatusChanged",
        "MarketSettled",
        "MarketConfigured",
        "OrderGroupUpdated",
        "PositionsConverted",
        "EventCreated",
        "EventSettled",
        "MarginsSet",
        "MarketMarked",
    }
)


def comparable_state(engine: Engine) -> list[Any]:
    """The canonical state without what every batch changes (time, count, hash) and
    without the accounts' event counters."""
    state = to_state(engine)
    header = list(state[1])
    header[0] = header[1] = header[2] = 0
    state[1] = header
    state[3] = [[*account[:4], 0, *account[5:]] for account in state[3]]
    return state


class Harness:
    def __init__(self, engine: Engine | None = None, *, check_rejects: bool = True) -> None:
        self.engine = engine or Engine()
        self.time_ms = self.engine.time_ms
        self.check_rejects = check_rejects
        self.applied: list[AppliedBatch] = []
        self._last_seq: dict[tuple[str, int], int] = {
            ("account", aid): account.seq for aid, account in self.engine.accounts.items()
        }
        self._last_seq.update(
            {("market", mid): market.seq for mid, market in self.engine.markets.items()}
        )
        self._last_seq.update(
            {("event", eid): event.seq for eid, event in self.engine.events.items()}
        )

    def do(self, command: Record | tuple[Any, ...] | Any, *, time_ms: int | None = None) -> list:
        """Apply one command in its own batch; return its typed events, outcome first."""
        self.time_ms = time_ms if time_ms is not None else self.time_ms + 1
        canonical = command.to_canonical() if isinstance(command, Record) else command
        before = comparable_state(self.engine) if self.check_rejects else None
        seqs = {aid: a.seq for aid, a in self.engine.accounts.items()}
        applied = self.engine.apply(Batch(self.time_ms, (canonical,)))
        self.applied.append(applied)
        check_invariants(self.engine)
        events = [event_from_canonical(event) for event in applied.command_events(0)]
        assert events, "every command yields an outcome"
        assert type(events[0]).__name__ in OUTCOME_TYPES, f"no outcome first: {events[0]}"
        if isinstance(events[0], CommandRejected):
            assert len(events) == 1, f"a reject comes alone: {events}"
            rejected = events[0]
            if before is not None and not applied.outcome_offsets[0]:
                assert comparable_state(self.engine) == before, f"{rejected} changed the state"
            if not applied.outcome_offsets[0]:  # expiries in the same batch count too
                for aid, account in self.engine.accounts.items():
                    grew = 1 if aid == rejected.account_id else 0
                    assert account.seq == seqs[aid] + grew, "only the rejected account counts"
        self._check_sequences(applied)
        return events

    def tick(self, time_ms: int) -> AppliedBatch:
        """A batch with no commands: time passes."""
        self.time_ms = time_ms
        applied = self.engine.apply(Batch(time_ms, ()))
        self.applied.append(applied)
        check_invariants(self.engine)
        self._check_sequences(applied)
        return applied

    def time_events(self, applied: AppliedBatch) -> list:
        end = applied.outcome_offsets[0] if applied.outcome_offsets else len(applied.events)
        return [event_from_canonical(event) for event in applied.events[:end]]

    def _check_sequences(self, applied: AppliedBatch) -> None:
        """Account, market and event events are numbered 1, 2, 3 ... with no gap."""
        for event in applied.events:
            code, stream_id, seq = event[0], event[1], event[2]
            if code < 32 and stream_id == 0:
                assert seq == 0
                continue
            key = ("account" if code < 32 else "market" if code < 64 else "event", stream_id)
            expected = self._last_seq.get(key, 0) + 1
            assert seq == expected, f"{key} sequence {seq}, expected {expected}"
            self._last_seq[key] = seq
