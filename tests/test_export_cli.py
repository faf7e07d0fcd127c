"""`pgrecall export` as a user runs it: JSONL on stdout or into a file, read back by import."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from .ollama_standin import OllamaStandin
from .test_cli import _pgrecall

FIELDS = "namespace, content, metadata, key, expires_at, created_at, embedding::text, status"


def _environment(dsn: str, ollama: OllamaStandin) -> dict[str, str]:
    return {
        "PGRECALL_DATABASE_URL": dsn,
        "PGRECALL_OLLAMA_URL": ollama.url,
        "PGRECALL_EMBED_MODEL": "all-minilm",
    }


async def _rows(dsn: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(f"SELECT {FIELDS} FROM memories ORDER BY content")
    finally:
        await connection.close()
    return [tuple(row.values()) for row in rows]


def _seed(environment: dict[str, str]) -> None:
    for arguments in (
        ["The user's dog is called Rex.", "-n", "agent", "--metadata", '{"source": "chat"}'],
        ["The user lives in Lyon.", "-n", "agent", "--key", "home"],
        ["Release freeze on Friday.", "-n", "team"],
    ):
        completed = _pgrecall("remember", *arguments, **environment)
        assert completed.returncode == 0, completed.stderr


def test_export_to_stdout_and_to_a_file_then_import_embeds_nothing(
    migrated_dsn: str, empty_dsn: str, ollama: OllamaStandin, tmp_path: Path
) -> None:
    source = _environment(migrated_dsn, ollama)
    _seed(source)

    printed = _pgrecall("export", "--out", "-", "-n", "agent", **source)
    assert printed.returncode == 0, printed.stderr
    assert printed.stderr == ""
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert {line["content"] for line in lines} == {
        "The user's dog is called Rex.",
        "The user lives in Lyon.",
    }
    assert {line["namespace"] for line in lines} == {"agent"}
    assert all("vector" not in line for line in lines)

    backup = tmp_path / "backup.jsonl"
    written = _pgrecall("export", "--with-vectors", "--out", str(backup), **source)
    assert written.returncode == 0, written.stderr
    assert (written.stdout, written.stderr) == ("", "")  # no terminal: no progress, no chatter
    assert backup.stat().st_mode & 0o777 == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backup.jsonl"]
    assert len(backup.read_text().splitlines()) == 3

    embeds_before = len(list(ollama.embed_requests()))
    imported = _pgrecall("import", str(backup), "--json", **_environment(empty_dsn, ollama))
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert (report["created"], report["embedded_afresh"], report["rejected"]) == (3, 0, [])
    assert len(list(ollama.embed_requests())) == embeds_before
    assert asyncio.run(_rows(empty_dsn)) == asyncio.run(_rows(migrated_dsn))


def test_a_failed_export_leaves_the_previous_file_as_it_was(
    migrated_dsn: str, ollama: OllamaStandin, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.jsonl"
    backup.write_text("the previous backup\n")
    unreachable = {
        **_environment(migrated_dsn, ollama),
        "PGRECALL_DATABASE_URL": "postgresql://me:hunter2@127.0.0.1:1/db",
    }
    completed = _pgrecall("export", "--out", str(backup), **unreachable)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert backup.read_text() == "the previous backup\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backup.jsonl"]


def test_export_mistakes_are_one_line_errors(
    migrated_dsn: str, ollama: OllamaStandin, tmp_path: Path
) -> None:
    environment = _environment(migrated_dsn, ollama)
    for arguments, message in (
        (["-n", " "], "namespace must be a non-empty string"),
        (["--out", str(tmp_path / "missing" / "x.jsonl")], "cannot write"),
    ):
        completed = _pgrecall("export", *arguments, **environment)
        assert completed.returncode == 2, completed
        assert message in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1
        assert completed.stdout == ""


def test_a_terminal_sees_a_progress_bar(
    migrated_dsn: str, ollama: OllamaStandin, tmp_path: Path
) -> None:
    environment = _environment(migrated_dsn, ollama)
    _seed(environment)
    backup = tmp_path / "backup.jsonl"
    controller, terminal = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pgrecall.cli", "export", "--out", str(backup)],
        env={**clean, **environment, "TERM": "xterm", "COLUMNS": "100"},
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    try:
        while select.select([controller], [], [], 120)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        assert process.wait(timeout=60) == 0, shown
    assert b"exporting" in shown
    assert b"3/3" in shown
    assert len(backup.read_text().splitlines()) == 3
