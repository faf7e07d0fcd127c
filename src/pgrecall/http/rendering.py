"""JSON answers that grow with the request, streamed one item at a time.

A recall or a page of 1,000 memories can be tens of megabytes of JSON (81 MB for 1,000 of
20k characters and 60 KB of metadata each). Rendered in one piece, on the event loop or in a
thread (pydantic's serialiser holds the GIL for the whole call), it held every other request,
/healthz included, for 0.4-0.8 s. Streamed, the loop is free between items, each well under
a millisecond, and the answer is never held in memory whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

# Rendered items are sent in pieces of about this size (fewer, larger writes).
CHUNK_BYTES = 64 * 1024


def json_answer(answer: BaseModel, field: str, items: Iterable[BaseModel]) -> StreamingResponse:
    """``answer`` with ``items`` as its list ``field`` (its first field, left empty in
    ``answer``): the JSON FastAPI would send for the whole model, rendered item by item."""
    rest = answer.model_dump_json(exclude={field}).encode()  # b'{"pending":0,...}' or b"{}"
    tail = b"]" + (b"," + rest[1:] if len(rest) > 2 else b"}")

    async def chunks() -> AsyncIterator[bytes]:
        buffer = bytearray(b'{"' + field.encode() + b'":[')
        for position, item in enumerate(items):
            if position:
                buffer += b","
            buffer += item.model_dump_json().encode()
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
            await asyncio.sleep(0)  # other requests run between items
        yield bytes(buffer + tail)

    return StreamingResponse(chunks(), media_type="application/json")
