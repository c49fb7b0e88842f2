"""Group commit: many commands in one log entry, and time when there are none.

Strategy: sessions `submit` commands (canonical tuples) and get a `Ticket`. The batcher
waits for the first command, keeps collecting for at most `window_ms` or until
`commands_max`, then proposes one entry:

    msgpack [node_id, batch_seq, time_ms, [command, ...]]

(node_id, batch_seq) names the entry, so when any applied entry comes back through the
bridge the batcher knows whether it is one of its own and which ticket each command is,
even if pysyncobj never answers the proposal (a deposed leader's callbacks are never
called). A ticket ends when its entry is applied here, with the command's events and the
log index; or, if the proposal failed or timed out first, as "unknown": the command may
or may not be applied later, and its client resends it with the same client_order_id.

The leader also proposes an entry with no commands when this node has proposed nothing for
`clock_tick_ms`, so that GTD orders expire and markets close on time with no order flow.
At most `in_flight_max` entries wait to be applied; past that, `submit` waits.

`pause()` holds every submitted command (and the clock) in this node until `resume()`: a
planned leadership transfer freezes the leader's log this way while the new leader takes
over (replication/control.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import trio

from .bridge import Bridge

NOT_LEADER = 4  # pysyncobj's FAIL_REASON.NOT_LEADER: refused before anything was appended


class AppliedEntry(Protocol):
    """What a state machine returns for an applied entry, as far as the batcher cares."""

    origin: tuple[int, int]  # (node_id, batch_seq) of the entry

    def command_events(self, position: int) -> tuple[tuple[Any, ...], ...]: ...


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    node_id: int
    window_ms: float = 1.0
    commands_max: int = 1_024
    entry_bytes_max: int = 1024 * 1024
    in_flight_max: int = 64
    clock_tick_ms: int = 100
    propose_timeout_s: float = 5.0
    late_entries_max: int = 4_096  # entries given up on, still watched for in case they apply
    refused_backoff_ms: float = 5.0  # before re-proposing what a non-leader refused


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a command ended: applied at `index` with its `events` (outcome first), or
    unknown (`index` 0): it may or may not have been applied."""

    index: int
    events: tuple[tuple[Any, ...], ...]

    @property
    def known(self) -> bool:
        return self.index > 0


UNKNOWN = Outcome(0, ())


class Ticket:
    """One submitted command, until its outcome is known (or known to be unknown)."""

    __slots__ = ("_done", "command", "on_done", "outcome", "refused_at", "size")

    def __init__(
        self, command: tuple[Any, ...], on_done: Callable[[Outcome], None] | None = None
    ) -> None:
        self.command = command
        self.size = len(msgpack.packb(command, use_bin_type=True))
        self.on_done = on_done
        self.refused_at = 0.0  # when a non-leader first refused its entry (monotonic)
        self.outcome: Outcome | None = None
        self._done = trio.Event()

    def _finish(self, outcome: Outcome) -> None:
        """The first outcome, or a known one after an unknown one (an entry whose proposal
        failed, applied after all): `on_done` hears both."""
        if self.outcome is None or (not self.outcome.known and outcome.known):
            self.outcome = outcome
            self._done.set()
            if self.on_done is not None:
                self.on_done(outcome)

    async def wait(self) -> Outcome:
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome


@dataclass(frozen=True, slots=True)
class BatcherStatistics:
    entries_proposed: int
    commands_proposed: int
    clock_entries: int
    unknown_outcomes: int
    in_flight: int


