"""A store whose Ollama is not there: what remember and recall do, and what the user is told."""

from __future__ import annotations

import time

import pytest

from pgrecall import MemoryStore
from pgrecall.config import Settings

from .conftest import UNRESOLVABLE_URL, store_settings


def _ollama_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "embedder": "ollama",
        "ollama_url": url,
        "embed_model": "all-minilm",  # 384-d, the test databases' size
        "worker": False,
        # A patient policy: before refusals were told apart, it retried them until the inline
        # budget (10 s) ran out.
        "ollama_max_attempts": 10,
    }
    return store_settings(**{**values, **overrides})


@pytest.fixture(params=["closed port", "unresolvable name"])
def absent_url(request: pytest.FixtureRequest, closed_port_url: str) -> str:
    """Where no Ollama is: a loopback port nothing listens on, or a name that cannot resolve."""
    return closed_port_url if request.param == "closed port" else UNRESOLVABLE_URL


async def test_remember_stores_pending_at_once_when_nothing_listens(
    absent_url: str, migrated_dsn: str
) -> None:
    store = await MemoryStore.open(_ollama_settings(absent_url), dsn=migrated_dsn)
    try:
        started = time.monotonic()
        first = await store.remember("Ada is allergic to peanuts.", namespace="ada")
        elapsed = time.monotonic() - started
        assert first.pending
        assert elapsed < 2, f"remember took {elapsed:.1f} s with Ollama absent"

        started = time.monotonic()
        hits = await store.recall("peanuts", namespace="ada", k=3)
        elapsed = time.monotonic() - started
        assert elapsed < 2, f"recall took {elapsed:.1f} s with Ollama absent"
        assert hits.degraded
        assert hits.pending == 1
    finally:
        await store.close()
