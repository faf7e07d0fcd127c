"""The recall modes, as one table: which rankings each runs, and what it becomes without a vector.

A mode without a query vector (the embedder is down, or the store holds no vectors yet) either
falls back to another mode, reported as ``degraded`` when the embedder failed, or cannot run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pgrecall.records import Mode


@dataclass(frozen=True, slots=True)
class Rankings:
    """What a mode ranks by."""

    vector: bool  # inner product with the query's embedding
    keyword: bool  # BM25 over the indexed text
    without_vector: Mode | None  # the mode that serves when no query vector can be had


MODE_RANKINGS: Mapping[Mode, Rankings] = {
    "hybrid": Rankings(vector=True, keyword=True, without_vector="keyword"),
    "vector": Rankings(vector=True, keyword=False, without_vector=None),
    "keyword": Rankings(vector=False, keyword=True, without_vector="keyword"),
}
