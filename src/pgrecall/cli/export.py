"""The export command: memories as JSONL that ``pgrecall import`` reads back."""

from __future__ import annotations

import sys

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pgrecall.cli.base import app, err, fail, with_store
from pgrecall.errors import InvalidInputError
from pgrecall.store import MemoryStore
from pgrecall.transfer.exporter import ExportScope, export_target, export_total, write_export


@app.command("export")
def export_command(
    namespace: list[str] | None = typer.Option(
        None, "--namespace", "-n", help="a namespace to export (repeat for several); default all"
    ),
    out: str = typer.Option("-", "--out", "-o", help="JSONL file to write, or - for stdout"),
    with_vectors: bool = typer.Option(
        False,
        "--with-vectors",
        help="add each vector and its embedding space: an import into the same space embeds "
        "nothing",
    ),
) -> None:
    """Export memories as JSONL that pgrecall import reads back.

    With --with-vectors each line carries its vector; --out replaces a file only once complete.
    """
    try:
        scope = ExportScope.of(namespace) if namespace else ExportScope.everything()
    except InvalidInputError as exc:
        raise fail(exc) from None
    # A bar only for a person watching: not in a pipe, not mixed into the JSONL on stdout.
    show_progress = out != "-" and sys.stdout.isatty() and err.is_terminal
    try:
        with export_target(out) as sink:

            async def work(store: MemoryStore) -> int:
                pages = store.export(scope, with_vectors=with_vectors)
                if not show_progress:
                    return await write_export(pages, sink)
                total = export_total(await store.stats(), scope)
                with Progress(
                    TextColumn("exporting"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err,
                ) as progress:
                    task = progress.add_task("export", total=total)
                    return await write_export(
                        pages, sink, lambda done: progress.update(task, completed=done)
                    )

            with_store(work)
    except OSError as exc:
        raise fail(InvalidInputError(f"cannot write {out}: {exc.strerror or exc}")) from None
