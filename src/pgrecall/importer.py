"""Bulk import of JSONL: one memory per line, bad lines reported and skipped, re-runnable.

A line is ``{"content" or "text": ..., "namespace"?: ..., "metadata"?: {...}, "key"?: ...,
"expires_at"?: ISO-8601}``; its namespace overrides the default. Re-running an import stores
nothing twice: unkeyed memories are identified by their text, keyed ones by their key. Lines
come as bytes (a file read in binary) or text; a line that is not UTF-8, not JSON, or holds
anything ``remember`` would refuse is rejected with its reason, and the others are stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgrecall import validation
from pgrecall.errors import InvalidInputError
from pgrecall.ingest import prepare_one
from pgrecall.records import MemoryInput
from pgrecall.store import MemoryStore

IMPORT_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that was not imported, and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    """Counts so far (passed to the progress callback after every batch)."""

    lines: int = 0
    stored: int = 0
    created: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def decode_line(raw: str | bytes) -> str:
    """A line as text; InvalidInputError names the first byte that is not UTF-8."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"not UTF-8 text: byte {raw[exc.start]:#04x} at position {exc.start + 1}"
        ) from exc


def parse_line(text: str, default_namespace: str | None) -> MemoryInput:
    """One JSONL line as a MemoryInput; InvalidInputError says what is wrong with it."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise InvalidInputError("not JSON this importer reads: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidInputError(f"not JSON this importer reads: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidInputError("not a JSON object")
    content = document.get("content", document.get("text"))
    if content is None:
        raise InvalidInputError('no "content" (or "text") field')
    expires = document.get("expires_at")
    try:
        expires_at = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
    except ValueError as exc:
        raise InvalidInputError(f"expires_at is not an ISO-8601 timestamp: {expires!r}") from exc
    checked = validation.timestamp(expires_at, "expires_at")
    if checked is not None:
        validation.check_timestamp(checked, "expires_at")
    item = MemoryInput(
        content=content,
        namespace=document.get("namespace") or default_namespace,
        metadata=document.get("metadata"),
        key=document.get("key"),
        expires_at=expires_at,
    )
    if item.namespace is None:
        raise InvalidInputError("no namespace: give one on the line or with --namespace")
    return item


async def import_lines(
    store: MemoryStore,
    lines: Iterable[str | bytes],
    *,
    namespace: str | None,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import every valid line; invalid ones are listed in the report, not fatal."""
    report = ImportReport()
    batch: list[MemoryInput] = []

    async def flush() -> None:
        if batch:
            results = await store.remember(list(batch))
            report.stored += len(results)
            report.created += sum(result.created for result in results)
            batch.clear()
        if on_progress is not None:
            on_progress(report)

    for number, line in enumerate(lines, start=1):
        report.lines = number
        if not line.strip():
            continue
        try:
            item = parse_line(decode_line(line), namespace)
            prepare_one(
                item,
                default_namespace=None,
                max_chars=store.settings.max_content_chars,
                templates=store.templates,
                position=None,
            )
        except InvalidInputError as exc:
            report.rejected.append(Rejected(number, str(exc)))
            continue
        batch.append(item)
        if len(batch) >= IMPORT_BATCH:
            await flush()
    await flush()
    return report
