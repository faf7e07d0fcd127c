from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pgrecall.http.app import is_loopback

from .conftest import store_settings
from .http_server import ServerThread
from .ollama_standin import OllamaStandin


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgrecall-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pgrecall(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    return subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", *arguments],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_migrate_on_the_embedded_default(data_dir: Path) -> None:
    completed = _pgrecall("migrate", PGRECALL_DATA_DIR=str(data_dir), PGRECALL_EMBEDDER="local")
    assert completed.returncode == 0, completed.stderr
    assert "pgvector 0.8" in completed.stdout
    assert "vector(384)" in completed.stdout
    assert "hnsw (((embedding)::vector(384)) vector_ip_ops)" in completed.stdout
    # The server was let go when the command ended.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    again = _pgrecall("migrate", PGRECALL_DATA_DIR=str(data_dir), PGRECALL_EMBEDDER="local")
    assert again.returncode == 0, again.stderr


def test_bad_settings_are_one_clear_error(data_dir: Path) -> None:
    completed = _pgrecall(
        "migrate",
        PGRECALL_DATA_DIR=str(data_dir),
        PGRECALL_EMBED_DIMENSIONS="-1",
        PGRECALL_EMBEDDER="gpu",
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "PGRECALL_EMBED_DIMENSIONS='-1'" in completed.stderr
    assert "PGRECALL_EMBEDDER='gpu'" in completed.stderr


def test_garbage_settings_are_one_line_and_exit_2(data_dir: Path) -> None:
    garbage = {
        "PGRECALL_REEMBED_RATE": "nan",
        "PGRECALL_REEMBED_BATCH_SIZE": "0",
        "PGRECALL_SPACE_RECHECK_SECONDS": "1e400",
        "PGRECALL_RECALL_NEIGHBOURS": "lots",
    }
    completed = _pgrecall("reembed", PGRECALL_DATA_DIR=str(data_dir), **garbage)
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: invalid settings: ")
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    for variable, value in garbage.items():
        assert f"{variable}={value!r}: " in completed.stderr
    assert completed.stdout == ""


def test_bad_secrets_are_named_never_shown(data_dir: Path) -> None:
    completed = _pgrecall(
        "migrate",
        PGRECALL_DATA_DIR=str(data_dir),
        PGRECALL_API_KEYS='{"valid-key-0123456789-secret": ["a"], "short-secret": ["b"]}',
        PGRECALL_DATABASE_URL="mysql://ada:hunter2@db.example/mem",
    )
    assert completed.returncode == 2
    assert "PGRECALL_API_KEYS=<hidden>: every API key needs at least 16" in completed.stderr
    assert "mysql://ada:***@db.example/mem" in completed.stderr
    for secret in ("valid-key-0123456789-secret", "short-secret", "hunter2"):
        assert secret not in completed.stderr + completed.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:hunter2@127.0.0.1:1/db", "127.0.0.1:1"),
        ("postgresql://127.0.0.1:hunter2/db", "cannot be used"),  # the driver quotes the port
    ],
)
def test_unreachable_database_is_one_clear_error(url: str, shown: str) -> None:
    completed = _pgrecall("migrate", PGRECALL_DATABASE_URL=url)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert shown in completed.stderr
    assert "hunter2" not in completed.stderr


def test_doctor_reports_every_check(ollama: OllamaStandin, data_dir: Path) -> None:
    environment = {
        "PGRECALL_OLLAMA_URL": ollama.url,
        "PGRECALL_EMBED_MODEL": "nomic-embed-text",
        "PGRECALL_DATA_DIR": str(data_dir),
    }
    assert _pgrecall("migrate", **environment).returncode == 0
    completed = _pgrecall("doctor", "--json", **environment)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    checks = {check["name"]: check for check in json.loads(completed.stdout)}
    assert checks["ollama reachable"]["detail"].endswith("version 0.33.0")
    assert checks["model present"]["detail"] == "nomic-embed-text:latest"
    assert checks["embedding capability"]["ok"]
    assert checks["model size"]["detail"].startswith("768 dimensions")
    assert checks["database column"]["detail"] == "vector(768) matches the model"

    mismatch = _pgrecall("doctor", **{**environment, "PGRECALL_EMBED_MODEL": "all-minilm"})
    assert mismatch.returncode == 1
    assert "vector(768) but the model makes 384-dimensional vectors" in mismatch.stdout

    missing = _pgrecall("doctor", **{**environment, "PGRECALL_EMBED_MODEL": "bge-m3"})
    assert missing.returncode == 1
    assert "run pgrecall pull bge-m3:latest" in missing.stdout


