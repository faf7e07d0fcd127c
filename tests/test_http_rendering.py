"""Large JSON answers are streamed item by item: the same JSON, the event loop free between;
small ones are sent whole."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from pgrecall.api.schemas import HitOut, hit_json
from pgrecall.http.rendering import CHUNK_BYTES, json_answer
from pgrecall.records import Hit


class Item(BaseModel):
    text: str
    score: float | None


class Answer(BaseModel):
    items: list[Item]
    cursor: str | None
    total: int


class OnlyItems(BaseModel):
    items: list[Item]


def _render(item: Item) -> bytes:
    return item.model_dump_json().encode()


async def _body(response: Response) -> bytes:
    if not isinstance(response, StreamingResponse):
        return bytes(response.body)
    chunks = [chunk async for chunk in response.body_iterator]
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    return b"".join(chunk for chunk in chunks if isinstance(chunk, bytes))


@pytest.mark.parametrize("count", [0, 1, 3, 200])
async def test_streamed_json_is_the_model_json(count: int) -> None:
    items = [Item(text=f'é {i} "quoted" ' + "x" * 1000, score=i / 3) for i in range(count)]
    whole = Answer(items=items, cursor=None, total=count)
    response = json_answer(
        Answer(items=[], cursor=None, total=count), "items", iter(items), _render
    )
    body = await _body(response)
    assert json.loads(body) == json.loads(whole.model_dump_json())
    assert response.media_type == "application/json"
    if count == 200:
        assert len(body) > 2 * CHUNK_BYTES
        assert isinstance(response, StreamingResponse)


async def test_a_small_answer_is_sent_whole_with_its_length() -> None:
    items = [Item(text=f"hit {i}", score=i / 10) for i in range(10)]
    response = json_answer(Answer(items=[], cursor="c", total=10), "items", iter(items), _render)
    assert not isinstance(response, StreamingResponse)
    assert json.loads(bytes(response.body)) == json.loads(
        Answer(items=items, cursor="c", total=10).model_dump_json()
    )
    assert response.headers["content-length"] == str(len(response.body))


async def test_an_answer_of_items_alone() -> None:
    items = [Item(text="a", score=None), Item(text="b", score=1.0)]
    body = await _body(json_answer(OnlyItems(items=[]), "items", iter(items), _render))
    expected = [{"text": "a", "score": None}, {"text": "b", "score": 1.0}]
    assert json.loads(body) == {"items": expected}


async def test_other_tasks_run_between_items() -> None:
    """What keeps /healthz answering while 80 MB of memories are rendered: past the first
    chunk, each item is rendered in a turn of the event loop of its own."""
    turns = 0
    stop = asyncio.Event()

    async def other_request() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    seen: list[int] = []

    def items() -> Iterator[Item]:
        for i in range(8):
            seen.append(turns)
            yield Item(text=str(i) * (CHUNK_BYTES // 3), score=None)

    running = asyncio.create_task(other_request())
    await asyncio.sleep(0)
    await _body(json_answer(Answer(items=[], cursor=None, total=8), "items", items(), _render))
    stop.set()
    await running
    # Items 0-2 fill the first chunk, rendered at once; each later one in a turn of its own.
    assert all(later > earlier for earlier, later in itertools.pairwise(seen[3:]))
    assert len(seen) == 8


def _hit(content: str, metadata: dict[str, Any], **fields: Any) -> Hit:
    created = datetime(2026, 12, 1, 13, 40, 5, 123456, tzinfo=UTC)
    defaults: dict[str, Any] = {
        "id": uuid4(),
        "namespace": "agent-1",
        "content": content,
        "score": 0.25,
        "metadata": metadata,
        "key": None,
        "created_at": created,
        "expires_at": None,
    }
    return Hit(**(defaults | fields))


@pytest.mark.parametrize(
    "hit",
    [
        _hit("plain", {}),
        _hit('é "quoted" \u2028 \\ tab\t' * 50, {"a": [1, 2.5, None, {"b": "c"}], "t": True}),
        _hit(
            "x",
            {"n": -0.0},
            key="k1",
            expires_at=datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))),
            vector_score=1e-7,
            keyword_score=3.5,
            version=4,
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            valid_until=datetime(2021, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_a_hit_renders_as_its_response_model(hit: Hit) -> None:
    """Recall renders hits straight from the record: byte for byte what HitOut would send."""
    assert hit_json(hit) == HitOut.of(hit).model_dump_json().encode()
