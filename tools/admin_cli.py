"""`evx admin`: the operator's command line, for the cluster and for the exchange.

Strategy: thin click commands over tools/admin.py (status, verify, transfer, snapshot) and
tools/operations.py (accounts, money, markets), which return plain data; here it becomes
lines and tables for a person, or JSON with --json. Every command finds the cluster from
`--data DIR` (the folder `evx up` made) or `--config FILE` (one node's config); commands
that change anything sign in with the operator key: `--operator-key FILE`, by default the
`operator.pem` of the data folder.

Exit status (docs/operations.md): 0 done; 1 refused (nothing changed), a node disagrees
(verify) or a node is down (status); 3 already done earlier (a repeated name or bank
reference: nothing changed now); 4 the cluster could not be reached or refused the key;
2 a usage error.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from evx.core import (
    ConfigureMarket,
    CreateAccount,
    CreateEvent,
    CreateMarket,
    Deposit,
    MarketKind,
    MarketStatus,
    MarkMarket,
    SetMargins,
    SetMarketStatus,
    SettleEvent,
    SettleMarket,
    Withdraw,
    constants,
)

DATA_HELP = "the cluster's folder (made by evx up)"
EXIT_UNREACHABLE = 4
T = TypeVar("T")


class UsageProblem(click.ClickException):
    """Something on the command line or in the files it names: nothing was sent (exit 2)."""

    exit_code = 2


def _where(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--config", "config_path", type=click.Path(path_type=Path), help="a node's config"
    )(function)
    return click.option("--data", "data_dir", type=click.Path(path_type=Path), help=DATA_HELP)(
        function
    )


def _signed(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--json", "as_json", is_flag=True, help="print one JSON object")(
        function
    )
    function = click.option(
        "--operator-key",
        type=click.Path(path_type=Path),
        help="the operator's Ed25519 key (default: operator.pem in --data)",
    )(function)
    return _where(function)


def _nodes(data_dir: Path | None, config_path: Path | None) -> list[Any]:
    from . import admin  # noqa: PLC0415

    try:
        return admin.cluster_nodes(data_dir, config_path)
    except (FileNotFoundError, ValueError) as error:
        raise UsageProblem(str(error)) from None


def _key(data_dir: Path | None, operator_key: Path | None) -> Any:
    from evx.gateway.keys import read_private_key  # noqa: PLC0415

    path = operator_key or (data_dir or Path("evx-data")) / "operator.pem"
    try:
        return read_private_key(path)
    except (OSError, ValueError) as error:
        raise UsageProblem(f"cannot read the operator key {path}: {error}") from None


def _run(call: Callable[[], Awaitable[T]], *, sent: bool = False) -> T:
    """Run one async call; a cluster that cannot be reached (or refuses the operator key)
    is exit 4, said in one line. `sent`: the call sends a command, which a time-out leaves
    with an unknown outcome."""
    import trio  # noqa: PLC0415

    from evx.gateway.client import ClientError, sole_exception  # noqa: PLC0415

    try:
        return trio.run(call)
    except BaseException as raised:
        error = sole_exception(raised)
        if not isinstance(error, ClientError | OSError | trio.TooSlowError):
            raise
        text = str(error) or type(error).__name__
        if isinstance(error, trio.TooSlowError):
            text = "no node answered in time (down, or unreachable from here)"
            if sent:
                text = (
                    "no answer in time: the command may or may not have been applied; send it "
                    "again unchanged (a repeat is answered 'already done')"
                )
        click.echo(f"error: could not do it on the cluster: {text}", err=True)
        sys.exit(EXIT_UNREACHABLE)


@click.group()
def admin() -> None:
    """Operate a running cluster and the exchange on it."""


# -- The cluster ------------------------------------------------------------------------------


@admin.command("status")
@_where
@click.option("--json", "as_json", is_flag=True, help="print one JSON array")
@click.option("--watch", is_flag=True, help="refresh every second (Ctrl-C stops)")
def status(data_dir: Path | None, config_path: Path | None, as_json: bool, watch: bool) -> None:
    """Role, term, indexes, lag, state hash, peers and last snapshot of every node."""
    from . import admin as cluster  # noqa: PLC0415

    nodes = _nodes(data_dir, config_path)
    while True:
        rows = _run(lambda: cluster.statuses(nodes))
        if as_json:
            click.echo(cluster.status_json(rows))
        else:
            if watch:
                click.clear()
            click.echo(cluster.render_table(rows), nl=False)
        if not watch:
            sys.exit(0 if all(row.up for row in rows) else 1)
        time.sleep(1)


@admin.command("verify")
@_where
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def verify(data_dir: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Every node's state hash at one common log index; exit 1 naming any that differs."""
    from . import admin as cluster  # noqa: PLC0415

    nodes = _nodes(data_dir, config_path)
    result = _run(lambda: cluster.verify(nodes))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(cluster.render_verification(result), nl=False)
    sys.exit(0 if result.agree else 1)


