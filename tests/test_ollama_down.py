"""A store whose Ollama is not there: what remember and recall do, and what the user is told."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgrecall import MemoryStore
from pgrecall.config import Settings
from pgrecall.embedding.health import ANSWERS_AGAIN

from .conftest import UNRESOLVABLE_URL, store_settings
from .ollama_standin import OllamaStandin


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


def _pgrecall_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] == "pgrecall" and record.levelno >= logging.WARNING
    ]


async def test_an_outage_is_told_once_and_its_end_once(
    ollama: OllamaStandin, migrated_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = ollama.url
    ollama.stop()
    store = await MemoryStore.open(_ollama_settings(url), dsn=migrated_dsn)
    try:
        await store.remember("Ada is allergic to peanuts.", namespace="ada")
        await store.remember(["Ada lives in London.", "Ada prefers tea."], namespace="ada")
        await store.recall("peanuts", namespace="ada")
        (warning,) = _pgrecall_warnings(caplog)
        assert f"Ollama is not reachable at {url} (connection refused)" in warning
        assert "memories are kept as pending" in warning
        assert "recall ranks by keywords only" in warning
        assert "`ollama serve` and `ollama pull all-minilm`" in warning
        assert "PGRECALL_EMBEDDER=local" in warning

        caplog.clear()
        ollama.start()
        assert not (await store.recall("peanuts", namespace="ada")).degraded
        await store.recall("London", namespace="ada")
        assert _pgrecall_warnings(caplog) == [ANSWERS_AGAIN]

        caplog.clear()
        ollama.stop()
        assert (await store.recall("peanuts", namespace="ada")).degraded
        (again,) = _pgrecall_warnings(caplog)  # a new outage is a new warning
        assert "not reachable" in again
    finally:
        await store.close()


PLAIN_SCRIPT = """
import asyncio
from pgrecall import MemoryStore

async def main():
    async with await MemoryStore.open() as store:
        for i in range(3):
            print((await store.remember(f"fact number {i}", namespace="plain")).status)
        hits = await store.recall("fact", namespace="plain")
        print(hits.degraded, hits.pending)

asyncio.run(main())
"""


def test_a_plain_script_shows_the_warning_once(
    empty_dsn: str, closed_port_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PGRECALL_", "OLLAMA_"))}
    environment = {
        **clean,
        "PGRECALL_DATABASE_URL": empty_dsn,
        "PGRECALL_OLLAMA_URL": closed_port_url,
    }  # everything else as a newcomer has it: default model, worker on, no logging set up
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["pending"] * 3 + ["True", "3"]
    assert completed.stderr.count("not reachable") == 1, completed.stderr
    assert f"Ollama is not reachable at {closed_port_url}" in completed.stderr
    assert "`ollama pull mxbai-embed-large`" in completed.stderr
    assert "recall ranks by keywords only" in completed.stderr
