"""JSON answers that grow with the request: small ones in one piece, large ones streamed.

A recall or a page of 1,000 memories can be tens of megabytes of JSON (81 MB for 1,000 of
20k characters and 60 KB of metadata each). Rendered in one piece, on the event loop or in a
thread (pydantic's serialiser holds the GIL for the whole call), it held every other request,
/healthz included, for 0.4-0.8 s. Streamed, the loop is free between items, each well under
a millisecond, and the answer is never held in memory whole.

Most answers are small (ten hits of a sentence each: ~3 KB), and a streamed answer costs an
async generator and a chunked body; so the first CHUNK_BYTES are rendered at once, and an
answer that ends within them is sent whole, with its length (issue 22: part of what brought HTTP
recall to the floor's rate in ``benchmarks/http_load.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TypeVar

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

# Rendered items are sent in pieces of about this size (fewer, larger writes); an answer
# smaller than this is sent whole.
CHUNK_BYTES = 64 * 1024
JSON = "application/json"
Item = TypeVar("Item")


def json_answer(
    answer: BaseModel, field: str, items: Iterable[Item], render: Callable[[Item], bytes]
) -> Response:
    """``answer`` with ``items`` as its list ``field`` (its first field, left empty in
    ``answer``): the JSON FastAPI would send for the whole model, each item rendered by
    ``render`` (the JSON of the item's response model)."""
    rest = answer.model_dump_json(exclude={field}).encode()  # b'{"pending":0,...}' or b"{}"
    tail = b"]" + (b"," + rest[1:] if len(rest) > 2 else b"}")
    head = b'{"' + field.encode() + b'":['
    buffer = bytearray(head)
    remaining = iter(items)
    for item in remaining:
        if len(buffer) > len(head):
            buffer += b","
        buffer += render(item)
        if len(buffer) >= CHUNK_BYTES:
            chunks = _chunks(bytes(buffer), remaining, render, tail)
            return StreamingResponse(chunks, media_type=JSON)
    return Response(bytes(buffer + tail), media_type=JSON)


async def _chunks(
    first: bytes, items: Iterator[Item], render: Callable[[Item], bytes], tail: bytes
) -> AsyncIterator[bytes]:
    """The first chunk, then the other items (each after a comma), a turn of the loop each."""
    yield first
    buffer = bytearray()
    for item in items:
        buffer += b"," + render(item)
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
        await asyncio.sleep(0)  # other requests run between items
    yield bytes(buffer + tail)
