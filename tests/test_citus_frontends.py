"""The command line and the HTTP API on a Citus cluster (../shared/citus): every command and
every route a user reaches, against the session's distributed database (issue 23, point 1).

The commands run in-process through Typer's runner (the same app as the console script, without
a Python start-up per command: 20 commands cost 2-3 minutes as subprocesses on this loaded VM);
the HTTP API is ``pgrecall serve`` in a subprocess, over loopback. Both skip, saying why, where
../shared/citus is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from pgrecall.cli import app

from .test_serve import _serve

pytestmark = pytest.mark.timeout(300)


def _run(dsn: str, *arguments: str, **settings: str) -> str:
    """Run one command; what it printed, after asserting it succeeded."""
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PGRECALL_")}
    environment |= {"PGRECALL_DATABASE_URL": dsn, "PGRECALL_EMBEDDER": "local", **settings}
    result = CliRunner().invoke(app, list(arguments), env=environment)
    assert result.exit_code == 0, (arguments, result.output, result.exception)
    return result.stdout


def _cli(dsn: str, *arguments: str) -> Any:
    """Run one command with ``--json``; its answer."""
    return json.loads(_run(dsn, *arguments, "--json"))


def test_every_command_on_the_cluster(citus_dsn: str, tmp_path: Path) -> None:
    remembered = _cli(
        citus_dsn, "remember", "Ada likes green tea.", "Bob fixes bikes in Lisbon.",
        "-n", "ada", "--metadata", '{"source": "chat"}',
    )  # fmt: skip
    tea, bikes = (memory["id"] for memory in remembered["memories"])
    _cli(citus_dsn, "remember", "Elsewhere: a decoy about tea.", "-n", "other")
    home = _cli(citus_dsn, "remember", "Ada lives in London", "-n", "ada", "--key", "home")
    home_id = home["memories"][0]["id"]
    moved = _cli(citus_dsn, "remember", "Ada lives in Paris", "-n", "ada", "--key", "home")
    assert moved["memories"][0] == {**home["memories"][0], "created": False}

    for mode in ("vector", "keyword", "hybrid"):
        hits = _cli(citus_dsn, "recall", "Where does Ada live?", "-n", "ada", "--mode", mode)
        assert hits["hits"][0]["content"] == "Ada lives in Paris", mode
        assert {hit["namespace"] for hit in hits["hits"]} == {"ada"}, mode
    across = _cli(citus_dsn, "recall", "tea", "-n", "ada", "-n", "other", "--mode", "keyword")
    assert {hit["namespace"] for hit in across["hits"]} == {"ada", "other"}

    assert _cli(citus_dsn, "get", tea)["content"] == "Ada likes green tea."
    assert _cli(citus_dsn, "get", tea, "-n", "ada")["namespace"] == "ada"
    listed = _cli(citus_dsn, "list", "-n", "ada", "--limit", "2")["memories"]
    assert [memory["content"] for memory in listed] == [
        "Ada lives in Paris",
        "Bob fixes bikes in Lisbon.",
    ]
    assert _cli(citus_dsn, "list", "--pending")["memories"] == []

    history = _cli(citus_dsn, "history", "--key", "home", "-n", "ada")["versions"]
    assert [version["content"] for version in history] == [
        "Ada lives in London",
        "Ada lives in Paris",
    ]
    assert _cli(citus_dsn, "invalidate", home_id, "--reason", "moved")["invalid_reason"] == "moved"
    actions = [entry["action"] for entry in _cli(citus_dsn, "audit", "-n", "ada")["entries"]]
    assert actions[:2] == ["invalidate", "supersede"]
    assert actions.count("create") == 3

    exported = tmp_path / "ada.jsonl"
    _run(citus_dsn, "export", "-n", "ada", "-o", str(exported))
    assert len(exported.read_text().splitlines()) == 3
    imported = _cli(citus_dsn, "import", str(exported))
    assert (imported["stored"], imported["created"], imported["rejected"]) == (3, 0, [])

    # Namespaces above one row count as large here, so the graph takes ada's memories in.
    for arguments in (["index"], ["index", "--rebuild"]):
        printed = _run(citus_dsn, *arguments, PGRECALL_EXACT_SCAN_MAX_ROWS="1")
        assert printed.endswith("memories moved into the HNSW graph\n"), printed
        assert int(printed.split()[0]) >= (3 if arguments == ["index"] else 0), printed
    doctor = {check["name"]: check["ok"] for check in _cli(citus_dsn, "doctor")}
    assert doctor == {"local model": True, "database column": True, "active space": True}

    assert _cli(citus_dsn, "forget", bikes, "-n", "ada") == {"forgotten": 1}
    assert _cli(citus_dsn, "forget", tea) == {"forgotten": 1}
    assert _cli(citus_dsn, "forget", "-n", "other", "--filter", "{}") == {"forgotten": 1}
    stats = _cli(citus_dsn, "stats")
    assert [(n["namespace"], n["memories"]) for n in stats["namespaces"]] == [("ada", 1)]
    assert _cli(citus_dsn, "stats", "-n", "ada")["memories"] == 1


def test_the_http_api_on_the_cluster(citus_dsn: str, tmp_path: Path) -> None:
    """``pgrecall serve`` pointed at the coordinator: every route of the API."""
    with (
        _serve(citus_dsn, log=tmp_path / "serve.log") as (url, _),
        httpx.Client(base_url=f"{url}/v1", timeout=60) as client,
    ):
        stored = client.post(
            "/memories",
            json={
                "memories": [
                    {"content": "Cleo paints murals in Porto.", "namespace": "web"},
                    {"content": "Dan keeps bees.", "namespace": "web", "key": "dan"},
                    {"content": "Eve paints portraits.", "namespace": "elsewhere"},
                ]
            },
        )
        assert stored.status_code == 200, stored.text
        cleo, dan, _ = (memory["id"] for memory in stored.json()["memories"])

        for mode in ("vector", "keyword", "hybrid"):
            found = client.post(
                "/recall", json={"query": "who paints", "namespaces": ["web"], "mode": mode}
            )
            assert found.status_code == 200, (mode, found.text)
            assert found.json()["hits"][0]["id"] == cleo, mode
        both = client.post(
            "/recall", json={"query": "paints", "namespaces": ["web", "elsewhere"], "k": 5}
        )
        assert {hit["namespace"] for hit in both.json()["hits"]} == {"web", "elsewhere"}

        assert client.get(f"/memories/{dan}").json()["content"] == "Dan keeps bees."
        patched = client.patch(f"/memories/{dan}", json={"content": "Dan keeps two hives."})
        assert patched.status_code == 200, patched.text
        assert (patched.json()["content"], patched.json()["version"]) == ("Dan keeps two hives.", 2)
        ended = client.post(f"/memories/{dan}:invalidate", json={"reason": "sold the bees"})
        assert ended.json()["invalid_reason"] == "sold the bees"
        history = client.get(f"/memories/{dan}/history").json()["versions"]
        assert [version["content"] for version in history] == [
            "Dan keeps bees.",
            "Dan keeps two hives.",
        ]
        audit = client.get("/audit", params={"namespace": "web"}).json()["entries"]
        assert [entry["action"] for entry in audit][:2] == ["invalidate", "update"]

        listed = client.get("/memories", params={"namespace": "web"}).json()["memories"]
        assert {memory["id"] for memory in listed} == {cleo, dan}
        embedded = client.get("/memories", params={"status": "embedded"}).json()["memories"]
        assert len(embedded) == 3
        exported = client.get("/export", params={"namespace": "web"}).text.splitlines()
        assert sorted(json.loads(line)["content"] for line in exported) == [
            "Cleo paints murals in Porto.",
            "Dan keeps two hives.",
        ]

        assert client.delete(f"/memories/{cleo}").json() == {"forgotten": 1}
        assert client.get(f"/memories/{cleo}").status_code == 404
        forgotten = client.post("/memories:forget", json={"namespace": "elsewhere", "filter": {}})
        assert forgotten.json() == {"forgotten": 1}

        stats = client.get("/stats").json()
        assert (stats["memories"], stats["pending"]) == (1, 0)
        assert client.get("/stats", params={"namespace": "web"}).json()["memories"] == 1
        names = client.get("/namespaces").json()["namespaces"]
        assert [(n["namespace"], n["memories"]) for n in names] == [("web", 1)]
        writes = client.get("/writes", params={"namespace": "web"}).json()["writes"]
        # Counted from the memories still stored: Dan's, created, then changed.
        assert sum(bucket["created"] for bucket in writes) == 1
        assert sum(bucket["updated"] for bucket in writes) == 1
