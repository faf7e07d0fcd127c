"""Admin commands: migrate, doctor, pull."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from pgrecall import doctor
from pgrecall.cli.base import (
    JSON_OPTION,
    app,
    err,
    out,
    print_json,
    run,
    settings,
    with_store,
)
from pgrecall.config import Settings
from pgrecall.db import inspect, migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import connect
from pgrecall.embedding.ollama.client import OllamaClient
from pgrecall.embedding.space import configured_space
from pgrecall.store import MemoryStore


async def _migrate(config: Settings) -> inspect.SchemaReport:
    dimensions = configured_space(config).dimensions
    async with database_dsn(config.database_url, config.data_dir) as dsn:
        await migrate.upgrade(
            dsn,
            dimensions,
            text_search_config=config.text_search_config,
            hnsw_ef_search=config.hnsw_ef_search,
        )
        connection = await connect(dsn)
        try:
            return await inspect.describe(connection)
        finally:
            await connection.close()


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema, and report it.

    The embedded PostgreSQL when PGRECALL_DATABASE_URL is not set.
    """
    report = run(_migrate(settings()))
    out.print(
        f"schema at {migrate.head_revision()} on PostgreSQL {report.server_version}, "
        f"pgvector {report.pgvector_version}"
    )
    out.print(f"memories.embedding: vector({report.vector_dimensions})")
    for definition in report.indexes:
        out.print(f"  {definition}", highlight=False)


@app.command("doctor")
def doctor_command(as_json: bool = JSON_OPTION) -> None:
    """Check that Ollama, the model and the database fit together.

    Ollama reachable, its version, the model pulled and able to embed, its size and the column's.
    """
    checks = run(doctor.run_checks(settings()))
    if as_json:
        print_json([dataclasses.asdict(check) for check in checks])
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
    """Pull an embedding model into Ollama."""
    config = settings()
    name = model or config.model

    async def work() -> None:
        client = OllamaClient(config.ollama_url, connect_timeout=config.ollama_connect_timeout)
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

    run(work())
    out.print(f"{name} is ready")


@app.command("index")
def index_command(
    rebuild: bool = typer.Option(
        False, "--rebuild", help="rebuild the HNSW graph in one pass (fastest after a bulk load)"
    ),
) -> None:
    """Move the memories of large namespaces into the HNSW graph now.

    The worker does it in the background otherwise.
    """

    async def work(store: MemoryStore) -> None:
        moved = await store.index(rebuild=rebuild)
        out.print(f"{moved} memories moved into the HNSW graph", highlight=False)

    with_store(work, settings(worker=False))


@app.command("worker")
def worker_command() -> None:
    """Embed pending memories until stopped (Ctrl-C or SIGTERM).

    It also indexes large namespaces; the batch in hand is finished before it stops.
    """

    async def work(store: MemoryStore) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        err.print("worker running; Ctrl-C stops it", highlight=False)
        await stop.wait()

    # The store's own background worker does the work; closing the store stops it cleanly.
    with_store(work, settings(worker=True))
