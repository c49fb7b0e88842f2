"""Loading a snapshot, and checking one from end to end.

Strategy: two callers want different depths. A node loading a snapshot (at startup, or
one the leader sent) runs `load`: the cheap checks of format.py (magic, version, lengths,
checksum), the state decoded and rebuilt, its running hash against the header's, its
counts against the header's, and, unless turned off, the full audit of every conservation
invariant; the first failure raises SnapshotError and the snapshot is not used. An
operator's `evx snapshot verify` runs `verify`, which never stops at the first failure
and adds the one check too slow for a node's startup: the state re-encoded from the
rebuilt engine must give back the stored bytes exactly, that is, the state hash recomputed
from the state equals the one written. Each check is reported by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from evx.core import INVARIANTS, Engine, StateError, audit, encode_state, from_state

from . import format as snapshot_format
from .format import Snapshot, SnapshotError, SnapshotHeader


def load(blob: bytes | memoryview, *, full_audit: bool = True) -> tuple[SnapshotHeader, Engine]:
    """The engine a snapshot holds, checked; raises SnapshotError."""
    snapshot = snapshot_format.parse(blob)
    engine = _rebuild(snapshot)
    _check_against_header(snapshot.header, engine)
    if full_audit:
        violations = audit(engine)
        if violations:
            first = violations[0]
            raise SnapshotError(
                first.invariant, f"{first.detail} ({len(violations)} violation(s) in all)"
            )
    return snapshot.header, engine


def _rebuild(snapshot: Snapshot) -> Engine:
    if snapshot_format.digest(snapshot.state) != snapshot.header.state_digest:
        raise SnapshotError("state_digest", "the state bytes do not match the header's digest")
    try:
        state = msgpack.unpackb(snapshot.state, raw=False, strict_map_key=True)
        return from_state(state)
    except StateError as error:
        raise SnapshotError("state_decodes", str(error)) from None
    except Exception as error:  # msgpack raises several types for bad bytes
        raise SnapshotError("state_decodes", f"state is not msgpack: {error}") from None


def _check_against_header(header: SnapshotHeader, engine: Engine) -> None:
    if engine.state_hash != header.state_hash:
        raise SnapshotError(
            "state_hash",
            f"the state's hash {engine.state_hash.hex()[:16]} is not the header's "
            f"{header.state_hash.hex()[:16]}",
        )
    counts = (len(engine.accounts), len(engine.markets), len(engine.orders))
    if counts != (header.accounts, header.markets, header.orders):
        raise SnapshotError("counts", f"accounts, markets, orders {counts} are not the header's")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


CHECKS = (
    "format",
    "checksum",
    "header",
    "state_version",
    "state_digest",
    "state_decodes",
    "state_hash",
    "counts",
    "state_canonical",
    *INVARIANTS,
)


@dataclass(frozen=True, slots=True)
class Verification:
    header: SnapshotHeader | None
    checks: tuple[Check, ...]
    engine: Engine | None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks) and len(self.checks) == len(CHECKS)

    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]


def verify(blob: bytes | memoryview) -> Verification:
    """Every check, each reported by name; checks that need an earlier one to pass are
    reported as not run when it did not."""
    checks: list[Check] = []

    def not_run(after: str) -> Verification:
        done = {check.name for check in checks}
        for name in CHECKS:
            if name not in done:
                checks.append(Check(name, False, f"not run: {after} failed"))
        return Verification(header, tuple(checks), engine)

    header: SnapshotHeader | None = None
    engine: Engine | None = None
    try:
        snapshot = snapshot_format.parse(blob)
    except SnapshotError as error:
        # parse checks format, length, checksum, header, state version in that order
        order = ("format", "checksum", "header", "state_version")
        failed = "checksum" if error.check == "length" else error.check
        for name in order:
            if name == failed:
                checks.append(Check(name, False, error.detail))
                return not_run(name)
            checks.append(Check(name, True))
        return not_run(failed)
    header = snapshot.header
    checks += [Check(name, True) for name in ("format", "checksum", "header", "state_version")]
    try:
        engine = _rebuild(snapshot)
    except SnapshotError as error:
        if error.check == "state_decodes":
            checks.append(Check("state_digest", True))
        checks.append(Check(error.check, False, error.detail))
        return not_run(error.check)
    checks += [Check("state_digest", True), Check("state_decodes", True)]
    for name, check in (("state_hash", _hash_check), ("counts", _count_check)):
        problem = check(header, engine)
        checks.append(Check(name, not problem, problem))
    canonical = encode_state(engine) == bytes(snapshot.state)
    checks.append(
        Check(
            "state_canonical",
            canonical,
            "" if canonical else "the rebuilt state does not encode to the stored bytes",
        )
    )
    violations = audit(engine)
    for invariant in INVARIANTS:
        found = [violation for violation in violations if violation.invariant == invariant]
        detail = ""
        if found:
            detail = found[0].detail + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
        checks.append(Check(invariant, not found, detail))
    return Verification(header, tuple(checks), engine)


def _hash_check(header: SnapshotHeader, engine: Engine) -> str:
    try:
        _check_against_header(header, engine)
    except SnapshotError as error:
        if error.check == "state_hash":
            return error.detail
    return ""


def _count_check(header: SnapshotHeader, engine: Engine) -> str:
    counts = (len(engine.accounts), len(engine.markets), len(engine.orders))
    if counts != (header.accounts, header.markets, header.orders):
        return f"accounts, markets, orders {counts} are not the header's"
    return ""
