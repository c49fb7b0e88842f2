"""`evx bench feed`: market-data fan-out while the order benchmark runs.

Strategy: the cluster benchmark's cluster, setup and order load (tools/bench_cluster.py),
with each node also serving its feed and its metrics. The same cluster is measured in
phases of the same order load: without subscribers, and with `--subscribers` FeedClients
(gateway/feed_client.py; every market, or markets 1..N) connected to one node's feed. The
phases alternate round by round (without-with, then with-without, ...) so the books
growing over the run weigh on both alike; rates are the median of the rounds, ack
latencies pooled over them.

Two kinds of subscriber (`--subscriber-mode`). `client`: every one a full FeedClient
(decoding and applying each frame, some 5 us in Python), so 100 of them need about two
cores by themselves: on a small machine they starve, miss heartbeats and are cut, and the
figures measure that. `raw` (the default): all but `--checked-subscribers` FeedClients are
RawReaders, a fast native client as far as the node can tell: one Subscribe, a Heartbeat
every half interval, and large reads counted and walked by their length prefixes (the
stream must stay framed), bodies never decoded; so the figures measure the exchange's
side of the fan-out, and the FeedClients still check the books.

The subscribers run in `--subscriber-processes` processes of their own (this module run
with `--subscribers-child`), never in the load generator's. Each reports "ready" once
every client holds an image of every market it follows (and every RawReader got its
images), and, as each measured window opens and closes, the frames and raw bytes its
subscribers received so far: the rates within the windows. After the load stops, the final
books (market_seq and a digest of the levels) are read from a fresh subscription to
another node's feed; each subscriber process then waits (at most CATCH_UP_TIMEOUT_S) for
its clients to reach them and reports their statistics and book digests. The books check:
every subscriber's book equals the final one (`books_identical`), and no two subscribers
hold different levels at the same (market, market_seq) (`book_conflicts`, meaningful
even for subscribers that did not catch up).

Delivery delay is the node's own histogram `evx_feed_delivery_seconds` (tools/metrics.py:
from a log entry applied on the node to its market data written to a subscriber's socket).
/metrics is read just before and just after each measured window (bench_cluster's
`on_window`); the difference of the bucket counts is the window's distribution, and the
percentiles are interpolated linearly within a bucket (0.25 ms wide at the low end). The
share within 10 ms is exact: 10 ms is a bucket bound. A write is observed only once it
completes: data queued for a subscriber whose connection ends first is never counted, so
when subscribers fall behind, read the delay with `reconnects` and `subscribers_caught_up`.

Everything shares this machine's cores: three nodes, the load generator (this process) and
the subscriber processes. The CPU each used in the measured windows is reported (from
/proc), in percent of one core, with what other processes on the machine used meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from evx.gateway import limits
from evx.gateway import messages as wire
from evx.gateway.codec import (
    CLIENT,
    FEED_PORT,
    SERVER,
    Connection,
    ErrorCode,
    RemoteProtocolError,
    frame_size_max,
)
from evx.gateway.feed import LocalBook
from evx.gateway.feed_client import FeedClient

from . import bench_cluster
from . import layout as layouts
from .node import split_address
from .up import node_processes, stop_processes, wait_for_leader

WARMUP_S = 3.0
DELIVERY = "evx_feed_delivery_seconds"
AIM_DELIVERY_P99_MS = 10.0
AIM_THROUGHPUT_RATIO = 0.9
CHILD_FLAG = "--subscribers-child"
READY_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 15.0  # after the load: for every subscriber to reach the final books
QUIET_S = 1.0  # no change for this long after the load: the books are final
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MODES = ("raw", "client")
RAW_READ_BYTES = 262_144  # one recv_into per wake-up, into a buffer each reader keeps
RAW_CONNECT_TIMEOUT_S = 2.0
RAW_RETRY_DELAY_S = 0.2
_RAW_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)
_PREFIX = struct.Struct(">I")
_FRAME_LENGTH_MAX = frame_size_max(SERVER) - limits.frame_length_prefix_size
assert _PREFIX.size == limits.frame_length_prefix_size


@dataclass(frozen=True, slots=True)
class FeedBenchResult:
    subscribers: int
    subscriber_mode: str  # raw: all but `checked_subscribers` are RawReaders
    checked_subscribers: int  # full FeedClients, whose books are checked
    raw_readers: int
    subscriber_processes: int
    subscriber_markets: list[int]
    feed_node: int
    feed_node_was_leader: bool
    sessions: int
    in_flight_per_session: int
    seconds: float  # measured, per phase
    rounds: int
    flush: bool
    batch_window_ms: float
    orders_per_s_without: float  # median of the rounds
    orders_per_s_with: float
    throughput_ratio: float  # with / without
    ack_latency_ms_p50_without: float  # pooled over the rounds
    ack_latency_ms_p99_without: float
    ack_latency_ms_p50_with: float
    ack_latency_ms_p99_with: float
    delivery_ms_p50: float  # interpolated linearly within the histogram's buckets
    delivery_ms_p99: float
    delivery_ms_p999: float
    delivery_within_10ms: float  # share of deliveries, exact (10 ms is a bucket bound)
    delivery_samples: int  # (subscriber, entry, market) chunks written in the windows
    delivery_interpolated: str
    feed_bytes_per_s: float  # queued to the subscribers by the node, in the windows
    feed_subscribers_at_window_end: int  # the node's evx_feed_subscribers (lowest phase)
    frames_received: int  # by all subscribers, over the with-phases (from start to finish)
    frames_per_s_in_windows: float  # by all subscribers, within the measured windows
    updates_received: int  # changes applied to the FeedClients' books
    snapshots_received: int  # by the FeedClients
    raw_bytes_received: int  # by the RawReaders, over the with-phases
    raw_bytes_per_s_in_windows: float  # by the RawReaders, within the measured windows
    raw_frames_received: int  # by the RawReaders, counted by their length prefixes
    raw_protocol_errors: int  # a RawReader's stream lost its framing: must be 0
    raw_refused: int  # Error frames a RawReader got before its images
    raw_ended_mid_frame: int  # RawReader connections that ended inside a frame
    gaps: int  # must be 0
    duplicates: int
    reconnects: int  # by all subscribers
    raw_reconnects: int  # of which by the RawReaders
    client_crashes: int  # FeedClient.run ended by an exception group, started again
    slow_consumers_cut: int  # the node's evx_feed_slow_consumers_cut, over the with-phases
    silent_cut: int  # the node's evx_feed_silent_cut (heartbeat_must_arrive), likewise
    subscribers_caught_up: int  # FeedClients at the final books after the load (lowest phase)
    catch_up_s: float
    books_identical: bool  # every subscriber's books = another node's, at the final seq
    book_conflicts: int  # (market, market_seq) held with different levels: must be 0
    book_market: int
    book_market_seq: int
    book_compared_with_node: int
    cpu_pct_without: dict[str, float]  # % of one core over the measured windows
    cpu_pct_with: dict[str, float]
    cores: int
    shares_cores: str
    wall_s: float
    aim_met: bool
    round_details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- Metrics and CPU ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scrape:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), by bound
    values: dict[str, float]  # unlabelled samples by name

    def value(self, name: str) -> float:
        return self.values.get(name, self.values.get(f"{name}_total", 0.0))


def scrape(address: str) -> Scrape:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets = []
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{DELIVERY}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif not sample.labels:
                values[sample.name] = sample.value
    return Scrape(tuple(sorted(buckets)), values)


def bucket_difference(
    before: Scrape, after: Scrape
) -> list[tuple[float, float]]:  # cumulative, per bound
    earlier = dict(before.buckets)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after.buckets]


def add_buckets(
    total: list[tuple[float, float]], more: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    if not total:
        return list(more)
    return [(bound, count + other) for (bound, count), (_, other) in zip(total, more, strict=True)]


def interpolated_percentile(buckets: list[tuple[float, float]], fraction: float) -> float:
    """The `fraction` quantile of a cumulative histogram, linear within its bucket (as
    Prometheus' histogram_quantile); past the last finite bound, that bound."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    rank = fraction * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def share_within(buckets: list[tuple[float, float]], bound_s: float) -> float:
    total = buckets[-1][1] if buckets else 0.0
    within = dict(buckets).get(bound_s)
    return within / total if total and within is not None else 0.0


def cpu_seconds(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) clock ticks over every core since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle, iowait
    return float(sum(values) - idle), float(sum(values))


@dataclass
class _Sample:
    scrape: Scrape
    cpu: dict[str, float]
    machine: tuple[float, float]
    at: float


def _sample(metrics_address: str, pids: dict[str, list[int]]) -> _Sample:
    return _Sample(
        scrape(metrics_address),
        {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()},
        machine_busy(),
        time.perf_counter(),
    )


def _cpu_pct(start: _Sample, end: _Sample) -> dict[str, float]:
    elapsed = end.at - start.at
    pct = {
        name: round(100 * (end.cpu[name] - start.cpu[name]) / elapsed, 1)
        for name in end.cpu
        if name in start.cpu
    }
    busy = end.machine[0] - start.machine[0]
    total = end.machine[1] - start.machine[1]
    share = busy / total if total else 0.0
    mine = sum(pct.values())
    pct["machine_busy_all_cores"] = round(100 * share, 1)
    # Whatever else ran on the machine meanwhile (another user's tests...), same unit.
    pct["other_processes"] = round(max(0.0, 100 * share * (os.cpu_count() or 1) - mine), 1)
    return pct


# -- Raw readers (--subscriber-mode raw) ----------------------------------------------------


class FrameWalker:
    """Counts a feed stream's frames by walking their length prefixes, the bodies unread:
    the cheap check that the stream stays framed. A length no server frame can have means
    it lost its framing: RemoteProtocolError."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head = b""  # the start of a length prefix that a read ended in
        self._skip = 0  # bytes of the current frame still to come, past the last read

    @property
    def mid_frame(self) -> bool:
        return bool(self._head or self._skip)

    def feed(self, data: bytes | bytearray, end: int) -> int:
        """Walk `data[:end]`, the stream's next bytes; the frames begun in them."""
        frames = 0
        at = self._skip
        if self._head:
            need = _PREFIX.size - len(self._head)
            head = self._head + bytes(data[: min(need, end)])
            if len(head) < _PREFIX.size:
                self._head = head
                return 0
            self._head = b""
            at = need + _frame_length(head, 0)
            frames += 1
        unpack = _PREFIX.unpack_from
        while at + _PREFIX.size <= end:
            (length,) = unpack(data, at)
            if not 0 < length <= _FRAME_LENGTH_MAX:
                _frame_length(data, at)  # raises
            at += _PREFIX.size + length
            frames += 1
        if at < end:
            self._head, self._skip = bytes(data[at:end]), 0
        else:
            self._skip = at - end
        return frames


def _frame_length(data: bytes | bytearray, at: int) -> int:
    (length,) = _PREFIX.unpack_from(data, at)
    if not 0 < length <= _FRAME_LENGTH_MAX:
        raise RemoteProtocolError(
            ErrorCode.FRAME_MUST_FIT_MAX, f"a frame length of {length}: the stream lost its framing"
        )
    return length


@dataclass
class RawStatistics:
    connections: int = 0
    bytes: int = 0
    frames: int = 0  # begun, counted by their length prefixes
    protocol_errors: int = 0  # a length no frame can have, or an image that did not decode
    refused: int = 0  # an Error frame before the images (feed full, node not ready...)
    ended_mid_frame: int = 0  # connections that ended inside a frame (a cut mid-write)


class RawReader:
    """A market maker's fast native client, as far as the node can tell: one Subscribe (with
    the sans-IO codec), a Heartbeat every half interval, and otherwise large reads, counted
    and walked by their length prefixes, never decoded. Until this connection's images of
    `wanted` have come, frames are decoded too (`ready` is then set); a connection that
    ends (cut, or silent for three heartbeat intervals) is opened again, from images."""

    def __init__(
        self, address: tuple[str, int], markets: list[int] | None, wanted: list[int]
    ) -> None:
        self.address = address
        self.wanted = set(wanted)
        self.ready = trio.Event()
        self.statistics = RawStatistics()
        codec = Connection(CLIENT, FEED_PORT)
        if markets is None:
            subscribe = wire.Subscribe(1, int(wire.SubscribeFlag.ALL_MARKETS), ())
        else:
            subscribe = wire.Subscribe(1, 0, tuple(wire.MarketFrom(m, 0) for m in markets))
        self._subscribe = codec.send(subscribe)
        self._heartbeat = codec.send(wire.Heartbeat(0))
        self._buffer = bytearray(RAW_READ_BYTES)

    async def run(self) -> None:
        while True:
            await self._connection()
            await trio.sleep(RAW_RETRY_DELAY_S)

    async def _connection(self) -> None:
        statistics = self.statistics
        try:
            with trio.fail_after(RAW_CONNECT_TIMEOUT_S):
                stream = await trio.open_tcp_stream(*self.address)
        except _RAW_FAILURES:
            return
        statistics.connections += 1
        walker = FrameWalker()
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._read(stream, walker, nursery)
                except RemoteProtocolError:
                    statistics.protocol_errors += 1
                except _RAW_FAILURES:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            statistics.ended_mid_frame += walker.mid_frame
            await trio.aclose_forcefully(stream)

    async def _read(
        self, stream: trio.SocketStream, walker: FrameWalker, nursery: trio.Nursery
    ) -> None:
        statistics = self.statistics
        buffer = self._buffer
        receive = stream.socket.recv_into
        codec: Connection | None = Connection(CLIENT, FEED_PORT)  # until the images are in
        images: set[int] = set()
        subscribed = False
        silence_s = RAW_CONNECT_TIMEOUT_S  # until the FeedHello says the interval
        while True:
            with trio.fail_after(silence_s):
                size = await receive(buffer)
            if not size:
                return  # a cut's Error frame, if any, was among the bytes walked
            statistics.bytes += size
            statistics.frames += walker.feed(buffer, size)
            if codec is None:
                continue
            codec.receive_data(buffer[:size])
            while isinstance(message := codec.next_event(), wire.Message):
                if isinstance(message, wire.FeedHello):
                    interval_s = message.heartbeat_interval_ms / 1_000
                    silence_s = limits.heartbeat_intervals_silent_max * interval_s
                    await stream.send_all(self._subscribe)
                    nursery.start_soon(self._beat, stream, interval_s / 2)
                elif isinstance(message, wire.Subscribed):
                    subscribed = True
                elif isinstance(message, wire.BookSnapshot):
                    images.add(message.market_id)
                elif isinstance(message, wire.Error):
                    statistics.refused += 1
                    return
            if subscribed and self.wanted <= images:
                codec = None
                self.ready.set()

    async def _beat(self, stream: trio.SocketStream, every_s: float) -> None:
        with contextlib.suppress(*_RAW_FAILURES):
            while True:
                await trio.sleep(every_s)
                await stream.send_all(self._heartbeat)


# -- Subscriber processes -----------------------------------------------------------------


def book_digest(book: LocalBook) -> list[Any]:
    levels = (book.status, sorted(book.bids.items()), sorted(book.asks.items()))
    return [book.market_seq, hashlib.sha256(repr(levels).encode()).hexdigest()[:16]]


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _keep_running(
    feed: FeedClient,
    crashes: list[int],
    number: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`feed.run`, started again (books kept) if it ends with an exception group (the
    client's reader and heartbeat failing together once let one escape FeedClient.run).
    Counted, so the figures would say so."""
    status = task_status
    while True:
        try:
            await feed.run(task_status=status)
        except BaseExceptionGroup as group:
            if group.subgroup(lambda error: isinstance(error, trio.Cancelled)) is not None:
                raise
            crashes[number] += 1
            status = trio.TASK_STATUS_IGNORED  # the group comes after the first start
            await trio.sleep(feed.retry_delay_s)


class _Lines:
    """The lines of this process' stdin, one at a time; b"" once it closed."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        self._pending = b""

    async def next(self) -> bytes:
        while b"\n" not in self._pending:
            data = await self._stream.receive_some(65_536)
            if not data:
                return b""
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line


async def _subscribers(
    host: str, port: int, count: int, checked: int, markets: list[int] | None
) -> None:
    """One subscriber process: `checked` FeedClients and `count - checked` RawReaders;
    "ready" once each client holds every book and each reader has its images. Then, on
    each "mark" (a measured window opens or closes), the frames and raw bytes received so
    far; on "finish TARGETS" (each market's final (market_seq, digest), from another node)
    waits until the clients reach them and reports."""
    clients: list[FeedClient] = []
    frames = [0] * checked
    crashes = [0] * checked
    wanted = markets or list(range(1, bench_cluster.MARKETS + 1))
    readers = [RawReader((host, port), markets, wanted) for _ in range(count - checked)]

    def counter(number: int) -> Any:
        def count_frame(_message: Any) -> None:
            frames[number] += 1

        return count_frame

    async with trio.open_nursery() as nursery:
        with trio.fail_after(READY_TIMEOUT_S):
            for reader in readers:
                nursery.start_soon(reader.run)
            for number in range(checked):
                feed = FeedClient([(host, port)], markets, on_message=counter(number))
                await nursery.start(_keep_running, feed, crashes, number)
                clients.append(feed)
            for feed in clients:
                await feed.wait_for(
                    lambda f: f.node_id != 0 and all(m in f.books for m in wanted),
                    READY_TIMEOUT_S,
                )
            for reader in readers:
                await reader.ready.wait()
        _emit({"ready": True, "pid": os.getpid()})
        lines = _Lines()
        while (line := await lines.next()) == b"mark":
            _emit(
                {
                    "frames": sum(frames) + sum(r.statistics.frames for r in readers),
                    "raw_bytes": sum(r.statistics.bytes for r in readers),
                }
            )
        if not line.startswith(b"finish "):
            raise SystemExit(f"expected finish, read {line[:40]!r}")
        targets = {int(m): seq for m, (seq, _) in json.loads(line.split(b" ", 1)[1]).items()}
        started = time.monotonic()

        def caught_up(feed: FeedClient) -> bool:
            return all(
                feed.current(m) is not None and feed.books[m].market_seq >= seq
                for m, seq in targets.items()
            )

        with trio.move_on_after(CATCH_UP_TIMEOUT_S):
            while not all(caught_up(feed) for feed in clients):
                await trio.sleep(0.05)
        _emit(
            {
                "catch_up_s": round(time.monotonic() - started, 2),
                "clients": [
                    {
                        **asdict(feed.statistics),
                        "frames": frames[number],
                        "crashes": crashes[number],
                        "caught_up": caught_up(feed),
                        "books": {
                            str(m): book_digest(feed.books[m]) for m in wanted if m in feed.books
                        },
                    }
                    for number, feed in enumerate(clients)
                ],
                "raw": [asdict(reader.statistics) for reader in readers],
            }
        )
        nursery.cancel_scope.cancel()


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="evx.tools.bench_feed")
    parser.add_argument(CHILD_FLAG, dest="feed", required=True, help="host:port")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--checked", type=int, help="FeedClients of the count (default all)")
    parser.add_argument("--markets", type=int, default=0, help="markets 1..N; 0: every market")
    options = parser.parse_args(argv)
    host, port = split_address(options.feed)
    markets = list(range(1, options.markets + 1)) if options.markets else None
    checked = options.count if options.checked is None else options.checked
    assert 0 <= checked <= options.count
    trio.run(_subscribers, host, port, options.count, checked, markets)


@contextlib.contextmanager
def subscriber_processes(
    feed: str, counts: list[int], checked: list[int], markets: int, folder: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The subscriber processes, each with `count` subscribers on `feed`, `checked` of them
    FeedClients and the rest RawReaders; stopped by their own process ids on the way out,
    whatever happens."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number, (count, clients) in enumerate(zip(counts, checked, strict=True)):
            log_file = open(folder / f"subscribers{number}.log", "ab")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "evx.tools.bench_feed",
                        CHILD_FLAG,
                        feed,
                        "--count",
                        str(count),
                        "--checked",
                        str(clients),
                        "--markets",
                        str(markets),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    start_new_session=True,  # Ctrl-C reaches this process, which stops them
                )
            )
            log_file.close()
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
        stop_processes(processes, timeout_s=5)


def _read_report(
    process: subprocess.Popen[bytes], timeout_s: float, log_path: Path
) -> dict[str, Any]:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else b""
    if not line:
        tail = ""
        with contextlib.suppress(OSError):
            tail = log_path.read_text()[-2_000:]
        raise RuntimeError(
            f"subscriber process {process.pid} did not report within {timeout_s} s "
            f"(exit {process.poll()}); its log ends:\n{tail}"
        )
    return json.loads(line)


def _tell(processes: list[subprocess.Popen[bytes]], line: bytes) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(line + b"\n")
        process.stdin.flush()


def _spread(total: int, parts: int) -> list[int]:
    share, extra = divmod(total, parts)
    return [share + (number < extra) for number in range(parts)]


async def _final_books(
    address: tuple[str, int], markets: list[int], timeout_s: float = 30
) -> dict[int, list[Any]]:
    """Each market's (market_seq, digest) from a fresh subscription to `address`, once no
    change has come for QUIET_S (the order load has stopped)."""
    feed = FeedClient([address], markets)
    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            await feed.wait_for(lambda f: all(m in f.books for m in markets), timeout_s)
            while True:
                seen = feed.statistics.updates + feed.statistics.snapshots
                await trio.sleep(QUIET_S)
                if seen == feed.statistics.updates + feed.statistics.snapshots:
                    break
            books = {m: book_digest(feed.books[m]) for m in markets}
            nursery.cancel_scope.cancel()
    return books


# -- The run ------------------------------------------------------------------------------


@dataclass
class _Phase:
    with_subscribers: bool
    orders_per_s: float
    seconds: float
    latencies_ms: list[float]
    outcome_unknown: int
    cpu_pct: dict[str, float]
    delivery: list[tuple[float, float]]
    feed_bytes: float
    subscribers_at_end: int  # the node's evx_feed_subscribers as the window closed
    slow_consumers_cut: float = 0.0
    silent_cut: float = 0.0  # the node's evx_feed_silent_cut
    clients: list[dict[str, Any]] = field(default_factory=list)  # the FeedClients
    raw: list[dict[str, Any]] = field(default_factory=list)  # the RawReaders' statistics
    window_frames: int = 0  # received by every subscriber within the measured window
    window_raw_bytes: int = 0  # received by the RawReaders within the measured window
    catch_up_s: float = 0.0
    final: dict[int, list[Any]] = field(default_factory=dict)  # market -> [seq, digest]

    @property
    def reconnects(self) -> int:
        return _reconnects(self.clients) + _reconnects(self.raw)

    @property
    def caught_up(self) -> int:
        return sum(1 for client in self.clients if client["caught_up"])

    @property
    def books_identical(self) -> bool:
        """Every subscriber reached the final books, and each of its books equals the
        book another node's feed serves at that market_seq (so they all equal each other)."""
        return bool(self.clients) and all(
            client["books"].get(str(market)) == final
            for client in self.clients
            for market, final in self.final.items()
        )

    @property
    def book_conflicts(self) -> int:
        """(market, market_seq) pairs at which two subscribers hold different levels: 0
        whether or not they caught up."""
        seen: dict[tuple[str, int], set[str]] = {}
        for client in self.clients:
            for market, (seq, digest) in client["books"].items():
                seen.setdefault((market, seq), set()).add(digest)
        for market, (seq, digest) in self.final.items():
            seen.setdefault((str(market), seq), set()).add(digest)
        return sum(1 for digests in seen.values() if len(digests) > 1)

    def detail(self) -> dict[str, Any]:
        detail = {
            "subscribers": len(self.clients) + len(self.raw),
            "orders_per_s": round(self.orders_per_s),
            "seconds": round(self.seconds, 2),
            "ack_latency_ms_p50": round(bench_cluster._percentile(self.latencies_ms, 0.5), 2),
            "ack_latency_ms_p99": round(bench_cluster._percentile(self.latencies_ms, 0.99), 2),
            "outcome_unknown": self.outcome_unknown,
            "cpu_pct": self.cpu_pct,
        }
        if self.with_subscribers:
            detail |= {
                "delivery_ms_p50": round(1000 * interpolated_percentile(self.delivery, 0.5), 3),
                "delivery_ms_p99": round(1000 * interpolated_percentile(self.delivery, 0.99), 3),
                "delivery_samples": int(self.delivery[-1][1]) if self.delivery else 0,
                "feed_subscribers_at_window_end": self.subscribers_at_end,
                "feed_bytes_per_s": round(self.feed_bytes / self.seconds),
                "frames_per_s_in_window": round(self.window_frames / self.seconds),
                "raw_readers": len(self.raw),
                "raw_bytes_per_s_in_window": round(self.window_raw_bytes / self.seconds),
                "raw_bytes": sum(reader["bytes"] for reader in self.raw),
                "raw_frames": sum(reader["frames"] for reader in self.raw),
                "raw_reconnects": _reconnects(self.raw),
                "reconnects": self.reconnects,
                "slow_consumers_cut": int(self.slow_consumers_cut),
                "silent_cut": int(self.silent_cut),
                "checked_subscribers": len(self.clients),
                "caught_up": self.caught_up,
                "book_conflicts": self.book_conflicts,
                "catch_up_s": self.catch_up_s,
                "books_identical": self.books_identical,
            }
        return detail


def _reconnects(subscribers: list[dict[str, Any]]) -> int:
    return sum(subscriber["connections"] for subscriber in subscribers) - len(subscribers)


def _grown(before: Scrape, after: Scrape, name: str) -> float:
    return after.value(name) - before.value(name)


@dataclass
class _Bench:
    layout: layouts.ClusterLayout
    folder: Path
    accounts: list[tuple[int, Any]]
    node_pids: list[int]
    feed_node: int
    subscribers: int
    checked_subscribers: int  # FeedClients among them; the rest are RawReaders
    subscriber_processes: int
    subscriber_markets: int  # 0: every market
    in_flight: int
    measure_s: float

    def _config(self, node: int) -> Any:
        return self.layout.configs()[node - 1]

    @property
    def reference_node(self) -> int:
        return self.feed_node % len(self.node_pids) + 1

    @property
    def markets(self) -> list[int]:
        return list(range(1, (self.subscriber_markets or bench_cluster.MARKETS) + 1))

    def _pids(self, subscriber_pids: list[int]) -> dict[str, list[int]]:
        pids = {f"node{n}": [pid] for n, pid in enumerate(self.node_pids, 1)}
        pids["load_generator"] = [os.getpid()]
        pids["subscribers"] = subscriber_pids
        return pids

    def _log(self, number: int) -> Path:
        return self.folder / f"subscribers{number}.log"

    def _marks(self, processes: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
        """What each subscriber process received so far. Asked and answered one line at a
        time, so a process' stdout never holds two lines (_read_report selects on it)."""
        _tell(processes, b"mark")
        return [
            _read_report(process, READY_TIMEOUT_S, self._log(number))
            for number, process in enumerate(processes)
        ]

    def _drive(
        self, processes: list[subprocess.Popen[bytes]]
    ) -> tuple[list[Any], float, _Sample, _Sample, list[list[dict[str, Any]]]]:
        """The order load; at each end of the measured window, a sample of the metrics and
        the CPU, and each subscriber process' marks."""
        samples: list[_Sample] = []
        marks: list[list[dict[str, Any]]] = []
        metrics = self._config(self.feed_node).metrics
        pids = self._pids([process.pid for process in processes])

        async def on_window(_opening: bool) -> None:
            marks.append(await trio.to_thread.run_sync(self._marks, processes))
            samples.append(await trio.to_thread.run_sync(_sample, metrics, pids))

        sessions, seconds = trio.run(
            bench_cluster._drive,
            self.layout,
            self.accounts,
            self.in_flight,
            WARMUP_S,
            self.measure_s,
            on_window,
        )
        return sessions, seconds, samples[0], samples[1], marks

    def phase(self, with_subscribers: bool) -> _Phase:
        if not with_subscribers:
            return self._phase_result(False, *self._drive([]))
        counts = _spread(self.subscribers, self.subscriber_processes)
        checked = _spread(self.checked_subscribers, self.subscriber_processes)
        feed = self._config(self.feed_node)
        logs = [self._log(number) for number in range(len(counts))]
        before = scrape(feed.metrics)
        with subscriber_processes(
            feed.feed, counts, checked, self.subscriber_markets, self.folder
        ) as processes:
            for process, log in zip(processes, logs, strict=True):
                _read_report(process, READY_TIMEOUT_S, log)
            result = self._phase_result(True, *self._drive(processes))
            reference = split_address(self._config(self.reference_node).feed)
            result.final = trio.run(_final_books, reference, self.markets)
            _tell(processes, b"finish " + json.dumps(result.final).encode())
            reports = [
                _read_report(process, CATCH_UP_TIMEOUT_S + 30, log)
                for process, log in zip(processes, logs, strict=True)
            ]
        after = scrape(feed.metrics)
        result.clients = [client for report in reports for client in report["clients"]]
        result.raw = [reader for report in reports for reader in report["raw"]]
        result.catch_up_s = max(report["catch_up_s"] for report in reports)
        result.final = {int(market): final for market, final in result.final.items()}
        result.slow_consumers_cut = _grown(before, after, "evx_feed_slow_consumers_cut")
        result.silent_cut = _grown(before, after, "evx_feed_silent_cut")
        return result

    def _phase_result(
        self,
        with_subscribers: bool,
        sessions: list[Any],
        seconds: float,
        start: _Sample,
        end: _Sample,
        marks: list[list[dict[str, Any]]],
    ) -> _Phase:
        opened, closed = marks

        def grown(key: str) -> int:
            return sum(close[key] - open_[key] for open_, close in zip(opened, closed, strict=True))

        return _Phase(
            with_subscribers=with_subscribers,
            orders_per_s=sum(session.acked for session in sessions) / seconds,
            seconds=seconds,
            latencies_ms=[value for session in sessions for value in session.latencies_ms],
            outcome_unknown=sum(session.unknown for session in sessions),
            cpu_pct=_cpu_pct(start, end),
            delivery=bucket_difference(start.scrape, end.scrape),
            feed_bytes=_grown(start.scrape, end.scrape, "evx_feed_bytes_queued"),
            subscribers_at_end=int(end.scrape.value("evx_feed_subscribers")),
            window_frames=grown("frames"),
            window_raw_bytes=grown("raw_bytes"),
        )


def run(
    subscribers: int = 100,
    subscriber_processes: int = 2,
    subscriber_mode: str = "raw",
    checked_subscribers: int = 2,
    sessions: int = 8,
    in_flight: int = 8,
    measure_s: float = 10.0,
    rounds: int = 2,
    feed_node: int = 1,
    subscriber_markets: int = 0,
    flush: bool = True,
    window_ms: float = 1.0,
) -> FeedBenchResult:
    assert subscribers >= 1 and subscriber_processes >= 1 and rounds >= 1
    assert feed_node in (1, 2, 3) and 0 <= subscriber_markets <= bench_cluster.MARKETS
    assert subscriber_mode in MODES and checked_subscribers >= 1
    started = time.perf_counter()
    processes_used = min(subscriber_processes, subscribers)
    checked = subscribers if subscriber_mode == "client" else min(checked_subscribers, subscribers)
    folder = Path(tempfile.mkdtemp(prefix="evx-bench-feed-"))
    phases: list[_Phase] = []
    try:
        layout = bench_cluster._make_cluster(
            folder / "cluster",
            flush,
            window_ms,
            bench_cluster.SnapshotSettings().every_entries,
            feed=True,
        )
        with node_processes(layout) as processes:
            leader = trio.run(wait_for_leader, layout)
            accounts = trio.run(bench_cluster._setup, layout, sessions)
            bench = _Bench(
                layout,
                folder,
                accounts,
                [process.pid for process in processes],
                feed_node,
                subscribers,
                checked,
                processes_used,
                subscriber_markets,
                in_flight,
                measure_s,
            )
            for number in range(rounds):  # without-with, then with-without, ...
                for with_subscribers in (False, True) if number % 2 == 0 else (True, False):
                    phases.append(bench.phase(with_subscribers))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    without = [phase for phase in phases if not phase.with_subscribers]
    with_ = [phase for phase in phases if phase.with_subscribers]
    rate_without = statistics.median(phase.orders_per_s for phase in without)
    rate_with = statistics.median(phase.orders_per_s for phase in with_)
    latencies_without = [value for phase in without for value in phase.latencies_ms]
    latencies_with = [value for phase in with_ for value in phase.latencies_ms]
    delivery: list[tuple[float, float]] = []
    for phase in with_:
        delivery = add_buckets(delivery, phase.delivery)
    clients = [client for phase in with_ for client in phase.clients]
    raw = [reader for phase in with_ for reader in phase.raw]
    window_s = sum(phase.seconds for phase in with_)

    def total(key: str, subscribers: list[dict[str, Any]] = clients) -> int:
        return sum(int(subscriber[key]) for subscriber in subscribers)

    ratio = rate_with / rate_without if rate_without else 0.0
    p99_ms = 1000 * interpolated_percentile(delivery, 0.99)
    cores = os.cpu_count() or 0
    gaps = total("gaps")
    cut = int(sum(phase.slow_consumers_cut for phase in with_))
    silent_cut = int(sum(phase.silent_cut for phase in with_))
    raw_errors = total("protocol_errors", raw)
    identical = all(phase.books_identical for phase in with_)
    result_conflicts = sum(phase.book_conflicts for phase in with_)
    return FeedBenchResult(
        subscribers=subscribers,
        subscriber_mode=subscriber_mode,
        checked_subscribers=checked,
        raw_readers=subscribers - checked,
        subscriber_processes=processes_used,
        subscriber_markets=bench.markets,
        feed_node=feed_node,
        feed_node_was_leader=leader == feed_node,
        sessions=sessions,
        in_flight_per_session=in_flight,
        seconds=measure_s,
        rounds=rounds,
        flush=flush,
        batch_window_ms=window_ms,
        orders_per_s_without=round(rate_without),
        orders_per_s_with=round(rate_with),
        throughput_ratio=round(ratio, 3),
        ack_latency_ms_p50_without=round(bench_cluster._percentile(latencies_without, 0.5), 2),
        ack_latency_ms_p99_without=round(bench_cluster._percentile(latencies_without, 0.99), 2),
        ack_latency_ms_p50_with=round(bench_cluster._percentile(latencies_with, 0.5), 2),
        ack_latency_ms_p99_with=round(bench_cluster._percentile(latencies_with, 0.99), 2),
        delivery_ms_p50=round(1000 * interpolated_percentile(delivery, 0.5), 3),
        delivery_ms_p99=round(p99_ms, 3),
        delivery_ms_p999=round(1000 * interpolated_percentile(delivery, 0.999), 3),
        delivery_within_10ms=round(share_within(delivery, 0.01), 5),
        delivery_samples=int(delivery[-1][1]) if delivery else 0,
        delivery_interpolated="linearly within evx_feed_delivery_seconds buckets",
        feed_bytes_per_s=round(sum(phase.feed_bytes for phase in with_) / window_s),
        feed_subscribers_at_window_end=min(phase.subscribers_at_end for phase in with_),
        frames_received=total("frames") + total("frames", raw),
        frames_per_s_in_windows=round(sum(phase.window_frames for phase in with_) / window_s),
        updates_received=total("updates"),
        snapshots_received=total("snapshots"),
        raw_bytes_received=total("bytes", raw),
        raw_bytes_per_s_in_windows=round(sum(phase.window_raw_bytes for phase in with_) / window_s),
        raw_frames_received=total("frames", raw),
        raw_protocol_errors=raw_errors,
        raw_refused=total("refused", raw),
        raw_ended_mid_frame=total("ended_mid_frame", raw),
        gaps=gaps,
        duplicates=total("duplicates"),
        reconnects=sum(phase.reconnects for phase in with_),
        raw_reconnects=sum(_reconnects(phase.raw) for phase in with_),
        client_crashes=total("crashes"),
        slow_consumers_cut=cut,
        silent_cut=silent_cut,
        subscribers_caught_up=min(phase.caught_up for phase in with_),
        catch_up_s=max(phase.catch_up_s for phase in with_),
        books_identical=identical,
        book_conflicts=result_conflicts,
        book_market=1,
        book_market_seq=with_[-1].final[1][0],
        book_compared_with_node=bench.reference_node,
        cpu_pct_without=_mean_cpu(without),
        cpu_pct_with=_mean_cpu(with_),
        cores=cores,
        shares_cores=(
            f"all on {cores} cores: 3 nodes, the load generator (this process) and, in the "
            f"with-phases, {processes_used} subscriber processes"
        ),
        wall_s=round(time.perf_counter() - started, 1),
        aim_met=(
            p99_ms < AIM_DELIVERY_P99_MS
            and ratio >= AIM_THROUGHPUT_RATIO
            and gaps == 0
            and cut == 0
            and silent_cut == 0
            and raw_errors == 0
            and identical
            and result_conflicts == 0
        ),
        round_details=[phase.detail() for phase in phases],
    )


def _mean_cpu(phases: list[_Phase]) -> dict[str, float]:
    names = sorted({name for phase in phases for name in phase.cpu_pct})
    return {
        name: round(statistics.fmean(phase.cpu_pct.get(name, 0.0) for phase in phases), 1)
        for name in names
    }


def summary(result: FeedBenchResult) -> str:
    def cpu(values: dict[str, float]) -> str:
        return ", ".join(f"{name} {value:.0f}%" for name, value in values.items())

    markets = result.subscriber_markets
    return "\n".join(
        [
            f"feed fan-out: {result.subscribers} subscribers ({result.subscriber_mode} mode: "
            f"{result.checked_subscribers} FeedClients, {result.raw_readers} raw readers; "
            f"{len(markets)} markets each, {result.subscriber_processes} processes) on "
            f"node{result.feed_node}'s feed "
            f"({'the leader' if result.feed_node_was_leader else 'a follower'}); order load "
            f"{result.sessions} sessions x {result.in_flight_per_session} in flight, "
            f"{result.seconds:.0f} s measured per phase, {result.rounds} rounds",
            f"  {result.shares_cores}",
            f"  orders/s without subscribers {result.orders_per_s_without:,.0f} "
            f"(ack p50 {result.ack_latency_ms_p50_without:.1f} ms, "
            f"p99 {result.ack_latency_ms_p99_without:.1f} ms)",
            f"  orders/s with subscribers    {result.orders_per_s_with:,.0f} "
            f"(ack p50 {result.ack_latency_ms_p50_with:.1f} ms, "
            f"p99 {result.ack_latency_ms_p99_with:.1f} ms): ratio {result.throughput_ratio:.2f} "
            f"(aim >= {AIM_THROUGHPUT_RATIO})",
            f"  delivery apply->socket (node{result.feed_node}'s histogram, interpolated within "
            f"buckets): p50 {result.delivery_ms_p50:.2f} ms, p99 {result.delivery_ms_p99:.2f} ms, "
            f"p99.9 {result.delivery_ms_p999:.2f} ms; {100 * result.delivery_within_10ms:.1f} % "
            f"within 10 ms (exact); {result.delivery_samples:,} writes "
            f"(aim p99 < {AIM_DELIVERY_P99_MS:.0f} ms)",
            f"  node queued {result.feed_bytes_per_s / 1e6:.2f} MB/s to subscribers; "
            f"{result.feed_subscribers_at_window_end} connected as a window closed",
            f"  subscribers received {result.frames_received:,} frames "
            f"({result.frames_per_s_in_windows:,.0f}/s in the windows); the FeedClients "
            f"applied {result.updates_received:,} updates, {result.snapshots_received:,} images",
            f"  raw readers received {result.raw_bytes_received / 1e6:,.1f} MB "
            f"({result.raw_bytes_per_s_in_windows / 1e6:.2f} MB/s in the windows), "
            f"{result.raw_frames_received:,} frames; framing errors "
            f"{result.raw_protocol_errors}, refused {result.raw_refused}, ended mid-frame "
            f"{result.raw_ended_mid_frame}",
            f"  gaps {result.gaps}, duplicates {result.duplicates}, reconnects "
            f"{result.reconnects} ({result.raw_reconnects} raw), client crashes "
            f"{result.client_crashes}; node cut {result.slow_consumers_cut} slow consumers, "
            f"{result.silent_cut} silent ones",
            f"  after the load: {result.subscribers_caught_up}/{result.checked_subscribers} "
            "FeedClients "
            f"reached the final books (in {result.catch_up_s:.1f} s); books "
            f"{'identical' if result.books_identical else 'NOT identical'} (market "
            f"{result.book_market} at market_seq {result.book_market_seq:,}, against "
            f"node{result.book_compared_with_node}'s feed); {result.book_conflicts} "
            "(market, market_seq) held with different levels",
            f"  CPU, % of one core, without: {cpu(result.cpu_pct_without)}",
            f"  CPU, % of one core, with:    {cpu(result.cpu_pct_with)}",
            f"  aim met: {'yes' if result.aim_met else 'NO'}; wall {result.wall_s:.0f} s",
        ]
    )


if __name__ == "__main__":
    child_main(sys.argv[1:])
