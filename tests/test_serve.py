"""``pgrecall serve`` as users run it, in a subprocess: several worker processes with the
background work run once; no line per request unless ``--access-log``."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import uvicorn

from pgrecall.http.app import create_app
from pgrecall.http.protocol import BoundedHttpToolsProtocol
from pgrecall.http.serving import HTTP_PARSER, default_workers
from pgrecall.store import MemoryStore

from .conftest import store_settings
from .http_server import serving

pytestmark = pytest.mark.timeout(300)

READY_SECONDS = 120.0


@contextmanager
def _serve(dsn: str, *arguments: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    env |= {"PGRECALL_DATABASE_URL": dsn, "PGRECALL_EMBEDDER": "local"}
    command = [sys.executable, "-m", "pgrecall.cli", "serve", "--port", str(port), *arguments]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "pgrecall serve did not become ready"
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _listeners(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return count


async def test_workers_serve_with_one_background_worker(migrated_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with _serve(migrated_dsn, "--workers", "2", log=log) as (url, process):
        workers = [
            child
            for child in psutil.Process(process.pid).children()
            if "multiprocessing" in " ".join(child.cmdline())
            and "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2
        memory = {"namespace": "ada", "content": "Ada is allergic to peanuts."}
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            stored = await client.post("/v1/memories", json={"memories": [memory]})
            assert stored.status_code == 200, stored.text
            for _ in range(4):  # answered by whichever worker accepts the connection
                body = {"query": "food allergy", "namespaces": ["ada"]}
                found = await client.post("/v1/recall", json=body)
                assert found.status_code == 200, found.text
                assert found.json()["hits"][0]["content"] == memory["content"]
        # The embedding worker waits on LISTEN: one connection for the server, not per process.
        assert await _listeners(migrated_dsn) == 1
    assert process.returncode == 0, log.read_text()
    assert await _listeners(migrated_dsn) == 0


@pytest.mark.parametrize("flag", [(), ("--access-log",)])
async def test_a_line_per_request_only_with_access_log(
    migrated_dsn: str, tmp_path: Path, flag: tuple[str, ...]
) -> None:
    log = tmp_path / "serve.log"
    with _serve(migrated_dsn, "--workers", "1", *flag, log=log) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
    logged = log.read_text()
    assert "Uvicorn running" in logged  # the log is captured at all
    assert ('"GET /healthz HTTP/1.1" 200' in logged) == bool(flag)


def test_the_server_parses_http_with_httptools_its_head_bounded() -> None:
    config = uvicorn.Config(create_app(store_settings()), http=HTTP_PARSER)
    config.load()
    assert config.http_protocol_class is BoundedHttpToolsProtocol


def test_the_default_is_a_worker_per_two_cores() -> None:
    assert default_workers() == max(1, (os.cpu_count() or 1) // 2)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", "serve", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "--workers" in completed.stderr


async def test_a_server_freezes_what_startup_built(store: MemoryStore) -> None:
    """``serve``'s app moves what startup built out of the collector's sight once it is up;
    an app among others in a process (the tests') leaves the collector alone."""
    gc.unfreeze()
    try:
        async with serving(create_app(store_settings(), store=store)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/healthz")).status_code == 200
            assert gc.get_freeze_count() == 0
        async with serving(create_app(store_settings(), store=store, freeze_startup=True)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/healthz")).status_code == 200
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
