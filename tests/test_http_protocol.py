"""The HTTP protocol ``pgrecall serve`` runs (``http/protocol.py``): httptools' parser within
h11's bounds on a request's head, its trailers and pipelined requests, over a real socket on
127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI, Request

from pgrecall.http.protocol import HEAD_BYTES, HEAD_TOO_LARGE, MOST_PIPELINED

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
    """Requests of 1 KB of headers each on one connection, twenty one at a time and then
    sixteen pipelined in one write (more than the bound's bytes of heads in all): every one
    served."""
    async with _connection() as (reader, writer):
        for _ in range(20):
            writer.write(_request(header_bytes=1024))
            assert await _answer(reader) == (200, b'{"received":2}')
        assert MOST_PIPELINED * len(_request(header_bytes=1024)) > HEAD_BYTES
        writer.write(b"".join(_request(header_bytes=1024) for _ in range(MOST_PIPELINED)))
        for _ in range(MOST_PIPELINED):
            assert await _answer(reader) == (200, b'{"received":2}')


async def test_headers_counted_by_their_bytes_on_the_wire_at_the_least() -> None:
    """Headers written ``name:value`` (no space) up to the bound are served."""
    count = (HEAD_BYTES - 200) // len(b"h0000:v\r\n")
    padding = "".join(f"h{i:04d}:v\r\n" for i in range(count)).encode()
    async with _connection() as (reader, writer):
        writer.write(_request().replace(b"\r\n\r\n", b"\r\n" + padding + b"\r\n", 1))
        assert await _answer(reader) == (200, b'{"received":2}')


def _chunked(trailers: bytes, head_bytes: int = 0) -> bytes:
    padding = f"x-padding: {'a' * head_bytes}\r\n" if head_bytes else ""
    return (
        "POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"transfer-encoding: chunked\r\n{padding}\r\n2\r\n{{}}\r\n0\r\n"
    ).encode() + trailers


async def test_trailers_have_a_bound_of_their_own() -> None:
    """A 15 KB head and 2 KB of trailers are served; an endless trailer line is cut off (the
    connection closed: the answer may be on its way) and the next connection served."""
    async with _connection() as (reader, writer):
        writer.write(_chunked(b"x-t: " + b"t" * 2048 + b"\r\n\r\n", HEAD_BYTES - 1024))
        assert await _answer(reader) == (200, b'{"received":2}')
    async with serving(_app()) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        sent = 0
        with contextlib.suppress(ConnectionError):
            writer.write(_chunked(b"x-t: "))
            while sent < 20 * 1024 * 1024 and not reader.at_eof():
                writer.write(b"t" * 65_536)
                await asyncio.wait_for(writer.drain(), ANSWER_SECONDS)
                sent += 65_536
            await asyncio.wait_for(reader.read(), ANSWER_SECONDS)
        writer.close()
        assert sent < 4 * 1024 * 1024
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(_request())
        assert await _answer(reader) == (200, b'{"received":2}')
        writer.close()


async def test_requests_pipelined_beyond_the_bound_close_the_connection() -> None:
    """Sixteen requests in one write are each answered; two hundred, sent without reading an
    answer, close the connection after at most the bound's, not two hundred queued."""
    async with _connection() as (reader, writer):
        writer.write(_request() * MOST_PIPELINED)
        for _ in range(MOST_PIPELINED):
            assert await _answer(reader) == (200, b'{"received":2}')
    async with _connection() as (reader, writer):
        writer.write(_request() * 200)
        answered = await asyncio.wait_for(reader.read(), ANSWER_SECONDS)
    assert answered.count(b"HTTP/1.1 200 ") <= MOST_PIPELINED + 1


async def test_a_body_of_many_small_chunks_is_served() -> None:
    """Chunks' framing is not head: 20,000 chunks of one byte (~100 KB of framing) served."""
    body = b'"' + b"c" * 19_998 + b'"'
    chunks = b"".join(b"1\r\n%c\r\n" % byte for byte in body)
    async with _connection() as (reader, writer):
        writer.write(_chunked(b"\r\n").replace(b"2\r\n{}\r\n", chunks, 1))
        assert await _answer(reader) == (200, b'{"received":20000}')
