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

import numpy as np
from pgvector import Vector

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


def _mmr(hits: list[Hit], vectors: Sequence[Vector | None], k: int, diversity: float) -> list[Hit]:
    """Greedy MMR: one matrix product (BLAS) gives every pairwise similarity, then each of the
    k steps is O(candidates), keeping each memory's highest similarity to those picked up to
    date instead of recomputing it. A memory without a vector is similar to nothing."""
    scores = np.array([hit.score for hit in hits], dtype=np.float64)
    low, high = float(scores.min()), float(scores.max())
    relevance = (1 - diversity) * (scores - low) / ((high - low) or 1.0)
    dimensions = next((v.dimensions() for v in vectors if v is not None), 0)
    unit = np.zeros((len(hits), dimensions), dtype=np.float32)
    for row, vector in enumerate(vectors):
        if vector is not None:
            unit[row] = vector.to_numpy()
    similarity = unit @ unit.T
    # Each memory's highest similarity to the hits picked so far (none yet: no penalty).
    closest = np.zeros(len(hits), dtype=np.float32)
    picked = np.zeros(len(hits), dtype=bool)
    chosen: list[int] = []
    for _ in range(min(k, len(hits))):
        value = relevance - diversity * closest
        value[picked] = -np.inf
        best = int(np.argmax(value))  # the first of equals, as the ranking had them
        chosen.append(best)
        picked[best] = True
        closest = similarity[best] if len(chosen) == 1 else np.maximum(closest, similarity[best])
    return [hits[i] for i in chosen]


def rerank(hits: list[Hit], vectors: Sequence[Vector | None], options: RecallOptions) -> list[Hit]:
    """Apply the boosts and MMR the options ask for; otherwise return ``hits`` unchanged."""
    if not needs_candidates(options) or not hits:
        return hits
    now = datetime.now(UTC)
    boosted = [_boosted(hit, options, now) for hit in hits]
    order = sorted(range(len(hits)), key=lambda i: -boosted[i].score)
    ordered = [boosted[i] for i in order]
    if options.diversity:
        return _mmr(ordered, [vectors[i] for i in order], options.k, options.diversity)
    return ordered
