"""What contextual indexing (ingest/context.py) costs ``remember``, measured interleaved.

    python -m benchmarks.context_cost [--turns 4000] [--single 400]

Two stores on one server, each in its own database, take the same dialogue turns (synthetic
sentences with ``speaker``, ``session`` and ``turn`` metadata, sessions of 50 turns, ten
namespaces), the ``auto`` template in both: one with contextual indexing on (the default,
``session``, a window of one), one with it off (``PGRECALL_CONTEXT_KEY`` empty). Calls
alternate between them, each side first every other call, so a busy machine loads both alike.
Two call shapes: ``--turns`` in calls of 100 turns (a session written at once) and ``--single``
turns one per call (an agent storing each turn as it is said). The embedder is a seeded hash
(the same cost on both sides, a few microseconds a text): the figures are the store's and the
database's, not the model's, which costs ~10 ms a turn with the local model and dwarfs both.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from typing import Any

import numpy as np

from benchmarks.common import (
    DIMENSIONS,
    OUT,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    write_json,
)
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import EmbeddingSpace

NAMESPACES = 10


class HashEmbedder(BatchingEmbedder):
    """A unit vector seeded by the text: the same for the same text, cheap for any text."""

    def __init__(self) -> None:
        super().__init__(
            EmbeddingSpace("bench", "hash", DIMENSIONS, "", ""),
            batch_size=100_000,
            batch_chars=10**12,
            concurrency=1,
        )

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        vectors = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            raw = np.random.default_rng(seed).standard_normal(DIMENSIONS)
            vectors.append((raw / np.linalg.norm(raw)).tolist())
        return BatchOutput(vectors=vectors)


async def open_store(dsn: str, name: str, context_key: str) -> MemoryStore:
    database = await fresh_database(dsn, name)
    settings = load_settings(
        database_url=database,
        worker=False,
        auto_migrate=False,
        index_template="auto",
        context_key=context_key,
        context_window=1,
    )
    return await MemoryStore.open(settings, embedder=HashEmbedder())


async def alternate(stores: dict[str, MemoryStore], turns: int, per_call: int) -> dict[str, float]:
    """Seconds each store took to remember ``turns`` turns, ``per_call`` a call, in turn."""
    layout = [(f"dialogue-{i}", turns // NAMESPACES) for i in range(NAMESPACES)]
    data = corpus(layout, seed=per_call, uniform=True)
    # In order within each namespace (as a conversation is written), namespaces interleaved.
    order = sorted(range(len(data.texts)), key=lambda i: (data.metadata[i]["turn"], i))
    seconds = dict.fromkeys(stores, 0.0)
    names = list(stores)
    for number, start in enumerate(range(0, len(order), per_call)):
        items = [
            MemoryInput(data.texts[i], namespace=data.namespaces[i], metadata=data.metadata[i])
            for i in order[start : start + per_call]
        ]
        for name in names if number % 2 else reversed(names):
            started = time.perf_counter()
            await stores[name].remember(items)
            seconds[name] += time.perf_counter() - started
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=4000, help="turns written 100 a call")
    parser.add_argument("--single", type=int, default=400, help="turns written one a call")
    arguments = parser.parse_args()
    print(f"{machine()}; contextual indexing on (session, window 1) against off, interleaved")
    report: dict[str, Any] = {"machine": machine()}
    async with embedded_server() as dsn:
        for label, turns, per_call in (
            ("calls of 100", arguments.turns, 100),
            ("one a call", arguments.single, 1),
        ):
            stores = {
                "context": await open_store(dsn, f"context_{per_call}", "session"),
                "plain": await open_store(dsn, f"plain_{per_call}", ""),
            }
            try:
                seconds = await alternate(stores, turns, per_call)
            finally:
                for store in stores.values():
                    await store.close()
            rates = {name: turns / value for name, value in seconds.items()}
            cost = seconds["context"] / seconds["plain"] - 1
            print(
                f"  {turns} turns, {label}: context {rates['context']:.0f}/s, "
                f"without {rates['plain']:.0f}/s; context costs {cost:+.1%}"
            )
            report[label] = {"turns": turns, "seconds": seconds}
    write_json(OUT / "context_cost.json", report)


if __name__ == "__main__":
    asyncio.run(main())
