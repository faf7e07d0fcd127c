from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
