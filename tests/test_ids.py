"""Client-made memory ids: RFC 9562 version 7, time-ordered, strictly increasing."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from pgrecall.ingest.ids import Uuid7Source


def test_ids_are_version_7_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = Uuid7Source().take(1000)
    after = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    stamps = {i.int >> 80 for i in ids}
    assert all(before <= stamp <= after + 1 for stamp in stamps)


def test_ids_strictly_increase_across_calls_and_threads() -> None:
    source = Uuid7Source()
    sequential = [i for _ in range(50) for i in source.take(200)]
    assert sequential == sorted(sequential)
    assert len(set(sequential)) == len(sequential)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(source.take, [500] * 40))
    for batch in batches:
        assert batch == sorted(batch)
    everything = [i for batch in batches for i in batch]
    assert len(set(everything)) == len(everything) == 20_000
    assert min(everything) > max(sequential)


def test_a_clock_that_steps_back_does_not_reorder_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    source = Uuid7Source()
    now = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now)
    first = source.take(10)
    monkeypatch.setattr(time, "time_ns", lambda: now - 5_000_000_000)
    second = source.take(10)
    assert max(first) < min(second)


def test_a_spent_counter_moves_on_to_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    source = Uuid7Source()
    monkeypatch.setattr("pgrecall.ingest.ids._counter_start", lambda: (1 << 42) - 3)
    ids = source.take(5)
    assert ids == sorted(ids)
    assert len({i.int >> 80 for i in ids}) == 2
