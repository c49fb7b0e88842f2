"""The only place where pysyncobj's tick thread meets trio.

Strategy: the tick thread never waits for trio and never touches trio objects; it puts each
hand-over (a function and its arguments) in one locked first-in, first-out inbox, and wakes
trio with `TrioToken.run_sync_soon` only when the inbox was empty: under load one wake-up
(a system call) carries many hand-overs. Trio drains the inbox in order. So for one log
entry, the "applied" hand-over always reaches trio before the hand-over of the proposal
that entry answers (pysyncobj applies an entry, then calls its callback). Going the other
way, trio calls `RaftNode.propose`, which only puts the entry in pysyncobj's locked queue,
or `ask`s the tick thread to start something whose answer comes back the same way.

If trio has finished (the node is stopping), hand-overs are dropped: nothing is waiting
for them any more.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

FAIL_REASON_NAMES = {
    0: "success",
    1: "queue_full",
    2: "missing_leader",
    3: "discarded",
    4: "not_leader",
    5: "leader_changed",
    6: "request_denied",
    7: "unknown_outcome",
}
TIMED_OUT = -1


class Proposer(Protocol):
    def propose(self, entry: bytes, callback: Callable[[Any, int], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class Proposal:
    """How a proposed entry ended, as far as this node knows: `reason` 0 with the result
    of applying it here, or the failure (pysyncobj's FAIL_REASON, or TIMED_OUT). Anything
    but 0 means the entry may or may not be applied later."""

    result: Any
    reason: int

    @property
    def applied(self) -> bool:
        return self.reason == 0

    @property
    def reason_name(self) -> str:
        return "timed_out" if self.reason == TIMED_OUT else FAIL_REASON_NAMES[self.reason]


class Bridge:
    """Hands applied entries and proposal outcomes from the tick thread to trio."""

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._token = token
        self._on_failure = on_failure  # stops the process; None: raise (tests)
        self._handlers: list[Callable[[int, Any], None]] = []
        self.proposer: Proposer | None = None
        self.handed_over = 0
        self.wakeups = 0
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False

    # -- Tick thread side ----------------------------------------------------------------

    def applied_in_raft_thread(self, index: int, result: Any) -> None:
        """RaftNode's on_applied: called on the tick thread after each applied entry."""
        self._hand_over(self._deliver_applied, index, result)

    def _hand_over(self, function: Callable[..., None], *args: Any) -> None:
        with self._inbox_lock:
            self._inbox.append((function, args))
            if self._drain_scheduled:
                return  # trio will drain this one with the ones before it
            self._drain_scheduled = True
        # If trio has finished, the node is stopping and nobody is waiting any more.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._drain)

    def _drain(self) -> None:  # trio thread
        self.wakeups += 1
        while True:
            with self._inbox_lock:
                if not self._inbox:
                    self._drain_scheduled = False
                    return
                batch = list(self._inbox)
                self._inbox.clear()
            for function, args in batch:
                try:
                    function(*args)
                except BaseException:
                    # An exception here would reach trio as an internal error and skip
                    # every clean-up; what the handlers keep (report streams, tickets)
                    # can no longer be trusted, so the node stops, saying where.
                    if self._on_failure is None:
                        raise
                    self._on_failure(f"handing {function.__name__} over to the trio thread")

    # -- Trio side ---------------------------------------------------------------------

    def on_applied(self, handler: Callable[[int, Any], None]) -> None:
        """Call `handler(index, result)` on the trio thread for every applied entry, in
        log order. Register handlers before the RaftNode starts, or miss the replay."""
        self._handlers.append(handler)

    def _deliver_applied(self, index: int, result: Any) -> None:
        self.handed_over += 1
        for handler in self._handlers:
            handler(index, result)

    async def propose(self, entry: bytes, timeout_s: float) -> Proposal:
        """Propose an entry and wait until it is applied here, fails, or times out."""
        assert self.proposer is not None, "the RaftNode is not attached yet"
        done = trio.Event()
        outcome: list[Proposal] = []

        def finish(result: Any, reason: int) -> None:  # trio thread
            if not outcome:
                outcome.append(Proposal(result, reason))
                done.set()

        def callback(result: Any, reason: int) -> None:  # tick thread
            self._hand_over(finish, result, reason)

        self.proposer.propose(entry, callback)
        with trio.move_on_after(timeout_s):
            await done.wait()
        if not outcome:
            outcome.append(Proposal(None, TIMED_OUT))
        return outcome[0]

    async def ask(self, request: Callable[[Callable[[Any], None]], None]) -> Any:
        """Start something that answers on the tick thread, and wait for the answer:
        `request(reply)` is called here, and what it starts calls `reply(value)` once."""
        done = trio.Event()
        answers: list[Any] = []

        def finish(value: Any) -> None:  # trio thread
            answers.append(value)
            done.set()

        request(lambda value: self._hand_over(finish, value))
        await done.wait()
        return answers[0]
