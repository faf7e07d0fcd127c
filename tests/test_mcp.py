"""The MCP server through the SDK's own client: ``pgrecall mcp`` spawned over stdio, and ``/mcp``
of ``pgrecall serve`` over streamable HTTP on 127.0.0.1. Real database, the local model."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from pgrecall.audit import key_actor

from .conftest import ADMIN_KEY, AGENT_KEY
from .http_server import ServerThread

# Every wait on the server is bounded: the subprocess loads the model and opens the store first.
CALL_SECONDS = 120.0
SESSION_SECONDS = 240.0
TOOLS = {
    "remember", "recall", "get", "list", "update", "forget", "stats",
    "history", "invalidate", "audit",
}  # fmt: skip

DEPLOYS = "The team deploys to production every Thursday afternoon, never on Fridays."
DISTRACTORS = [
    "The office coffee machine is descaled on the first Monday of the month.",
    "Unit tests run against a real PostgreSQL database, never SQLite.",
]


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(CALL_SECONDS):
        return await client.call_tool(tool, arguments)


async def _ok(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await _call(client, tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def _refused(client: Client, tool: str, arguments: dict[str, Any], code: str) -> str:
    result = await _call(client, tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is not None
    error = result.structured_content["error"]
    assert error["code"] == code, error
    return str(error["message"])


async def _tools_are_described(client: Client) -> None:
    with anyio.fail_after(CALL_SECONDS):
        listed = (await client.list_tools()).tools
    by_name = {tool.name: tool for tool in listed}
    assert set(by_name) == TOOLS
    for tool in listed:
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert tool.annotations is not None
        assert tool.description
        assert len(tool.description) > 40
    assert by_name["recall"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert by_name["forget"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert by_name["remember"].annotations.read_only_hint is False  # type: ignore[union-attr]
    assert {"content", "memories", "namespace", "metadata", "key", "expires_at"} <= set(
        by_name["remember"].input_schema["properties"]
    )
    assert {"query", "k", "namespace", "namespaces", "filter", "mode"} <= set(
        by_name["recall"].input_schema["properties"]
    )


async def _remember_then_recall_by_paraphrase(client: Client) -> str:
    """Stores in the default namespace (none named); returns the id of the deploy memory."""
    stored = await _ok(client, "remember", {"content": DEPLOYS, "metadata": {"topic": "ops"}})
    (entry,) = stored["memories"]
    assert entry["namespace"] == "agent-a"
    assert entry["created"] is True
    batch = await _ok(client, "remember", {"memories": [{"content": text} for text in DISTRACTORS]})
    assert [item["namespace"] for item in batch["memories"]] == ["agent-a", "agent-a"]
    found = await _ok(client, "recall", {"query": "Which day of the week do we ship releases?"})
    assert found["hits"][0]["id"] == entry["id"]
    assert found["hits"][0]["content"] == DEPLOYS
    filtered = await _ok(
        client, "recall", {"query": "coffee machine", "filter": {"topic": "ops"}, "k": 5}
    )
    assert [hit["id"] for hit in filtered["hits"]] == [entry["id"]]
    return str(entry["id"])


async def _every_other_tool(client: Client, memory_id: str) -> None:
    got = await _ok(client, "get", {"id": memory_id})
    assert got["content"] == DEPLOYS
    assert got["metadata"] == {"topic": "ops"}
    page = await _ok(client, "list", {"limit": 2})
    assert len(page["memories"]) == 2
    assert page["next_cursor"]
    rest = await _ok(client, "list", {"limit": 2, "cursor": page["next_cursor"]})
    assert len(rest["memories"]) == 1
    assert rest["next_cursor"] is None
    updated = await _ok(client, "update", {"id": memory_id, "metadata": {"topic": "release"}})
    assert updated["metadata"] == {"topic": "release"}
    assert updated["content"] == DEPLOYS
    counts = await _ok(client, "stats", {})
    assert counts["memories"] == 3
    assert [n["namespace"] for n in counts["namespaces"]] == ["agent-a"]
    team = await _ok(
        client, "remember", {"content": "Team lunch is on Wednesdays.", "namespace": "team-x"}
    )
    assert team["memories"][0]["namespace"] == "team-x"
    gone = await _ok(client, "forget", {"ids": [memory_id]})
    assert gone == {"forgotten": 1}
    await _refused(client, "get", {"id": memory_id}, "not_found")
    cleared = await _ok(client, "forget", {"namespace": "team-x", "filter": {}})
    assert cleared == {"forgotten": 1}


async def _scoping(client: Client) -> None:
    message = await _refused(client, "recall", {"query": "anything", "namespace": "b"}, "forbidden")
    assert "'b'" in message
    await _refused(client, "remember", {"content": "x", "namespace": "b"}, "forbidden")
    await _refused(client, "list", {"namespace": "b"}, "forbidden")
    await _refused(client, "stats", {"namespace": "b"}, "forbidden")
    await _refused(client, "forget", {"namespace": "b", "filter": {}}, "forbidden")
    await _refused(
        client, "recall", {"query": "anything", "namespaces": ["agent-a", "b"]}, "forbidden"
    )
    # A batch with one item outside the scope stores nothing.
    batch = {"memories": [{"content": "fine"}, {"content": "not here", "namespace": "b"}]}
    await _refused(client, "remember", batch, "forbidden")


async def _bad_arguments(client: Client) -> None:
    message = await _refused(client, "recall", {"query": "", "k": 0}, "invalid_request")
    assert "query" in message
    assert "k" in message
    message = await _refused(
        client, "remember", {"content": "a", "memories": [{"content": "b"}]}, "invalid_request"
    )
    assert "content" in message
    await _refused(client, "remember", {"content": "a", "colour": "red"}, "invalid_request")
    await _refused(client, "get", {"id": "not-a-uuid"}, "invalid_request")
    await _refused(client, "forget", {}, "invalid_request")
    await _refused(
        client, "recall", {"query": "x", "filter": {"topic": {"bogus": 1}}}, "invalid_filter"
    )
    await _refused(
        client,
        "remember",
        {"content": "x", "expires_at": "2030-01-01T00:00:00"},  # no time zone
        "invalid_request",
    )
    # More memories than one call may carry (PGRECALL_HTTP_MAX_BATCH, 1000) are refused whole.
    too_many = {"memories": [{"content": f"note {n}"} for n in range(1001)]}
    await _refused(client, "remember", too_many, "payload_too_large")
    await _refused(client, "recall", {"query": "x", "namespaces": []}, "invalid_request")
    await _refused(client, "recall", {"query": "x", "k": 1001}, "invalid_request")
    # Text over the store's limit (100,000 characters by default) is refused, not stored in part.
    await _refused(client, "remember", {"content": "word " * 30_000}, "invalid_input")
    with pytest.raises(MCPError, match="no tool 'bogus'"):
        await _call(client, "bogus", {})
    # The server still answers after every refusal.
    assert (await _ok(client, "stats", {}))["memories"] >= 0


async def _exercise(client: Client) -> None:
    await _tools_are_described(client)
    memory_id = await _remember_then_recall_by_paraphrase(client)
    await _scoping(client)
    await _bad_arguments(client)
    await _every_other_tool(client, memory_id)


def _stdio(dsn: str, *namespaces: str) -> StdioServerParameters:
    flags = [part for name in namespaces for part in ("--namespace", name)]
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "pgrecall.cli", "mcp", *flags],
        env={
            "PGRECALL_DATABASE_URL": dsn,
            "PGRECALL_EMBEDDER": "local",
            "PGRECALL_AUTO_MIGRATE": "false",
            # The spawned server gets the parent's view of the local model's cache.
            **{k: v for k, v in os.environ.items() if k in ("HOME", "XDG_CACHE_HOME")},
        },
    )


@asynccontextmanager
async def _connected(server: Any) -> AsyncIterator[Client]:
    """A connected client; the whole conversation is bounded by SESSION_SECONDS."""
    with anyio.fail_after(SESSION_SECONDS):
        async with Client(server, read_timeout_seconds=CALL_SECONDS) as client:
            yield client


async def test_stdio(migrated_dsn: str) -> None:
    # The server's stderr goes to this process's, which pytest captures and shows on failure.
    async with _connected(_stdio(migrated_dsn, "agent-a", "team-*")) as client:
        await _exercise(client)


def test_stdio_without_a_namespace_is_one_line_and_exit_2() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    completed = subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", "mcp"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert "--namespace" in completed.stderr


async def test_stdio_namespaces_from_the_setting(migrated_dsn: str) -> None:
    parameters = _stdio(migrated_dsn)
    assert parameters.env is not None
    parameters.env["PGRECALL_MCP_NAMESPACES"] = '["from-setting", "other-*"]'
    async with _connected(parameters) as client:
        stored = await _ok(client, "remember", {"content": "Stored where the setting says."})
        assert stored["memories"][0]["namespace"] == "from-setting"
        await _ok(client, "remember", {"content": "Also here.", "namespace": "other-1"})
        await _refused(client, "list", {"namespace": "agent-a"}, "forbidden")


def _http(url: str, key: str) -> Any:
    client = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(CALL_SECONDS)
    )
    return _Owned(streamable_http_client(f"{url}/mcp", http_client=client), client)


class _Owned:
    """A transport that closes its HTTP client after itself."""

    def __init__(self, transport: Any, client: httpx2.AsyncClient) -> None:
        self.transport = transport
        self.client = client

    async def __aenter__(self) -> Any:
        await self.client.__aenter__()
        return await self.transport.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.transport.__aexit__(*exc)
        finally:
            await self.client.__aexit__(*exc)


async def test_streamable_http(server: ServerThread) -> None:
    async with _connected(_http(server.url, AGENT_KEY)) as client:
        await _exercise(client)


async def test_http_key_scoping_and_ids_of_other_namespaces(server: ServerThread) -> None:
    async with _connected(_http(server.url, ADMIN_KEY)) as admin:
        stored = await _ok(admin, "remember", {"content": "Secret of b.", "namespace": "b"})
        other_id = stored["memories"][0]["id"]
        # The admin key has no default namespace ("*" names none): a call must name one.
        message = await _refused(admin, "remember", {"content": "x"}, "invalid_input")
        assert "name a namespace" in message
    async with _connected(_http(server.url, AGENT_KEY)) as agent:
        # An id in a namespace the key may not see answers as an unknown id, for every tool.
        await _refused(agent, "get", {"id": other_id}, "not_found")
        await _refused(agent, "update", {"id": other_id, "content": "mine"}, "not_found")
        await _refused(agent, "forget", {"ids": [other_id]}, "not_found")
        await _refused(agent, "stats", {"namespace": "b"}, "forbidden")
    async with _connected(_http(server.url, ADMIN_KEY)) as admin:
        still = await _ok(admin, "get", {"id": other_id})
        assert still["content"] == "Secret of b."


async def test_http_history_invalidate_and_audit_with_the_keys_actor(
    server: ServerThread,
) -> None:
    async with _connected(_http(server.url, AGENT_KEY)) as agent:
        first = await _ok(agent, "remember", {"content": "Ada lives in London.", "key": "ada-home"})
        memory_id = first["memories"][0]["id"]
        await _ok(agent, "remember", {"content": "Ada lives in Lisbon.", "key": "ada-home"})
        history = await _ok(agent, "history", {"id": memory_id})
        assert [v["content"] for v in history["versions"]] == [
            "Ada lives in London.",
            "Ada lives in Lisbon.",
        ]
        assert history["versions"][0]["current_until"] is not None
        assert history["versions"][1]["current_until"] is None
        ended = await _ok(agent, "invalidate", {"id": memory_id, "reason": "she moved again"})
        assert ended["id"] == memory_id
        query = {"query": "Where does Ada live?", "mode": "keyword"}
        assert (await _ok(agent, "recall", query))["hits"] == []
        shown = await _ok(agent, "recall", {**query, "include_invalid": True})
        assert [hit["id"] for hit in shown["hits"]] == [memory_id]
        entries = (await _ok(agent, "audit", {"memory_id": memory_id}))["entries"]
        assert [entry["action"] for entry in entries] == ["invalidate", "supersede", "create"]
        assert {entry["actor"] for entry in entries} == {key_actor(AGENT_KEY)}
        await _refused(agent, "audit", {"namespace": "b"}, "forbidden")


# Text only the database or a traceback would put in an answer.
DATABASE_TEXT = ("asyncpg", "SQLSTATE", "DETAIL", "Traceback", "out of range for", "violates")
BEYOND = "0001-01-01T00:00:00+01:00"  # in Python's years as written, before year 1 in UTC


async def _stored_state(dsn: str) -> tuple[object, ...]:
    """Every memory's identity, last change and validity, and the versions and audit entries
    kept: what a refused call must leave as it was."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            """SELECT md5(string_agg(concat_ws('|', id, updated_at, valid_until, invalid_reason),
                                     ',' ORDER BY id)) AS memories,
                      (SELECT count(*) FROM memory_versions) AS versions,
                      (SELECT count(*) FROM memory_audit) AS audited
               FROM memories"""
        )
    finally:
        await connection.close()
    return tuple(row)


def _hostile_calls(mine: str, elsewhere: str) -> list[tuple[str, dict[str, Any], str]]:
    """(tool, arguments, code) of the versions tools: wrong types, bad ids, bad times, text a
    database cannot hold, bounds, and ids and namespaces outside the key's scope."""
    unknown = str(uuid.UUID(int=uuid.UUID(mine).int ^ 1))
    bad_ids: list[object] = [None, 1, [], "not-a-uuid", mine + "0", "a\x00b", "x" * 10_000]
    calls: list[tuple[str, dict[str, Any], str]] = []
    for tool in ("history", "invalidate"):
        calls += [(tool, {"id": bad}, "invalid_request") for bad in bad_ids]
        calls += [
            (tool, {}, "invalid_request"),
            (tool, {"id": mine, "colour": 1}, "invalid_request"),
        ]
        calls += [(tool, {"id": unknown}, "not_found"), (tool, {"id": elsewhere}, "not_found")]
    for at in ("2030-01-01T00:00:00", "now", "2024-02-30T00:00:00Z", 1e308, [], {"a": 1}):
        calls.append(("invalidate", {"id": mine, "at": at}, "invalid_request"))
    for at in (BEYOND, "9999-12-31T23:59:59-14:00", "2019-01-01T00:00:00Z"):
        calls.append(
            ("invalidate", {"id": mine, "at": at}, "invalid_input")
        )  # the last: before valid_from
    for reason in ("", "x" * 1_001, 5, ["r"]):
        calls.append(("invalidate", {"id": mine, "reason": reason}, "invalid_request"))
    for reason in ("a\x00b", "   "):
        calls.append(
            ("invalidate", {"id": mine, "reason": reason}, "invalid_input|invalid_request")
        )
    for namespace in ("", "n" * 300, 5, ["agent-a"]):
        calls.append(("audit", {"namespace": namespace}, "invalid_request"))
    for namespace in ("b", "agent-a\x00", "agent-ab", "*", "team"):
        calls.append(("audit", {"namespace": namespace}, "forbidden|invalid_input"))
    for limit in (0, -1, 1_001, 10**30, 1.5, "many", None):
        calls.append(("audit", {"limit": limit}, "invalid_request"))
    for before in ("2024-01-01T00:00:00", "yesterday", 1e308, BEYOND):
        calls.append(("audit", {"before": before}, "invalid_request|invalid_input"))
    calls.append(("audit", {"memory_id": "not-a-uuid"}, "invalid_request"))
    return calls


