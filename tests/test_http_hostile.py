"""Hostile input over HTTP: every client mistake is a 4xx naming the field, nothing is half
written, no answer carries database text, and no id answers differently for being elsewhere."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pgrecall.config import Settings
from pgrecall.validation import MAX_JSON_DEPTH

from .conftest import limited_settings

DATABASE_TEXT = ("asyncpg", "SQLSTATE", "syntax error", "DETAIL", "pid")


@pytest.fixture
def server_settings(migrated_dsn: str) -> Settings:
    return limited_settings(migrated_dsn)


def _send(client: httpx.Client, method: str, url: str, body: object) -> httpx.Response:
    """``body`` as JSON with every non-ASCII character escaped, so lone surrogates travel as
    ``\\udXXX`` escapes (valid JSON text that decodes to a lone surrogate)."""
    return client.request(
        method,
        url,
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={"Content-Type": "application/json"},
    )


def _refused(response: httpx.Response, status: int, code: str, *names: str) -> str:
    """The error body's message, after checking the status, the code (``a|b``: either) and
    that the message names every one of ``names`` and holds no database text."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] in code.split("|")
    message = str(body["error"]["message"])
    for name in names:
        assert name in message
    for text in DATABASE_TEXT:
        assert text not in response.text
    return message


def _stored(admin: httpx.Client, namespace: str) -> list[dict[str, Any]]:
    page = admin.get("/v1/memories", params={"namespace": namespace, "limit": 1000})
    if page.status_code == 404:
        return []
    assert page.status_code == 200, page.text
    return list(page.json()["memories"])


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deep_metadata_is_refused_and_every_read_keeps_working(admin: httpx.Client) -> None:
    kept = _send(admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "k"}]})
    memory_id = kept.json()["memories"][0]["id"]
    deepest = {"namespace": "n", "content": "deepest allowed", "metadata": _nested(MAX_JSON_DEPTH)}
    assert _send(admin, "POST", "/v1/memories", {"memories": [deepest]}).status_code == 200
    for depth in (MAX_JSON_DEPTH + 1, 300):
        item = {"namespace": "n", "content": f"too deep {depth}", "metadata": _nested(depth)}
        refused = _send(admin, "POST", "/v1/memories", {"memories": [item]})
        _refused(refused, 422, "invalid_input", "metadata", f"deeper than {MAX_JSON_DEPTH}")
        patched = _send(admin, "PATCH", f"/v1/memories/{memory_id}", {"metadata": _nested(depth)})
        _refused(patched, 422, "invalid_input", "metadata", f"deeper than {MAX_JSON_DEPTH}")
    assert sorted(m["content"] for m in _stored(admin, "n")) == ["deepest allowed", "k"]
    recalled = admin.post("/v1/recall", json={"query": "deepest", "namespaces": ["n"]})
    assert recalled.status_code == 200, recalled.text


@pytest.mark.parametrize(
    "metadata",
    [{"\ud800": 1}, {"a": "\udfff"}, {"a": ["ok", {"b": "x\ud83dy"}]}],
    ids=["key", "value", "nested value"],
)
def test_lone_surrogates_in_metadata_are_refused(
    admin: httpx.Client, metadata: dict[str, Any]
) -> None:
    kept = _send(admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "k"}]})
    memory_id = kept.json()["memories"][0]["id"]
    item = {"namespace": "n", "content": "surrogate", "metadata": metadata}
    posted = _send(
        admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "ok"}, item]}
    )
    _refused(posted, 422, "invalid_input", "metadata", "lone surrogate", "item 1")
    patched = _send(admin, "PATCH", f"/v1/memories/{memory_id}", {"metadata": metadata})
    _refused(patched, 422, "invalid_input", "metadata", "lone surrogate")
    assert [(m["content"], m["metadata"]) for m in _stored(admin, "n")] == [("k", {})]


def test_text_that_looks_like_an_escaped_nul_is_stored_as_given(admin: httpx.Client) -> None:
    metadata = {"path": "C:\\u0000dir", "C:\\u0000key": "\\\\u0000"}
    item = {"namespace": "n", "content": "a windows path", "metadata": metadata}
    stored = _send(admin, "POST", "/v1/memories", {"memories": [item]})
    assert stored.status_code == 200, stored.text
    got = admin.get(f"/v1/memories/{stored.json()['memories'][0]['id']}").json()
    assert got["metadata"] == metadata
    real_nul = {"namespace": "n", "content": "nul", "metadata": {"path": "C:\x00dir"}}
    _refused(
        _send(admin, "POST", "/v1/memories", {"memories": [real_nul]}), 422, "invalid_input", "NUL"
    )


