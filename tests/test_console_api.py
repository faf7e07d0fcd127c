"""What the console reads beyond the first API, over real HTTP: the key's namespaces with their
last write, writes over time, retrying one failed memory; and the console's files and headers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from pgrecall.db.params import SqlParams
from pgrecall.transfer.exporter import ExportScope

from .conftest import mark_failed
from .http_server import ServerThread, api_client

KEY_A = "console-key-a-0123456789"
KEY_PREFIX = "console-key-team-012345"
ADMIN = "console-key-admin-012345"
KEYS = {KEY_A: ["a"], KEY_PREFIX: ["team_*"], ADMIN: ["*"]}


@pytest.fixture
def api_keys() -> dict[str, list[str]]:
    return KEYS


def _remember(client: httpx.Client, *memories: dict[str, object]) -> list[str]:
    answer = client.post("/v1/memories", json={"memories": list(memories)})
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["memories"]]


def test_namespaces_are_those_of_the_key_with_counts_and_last_write(
    server: ServerThread,
) -> None:
    with api_client(server, ADMIN) as admin:
        before = datetime.now(UTC)
        _remember(
            admin,
            {"namespace": "a", "content": "First of a."},
            {"namespace": "a", "content": "Second of a."},
            {"namespace": "b", "content": "Only in b."},
            {"namespace": "team_x", "content": "Team x."},
            {"namespace": "teamXy", "content": "Not team_: the underscore is no wildcard."},
        )
        everything = admin.get("/v1/namespaces").json()["namespaces"]
    assert sorted(n["namespace"] for n in everything) == ["a", "b", "teamXy", "team_x"]
    first = next(n for n in everything if n["namespace"] == "a")
    assert (first["memories"], first["embedded"], first["pending"], first["failed"]) == (2, 2, 0, 0)
    assert datetime.fromisoformat(first["last_write"]) >= before - timedelta(seconds=5)
    with api_client(server, KEY_A) as agent:
        assert [n["namespace"] for n in agent.get("/v1/namespaces").json()["namespaces"]] == ["a"]
    with api_client(server, KEY_PREFIX) as team:
        seen = team.get("/v1/namespaces").json()["namespaces"]
    assert [n["namespace"] for n in seen] == ["team_x"]


def test_writes_per_day_and_hour_in_the_key_scope(server: ServerThread) -> None:
    with api_client(server, ADMIN) as admin:
        ids = _remember(
            admin,
            {"namespace": "a", "content": "Written today."},
            {"namespace": "a", "content": "Written and changed today."},
            {"namespace": "b", "content": "Not a's."},
        )
        changed = admin.patch(f"/v1/memories/{ids[1]}", json={"metadata": {"v": 2}})
        assert changed.status_code == 200, changed.text
    with api_client(server, KEY_A) as agent:
        days = agent.get("/v1/writes").json()
        hours = agent.get("/v1/writes", params={"bucket": "hour", "buckets": 3}).json()
        named = agent.get("/v1/writes", params={"namespace": "a", "buckets": 1}).json()
        refused = agent.get("/v1/writes", params={"namespace": "b"})
        bad_bucket = agent.get("/v1/writes", params={"bucket": "week"})
        too_many = agent.get("/v1/writes", params={"buckets": 401})
    assert days["bucket"] == "day"
    assert len(days["writes"]) == 30
    assert [w["created"] for w in days["writes"]] == [0] * 29 + [2]
    assert [w["updated"] for w in days["writes"]] == [0] * 29 + [1]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(days["writes"][-1]["start"]) in (today, today - timedelta(days=1))
    starts = [datetime.fromisoformat(w["start"]) for w in hours["writes"]]
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(hours=1)] * 2
    assert sum(w["created"] for w in hours["writes"]) == 2
    assert named["writes"][0]["created"] == 2
    assert refused.status_code == 403
    assert bad_bucket.status_code == 422
    assert too_many.status_code == 422


async def test_retry_one_failed_memory(server: ServerThread, migrated_dsn: str) -> None:
    with api_client(server, ADMIN) as admin:
        failed, fine, other = _remember(
            admin,
            {"namespace": "a", "content": "The model refused this one."},
            {"namespace": "a", "content": "This one is embedded."},
            {"namespace": "b", "content": "Failed, but in b."},
        )
    await mark_failed(migrated_dsn, failed, "model refused the input")
    await mark_failed(migrated_dsn, other, "model refused the input")
    with api_client(server, KEY_A) as agent:
        listed = agent.get("/v1/memories", params={"namespace": "a", "status": "failed"}).json()
        assert [m["embed_error"] for m in listed["memories"]] == ["model refused the input"]
        retried = agent.post(f"/v1/memories/{failed}:retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] in ("pending", "embedded")
        not_failed = agent.post(f"/v1/memories/{fine}:retry")
        hidden = agent.post(f"/v1/memories/{other}:retry")
    assert not_failed.status_code == 409
    assert "not failed" in not_failed.json()["error"]["message"]
    assert hidden.status_code == 404  # another namespace's id answers as an unknown one
    with api_client(server, ADMIN) as admin:
        assert admin.get(f"/v1/memories/{other}").json()["status"] == "failed"


def test_console_files_carry_a_strict_policy(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        redirect = anonymous.get("/console")
        page = anonymous.get("/console/")
        script = anonymous.get("/console/js/main.js")
        style = anonymous.get("/console/console.css")
        missing = anonymous.get("/console/../pyproject.toml")
        unknown = anonymous.get("/console/js/nothing.js")
        api = anonymous.get("/v1/namespaces")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/console/"
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "require-trusted-types-for 'script'" in policy
    assert "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404
    assert unknown.status_code == 404
    assert unknown.headers["content-security-policy"] == policy
    assert api.status_code == 401  # the console's files are public; the data is not


@pytest.mark.parametrize(
    ("scope", "matches"),
    [
        (ExportScope(names=("a",)), ["a"]),
        (ExportScope(prefixes=("t_",)), ["t_1"]),
        (ExportScope(names=("b",), prefixes=("50%",)), ["50%x", "b"]),
        (ExportScope.everything(), ["50%x", "500", "a", "b", "t_1", "tx1"]),
    ],
)
async def test_a_scope_in_sql_matches_names_and_literal_prefixes(
    migrated_dsn: str, scope: ExportScope, matches: list[str]
) -> None:
    params = SqlParams(first=2)  # $1 is the list of names below
    condition = scope.condition(params, column="name")
    connection = await asyncpg.connect(migrated_dsn)
    try:
        rows = await connection.fetch(
            f"SELECT name FROM unnest($1::text[]) AS name WHERE {condition}",
            ["a", "b", "t_1", "tx1", "50%x", "500"],
            *params.values,
        )
    finally:
        await connection.close()
    assert sorted(row["name"] for row in rows) == matches
