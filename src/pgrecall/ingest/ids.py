"""Ids for memories written by COPY: UUIDv7 (RFC 9562), made by the client.

Time-ordered ids land at the right edge of the id btrees (``memories_id``, and the primary key
inside a namespace) instead of on random pages: a COPY of 300k rows ran at 20.7k rows/s with
them against 18.0k with random (v4) ids. Inside one process they strictly increase: after the
millisecond timestamp come 42 bits of a counter that starts at a random value each millisecond
(RFC 9562, method 1), then 32 random bits. They are asyncpg's UUIDs (a ``uuid.UUID`` made in C, the
type asyncpg returns for uuid columns): 0.1 us each against 0.7 us.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

from asyncpg.pgproto.pgproto import UUID as FastUUID

_COUNTER_BITS = 42
_LOW_COUNTER_BITS = 30  # the counter's bits that sit in rand_b, above the 32 random ones
_VERSION = 7 << 76
_VARIANT = 2 << 62


def _counter_start() -> int:
    # At most 2**41: the other half of the range is left for counting up within the millisecond.
    return int.from_bytes(os.urandom(6), "big") >> 7


class Uuid7Source:
    """Strictly increasing UUIDv7s, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millisecond = 0
        self._counter = 0

    def take(self, count: int) -> list[uuid.UUID]:
        """``count`` new ids, each greater than every id this source made before."""
        random_words = struct.iter_unpack(">I", os.urandom(4 * count))
        with self._lock:
            now = time.time_ns() // 1_000_000
            if now > self._millisecond:  # a clock that steps back keeps counting on the last one
                self._millisecond, self._counter = now, _counter_start()
            millisecond, counter = self._millisecond, self._counter
            ids: list[uuid.UUID] = []
            for (random_bits,) in random_words:
                counter += 1
                if counter >> _COUNTER_BITS:  # spent: borrow the next millisecond
                    millisecond, counter = millisecond + 1, _counter_start()
                high, low = divmod(counter, 1 << _LOW_COUNTER_BITS)
                value = (
                    millisecond << 80 | _VERSION | high << 64 | _VARIANT | low << 32 | random_bits
                )
                ids.append(FastUUID(value.to_bytes(16, "big")))
            self._millisecond, self._counter = millisecond, counter
        return ids


new_ids = Uuid7Source().take
