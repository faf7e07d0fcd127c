"""Versions, as-of, valid time and the audit log over HTTP (issue 20, point 8), through a real
uvicorn server on 127.0.0.1."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from pgrecall.audit import key_actor

from .http_server import ServerThread, api_client

AGENT_KEY = "agent-a-key-0123456789"
OTHER_KEY = "agent-b-key-0123456789"
KEYS = {AGENT_KEY: ["agent-a"], OTHER_KEY: ["agent-b"]}


@pytest.fixture
def api_keys() -> dict[str, list[str]]:
    return KEYS


def _remember(client: httpx.Client, content: str, **fields: object) -> str:
    memory = {"namespace": "agent-a", "content": content, **fields}
    response = client.post("/v1/memories", json={"memories": [memory]})
    assert response.status_code == 200, response.text
    return str(response.json()["memories"][0]["id"])


def _recall(client: httpx.Client, query: str, **fields: object) -> list[str]:
    body = {"query": query, "namespaces": ["agent-a"], "mode": "keyword", **fields}
    response = client.post("/v1/recall", json=body)
    assert response.status_code == 200, response.text
    return [hit["content"] for hit in response.json()["hits"]]


def test_a_fact_that_changes_over_http(server: ServerThread) -> None:
    with api_client(server, AGENT_KEY) as agent, api_client(server, OTHER_KEY) as other:
        memory_id = _remember(agent, "Ada lives in London", key="home")
        _remember(agent, "Ada lives in Paris", key="home")

        history = agent.get(f"/v1/memories/{memory_id}/history")
        assert history.status_code == 200, history.text
        versions = history.json()["versions"]
        assert [(v["version"], v["content"]) for v in versions] == [
            (1, "Ada lives in London"),
            (2, "Ada lives in Paris"),
        ]
        assert versions[0]["current_until"] == versions[1]["current_from"]
        assert versions[1]["current_until"] is None

        assert _recall(agent, "Ada") == ["Ada lives in Paris"]
        as_of = versions[0]["current_until"]
        earlier = (datetime.fromisoformat(as_of) - timedelta(microseconds=1)).isoformat()
        assert _recall(agent, "Ada", as_of=earlier) == ["Ada lives in London"]
        listed = agent.get("/v1/memories", params={"namespace": "agent-a", "as_of": earlier})
        assert [m["content"] for m in listed.json()["memories"]] == ["Ada lives in London"]

        # Another key sees neither the history nor the audit of agent-a.
        assert other.get(f"/v1/memories/{memory_id}/history").status_code == 404
        assert other.get("/v1/audit", params={"namespace": "agent-a"}).status_code == 403

        ended = agent.post(f"/v1/memories/{memory_id}:invalidate", json={"reason": "moved again"})
        assert ended.status_code == 200, ended.text
        assert ended.json()["invalid_reason"] == "moved again"
        again = agent.post(f"/v1/memories/{memory_id}:invalidate", json={"reason": "and again"})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "conflict"
        assert "already invalid since" in again.json()["error"]["message"]
        kept = agent.get(f"/v1/memories/{memory_id}").json()
        assert (kept["valid_until"], kept["invalid_reason"]) == (
            ended.json()["valid_until"],
            "moved again",
        )
        assert _recall(agent, "Ada") == []
        assert _recall(agent, "Ada", include_invalid=True) == ["Ada lives in Paris"]

        assert agent.delete(f"/v1/memories/{memory_id}").json() == {"forgotten": 1}
        audit = agent.get("/v1/audit", params={"namespace": "agent-a"})
        assert audit.status_code == 200, audit.text
        entries = audit.json()["entries"]
        assert [e["action"] for e in entries] == ["forget", "invalidate", "supersede", "create"]
        assert {e["actor"] for e in entries} == {key_actor(AGENT_KEY)}
        assert AGENT_KEY not in audit.text


def test_valid_time_over_http(server: ServerThread) -> None:
    with api_client(server, AGENT_KEY) as agent:
        _remember(
            agent,
            "Ada lived in London",
            valid_from="2020-01-01T00:00:00Z",
            valid_until="2024-01-01T00:00:00Z",
        )
        assert _recall(agent, "London") == []
        assert _recall(agent, "London", valid_at="2022-06-01T00:00:00Z") == ["Ada lived in London"]
        bad = agent.post(
            "/v1/memories",
            json={
                "memories": [
                    {
                        "namespace": "agent-a",
                        "content": "x",
                        "valid_from": "2024-01-01T00:00:00Z",
                        "valid_until": "2020-01-01T00:00:00Z",
                    }
                ]
            },
        )
        assert bad.status_code == 422
        assert "valid_from must come before valid_until" in bad.text
        naive = agent.post(
            "/v1/recall",
            json={"query": "x", "namespaces": ["agent-a"], "as_of": "2024-01-01T00:00:00"},
        )
        assert naive.status_code == 422