def test_doctor_fails_when_ollama_is_down(ollama: OllamaStandin, data_dir: Path) -> None:
    url = ollama.url
    ollama.stop()
    completed = _pgrecall("doctor", PGRECALL_OLLAMA_URL=url, PGRECALL_DATA_DIR=str(data_dir))
    assert completed.returncode == 1
    assert f"not reachable at {url}" in completed.stdout


def test_pull_shows_progress_and_fails_clearly(ollama: OllamaStandin) -> None:
    pulled = _pgrecall("pull", "bge-m3", PGRECALL_OLLAMA_URL=ollama.url)
    assert pulled.returncode == 0, pulled.stderr
    assert "bge-m3 is ready" in pulled.stdout
    unknown = _pgrecall("pull", "no-such-model", PGRECALL_OLLAMA_URL=ollama.url)
    assert unknown.returncode == 2
    assert "file does not exist" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def _store_env(dsn: str) -> dict[str, str]:
    return {"PGRECALL_DATABASE_URL": dsn, "PGRECALL_EMBEDDER": "local"}


def test_remember_recall_get_list_forget_stats(migrated_dsn: str) -> None:
    environment = _store_env(migrated_dsn)
    remembered = _pgrecall(
        "remember",
        "The user's dog is called Rex.",
        "The user works night shifts.",
        "--namespace",
        "agent",
        "--metadata",
        '{"source": "chat"}',
        "--json",
        **environment,
    )
    assert remembered.returncode == 0, remembered.stderr
    ids = [item["id"] for item in json.loads(remembered.stdout)["memories"]]
    assert len(ids) == 2

    plain = _pgrecall("remember", "Rex is a beagle.", "-n", "agent", **environment)
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.split()) == 1

    recalled = _pgrecall(
        "recall", "What is the name of the pet?", "-n", "agent", "-k", "2", "--json", **environment
    )
    assert recalled.returncode == 0, recalled.stderr
    hits = json.loads(recalled.stdout)["hits"]
    assert len(hits) == 2
    assert set(hits[0]) == {
        "id",
        "namespace",
        "content",
        "score",
        "metadata",
        "key",
        "created_at",
        "expires_at",
        "vector_score",
        "keyword_score",
        "version",
        "valid_from",
        "valid_until",
    }
    assert hits[0]["content"] in ("The user's dog is called Rex.", "Rex is a beagle.")
    assert hits[0]["score"] >= hits[1]["score"]

    filtered = _pgrecall(
        "recall", "pet", "-n", "agent", "--filter", '{"source": "chat"}', "--json", **environment
    )
    assert {hit["metadata"]["source"] for hit in json.loads(filtered.stdout)["hits"]} == {"chat"}

    got = _pgrecall("get", ids[0], "--json", **environment)
    assert json.loads(got.stdout)["content"] == "The user's dog is called Rex."

    listed = _pgrecall("list", "-n", "agent", "--limit", "2", "--json", **environment)
    assert [m["content"] for m in json.loads(listed.stdout)["memories"]] == [
        "Rex is a beagle.",
        "The user works night shifts.",
    ]
    assert "next page: --cursor" in listed.stderr

    forgotten = _pgrecall("forget", ids[1], "--json", **environment)
    assert json.loads(forgotten.stdout) == {"forgotten": 1}

    stats = json.loads(_pgrecall("stats", "--json", **environment).stdout)
    assert stats["memories"] == 2
    (agent,) = stats["namespaces"]
    assert agent.pop("last_write").startswith(str(datetime.now(UTC).year))
    assert agent == {"namespace": "agent", "memories": 2, "embedded": 2, "pending": 0, "failed": 0}
    assert (stats["pending"], stats["failed"], stats["oldest_pending_seconds"]) == (0, 0, None)
    assert stats["space"].startswith("local:multilingual-e5-small-q4")


