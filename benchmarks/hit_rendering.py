"""What the HTTP layer adds per recalled hit: rendering it as JSON, short and long contents.

    python -m benchmarks.hit_rendering [--hits 10] [--repeat 2000]

A recall answer is ``{"hits": [...], ...}``; each hit is rendered on the server's event loop.
Two ways, timed in the same process on the same hits: a ``HitOut`` validated from the ``Hit``
then dumped (what ``POST /v1/recall`` did), and the ``Hit`` dumped straight through a
``TypeAdapter`` (``api.schemas.hit_json``, the same bytes). Contents of 12 words (the
``http_load`` memories), of 234 words (about a SciFact abstract, 215 on average; ~1,500
characters) and of 20,000 characters; metadata of two keys. Each whole answer of ``--hits``
is rendered by ``json_answer``; prints microseconds per hit, the share saved and the answer's
size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import uuid4

import numpy as np

from benchmarks.common import machine, sentences
from pgrecall.api.schemas import HitOut, RecallResponse, hit_json
from pgrecall.http.rendering import json_answer
from pgrecall.records import Hit, RecallResult

CONTENTS = {"12 words": 1, "234 words": 18, "20,000 chars": 0}


def _hits(count: int, content: str) -> list[Hit]:
    now = datetime.now(UTC)
    return [
        Hit(
            id=uuid4(),
            namespace="agent-001",
            content=content,
            score=0.5 - i / 100,
            metadata={"turn": i, "speaker": "user"},
            key=None,
            created_at=now,
            expires_at=None,
            vector_score=0.5 - i / 100,
            keyword_score=None,
        )
        for i in range(count)
    ]


def _validated(hit: Hit) -> bytes:
    return HitOut.of(hit).model_dump_json().encode()


def _per_answer(hits: Sequence[Hit], render: Callable[[Hit], bytes], repeat: int) -> float:
    """Best-of-three mean seconds to render one whole answer (``json_answer``)."""
    result = RecallResult(hits=tuple(hits), mode="vector")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            answer = RecallResponse.of(result, with_hits=False)
            json_answer(answer, "hits", result, render)
        best = min(best, (time.perf_counter() - started) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    generator = np.random.default_rng(5)
    print(f"{machine()}; {args.hits} hits an answer, best of 3 x {args.repeat} answers")
    print(f"\n{'content':<14}{'HitOut us/hit':>15}{'Hit us/hit':>12}{'saved':>8}{'answer KB':>11}")
    for name, sentence_count in CONTENTS.items():
        if sentence_count:
            content = " ".join(sentences(sentence_count, generator))
            if name == "12 words":
                content = " ".join(content.split()[:12])
        else:
            content = ("é lorem ipsum " * 2000)[:20_000]
        hits = _hits(args.hits, content)
        assert all(hit_json(hit) == _validated(hit) for hit in hits)
        repeat = max(20, args.repeat // max(1, len(content) // 1000))
        before = _per_answer(hits, _validated, repeat)
        after = _per_answer(hits, hit_json, repeat)
        size = sum(len(hit_json(hit)) for hit in hits) / 1024
        print(
            f"{name:<14}{before / args.hits * 1e6:>15.2f}{after / args.hits * 1e6:>12.2f}"
            f"{1 - after / before:>8.0%}{size:>11.1f}"
        )


if __name__ == "__main__":
    main()
