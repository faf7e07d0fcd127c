"""``LeanJsonRoute`` (http/lean_route.py): a JSON body served past FastAPI's handler answers
as FastAPI's handler does, and everything else still goes through FastAPI's."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import APIRouter, Request, Response

from pgrecall.http.lean_route import LeanJsonRoute
from pgrecall.records import RecallOptions

# The lean path takes exactly this content type; with a charset FastAPI's handler reads it.
LEAN = {"content-type": "application/json"}
FASTAPI = {"content-type": "application/json; charset=utf-8"}


def _post(client: httpx.Client, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post("/v1/recall", content=body, headers=headers)


def test_both_handlers_give_the_same_answers_and_errors(agent: httpx.Client) -> None:
    stored = agent.post(
        "/v1/memories",
        json={
            "memories": [
                {"namespace": "agent-a", "content": "The harbour opens at dawn."},
                {"namespace": "agent-a", "content": "Tides are highest in spring."},
            ]
        },
    )
    assert stored.status_code == 200, stored.text
    bodies = [
        {"query": "when does the harbour open", "namespaces": ["agent-a"], "k": 2},
        {"query": "tides", "namespaces": ["agent-a"], "mode": "keyword"},
        {"query": "tides", "namespaces": ["agent-a"], "k": 0},  # refused: k
        {"query": "tides", "namespaces": ["agent-a"], "colour": "red"},  # refused: extra
        {"query": "tides", "namespaces": ["agent-b"]},  # forbidden namespace
        # refused by the store: min_score in keyword mode
        {"query": "tides", "namespaces": ["agent-a"], "mode": "keyword", "min_score": 0.5},
    ]
    # Deeper than the json module recurses: RecursionError, not a ValueError.
    deep = b'{"query": "tides", "filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw = [json.dumps(body).encode() for body in bodies] + [b'{"query": ', b"null", b"[]", deep]
    statuses = []
    for body in raw:
        lean, standard = _post(agent, body, LEAN), _post(agent, body, FASTAPI)
        assert lean.status_code == standard.status_code, body
        assert lean.content == standard.content, body
        statuses.append(lean.status_code)
    assert statuses[:2] == [200, 200]
    assert len(_post(agent, raw[0], LEAN).json()["hits"]) == 2
    assert 200 not in statuses[2:]
    assert _post(agent, b'{"query": ', LEAN).json()["error"]["code"] == "malformed_json"


def test_a_lean_route_takes_one_body_and_the_request_only() -> None:
    async def with_query(body: RecallOptions, request: Request, page: int = 1) -> Response:
        return Response()

    router = APIRouter()
    with pytest.raises(TypeError, match="one body and the request"):
        router.add_api_route("/x", with_query, methods=["POST"], route_class_override=LeanJsonRoute)