def test_text_a_database_cannot_hold_is_refused_naming_the_field(admin: httpx.Client) -> None:
    _send(admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "kept"}]})
    recall = {"namespaces": ["n"]}
    too_long = _send(admin, "POST", "/v1/recall", {**recall, "query": "ab " * 3_334})
    _refused(too_long, 422, "invalid_request", "query", "10000")
    # A lone surrogate in a string field is refused by the request's schema already.
    for query in ("q\x00", "q\udc80"):
        _refused(
            _send(admin, "POST", "/v1/recall", {**recall, "query": query}),
            422,
            "invalid_input|invalid_request",
            "query",
        )
    for content in ("x\x00", "x\ud800"):
        item = {"namespace": "n", "content": content}
        _refused(
            _send(admin, "POST", "/v1/memories", {"memories": [item]}),
            422,
            "invalid_input|invalid_request",
            "content",
        )
    assert [m["content"] for m in _stored(admin, "n")] == ["kept"]


@pytest.mark.parametrize(
    "document",
    [{"a\x00": 1}, {"a": "x\x00"}, {"a": "\ud800"}, {"\ud800": 1}],
    ids=["NUL key", "NUL value", "surrogate value", "surrogate key"],
)
def test_filters_postgresql_cannot_take_are_client_errors(
    admin: httpx.Client, document: dict[str, Any]
) -> None:
    _send(admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "kept"}]})
    recall = {"query": "kept", "namespaces": ["n"], "filter": document}
    _refused(_send(admin, "POST", "/v1/recall", recall), 422, "invalid_filter", "filter")
    forget = {"namespace": "n", "filter": document}
    _refused(_send(admin, "POST", "/v1/memories:forget", forget), 422, "invalid_filter", "filter")
    assert [m["content"] for m in _stored(admin, "n")] == ["kept"]


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"])
def test_timestamps_outside_the_range_are_client_errors(admin: httpx.Client, stamp: str) -> None:
    kept = _send(admin, "POST", "/v1/memories", {"memories": [{"namespace": "n", "content": "k"}]})
    memory_id = kept.json()["memories"][0]["id"]
    for field in ("created_after", "created_before"):
        recall = {"query": "k", "namespaces": ["n"], field: stamp}
        _refused(_send(admin, "POST", "/v1/recall", recall), 422, "invalid_input", field)
    patched = _send(admin, "PATCH", f"/v1/memories/{memory_id}", {"expires_at": stamp})
    _refused(patched, 422, "invalid_input", "expires_at")
    cursor = base64.urlsafe_b64encode(f"{stamp}|{memory_id}".encode()).decode()
    page = admin.get("/v1/memories", params={"namespace": "n", "cursor": cursor})
    _refused(page, 422, "invalid_input", "cursor")
    assert admin.get(f"/v1/memories/{memory_id}").json()["expires_at"] is None


def test_an_id_in_another_namespace_answers_as_an_unknown_id(
    admin: httpx.Client, agent: httpx.Client
) -> None:
    stored = _send(
        admin, "POST", "/v1/memories", {"memories": [{"namespace": "agent-b", "content": "b's"}]}
    )
    elsewhere_id = stored.json()["memories"][0]["id"]
    unknown_id = str(uuid.UUID(int=uuid.UUID(elsewhere_id).int ^ 1))
    calls = [
        ("GET", "", None),
        ("PATCH", "", {"content": "mine now"}),
        ("DELETE", "", None),
        ("GET", "/history", None),
        ("POST", ":invalidate", {"reason": "not mine to end"}),
        ("POST", ":retry", None),
    ]
    for method, tail, body in calls:
        elsewhere = agent.request(method, f"/v1/memories/{elsewhere_id}{tail}", json=body)
        unknown = agent.request(method, f"/v1/memories/{unknown_id}{tail}", json=body)
        assert elsewhere.status_code == unknown.status_code == 404, (method, tail, elsewhere.text)
        assert elsewhere.headers.keys() == unknown.headers.keys()
        assert elsewhere.text.replace(elsewhere_id, "<id>") == unknown.text.replace(
            unknown_id, "<id>"
        )
        assert "agent-b" not in elsewhere.text
    kept = admin.get(f"/v1/memories/{elsewhere_id}").json()
    assert (kept["content"], kept["valid_until"], kept["invalid_reason"]) == ("b's", None, None)
    audit = admin.get("/v1/audit", params={"namespace": "agent-b"}).json()
    assert [entry["action"] for entry in audit["entries"]] == ["create"]


def test_a_chunked_body_over_the_limit_is_413(admin: httpx.Client) -> None:
    def chunks(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    huge = {"memories": [{"namespace": "n", "content": "x" * 70_000}]}
    over = admin.post("/v1/memories", content=chunks(json.dumps(huge).encode()))
    assert "content-length" not in over.request.headers  # sent chunked
    _refused(over, 413, "payload_too_large", "65536")
    small = {"memories": [{"namespace": "n", "content": "sent in chunks"}]}
    under = admin.post(
        "/v1/memories",
        content=chunks(json.dumps(small).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert under.status_code == 200, under.text
    assert [m["content"] for m in _stored(admin, "n")] == ["sent in chunks"]
