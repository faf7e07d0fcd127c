"""The benchmarks' lean HTTP client (benchmarks/lean_http.py) against a server on loopback that
answers with a length, in chunks, and by closing the connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from benchmarks.lean_http import LeanConnection, LeanPool

BODY = json.dumps({"hits": [{"content": "x" * 300, "n": n} for n in range(40)]}).encode()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request by its path: /length, /chunked (in pieces of 1,000 bytes), /close
    (no length, then the connection closes), /drop (a length, then the connection closes)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            break
        lines = head.decode().split("\r\n")
        path = lines[0].split()[1]
        length = next(
            int(line.split(":")[1]) for line in lines if line.startswith("content-length")
        )
        await reader.readexactly(length)  # the request's body
        if path == "/length":
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(BODY)}\r\n\r\n".encode() + BODY)
        elif path == "/drop":  # a kept-alive connection the server then drops, as on a timeout
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(BODY)}\r\n\r\n".encode() + BODY)
            await writer.drain()
            break
        elif path == "/chunked":
            pieces = [BODY[i : i + 1000] for i in range(0, len(BODY), 1000)]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
            writer.write(
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
                + chunked
                + b"0\r\n\r\n"
            )
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n")
            writer.write(b'{"detail": "gone"}')
            await writer.drain()
            break
        await writer.drain()
    writer.close()


async def test_lengths_chunks_and_closed_connections_are_read_whole() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = LeanConnection("127.0.0.1", port)
    try:
        first = await connection.post("/length", {"query": "a"})
        assert (first.status, first.body) == (200, BODY)
        chunked = await connection.post("/chunked", {"query": "b"})
        assert (chunked.status, chunked.json()) == (201, json.loads(BODY))
        closed = await connection.get("/close")
        assert closed.status == 404
        assert closed.json() == {"detail": "gone"}
        with pytest.raises(RuntimeError, match="HTTP 404"):
            closed.raise_for_status()
        again = await connection.post("/length", {"query": "c"})  # a new connection
        assert again.body == BODY
        assert (await connection.post("/drop", {})).body == BODY
        assert (await connection.post("/length", {})).body == BODY  # sent again, reconnected
        pool = LeanPool("127.0.0.1", port)
        answers = await asyncio.gather(*(pool.post("/chunked", {"n": n}) for n in range(5)))
        assert [answer.body for answer in answers] == [BODY] * 5
        await pool.aclose()
    finally:
        await connection.close()
        server.close()
        await server.wait_closed()