async def test_http_hostile_arguments_to_the_versions_tools(
    server: ServerThread, migrated_dsn: str
) -> None:
    async with _connected(_http(server.url, ADMIN_KEY)) as admin:
        stored = await _ok(admin, "remember", {"content": "Secret of b.", "namespace": "b"})
        elsewhere = stored["memories"][0]["id"]
    async with _connected(_http(server.url, AGENT_KEY)) as agent:
        fact = {"content": "Ada lives in Oslo.", "key": "ada", "valid_from": "2020-01-01T00:00:00Z"}
        mine = (await _ok(agent, "remember", {"memories": [fact]}))["memories"][0]["id"]
        await _ok(agent, "remember", {"memories": [{**fact, "content": "Ada lives in Rome."}]})
        before = await _stored_state(migrated_dsn)
        for tool, arguments, code in _hostile_calls(mine, elsewhere):
            result = await _call(agent, tool, arguments)
            where = f"{tool} {str(arguments)[:200]}"
            assert result.is_error, where
            assert result.structured_content is not None, where
            error = result.structured_content["error"]
            assert error["code"] in code.split("|"), (where, error)
            assert set(error) == {"code", "message"}
            assert not any(text in error["message"] for text in DATABASE_TEXT), (where, error)
        assert await _stored_state(migrated_dsn) == before
        versions = (await _ok(agent, "history", {"id": mine}))["versions"]
        assert [v["content"] for v in versions] == ["Ada lives in Oslo.", "Ada lives in Rome."]
        assert versions[-1]["valid_until"] is None


