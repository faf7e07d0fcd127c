"""Bulk import of JSONL: one memory per line, bad lines reported and skipped, re-runnable.

A line is what ``export`` writes (see ``transfer``); its namespace overrides the default.
Re-running an import stores nothing twice: unkeyed memories are identified by their text, keyed
ones by their key. A memory already stored is remembered again as ``remember`` does it: unkeyed,
its metadata merged (the line's keys win) and the line's expiry taken; keyed, the line's text,
metadata and expiry replace the stored ones. Either way it keeps its own id and ``created_at``.
A new memory takes the line's ``created_at``. A line's vector is stored as given when its space
is the store's (nothing embedded); a vector of another space is dropped and the text embedded
afresh (counted in ``embedded_afresh``).
Lines come as bytes (a file read in binary) or text; a line that is not UTF-8, not JSON, or holds
anything ``remember`` would refuse is rejected with its reason, and the others are stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pgrecall.errors import InvalidInputError
from pgrecall.ingest.prepare import prepare_one
from pgrecall.records import MemoryInput
from pgrecall.store import MemoryStore
from pgrecall.transfer.lines import parse_line

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
    embedded_afresh: int = 0  # lines whose vector was of another space than the store's
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
    space = store.space

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
            prepared = prepare_one(
                item,
                default_namespace=None,
                max_chars=store.settings.max_content_chars,
                templates=store.templates,
                space=space,
                position=None,
            )
        except InvalidInputError as exc:
            report.rejected.append(Rejected(number, str(exc)))
            continue
        if item.embedding is not None and prepared.vector is None:
            report.embedded_afresh += 1
        batch.append(item)
        if len(batch) >= IMPORT_BATCH:
            await flush()
    await flush()
    return report
