"""What every command shares: the Typer app, consoles, error handling, opening the store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

import pgrecall
from pgrecall.cli.menu import MenuGroup
from pgrecall.config import Settings, load_settings
from pgrecall.errors import InvalidInputError, PgRecallError
from pgrecall.store import MemoryStore

app = typer.Typer(
    cls=MenuGroup,
    name="pgrecall",
    help="Semantic memory for AI agents on PostgreSQL + pgvector.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of text")
NAMESPACE_OPTION = typer.Option(..., "--namespace", "-n", help="the namespace (agent, user, …)")


def _print_version(wanted: bool) -> None:
    if wanted:
        out.print(f"pgrecall {pgrecall.__version__}", highlight=False)
        raise typer.Exit()


FIRST_STEP = "New here? Try: pgrecall demo  (the local model and database, nothing to set up)"


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Semantic memory for AI agents on PostgreSQL + pgvector."""
    if ctx.invoked_subcommand is None:
        # Typer's rich help prints itself and returns ""; plain help comes back as text.
        text = ctx.get_help()
        if text:
            print(text)
        out.print(FIRST_STEP, highlight=False)


def fail(exc: PgRecallError) -> typer.Exit:
    """Print one line for a user-facing error; the command exits 2."""
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True)
    return typer.Exit(code=2)


def settings(**overrides: Any) -> Settings:
    """Settings from the environment, or a clean exit listing every bad value."""
    try:
        return load_settings(**overrides)
    except PgRecallError as exc:
        raise fail(exc) from None


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; PgRecallError becomes one line on stderr and exit code 2."""
    try:
        return asyncio.run(work)
    except PgRecallError as exc:
        raise fail(exc) from None


def with_store(work: Callable[[MemoryStore], Awaitable[T]], config: Settings | None = None) -> T:
    """Open the store, do ``work``, close it."""

    async def go() -> T:
        async with await MemoryStore.open(config or settings()) as store:
            return await work(store)

    return run(go())


def print_answer(answer: BaseModel) -> None:
    """A front-end kit answer (``api.schemas``) as JSON on stdout: the body the HTTP API sends."""
    print(json.dumps(answer.model_dump(mode="json"), indent=2, ensure_ascii=False))


def print_json(value: object) -> None:
    """JSON on stdout (UUIDs and datetimes as text)."""
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def timestamp(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with its zone (``2024-01-01T00:00:00Z``) from an option, or a clean
    exit naming the option."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        problem = f"{option} takes an ISO 8601 time with its zone, e.g. 2024-01-01T00:00:00Z"
        raise fail(InvalidInputError(problem))
    return value
