"""The ``pgrecall`` command: a thin layer over the library; errors become one line on stderr."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from pgrecall import doctor
from pgrecall.config import Settings, load_settings
from pgrecall.db import inspect, migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import connect
from pgrecall.embedding.ollama_http import OllamaClient
from pgrecall.embedding.space import configured_space
from pgrecall.errors import PgRecallError

app = typer.Typer(
    name="pgrecall",
    help="Semantic memory for AI agents on PostgreSQL + pgvector.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


@app.callback()
def _root() -> None:
    """Semantic memory for AI agents on PostgreSQL + pgvector."""


def _fail(exc: PgRecallError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(code=2)


def _settings() -> Settings:
    try:
        return load_settings()
    except PgRecallError as exc:
        raise _fail(exc) from None


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except PgRecallError as exc:
        raise _fail(exc) from None


async def _migrate(settings: Settings) -> inspect.SchemaReport:
    dimensions = configured_space(settings).dimensions
    async with database_dsn(settings.database_url, settings.data_dir) as dsn:
        await migrate.upgrade(dsn, dimensions)
        connection = await connect(dsn)
        try:
            return await inspect.describe(connection)
        finally:
            await connection.close()


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the schema (the embedded PostgreSQL when no DSN is set) and report it."""

    report = _run(_migrate(_settings()))
    out.print(
        f"schema at {migrate.head_revision()} on PostgreSQL {report.server_version}, "
        f"pgvector {report.pgvector_version}"
    )
    out.print(f"memories.embedding: vector({report.vector_dimensions})")
    for definition in report.indexes:
        out.print(f"  {definition}", highlight=False)


@app.command("doctor")
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="print the checks as JSON"),
) -> None:
    """Check Ollama (reachable, version, model, capability, size) and the database column."""
    checks = _run(doctor.run_checks(_settings()))
    if as_json:
        print(json.dumps([dataclasses.asdict(check) for check in checks], indent=2))
    else:
        for check in checks:
            mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
            out.print(f"{mark} {check.name}: {check.detail}", highlight=False)
    if not all(check.ok for check in checks):
        raise typer.Exit(code=1)


@app.command("pull")
def pull_command(
    model: str | None = typer.Argument(None, help="model to pull; default PGRECALL_EMBED_MODEL"),
) -> None:
    """Pull an embedding model into Ollama, with a progress bar."""
    settings = _settings()
    name = model or settings.model

    async def work() -> None:
        client = OllamaClient(settings.ollama_url, connect_timeout=settings.ollama_connect_timeout)
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
            ) as progress:
                task = progress.add_task(f"pulling {name}", total=None)
                async for step in client.pull(name):
                    progress.update(
                        task,
                        description=step.status,
                        total=step.total,
                        completed=step.completed or 0,
                    )
        finally:
            await client.aclose()

    _run(work())
    out.print(f"{name} is ready")


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
