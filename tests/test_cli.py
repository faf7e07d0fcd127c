from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ollama_standin import OllamaStandin


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgrecall-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pgrecall(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    return subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", *arguments],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_migrate_on_the_embedded_default(data_dir: Path) -> None:
    completed = _pgrecall("migrate", PGRECALL_DATA_DIR=str(data_dir), PGRECALL_EMBEDDER="local")
    assert completed.returncode == 0, completed.stderr
    assert "pgvector 0.8" in completed.stdout
    assert "vector(384)" in completed.stdout
    assert "hnsw (embedding vector_ip_ops)" in completed.stdout
    # The server was let go when the command ended.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    again = _pgrecall("migrate", PGRECALL_DATA_DIR=str(data_dir), PGRECALL_EMBEDDER="local")
    assert again.returncode == 0, again.stderr


def test_bad_settings_are_one_clear_error(data_dir: Path) -> None:
    completed = _pgrecall(
        "migrate",
        PGRECALL_DATA_DIR=str(data_dir),
        PGRECALL_EMBED_DIMENSIONS="-1",
        PGRECALL_EMBEDDER="gpu",
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "PGRECALL_EMBED_DIMENSIONS='-1'" in completed.stderr
    assert "PGRECALL_EMBEDDER='gpu'" in completed.stderr


def test_unreachable_database_is_one_clear_error() -> None:
    completed = _pgrecall("migrate", PGRECALL_DATABASE_URL="postgresql://me:hunter2@127.0.0.1:1/db")
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "127.0.0.1:1" in completed.stderr
    assert "hunter2" not in completed.stderr


def test_doctor_reports_every_check(ollama: OllamaStandin, data_dir: Path) -> None:
    environment = {
        "PGRECALL_OLLAMA_URL": ollama.url,
        "PGRECALL_EMBED_MODEL": "nomic-embed-text",
        "PGRECALL_DATA_DIR": str(data_dir),
    }
    assert _pgrecall("migrate", **environment).returncode == 0
    completed = _pgrecall("doctor", "--json", **environment)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    checks = {check["name"]: check for check in json.loads(completed.stdout)}
    assert checks["ollama reachable"]["detail"].endswith("version 0.33.0")
    assert checks["model present"]["detail"] == "nomic-embed-text:latest"
    assert checks["embedding capability"]["ok"]
    assert checks["model size"]["detail"].startswith("768 dimensions")
    assert checks["database column"]["detail"] == "vector(768) matches the model"

    mismatch = _pgrecall("doctor", **{**environment, "PGRECALL_EMBED_MODEL": "all-minilm"})
    assert mismatch.returncode == 1
    assert "vector(768) but the model makes 384-dimensional vectors" in mismatch.stdout

    missing = _pgrecall("doctor", **{**environment, "PGRECALL_EMBED_MODEL": "bge-m3"})
    assert missing.returncode == 1
    assert "run pgrecall pull bge-m3:latest" in missing.stdout


def test_doctor_fails_when_ollama_is_down(ollama: OllamaStandin, data_dir: Path) -> None:
    url = ollama.url
    ollama.stop()
    completed = _pgrecall("doctor", PGRECALL_OLLAMA_URL=url, PGRECALL_DATA_DIR=str(data_dir))
    assert completed.returncode == 1
    assert f"not reachable at {url}" in completed.stdout


def test_pull_shows_progress_and_fails_clearly(ollama: OllamaStandin) -> None:
    pulled = _pgrecall("pull", "bge-m3", PGRECALL_OLLAMA_URL=ollama.url)
    assert pulled.returncode == 0, pulled.stderr
    assert "bge-m3 is ready" in pulled.stdout
    unknown = _pgrecall("pull", "no-such-model", PGRECALL_OLLAMA_URL=ollama.url)
    assert unknown.returncode == 2
    assert "file does not exist" in unknown.stderr
    assert "Traceback" not in unknown.stderr
