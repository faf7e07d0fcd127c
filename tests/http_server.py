"""Run the real app on uvicorn, on 127.0.0.1: in a thread of its own (its own event loop), or in
the test's loop (``serving``); and a client of it with an API key (``api_client``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI

from pgrecall.config import Settings
from pgrecall.http.app import create_app
from pgrecall.http.serving import HTTP_PARSER

_START_SECONDS = 30.0


class ServerThread:
    """``start()`` returns once the server accepts requests; ``url`` is its base URL."""

    def __init__(self, settings: Settings) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings), log_level="warning", lifespan="on", http=HTTP_PARSER
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


def api_client(server: ServerThread, key: str, *, header: str = "Authorization") -> httpx.Client:
    """A client of ``server`` sending ``key`` as a bearer token (or in ``header``, as given)."""
    value = f"Bearer {key}" if header == "Authorization" else key
    return httpx.Client(base_url=server.url, headers={header: value}, timeout=60)


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in the running event loop, with ``pgrecall
    serve``'s HTTP protocol; yield its base URL.

    The server shares the caller's loop, as every request of one process shares it: whatever
    holds the loop holds every other request."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", http=HTTP_PARSER)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        deadline = time.monotonic() + _START_SECONDS
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, _START_SECONDS)
        listening.close()