def test_import_reports_bad_lines_and_is_safe_to_rerun(migrated_dsn: str, tmp_path: Path) -> None:
    lines = [
        json.dumps({"content": "first memory"}),
        "not json",
        json.dumps({"text": "second memory", "metadata": {"n": 2}}),
        json.dumps({"content": ""}),
        json.dumps({"content": "elsewhere", "namespace": "other"}),
        json.dumps({"content": "keyed", "key": "k1"}),
        json.dumps({"metadata": {}}),
        json.dumps({"content": "bad metadata", "metadata": [1]}),
    ]
    source = tmp_path / "memories.jsonl"
    source.write_text("\n".join(lines) + "\n")
    environment = _store_env(migrated_dsn)
    for _ in range(2):
        completed = _pgrecall("import", str(source), "-n", "imported", "--json", **environment)
        assert completed.returncode == 1, completed.stderr  # some lines were rejected
        report = json.loads(completed.stdout)
        assert report["stored"] == 4
        assert [r["line"] for r in report["rejected"]] == [2, 4, 7, 8]
        assert "not JSON" in report["rejected"][0]["reason"]
        assert "line 2: not JSON" in completed.stderr
    assert report["created"] == 0  # the second run found everything already stored
    stats = json.loads(_pgrecall("stats", "--json", **environment).stdout)
    assert {n["namespace"]: n["memories"] for n in stats["namespaces"]} == {
        "imported": 3,
        "other": 1,
    }
    piped = subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", "import", "-", "-n", "piped"],
        input=json.dumps({"content": "from stdin"}) + "\n",
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert "1 stored (1 new), 0 rejected" in piped.stdout


def test_import_rejects_a_line_it_cannot_store_and_stores_the_rest(
    migrated_dsn: str, tmp_path: Path
) -> None:
    deep = '{"a": ' * 100_000 + "1" + "}" * 100_000
    lines = [
        json.dumps({"content": "first"}).encode(),
        b'{"content": "lone \\ud800 surrogate"}',
        b'{"content": "not utf-8 \xff\xfe"}',
        json.dumps({"content": "far future", "expires_at": "9999-12-31T23:59:59-14:00"}).encode(),
        json.dumps({"content": "deep", "metadata": {"m": deep[:5_000]}}).encode(),
        f'{{"content": "nested", "metadata": {deep}}}'.encode(),
        b'{"content": "[/x] markup in a bad line", "key": 5}',
        json.dumps({"content": "last", "expires_at": "2999-01-01T00:00:00+00:00"}).encode(),
    ]
    source = tmp_path / "hostile.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    environment = _store_env(migrated_dsn)
    completed = _pgrecall("import", str(source), "-n", "hostile", **environment)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "3 stored (3 new), 5 rejected" in completed.stdout
    rejected = [line for line in completed.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in rejected] == [
        "line 2",
        "line 3",
        "line 4",
        "line 6",
        "line 7",
    ]
    assert "lone surrogate" in rejected[0]
    assert "not UTF-8 text: byte 0xff" in rejected[1]
    assert re.search("expires_at .* is out of range", rejected[2])
    assert "nested too deeply" in rejected[3]
    assert "key must be" in rejected[4]
    listed = _pgrecall("list", "-n", "hostile", "--json", **environment)
    assert sorted(m["content"] for m in json.loads(listed.stdout)["memories"]) == [
        "deep",
        "first",
        "last",
    ]