@admin.command("transfer")
@_signed
@click.option("--to", "target", default=0, help="the node to lead next (default: most caught-up)")
def transfer(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    target: int,
) -> None:
    """Planned failover: move leadership, pausing intake only while it moves."""
    from . import admin as cluster  # noqa: PLC0415

    nodes = _nodes(data_dir, config_path)
    key = _key(data_dir, operator_key)
    result = _run(lambda: cluster.transfer(nodes, key, target))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    elif result.done:
        click.echo(f"leadership moved from node {result.node}: {result.text}")
    else:
        click.echo(f"not moved: {result.text}")
    sys.exit(0 if result.done else 1)


@admin.command("snapshot")
@_signed
@click.option("--node", "which", default=0, help="one node (default: every node)")
def snapshot(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    which: int,
) -> None:
    """Take a snapshot now (and compact the log) on one node or all."""
    from . import admin as cluster  # noqa: PLC0415

    nodes = _nodes(data_dir, config_path)
    key = _key(data_dir, operator_key)
    if which and which not in [peer.node_id for peer in nodes]:
        raise UsageProblem(f"no node {which} in the cluster")
    results = _run(lambda: cluster.snapshot(nodes, key, which))
    if as_json:
        click.echo(json.dumps([result.as_dict() for result in results]))
    else:
        for result in results:
            click.echo(f"node {result.node}: {result.text}")
    sys.exit(0 if all(result.done for result in results) else 1)


def _membership_command(name: str, add: bool, help_text: str) -> None:
    @admin.command(name, help=help_text)
    @_signed
    @click.option("--raft", "address", required=True, help="the node's peer address, host:port")
    def command(
        data_dir: Path | None,
        config_path: Path | None,
        operator_key: Path | None,
        as_json: bool,
        address: str,
    ) -> None:
        from . import admin as cluster  # noqa: PLC0415

        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageProblem(f"--raft {address!r} is not host:port")
        nodes = _nodes(data_dir, config_path)
        key = _key(data_dir, operator_key)
        result = _run(lambda: cluster.change_membership(nodes, key, add, address), sent=True)
        if as_json:
            click.echo(json.dumps(result.as_dict()))
        else:
            click.echo(result.text)
        sys.exit(0 if result.done else 1)


_membership_command(
    "add-node",
    True,
    "Make the node at --raft a member (then start it, empty; docs/operations.md).",
)
_membership_command(
    "remove-node",
    False,
    "Remove the member at --raft from the cluster (a dead node, or one to retire).",
)


# -- The exchange -----------------------------------------------------------------------------


def _operate(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    command: Any,
) -> None:
    from . import admin as cluster  # noqa: PLC0415
    from . import operations  # noqa: PLC0415

    nodes = _nodes(data_dir, config_path)
    key = _key(data_dir, operator_key)
    if not any(row.up for row in _run(lambda: cluster.statuses(nodes))):
        click.echo("error: no node of the cluster answers: nothing was sent", err=True)
        sys.exit(EXIT_UNREACHABLE)
    result = _run(lambda: operations.operate(nodes, key, command), sent=True)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(f"{result.text} (log index {result.index})")
    sys.exit(result.exit_code)


