"""Optional re-ranking after fusion, all off by default.

- recency: ``score * 0.5 ** (age / recency_half_life)`` (a memory a half-life old counts half);
- importance: ``score * (1 + importance)`` with ``importance`` a metadata number in [0, 1]
  (other values are clamped, missing ones count 0);
- diversity (MMR): picks hits one by one maximising
  ``(1 - diversity) * relevance - diversity * max similarity to the hits already picked``,
  relevance being the score scaled to [0, 1]. 0 keeps the ranking; 1 favours novelty only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pgrecall.errors import InvalidInputError
from pgrecall.records import Hit, RecallOptions


def check_boosts(diversity: float, recency_half_life: float | None) -> None:
    """Refuse out-of-range boost settings."""
    if isinstance(diversity, bool) or not 0 <= diversity <= 1:
        raise InvalidInputError("diversity must be a number from 0 to 1")
    if recency_half_life is not None and not recency_half_life > 0:
        raise InvalidInputError("recency_half_life must be a positive number of seconds")


def needs_candidates(options: RecallOptions) -> bool:
    """Whether re-ranking needs more candidates than ``k``."""
    return bool(options.diversity or options.recency_half_life or options.importance)


def _importance(metadata: dict[str, Any], key: str) -> float:
    value = metadata.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def _boosted(hit: Hit, options: RecallOptions, now: datetime) -> Hit:
    score = hit.score
    if options.recency_half_life:
        age = max((now - hit.created_at).total_seconds(), 0.0)
        score *= 0.5 ** (age / options.recency_half_life)
    if options.importance:
        score *= 1 + _importance(hit.metadata, options.importance)
    return replace(hit, score=score)


def _mmr(hits: list[Hit], vectors: Sequence[Any], k: int, diversity: float) -> list[Hit]:
    scores = [hit.score for hit in hits]
    low, high = min(scores), max(scores)
    spread = (high - low) or 1.0
    relevance = [(score - low) / spread for score in scores]
    unit = [list(vector.to_list()) if vector is not None else None for vector in vectors]
    chosen: list[int] = []
    remaining = list(range(len(hits)))
    while remaining and len(chosen) < k:

        def value(i: int) -> float:
            similarity = max((_dot(unit[i], unit[j]) for j in chosen), default=0.0)
            return (1 - diversity) * relevance[i] - diversity * similarity

        best = max(remaining, key=value)
        chosen.append(best)
        remaining.remove(best)
    return [hits[i] for i in chosen]


def _dot(a: list[float] | None, b: list[float] | None) -> float:
    if a is None or b is None:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def rerank(hits: list[Hit], vectors: Sequence[Any], options: RecallOptions) -> list[Hit]:
    """Apply the boosts and MMR the options ask for; otherwise return ``hits`` unchanged."""
    if not needs_candidates(options) or not hits:
        return hits
    now = datetime.now(UTC)
    order = sorted(range(len(hits)), key=lambda i: -_boosted(hits[i], options, now).score)
    boosted = [_boosted(hits[i], options, now) for i in order]
    ordered_vectors = [vectors[i] for i in order]
    if options.diversity:
        return _mmr(boosted, ordered_vectors, options.k, options.diversity)
    return boosted
