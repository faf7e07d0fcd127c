"""A minimal HTTP/1.1 JSON client for load generators: kept-alive connections on asyncio streams.

A benchmark of the server should spend on its client what a lean client would, for on this
2-core VM the load generator takes its CPU from the same two cores as the server it measures.
httpx costs far more than the request itself: a ``GET /healthz`` round trip to ``pgrecall
serve`` took 1.39 ms through ``httpx.AsyncClient`` and 0.48 ms through a plain socket, and a
vector recall of SciFact (ten abstracts, an 18 KB answer) 7.16 ms against 5.16 ms, 4.10 ms in
process (300 requests each, alternated, load 2.3; benchmarks/RESULTS.md, issue 25 session 12).
So ``longdocs`` and ``http_load`` measure the server through this client and keep an httpx leg
beside it (``--client httpx``), so that what a typical Python client adds stays in view.

It speaks only what those benchmarks need: JSON requests, answers with a ``content-length``
or a chunked body, a connection kept alive until the server closes it (then one reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"HTTP {self.status}: {self.body[:200]!r}")


class Client(Protocol):
    """What the benchmarks ask of a client: a JSON POST whose answer has ``raise_for_status``
    and ``json``."""

    async def post(self, path: str, payload: object) -> Any: ...


@dataclass(frozen=True, slots=True)
class HttpxClient:
    """``Client`` through httpx: what a typical Python client adds to a request."""

    client: httpx.AsyncClient

    async def post(self, path: str, payload: object) -> httpx.Response:
        return await self.client.post(path, json=payload)


class LeanConnection:
    """One kept-alive HTTP/1.1 connection to ``host:port``; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, payload: object = None) -> Answer:
        body = b"" if payload is None else json.dumps(payload).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        reader, writer = await self._open()
        try:
            writer.write(head.encode() + body)
            answer, keep = await _read_answer(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()  # the server closed a kept-alive connection: once more
            reader, writer = await self._open()
            writer.write(head.encode() + body)
            answer, keep = await _read_answer(reader)
        if not keep:
            await self.close()
        return answer

    async def post(self, path: str, payload: object) -> Answer:
        return await self.request("POST", path, payload)

    async def get(self, path: str) -> Answer:
        return await self.request("GET", path)

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        return self._streams


class LeanPool:
    """Connections handed out one per concurrent caller, created as needed."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[LeanConnection] = []
        self._all: list[LeanConnection] = []

    async def post(self, path: str, payload: object) -> Answer:
        connection = self._idle.pop() if self._idle else self._new()
        try:
            return await connection.post(path, payload)
        finally:
            self._idle.append(connection)

    async def aclose(self) -> None:
        for connection in self._all:
            await connection.close()

    def _new(self) -> LeanConnection:
        connection = LeanConnection(self._host, self._port)
        self._all.append(connection)
        return connection


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The status and body of one answer, and whether the connection stays open."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
        return Answer(status, body), False
    return Answer(status, body), headers.get("connection", "").lower() != "close"


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent: the empty line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