def _cents(text: str) -> int:
    from . import operations  # noqa: PLC0415

    try:
        return operations.parse_cents(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@admin.group()
def account() -> None:
    """Accounts: each logs in with its Ed25519 key; the exchange keeps the public half."""


@account.command("create")
@_signed
@click.argument("name")
@click.option("--public-key", help="the account's Ed25519 public key, 64 hex digits")
@click.option(
    "--key-file",
    type=click.Path(exists=True, path_type=Path),
    help="a PEM file with the account's key (private or public): its public half is used",
)
def account_create(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    name: str,
    public_key: str | None,
    key_file: Path | None,
) -> None:
    """Create account NAME with its public key."""
    if (public_key is None) == (key_file is None):
        raise click.UsageError("give exactly one of --public-key and --key-file")
    if public_key is not None:
        try:
            raw = bytes.fromhex(public_key)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--public-key") from None
    else:
        assert key_file is not None
        raw = _public_key_from_pem(key_file)
    _operate(data_dir, config_path, operator_key, as_json, CreateAccount(name, raw))


def _public_key_from_pem(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    data = path.read_bytes()
    try:
        key: Any = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise click.BadParameter(f"{path}: not a PEM key", param_hint="--key-file") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise click.BadParameter(f"{path}: not an Ed25519 key", param_hint="--key-file")
    return key.public_bytes_raw()


def _money_command(name: str, record: type, help_text: str) -> None:
    """`deposit` and `withdraw`: the same arguments, one engine command each."""

    @admin.command(name, help=help_text)
    @_signed
    @click.argument("account_id", type=int)
    @click.argument("amount")
    @click.option("--reference", required=True, help="the bank's reference: applied at most once")
    def command(
        data_dir: Path | None,
        config_path: Path | None,
        operator_key: Path | None,
        as_json: bool,
        account_id: int,
        amount: str,
        reference: str,
    ) -> None:
        money = record(account_id, _cents(amount), reference)
        _operate(data_dir, config_path, operator_key, as_json, money)


_money_command("deposit", Deposit, "Credit AMOUNT dollars, such as 250.50, to ACCOUNT_ID.")
_money_command(
    "withdraw",
    Withdraw,
    "Pay AMOUNT dollars out of ACCOUNT_ID's available cash (never held money).",
)


@admin.group()
def market() -> None:
    """Markets: create, open, halt, resume, close, settle, configure."""


def _close_time_ms(text: str | None) -> int:
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            "an ISO 8601 time (2026-12-31T21:00:00Z) or milliseconds since 1970",
            param_hint="--close-time",
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. Z for UTC", param_hint="--close-time")
    return int(moment.timestamp() * 1000)


@market.command("create")
@_signed
@click.argument("ticker")
@click.option(
    "--scalar",
    nargs=2,
    type=int,
    metavar="FLOOR CAP",
    help="a scalar market on [FLOOR, CAP] (default: binary)",
)
@click.option(
    "--future",
    nargs=2,
    type=int,
    metavar="FLOOR CAP",
    help="a futures market settling on [FLOOR, CAP], on margin (then `market margins`)",
)
@click.option("--close-time", help="when trading stops: ISO 8601 with a zone, or epoch ms")
@click.option("--taker-fee-bps", default=constants.taker_fee_bps_default, show_default=True)
@click.option("--maker-fee-bps", default=constants.maker_fee_bps_default, show_default=True)
@click.option(
    "--position-limit",
    default=constants.position_limit_default,
    show_default=True,
    help="contracts per account",
)
@click.option("--event", "event_id", type=int, default=0, help="the event it belongs to (an id)")
def market_create(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    ticker: str,
    scalar: tuple[int, int] | None,
    future: tuple[int, int] | None,
    close_time: str | None,
    taker_fee_bps: int,
    maker_fee_bps: int,
    position_limit: int,
    event_id: int,
) -> None:
    """Create market TICKER (proposed: open it to trade), in an event with --event."""
    if scalar and future:
        raise UsageProblem("a market is --scalar or --future, not both")
    floor, cap = scalar or future or (0, 0)
    kind = MarketKind.FUTURE if future else MarketKind.SCALAR if scalar else MarketKind.BINARY
    command = CreateMarket(
        ticker,
        kind,
        close_time_ms=_close_time_ms(close_time),
        taker_fee_bps=taker_fee_bps,
        maker_fee_bps=maker_fee_bps,
        position_limit=position_limit,
        floor=floor,
        cap=cap,
        event_id=event_id,
    )
    _operate(data_dir, config_path, operator_key, as_json, command)


def _status_command(name: str, status: MarketStatus, help_text: str) -> None:
    @market.command(name, help=help_text)
    @_signed
    @click.argument("market_id", type=int)
    def command(
        data_dir: Path | None,
        config_path: Path | None,
        operator_key: Path | None,
        as_json: bool,
        market_id: int,
    ) -> None:
        _operate(data_dir, config_path, operator_key, as_json, SetMarketStatus(market_id, status))


_status_command("open", MarketStatus.OPEN, "Open MARKET_ID for trading (from proposed).")
_status_command(
    "halt", MarketStatus.HALTED, "Halt MARKET_ID: resting orders stay; only cancels are taken."
)
_status_command("resume", MarketStatus.OPEN, "Resume a halted MARKET_ID.")
_status_command(
    "close", MarketStatus.CLOSED, "Close MARKET_ID: resting orders are cancelled, await settle."
)


@market.command("settle")
@_signed
@click.argument("market_id", type=int)
@click.argument("outcome")
def market_settle(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    market_id: int,
    outcome: str,
) -> None:
    """Settle a closed MARKET_ID: OUTCOME is yes or no (binary) or the value (scalar)."""
    words = {"yes": 1, "no": 0}
    if outcome.lower() in words:
        value = words[outcome.lower()]
    else:
        try:
            value = int(outcome)
        except ValueError:
            raise click.BadParameter("yes, no, or an integer value", param_hint="OUTCOME") from None
    _operate(data_dir, config_path, operator_key, as_json, SettleMarket(market_id, value))


@market.command("margins")
@_signed
@click.argument("market_id", type=int)
@click.option("--initial", type=int, required=True, help="cents a contract a position needs")
@click.option("--maintenance", type=int, required=True, help="cents a contract, or liquidated")
@click.option("--band", type=int, required=True, help="the most a mark moves, cents")
@click.option(
    "--interval-ms", type=int, default=0, show_default=True, help="the engine marks it this often"
)
def market_margins(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    market_id: int,
    initial: int,
    maintenance: int,
    band: int,
    interval_ms: int,
) -> None:
    """Set futures MARKET_ID's margins (1 <= band <= maintenance <= initial <= 100); they
    apply at once: short margins are topped up from cash, or orders cancelled, or
    positions liquidated."""
    command = SetMargins(market_id, initial, maintenance, band, interval_ms)
    _operate(data_dir, config_path, operator_key, as_json, command)


@market.command("mark")
@_signed
@click.argument("market_id", type=int)
@click.argument("price", type=int, default=0)
def market_mark(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    market_id: int,
    price: int,
) -> None:
    """Mark futures MARKET_ID to PRICE (within its band), or without PRICE from its book:
    every position is paid its variation margin."""
    _operate(data_dir, config_path, operator_key, as_json, MarkMarket(market_id, price))


@market.command("configure")
@_signed
@click.argument("market_id", type=int)
@click.option("--taker-fee-bps", type=int, required=True)
@click.option("--maker-fee-bps", type=int, required=True)
@click.option("--position-limit", type=int, required=True, help="contracts per account")
def market_configure(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    market_id: int,
    taker_fee_bps: int,
    maker_fee_bps: int,
    position_limit: int,
) -> None:
    """Set MARKET_ID's fee schedule and position limit (all three, as they will be)."""
    command = ConfigureMarket(market_id, taker_fee_bps, maker_fee_bps, position_limit)
    _operate(data_dir, config_path, operator_key, as_json, command)


@admin.group()
def event() -> None:
    """Events: groups of markets; mutually exclusive ones net and settle together."""


@event.command("create")
@_signed
@click.argument("ticker")
@click.option(
    "--kind",
    type=click.Choice(["exhaustive", "exclusive", "group"]),
    required=True,
    help="exhaustive: exactly one market wins (list every outcome, 'other' too); "
    "exclusive: at most one; group: no netting",
)
def event_create(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    ticker: str,
    kind: str,
) -> None:
    """Create event TICKER; then `market create --event ID` each of its markets (all of
    an exhaustive event's before any opens)."""
    command = CreateEvent(ticker, int(kind != "group"), int(kind == "exhaustive"))
    _operate(data_dir, config_path, operator_key, as_json, command)


@event.command("settle")
@_signed
@click.argument("event_id", type=int)
@click.argument("winner")
def event_settle(
    data_dir: Path | None,
    config_path: Path | None,
    operator_key: Path | None,
    as_json: bool,
    event_id: int,
    winner: str,
) -> None:
    """Settle EVENT_ID once its markets are closed: WINNER is the market that won (its id),
    or none (not for an exhaustive event). Every other market settles NO."""
    if winner.lower() == "none":
        winner_id = 0
    else:
        try:
            winner_id = int(winner)
        except ValueError:
            raise click.BadParameter("a market id, or none", param_hint="WINNER") from None
    _operate(data_dir, config_path, operator_key, as_json, SettleEvent(event_id, winner_id))