def test_stored_text_is_printed_as_it_is(migrated_dsn: str) -> None:
    environment = {**_store_env(migrated_dsn), "COLUMNS": "300"}  # tables wrap no cell
    text = "price is [/x] today [bold]not bold[/bold] \\[escaped] \x1b[2Jcleared"
    remembered = _pgrecall(
        "remember", text, "-n", "[/ns]", "--metadata", '{"note": "[/y]"}', **environment
    )
    assert remembered.returncode == 0, remembered.stderr
    memory_id = remembered.stdout.strip()
    for arguments in (
        ["recall", "price", "-n", "[/ns]"],
        ["list", "-n", "[/ns]"],
        ["get", memory_id],
    ):
        shown = _pgrecall(*arguments, **environment)
        assert shown.returncode == 0, (arguments, shown.stderr)
        assert text.replace("\x1b", "\\x1b") in shown.stdout, arguments
        assert "\x1b" not in shown.stdout
    assert "[/y]" in _pgrecall("get", memory_id, **environment).stdout
    assert "[/ns]" in _pgrecall("stats", **environment).stdout
    missing = _pgrecall("recall", "q", "-n", "[/nowhere]", **environment)
    assert missing.returncode == 2
    assert "no memories in namespace '[/nowhere]'" in missing.stderr


def test_user_mistakes_are_one_line_errors(migrated_dsn: str) -> None:
    environment = _store_env(migrated_dsn)
    for arguments, message in [
        (["remember", "x", "-n", "a", "--metadata", "[1]"], "metadata must be a JSON object"),
        (["remember", "   ", "-n", "a"], "empty or only whitespace"),
        (["recall", "q", "-n", "nowhere"], "no memories in namespace 'nowhere'"),
        (["recall", "q", "-n", "a", "--filter", "{bad"], "filter is not valid JSON"),
        (["get", "123"], "not a memory id"),
        (["forget", "-n", "a"], "forget needs ids"),
        (["import", "/nonexistent.jsonl"], "cannot read /nonexistent.jsonl"),
    ]:
        completed = _pgrecall(*arguments, **environment)
        assert completed.returncode == 2, (arguments, completed.stdout, completed.stderr)
        assert message in completed.stderr, (arguments, completed.stderr)
        assert "Traceback" not in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_demo_runs_on_the_embedded_default(data_dir: Path) -> None:
    completed = _pgrecall("demo", PGRECALL_DATA_DIR=str(data_dir))
    assert completed.returncode == 0, completed.stderr
    assert "Ada is allergic to peanuts." in completed.stdout
    assert "What should I avoid when ordering food for Ada?" in completed.stdout
    assert (data_dir / "demo" / "postgres").is_dir()


def test_serve_refuses_to_bind_beyond_loopback_without_keys() -> None:
    completed = _pgrecall("serve", "--host", "0.0.0.0")  # noqa: S104 - the refusal is the test
    assert completed.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in completed.stderr
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")  # noqa: S104
    assert not is_loopback("example.org")


def test_the_cli_prints_what_the_http_api_answers(migrated_dsn: str) -> None:
    """One front-end kit: ``--json`` prints the very body the HTTP API sends for the same call."""
    environment = _store_env(migrated_dsn)
    remembered = _pgrecall(
        "remember", "Ada's flight to Lisbon leaves on Friday.", "Ada runs every morning.",
        "-n", "ada", "--metadata", '{"source": "chat"}', "--json", **environment,
    )  # fmt: skip
    assert remembered.returncode == 0, remembered.stderr
    first = json.loads(remembered.stdout)["memories"][0]["id"]
    server = ServerThread(store_settings(database_url=migrated_dsn)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answers = {
                "recall": client.post(
                    "/v1/recall", json={"query": "When is her trip?", "namespaces": ["ada"]}
                ),
                "get": client.get(f"/v1/memories/{first}"),
                "list": client.get("/v1/memories", params={"namespace": "ada"}),
                "stats": client.get("/v1/stats", params={"namespace": "ada"}),
            }
    finally:
        server.stop()
    printed = {
        "recall": _pgrecall("recall", "When is her trip?", "-n", "ada", "--json", **environment),
        "get": _pgrecall("get", first, "--json", **environment),
        "list": _pgrecall("list", "-n", "ada", "--json", **environment),
        "stats": _pgrecall("stats", "-n", "ada", "--json", **environment),
    }
    for name, completed in printed.items():
        assert completed.returncode == 0, completed.stderr
        assert answers[name].status_code == 200, answers[name].text
        assert json.loads(completed.stdout) == answers[name].json(), name
    assert answers["recall"].json()["hits"][0]["id"] == first
