"""The ``pgrecall`` command: a thin layer over the library; errors become one line on stderr."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from pgrecall.config import Settings, load_settings
from pgrecall.db import inspect, migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import connect
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


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except PgRecallError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


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

    async def work() -> inspect.SchemaReport:
        return await _migrate(load_settings())

    report = _run(work())
    out.print(
        f"schema at {migrate.head_revision()} on PostgreSQL {report.server_version}, "
        f"pgvector {report.pgvector_version}"
    )
    out.print(f"memories.embedding: vector({report.vector_dimensions})")
    for definition in report.indexes:
        out.print(f"  {definition}", highlight=False)


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
