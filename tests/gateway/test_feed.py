"""The market-data core (gateway/feed.py) against the engine's own book: a subscriber's
book, rebuilt from an image and the events after it, equals the engine's book after every
batch of a random log; resuming from a sequence gives exactly the missing events or says
it cannot; a dropped event is always noticed, and repaired by resuming."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evx.core import Engine
from evx.gateway import messages as wire
from evx.gateway.codec import Connection
from evx.gateway.feed import (
    MARKET_EVENT_CODES,
    BookImage,
    FeedGapError,
    FeedWindows,
    LocalBook,
    book_image,
)
from evx.gateway.feed_server import update_frame
from support.logs import random_log


def _market_events(events: tuple[tuple, ...]) -> list[tuple]:
    return [event for event in events if event[0] in MARKET_EVENT_CODES]


def _image(engine: Engine, market_id: int) -> BookImage:
    image = book_image(engine, market_id)
    assert image is not None
    return image


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_subscribers_book_equals_the_engines_after_every_batch(seed: int) -> None:
    print(f"seed={seed}")
    engine = Engine()
    windows = FeedWindows(window_events=10_000)
    windows.reset(engine)
    books: dict[int, LocalBook] = {}
    changes = 0
    for batch in random_log(seed, batches=120):
        applied = engine.apply(batch)
        for event in _market_events(applied.events):
            windows.publish(event)
            book = books.get(event[1])
            if book is not None:
                assert book.apply(event)
                changes += 1
        for market_id in engine.markets:
            if market_id not in books:  # subscribes now: an image, then the events
                books[market_id] = LocalBook.from_image(_image(engine, market_id))
            assert books[market_id].image() == _image(engine, market_id), (seed, market_id)
            # The node serves its images from its own books, kept from the same events.
            assert windows.image(market_id) == _image(engine, market_id), (seed, market_id)
    assert changes > 0


def test_resuming_gives_exactly_the_missing_events_or_asks_for_an_image() -> None:
    seed = 11
    print(f"seed={seed}")
    rng = random.Random(seed)
    engine = Engine()
    window = 10
    windows = FeedWindows(window_events=window)
    windows.reset(engine)
    held: list[LocalBook] = []  # subscribers that went away at some point, with their book
    resumed = refused = 0
    for batch in random_log(seed, batches=150):
        for event in _market_events(engine.apply(batch).events):
            windows.publish(event)
        for market_id in engine.markets:
            if rng.random() < 0.2:
                held.append(LocalBook.from_image(_image(engine, market_id)))
        for book in [book for book in held if rng.random() < 0.1]:
            held.remove(book)
            behind = engine.markets[book.market_id].seq - book.market_seq
            missing = windows.resume(book.market_id, book.market_seq)
            if missing is None:
                assert behind > window, "refused although the window held every event"
                refused += 1
                continue
            assert len(missing) == behind
            for event in missing:
                assert book.apply(event)
            assert book.image() == _image(engine, book.market_id)
            resumed += 1
    assert resumed > 10 and refused > 0, (resumed, refused)
    market_id = next(iter(engine.markets))
    assert windows.resume(market_id, engine.markets[market_id].seq + 1) is None  # ahead
    assert windows.resume(99, 0) is None  # no such market


def test_a_dropped_event_is_noticed_and_repaired_by_resuming() -> None:
    seed = 5
    print(f"seed={seed}")
    rng = random.Random(seed)
    engine = Engine()
    windows = FeedWindows(window_events=10_000)
    windows.reset(engine)
    books: dict[int, LocalBook] = {}
    gaps = 0
    for batch in random_log(seed, batches=120):
        for event in _market_events(engine.apply(batch).events):
            windows.publish(event)
            book = books.get(event[1])
            if book is None:
                continue
            if rng.random() < 0.05:
                continue  # dropped on the way
            try:
                book.apply(event)
            except FeedGapError as gap:
                assert gap.got == event[2] and gap.expected < gap.got
                gaps += 1
                missing = windows.resume(book.market_id, book.market_seq)
                assert missing is not None
                for late in missing:
                    book.apply(late)
            assert not book.apply(event), "a duplicate is ignored"
        for market_id in engine.markets:
            books.setdefault(market_id, LocalBook.from_image(_image(engine, market_id)))
    for market_id, book in books.items():
        # A drop after a market's last event is only noticed at the next one, or by a
        # heartbeat naming the newest sequence: resuming from the book's own seq repairs it.
        for late in windows.resume(market_id, book.market_seq) or []:
            book.apply(late)
        assert book.image() == _image(engine, market_id)
    assert gaps > 5


def test_the_windows_hold_no_more_events_than_their_total_bound() -> None:
    seed = 3
    print(f"seed={seed}")
    engine = Engine()
    windows = FeedWindows(window_events=1_000, window_events_total=50)
    windows.reset(engine)
    published = 0
    for batch in random_log(seed, batches=100):
        for event in _market_events(engine.apply(batch).events):
            published += windows.publish(event)
    assert published > 200
    kept = [windows._windows[market_id] for market_id in windows.markets()]
    assert sum(len(window) for window in kept) <= 50
    market_id = max(windows.markets(), key=lambda m: engine.markets[m].seq)
    last = engine.markets[market_id].seq
    assert windows.resume(market_id, last - 1) is not None  # the newest are kept
    assert windows.resume(market_id, 0) is None and windows.image(market_id) == _image(
        engine, market_id
    )


def test_an_event_the_image_already_holds_is_skipped_and_a_jump_is_refused() -> None:
    engine = Engine()
    windows = FeedWindows(window_events=10)
    events = []
    for batch in random_log(7, batches=40):
        events += _market_events(engine.apply(batch).events)
    windows.reset(engine)  # the engine is ahead of the stream, as after an install
    market_id = events[-1][1]
    assert not windows.publish(events[-1])
    with pytest.raises(ValueError, match="jumped"):
        windows.publish((35, market_id, engine.markets[market_id].seq + 2, 1, 40, 1, 1))


def test_a_local_book_names_its_best_prices_and_keeps_recent_trades() -> None:
    book = LocalBook.from_image(BookImage(1, 7, 2, ((45, 10, 1), (44, 5, 2)), ((55, 3, 1),)))
    assert book.best() == (45, 55)
    assert book.apply((36, 1, 8, 901, 55, 3, 1))  # a trade taking the whole ask
    assert book.apply((35, 1, 9, 2, 55, 0, 0))  # the ask level is gone
    assert book.best() == (45, None)
    assert [(trade.trade_id, trade.price) for trade in book.trades] == [(901, 55)]
    with pytest.raises(FeedGapError, match="expected market_seq 10, got 12"):
        book.apply((35, 1, 12, 1, 45, 0, 0))
    assert book.apply((37, 1, 10, 1, 100)) and book.outcome == 1 and book.status == 5


def test_every_market_event_of_a_log_has_its_feed_frame() -> None:
    """Each market event the engine gives (binary, scalar and futures markets) is sent as
    a frame whose fields are the event's, and a subscriber's book reads it back."""
    engine = Engine()
    seen: set[int] = set()
    for batch in random_log(7, batches=200):
        for event in _market_events(engine.apply(batch).events):
            client = Connection(wire.CLIENT, wire.Port.FEED)
            client.receive_data(update_frame(event))
            message = client.next_event()
            seen.add(event[0])
            if event[0] == 32:  # MarketCreated: the new market's first image
                assert isinstance(message, wire.BookSnapshot) and message.market_seq == 1
                continue
            assert tuple(getattr(message, name) for name in message.FIELDS) == event[1:]
    assert seen == set(range(32, 40)), sorted(seen)
