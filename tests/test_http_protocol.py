"""The HTTP protocol ``pgrecall serve`` runs (``http/protocol.py``): httptools' parser with a
request's head bounded as h11 bounds it, over a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI, Request

from pgrecall.http.protocol import HEAD_BYTES, HEAD_TOO_LARGE

from .http_server import serving

pytestmark = pytest.mark.timeout(120)

# Seconds a read of the server's answer may take before the test fails.
ANSWER_SECONDS = 10.0


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return app


@contextlib.asynccontextmanager
async def _connection() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async with serving(_app()) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            yield reader, writer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _request(body: bytes = b"{}", *, header_bytes: int = 0) -> bytes:
    padding = f"x-padding: {'a' * header_bytes}\r\n" if header_bytes else ""
    return (
        "POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{padding}\r\n"
    ).encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One answer's status and body (a ``content-length`` body, as both apps send)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    body = await asyncio.wait_for(
        reader.readexactly(int(headers["content-length"])), ANSWER_SECONDS
    )
    return int(lines[0].split()[1]), body


async def test_a_head_within_the_bound_is_served() -> None:
    async with _connection() as (reader, writer):
        writer.write(_request(header_bytes=HEAD_BYTES - 1024))
        assert await _answer(reader) == (200, b'{"received":2}')


async def test_a_head_beyond_the_bound_is_refused_and_the_connection_closed() -> None:
    async with _connection() as (reader, writer):
        writer.write(_request(header_bytes=HEAD_BYTES + 1024))
        assert await _answer(reader) == (400, HEAD_TOO_LARGE.encode())
        assert await asyncio.wait_for(reader.read(), ANSWER_SECONDS) == b""


async def test_an_endless_header_line_is_cut_off_early() -> None:
    """A 20 MB header line, sent in 64 KB pieces: the server answers and closes long before the
    client has sent it (uvicorn's own httptools protocol read it whole and answered 200). The
    answer may be lost to the reset a close with unread bytes sends (TCP); the server serves
    the next connection."""
    piece = b"a" * 65_536
    sent = 0
    answer = b""
    async with serving(_app()) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        with contextlib.suppress(ConnectionError):
            writer.write(b"POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: ")
            while sent < 20 * 1024 * 1024 and not reader.at_eof():
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), ANSWER_SECONDS)
                sent += len(piece)
            answer = await asyncio.wait_for(reader.read(), ANSWER_SECONDS)
        writer.close()
        assert sent < 4 * 1024 * 1024  # socket buffers take some; the server no more than a read
        if answer:
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert answer.endswith(HEAD_TOO_LARGE.encode())
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(_request())
        assert await _answer(reader) == (200, b'{"received":2}')
        writer.close()


async def test_a_large_body_after_a_small_head_is_not_counted_as_head() -> None:
    """The head and 200 KB of body in one write, read together: the head completes in the
    read, so the bound does not apply to the body."""
    body = b'"' + b"b" * 200_000 + b'"'
    async with _connection() as (reader, writer):
        writer.write(_request(body))
        assert await _answer(reader) == (200, b'{"received":%d}' % len(body))


async def test_the_bound_is_per_request_on_a_kept_alive_connection() -> None:
    """Forty requests of 1 KB of headers each on one connection (40 KB of heads in all), one at
    a time and then pipelined in one write: every one served."""
    async with _connection() as (reader, writer):
        for _ in range(20):
            writer.write(_request(header_bytes=1024))
            assert await _answer(reader) == (200, b'{"received":2}')
        writer.write(b"".join(_request(header_bytes=1024) for _ in range(20)))
        for _ in range(20):
            assert await _answer(reader) == (200, b'{"received":2}')
