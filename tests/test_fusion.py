"""Hybrid fusion on a real server: the SQL's fused order and scores against the formulas of
``PGRECALL_HYBRID_FUSION`` computed here from the vector and keyword modes' own scores."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.embedding.local import LocalEmbedder

from .conftest import store_settings

MEMORIES = [
    "The garden hose leaks near the garden shed.",
    "Water the tomatoes in the garden every evening.",
    "The quarterly report is due on Friday.",
    "Tomatoes need sun, water and a stake to climb.",
    "Our shed holds the lawn mower and the rake.",
    "The printer on the third floor is out of toner.",
    "A leak under the kitchen sink soaked the cupboard.",
    "Friday's meeting moved to the garden room.",
]
QUERY = "Which garden hose is leaking water by the shed?"
# A query the two fusions answer differently at the top: "leak" and "kitchen" share one
# memory, whose BM25 lead over the others is wide; ranks keep only that it leads.
SPLITTING = "hose leak kitchen"
NAMESPACE = "home"


async def _opened(dsn: str, embedder: LocalEmbedder, **settings: object) -> MemoryStore:
    store = await MemoryStore.open(store_settings(**settings), dsn=dsn, embedder=embedder)
    await store.remember([MemoryInput(text) for text in MEMORIES], namespace=NAMESPACE)
    return store


@pytest.fixture
async def stores(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> AsyncIterator[dict[str, MemoryStore]]:
    """One store per fusion on the same memories; ``full``: scores with lists cut at 3."""
    opened = {
        "scores": await _opened(migrated_dsn, local_embedder, hybrid_fusion="scores"),
        "rrf": await _opened(migrated_dsn, local_embedder, hybrid_fusion="rrf"),
        "full": await _opened(migrated_dsn, local_embedder, hybrid_depth=3),
    }
    yield opened
    for store in opened.values():
        await store.close()


async def _mode_scores(
    store: MemoryStore, mode: str, depth: int, query: str = QUERY
) -> dict[UUID, float]:
    hits = await store.recall(query, namespace=NAMESPACE, mode=mode, k=depth)  # type: ignore[arg-type]
    return {hit.id: hit.score for hit in hits}


def _standard(scores: dict[UUID, float], floor: float) -> dict[UUID, float]:
    spread = statistics.pstdev(scores.values())
    scale = spread or (max(scores.values()) - floor) or 1.0
    return {key: (score - floor) / scale for key, score in scores.items()}


def _expected_scores(
    vector: dict[UUID, float], keyword: dict[UUID, float], depth: int, weights: tuple[float, float]
) -> dict[UUID, float]:
    """Each ranking's scores in standard deviations above the best score a row outside its
    list can have: its lowest (vector, full keyword list) or 0 (a short keyword list)."""
    vector_standard = _standard(vector, min(vector.values()))
    keyword_floor = min(keyword.values()) if len(keyword) >= depth else 0.0
    keyword_standard = _standard(keyword, keyword_floor)
    return {
        key: weights[0] * vector_standard.get(key, 0.0)
        + weights[1] * keyword_standard.get(key, 0.0)
        for key in vector.keys() | keyword.keys()
    }


def _expected_rrf(
    vector: dict[UUID, float],
    keyword: dict[UUID, float],
    rrf_k: float,
    weights: tuple[float, float],
) -> dict[UUID, float]:
    fused: dict[UUID, float] = {}
    for weight, ranking in zip(weights, (vector, keyword), strict=True):
        for rank, key in enumerate(ranking, 1):  # the modes return their hits best first
            fused[key] = fused.get(key, 0.0) + weight / (rrf_k + rank)
    return fused


def _order(fused: dict[UUID, float]) -> list[UUID]:
    return sorted(fused, key=lambda key: -fused[key])


async def _hybrid(
    store: MemoryStore, k: int = len(MEMORIES), query: str = QUERY, **options: float
) -> dict[UUID, float]:
    hits = await store.recall(query, namespace=NAMESPACE, k=k, **options)  # type: ignore[arg-type]
    return {hit.id: hit.score for hit in hits}


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0), (2.0, 0.5)])
async def test_scores_fusion_sums_each_rankings_standardised_scores(
    stores: dict[str, MemoryStore], weights: tuple[float, float]
) -> None:
    store = stores["scores"]
    vector = await _mode_scores(store, "vector", 100)
    keyword = await _mode_scores(store, "keyword", 100)
    assert len(keyword) < len(vector) == len(MEMORIES)  # a short keyword list: its floor is 0
    expected = _expected_scores(vector, keyword, 100, weights)
    got = await _hybrid(store, vector_weight=weights[0], keyword_weight=weights[1])
    assert list(got) == _order(expected)
    assert got == pytest.approx(expected)
    assert min(got.values()) >= 0  # the recency and importance boosts multiply it


async def test_a_full_list_is_standardised_above_its_lowest_score(
    stores: dict[str, MemoryStore],
) -> None:
    store = stores["full"]  # depth 3: with k=3 each ranking keeps its best three
    vector = await _mode_scores(store, "vector", 3)
    keyword = await _mode_scores(store, "keyword", 3)
    assert len(keyword) == 3  # five memories share a word with the query: the list is cut
    expected = _expected_scores(vector, keyword, 3, (1.0, 1.0))
    got = await _hybrid(store, k=3)
    assert list(got) == _order(expected)[:3]
    assert list(got.values()) == pytest.approx([expected[key] for key in got])
    # Against a floor of 0, as if the list held every match, the scores would differ.
    as_if_short = _expected_scores(vector, keyword, 4, (1.0, 1.0))
    assert list(got.values()) != pytest.approx([as_if_short[key] for key in got])


@pytest.mark.parametrize("query", [QUERY, SPLITTING])
async def test_rrf_fusion_stays_a_setting(stores: dict[str, MemoryStore], query: str) -> None:
    vector = await _mode_scores(stores["rrf"], "vector", 100, query)
    keyword = await _mode_scores(stores["rrf"], "keyword", 100, query)
    expected = _expected_rrf(vector, keyword, 5.0, (1.0, 1.0))
    got = await _hybrid(stores["rrf"], query=query)
    assert list(got) == _order(expected)
    assert got == pytest.approx(expected)


async def test_the_fusion_setting_decides_the_top_hit(stores: dict[str, MemoryStore]) -> None:
    by_scores = await stores["scores"].recall(SPLITTING, namespace=NAMESPACE, k=1)
    by_ranks = await stores["rrf"].recall(SPLITTING, namespace=NAMESPACE, k=1)
    assert by_scores[0].content == MEMORIES[6]  # the kitchen leak: both rarer words
    assert by_ranks[0].content == MEMORIES[0]  # the garden hose: near the top of both lists
