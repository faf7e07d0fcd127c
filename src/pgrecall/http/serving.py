"""Running the HTTP API: one process, or several uvicorn workers sharing the listening socket.

A process serves its requests on one event loop, so its Python work (routing, validation,
rendering) uses one core at most; more workers let a machine with cores to spare use them.
A second worker on the 2-core VM did not beat one (``benchmarks/http_load.py``, RESULTS.md:
PostgreSQL and the embedder need those cores too). With ``workers`` > 1 the
supervising process starts the database (the embedded one, when no DSN is set), migrates once and
runs the store's background work (embedding worker, indexer, expiry sweeper) once, on a thread of
its own; the workers only serve requests, each with its own pool, told the DSN and not to run
background work through the environment they inherit.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from contextlib import AsyncExitStack

import uvicorn
from fastapi import FastAPI

from pgrecall.config import ENV_PREFIX, Settings, load_settings
from pgrecall.db.embedded import database_dsn
from pgrecall.http.app import create_app
from pgrecall.http.protocol import BoundedHttpToolsProtocol
from pgrecall.store import MemoryStore

# Seconds the supervisor waits for its background work to stop after the workers have.
STOP_SECONDS = 30.0
# Seconds a worker may take to answer the supervisor's health check before it is killed and
# started again. uvicorn's 5 s killed every worker still importing on a loaded 2-core machine
# (load average 20: spawn, imports and the app took longer), again and again.
WORKER_HEALTHCHECK_SECONDS = 60


# uvicorn's HTTP protocol: httptools' parser within h11's bounds on a request's head, its
# trailers and the requests pipelined behind it (``http/protocol.py``).
HTTP_PARSER = BoundedHttpToolsProtocol


def default_workers() -> int:
    """One worker per two cores: PostgreSQL, the embedder and the workers share the cores.
    On the 2-core VM that is one process: in two runs of issue 22 (RESULTS.md, sessions 10
    and 11) a second one cost a quarter more server CPU per recall (2.76 against 2.20 ms) and
    lowered HTTP vector recall from 0.95 to 0.81 of the floor, though its tail was tighter
    (p99/p50 2.05 against 2.96); larger machines get more."""
    return max(1, (os.cpu_count() or 1) // 2)


def worker_app() -> FastAPI:
    """The app of one worker process (a uvicorn factory): settings from the environment the
    supervisor prepared."""
    return create_app(load_settings(), freeze_startup=True)


class Background:
    """The store's background work on a thread of the supervising process, with the DSN the
    workers connect to."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._started: queue.Queue[str | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pgrecall-background")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> str:
        """Open the database and the store, start the background work; return the DSN.
        An error opening them (a PgRecallError) is raised here."""
        self._thread.start()
        outcome = self._started.get()
        if isinstance(outcome, BaseException):
            self._thread.join()
            raise outcome
        return outcome

    def stop(self) -> None:
        """Let the background work finish its batch, close the store and the database."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to start(); nothing else waits on this thread
            self._started.put(exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with AsyncExitStack() as resources:
            settings = self._settings
            dsn = await resources.enter_async_context(
                database_dsn(settings.database_url, settings.data_dir)
            )
            # Runs the background work unless PGRECALL_WORKER=false; the workers never do.
            store = await MemoryStore.open(settings, dsn=dsn)
            resources.push_async_callback(store.close)
            self._started.put(dsn)
            await self._stop.wait()


def serve(settings: Settings, *, host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve until interrupted; ``access_log`` prints a line per request (off: at hundreds of
    requests a second the line cost more than the routing)."""
    options = {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "access_log": access_log,
        "http": HTTP_PARSER,
    }
    if workers == 1:
        uvicorn.run(create_app(settings, freeze_startup=True), log_level="info", **options)  # type: ignore[arg-type]
        return
    background = Background(settings)
    dsn = background.start()
    os.environ[f"{ENV_PREFIX}DATABASE_URL"] = dsn
    os.environ[f"{ENV_PREFIX}WORKER"] = "false"
    os.environ[f"{ENV_PREFIX}AUTO_MIGRATE"] = "false"
    try:
        uvicorn.run(
            "pgrecall.http.serving:worker_app",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            log_level="info",
            **options,  # type: ignore[arg-type]
        )
    finally:
        background.stop()
