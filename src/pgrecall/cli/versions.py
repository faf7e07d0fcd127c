"""Commands for memories that change: history, invalidate, audit."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from pgrecall.api.schemas import AuditEntryOut, AuditOut, HistoryOut, MemoryOut, VersionOut
from pgrecall.cli.base import (
    JSON_OPTION,
    NAMESPACE_OPTION,
    app,
    out,
    print_answer,
    timestamp,
    with_store,
)
from pgrecall.cli.memories import visible
from pgrecall.records import AuditEntry, Memory, Version
from pgrecall.store import MemoryStore


@app.command("history")
def history_command(
    memory: str | None = typer.Argument(None, help="memory id (or give --key and --namespace)"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    key: str | None = typer.Option(None, "--key", help="the memory's external key"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every version of a memory, oldest first.

    Each with the time span it was the current one."""
    versions: list[Version] = with_store(
        lambda store: store.history(memory, namespace=namespace, key=key)
    )
    if as_json:
        first = versions[0]
        print_answer(
            HistoryOut(
                id=first.memory_id,
                namespace=first.namespace,
                versions=[VersionOut.of(version) for version in versions],
            )
        )
        return
    table = Table("version", "current from", "until", "content", box=None)
    for version in versions:
        until = f"{version.current_until:%Y-%m-%d %H:%M:%S}" if version.current_until else "now"
        table.add_row(
            str(version.version),
            f"{version.current_from:%Y-%m-%d %H:%M:%S}",
            until,
            Text(visible(version.content)),
        )
    out.print(table)


@app.command("invalidate")
def invalidate_command(
    memory: str = typer.Argument(..., help="memory id"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    at: str | None = typer.Option(None, "--at", help="when it stopped being true (ISO; now)"),
    reason: str | None = typer.Option(None, "--reason", help="why it is no longer true"),
    as_json: bool = JSON_OPTION,
) -> None:
    """End a fact's validity without deleting it.

    Recall leaves it out from then on, unless asked to include invalid facts."""
    until = timestamp(at, "--at")

    async def work(store: MemoryStore) -> Memory:
        return await store.invalidate(memory, namespace=namespace, at=until, reason=reason)

    ended = with_store(work)
    if as_json:
        print_answer(MemoryOut.of(ended))
    else:
        out.print(f"{ended.id} valid until {ended.valid_until:%Y-%m-%d %H:%M:%S%z}")


@app.command("audit")
def audit_command(
    namespace: str = NAMESPACE_OPTION,
    memory: str | None = typer.Option(None, "--memory", help="one memory's entries"),
    before: str | None = typer.Option(None, "--before", help="entries older than (ISO)"),
    limit: int = typer.Option(100, "--limit", help="entries to show"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show who changed which memory of a namespace, newest first.

    Every create, supersede, update, invalidate and forget, with its actor."""
    older_than = timestamp(before, "--before")
    entries: list[AuditEntry] = with_store(
        lambda store: store.audit(namespace, memory=memory, before=older_than, limit=limit)
    )
    if as_json:
        print_answer(AuditOut(entries=[AuditEntryOut.of(entry) for entry in entries]))
        return
    table = Table("at", "action", "memory", "version", "actor", box=None)
    for entry in entries:
        table.add_row(
            f"{entry.at:%Y-%m-%d %H:%M:%S.%f}",
            entry.action,
            str(entry.memory_id),
            str(entry.version or ""),
            Text(visible(entry.actor)),
        )
    out.print(table)