class Batcher:
    def __init__(
        self,
        bridge: Bridge,
        config: BatcherConfig,
        is_leader: Callable[[], bool],
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._bridge = bridge
        self._config = config
        self._is_leader = is_leader
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._pending: deque[Ticket] = deque()
        self._wake = trio.Event()
        self._in_flight: dict[int, list[Ticket]] = {}  # batch_seq -> its tickets
        self._in_flight_commands = 0  # read by other threads (metrics): kept as one int
        # Entries a non-leader refused before appending them, by batch_seq: proposed again,
        # oldest first and before anything newer, after a short back-off.
        self._refused: dict[int, list[Ticket]] = {}
        self._refused_commands = 0
        self._hold_until = 0.0
        # Entries whose proposal failed (the outcome was reported unknown) but that may
        # still be applied: if one is, its tickets learn their real outcome after all.
        self._late: dict[int, list[Ticket]] = {}
        self._room = trio.Semaphore(config.in_flight_max)
        # Entries are named (node_id, batch_seq); batch_seq starts from the wall clock so
        # that an entry of an earlier run of this node, applied late, names nothing here.
        self._next_seq = time.time_ns()
        self._last_proposed_ms = 0.0
        self._entries = self._commands = self._clock_entries = self._unknown = 0
        self._paused = False
        self._resumed = trio.Event()
        self._drained = trio.Event()
        bridge.on_applied(self._on_applied)

    def submit(
        self, command: tuple[Any, ...], on_done: Callable[[Outcome], None] | None = None
    ) -> Ticket:
        """Queue a command for the next entry; never blocks (the in-flight bound applies
        to entries, and the gateway throttles sessions before they get here). `on_done`
        runs on the trio thread when the outcome is known, or known to be unknown."""
        ticket = Ticket(command, on_done)
        self._pending.append(ticket)
        self._wake.set()
        return ticket

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._clock, nursery)
            while True:
                await self._wake.wait()
                while self._paused:
                    await self._resumed.wait()
                if self._hold_until > time.monotonic():
                    await trio.sleep_until(
                        trio.current_time() + self._hold_until - time.monotonic()
                    )
                window_s = self._config.window_ms / 1_000
                if window_s > 0 and len(self._pending) < self._config.commands_max:
                    with trio.move_on_after(window_s):
                        while len(self._pending) < self._config.commands_max:
                            self._wake = trio.Event()
                            await self._wake.wait()
                await self._room.acquire()
                while self._paused:  # paused while waiting for room: hold the commands
                    self._give_back_room()
                    await self._resumed.wait()
                    await self._room.acquire()
                tickets = self._take()
                self._wake = trio.Event()
                if self._pending:
                    self._wake.set()
                nursery.start_soon(self._propose, tickets)

    def _take(self) -> list[Ticket]:
        """The next entry's commands: up to commands_max, and entry_bytes_max."""
        for batch_seq in sorted(self._refused, reverse=True):  # oldest ends up first
            refused = self._refused.pop(batch_seq)
            self._refused_commands -= len(refused)
            self._pending.extendleft(reversed(refused))
        taken: list[Ticket] = []
        size = 0
        limit = self._config.entry_bytes_max - 64
        while self._pending and len(taken) < self._config.commands_max:
            if taken and size + self._pending[0].size > limit:
                break
            ticket = self._pending.popleft()
            size += ticket.size
            taken.append(ticket)
        return taken

    async def _propose(self, tickets: list[Ticket]) -> None:
        batch_seq = self._next_seq
        self._next_seq += 1
        self._in_flight[batch_seq] = tickets
        self._in_flight_commands += len(tickets)
        entry = msgpack.packb(
            [self._config.node_id, batch_seq, self._clock_ms(), [t.command for t in tickets]],
            use_bin_type=True,
        )
        self._last_proposed_ms = time.monotonic() * 1_000
        self._entries += 1
        self._commands += len(tickets)
        if not tickets:
            self._clock_entries += 1
        try:
            proposal = await self._bridge.propose(entry, self._config.propose_timeout_s)
            if proposal.reason == NOT_LEADER:
                # Refused by a node that was not (or no longer) leading, before it appended
                # anything (a leader handing over refuses forwarded entries so): certainly
                # not applied, so the commands are proposed again, until propose_timeout_s
                # has passed since their first refusal.
                now = time.monotonic()
                tickets = self._pop_in_flight(batch_seq) or []
                retry = [ticket for ticket in tickets if ticket.outcome is None]
                for ticket in retry:
                    ticket.refused_at = ticket.refused_at or now
                first = min((ticket.refused_at for ticket in retry), default=now)
                if retry and now - first < self._config.propose_timeout_s:
                    self._refused[batch_seq] = retry
                    self._refused_commands += len(retry)
                    self._hold_until = now + self._config.refused_backoff_ms / 1_000
                    self._wake.set()
                else:
                    for ticket in retry:
                        self._unknown += 1
                        ticket._finish(UNKNOWN)
            elif not proposal.applied:
                # The entry may still be applied later (it was handed to a leader that
                # then lost office): its commands are unknown now, and watched for.
                tickets = self._pop_in_flight(batch_seq)
                if tickets is not None:
                    self._late[batch_seq] = tickets
                    if len(self._late) > self._config.late_entries_max:
                        del self._late[next(iter(self._late))]  # the oldest
                    for ticket in tickets:
                        self._unknown += 1
                        ticket._finish(UNKNOWN)
        finally:
            self._give_back_room()

    def _give_back_room(self) -> None:
        self._room.release()
        if self._room.value == self._config.in_flight_max:
            self._drained.set()

    def _pop_in_flight(self, batch_seq: int) -> list[Ticket] | None:
        tickets = self._in_flight.pop(batch_seq, None)
        if tickets is not None:
            self._in_flight_commands -= len(tickets)
        return tickets

    def _on_applied(self, index: int, result: Any) -> None:
        origin = getattr(result, "origin", None)
        if origin is None or origin[0] != self._config.node_id:
            return
        tickets = self._pop_in_flight(origin[1])
        if tickets is None:
            tickets = self._late.pop(origin[1], None)
        if tickets is None:
            return  # an entry of an earlier run of this node, or forgotten long ago
        for position, ticket in enumerate(tickets):
            ticket._finish(Outcome(index, result.command_events(position)))

    async def _clock(self, nursery: trio.Nursery) -> None:
        tick_s = self._config.clock_tick_ms / 1_000
        while True:
            await trio.sleep(tick_s)
            idle_ms = time.monotonic() * 1_000 - self._last_proposed_ms
            due = idle_ms >= self._config.clock_tick_ms and not self._paused
            if due and self._is_leader():
                await self._room.acquire()
                if self._paused:  # paused while waiting for room
                    self._give_back_room()
                    continue
                self._last_proposed_ms = time.monotonic() * 1_000
                nursery.start_soon(self._propose, [])

    # -- Pausing intake -------------------------------------------------------------------

    def pause(self) -> None:
        """Propose nothing more (commands queue) until resume()."""
        self._paused = True
        self._resumed = trio.Event()

    def resume(self) -> None:
        self._paused = False
        self._resumed.set()

    @property
    def paused(self) -> bool:
        return self._paused

    async def drain(self) -> None:
        """Return once no entry of this node is in flight (applied or given up): every
        room taken is given back, so no proposal is between taking it and finishing."""
        await trio.lowlevel.checkpoint()  # a proposal started just now registers first
        while self._room.value < self._config.in_flight_max:
            self._drained = trio.Event()
            await self._drained.wait()

    @property
    def waiting(self) -> int:
        """Commands submitted and not yet applied or given up: queued or in flight."""
        return len(self._pending) + self._in_flight_commands + self._refused_commands

    def statistics(self) -> BatcherStatistics:
        return BatcherStatistics(
            entries_proposed=self._entries,
            commands_proposed=self._commands,
            clock_entries=self._clock_entries,
            unknown_outcomes=self._unknown,
            in_flight=len(self._in_flight),
        )
