"""The peers a user would otherwise pick, installed from PyPI into their own virtualenv
(``benchmarks/out/peers-venv``, made on first use) and driven through ``peer_runner``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import OUT

PEERS_VENV = OUT / "peers-venv"
# The versions measured in RESULTS.md.
PEER_PACKAGES = (
    "langchain-postgres==0.0.19",
    "pgmemory==0.0.8",
    "psycopg[binary]==3.3.9",
    "asyncpg",
    "numpy",
)
RUNNER = Path(__file__).resolve().parent / "peer_runner.py"


def peers_python() -> Path:
    """The peers' interpreter, installing them first if needed."""
    python = PEERS_VENV / "bin" / "python"
    marker = PEERS_VENV / "installed.json"
    if not marker.exists() or json.loads(marker.read_text()) != list(PEER_PACKAGES):
        print(f"installing {', '.join(PEER_PACKAGES)} into {PEERS_VENV}", file=sys.stderr)
        venv.create(PEERS_VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
        marker.write_text(json.dumps(list(PEER_PACKAGES)))
    return python


def write_data(
    directory: Path,
    texts: list[str],
    metadata: list[dict[str, object]],
    namespaces: list[str],
    vectors: np.ndarray,
    queries: list[str] | None = None,
    query_namespaces: list[str] | None = None,
    query_vectors: np.ndarray | None = None,
) -> Path:
    """Write what a peer job reads; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "texts.json").write_text(json.dumps(texts))
    (directory / "metadata.json").write_text(json.dumps(metadata))
    (directory / "namespaces.json").write_text(json.dumps(namespaces))
    np.save(directory / "vectors.npy", vectors)
    (directory / "query_texts.json").write_text(json.dumps(queries or []))
    (directory / "query_namespaces.json").write_text(json.dumps(query_namespaces or []))
    np.save(
        directory / "query_vectors.npy",
        query_vectors if query_vectors is not None else np.zeros((0, vectors.shape[1])),
    )
    return directory


def sqlalchemy_url(dsn: str, driver: str) -> str:
    """``postgresql://..`` as a SQLAlchemy URL for ``driver`` (psycopg, asyncpg)."""
    url = dsn.replace("postgresql://", f"postgresql+{driver}://", 1)
    return url.replace("postgres:@", "postgres@", 1)


async def run_peer(peer: str, dsn: str, data: Path, **options: Any) -> dict[str, Any]:
    """Run one peer job to completion; returns its JSON result."""
    driver = "psycopg" if peer == "langchain" else "asyncpg"
    job = {
        "peer": peer,
        "url": sqlalchemy_url(dsn, driver),
        "dsn": dsn,
        "data": str(data),
        **options,
    }
    python = await asyncio.to_thread(peers_python)
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(RUNNER),
        json.dumps(job),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{peer} failed:\n{stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result