# Counts a client may get wrong: out of bounds, not whole, not a number (JSON's true and "1"
# are refused, not read as 1). NaN is not here: MCP's client sends it as null, the default.
HOSTILE_NEIGHBOURS: tuple[object, ...] = (-1, 9, 10**30, 1.5, 1.0, "1", True, [], {"n": 1})


async def test_hostile_neighbours_to_recall_over_mcp_and_rest(server: ServerThread) -> None:
    async with _connected(_http(server.url, AGENT_KEY)) as agent:
        turns = [{"content": f"turn {i} of the chat", "metadata": {"session": 1}} for i in range(3)]
        await _ok(agent, "remember", {"memories": turns})
        for value in HOSTILE_NEIGHBOURS:
            result = await _call(agent, "recall", {"query": "turn 1", "neighbours": value})
            where = f"neighbours={value!r}"
            assert result.is_error, where
            assert result.structured_content is not None, where
            error = result.structured_content["error"]
            assert error["code"] == "invalid_request", (where, error)
            assert "neighbours" in error["message"], (where, error)
            assert not any(text in error["message"] for text in DATABASE_TEXT), (where, error)
        past = {"query": "turn 1", "neighbours": 1, "as_of": "2030-01-01T00:00:00Z"}
        result = await _call(agent, "recall", past)
        assert result.is_error
        assert result.structured_content is not None
        assert result.structured_content["error"]["code"] == "invalid_input"
        around = await _ok(agent, "recall", {"query": "turn 1", "k": 3, "neighbours": 1})
        assert len(around["hits"]) == 3
    headers = {"X-API-Key": AGENT_KEY}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
        for value in HOSTILE_NEIGHBOURS:
            body = {"query": "turn 1", "namespaces": ["agent-a"], "neighbours": value}
            response = await client.post("/v1/recall", json=body)
            assert response.status_code == 422, (value, response.text)
            assert "neighbours" in response.json()["error"]["message"]


def test_http_without_a_valid_key_is_401(server: ServerThread) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for extra in ({}, {"Authorization": "Bearer not-a-key-at-all-000"}):
            response = client.post("/mcp", json=initialize, headers={**headers, **extra})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
