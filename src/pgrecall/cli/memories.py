"""Memory commands: remember, import, recall, get, list, forget, stats (history, invalidate
and audit are in versions.py)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pgrecall import validation
from pgrecall.api.schemas import (
    ForgetResponse,
    MemoryOut,
    PageOut,
    RecallResponse,
    RememberResponse,
    StatsOut,
)
from pgrecall.cli.base import (
    JSON_OPTION,
    NAMESPACE_OPTION,
    app,
    err,
    fail,
    out,
    print_answer,
    print_json,
    timestamp,
    with_store,
)
from pgrecall.errors import InvalidInputError
from pgrecall.recall.filters import parse_filter
from pgrecall.records import (
    MODES,
    EmbedStatus,
    Page,
    RecallOptions,
    RecallResult,
    Remembered,
    Stats,
)
from pgrecall.store import MemoryStore
from pgrecall.transfer.importer import ImportReport, import_lines

# Exit code of `pgrecall import` when some lines were rejected (the others are stored);
# errors that stop a command exit 2.
IMPORT_REJECTED_EXIT = 1


# Control characters but newline and tab, shown as escapes: a stored text must not drive the
# terminal (an ESC sequence can clear it, recolour it or set its title).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` safe to print on a terminal: control characters shown as escapes."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _json_argument(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        return parse_filter(text) if what == "filter" else validation.json_object(text, what)
    except InvalidInputError as exc:
        raise fail(exc) from None


@app.command("remember")
def remember_command(
    texts: list[str] = typer.Argument(..., help="one or more texts to remember"),
    namespace: str = NAMESPACE_OPTION,
    metadata: str | None = typer.Option(None, "--metadata", "-m", help="a JSON object"),
    key: str | None = typer.Option(None, "--key", help="external key (upserts; one text only)"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="true from (ISO time)"),
    valid_until: str | None = typer.Option(None, "--valid-until", help="true until (ISO time)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remember texts and print their ids.

    The same text twice in a namespace is one memory with one id; --key makes it upsertable,
    and a new text under a known key keeps the old one in its history.
    """
    document = _json_argument(metadata, "metadata")
    if key is not None and len(texts) != 1:
        raise fail(InvalidInputError("--key names one memory: give exactly one text"))
    start = timestamp(valid_from, "--valid-from")
    end = timestamp(valid_until, "--valid-until")

    async def work(store: MemoryStore) -> list[Remembered]:
        if key is not None:
            one = await store.remember(
                texts[0],
                namespace=namespace,
                metadata=document,
                key=key,
                valid_from=start,
                valid_until=end,
            )
            return [one]
        return await store.remember(
            texts, namespace=namespace, metadata=document, valid_from=start, valid_until=end
        )

    results = with_store(work)
    if as_json:
        print_answer(RememberResponse.of(results))
    else:
        for result in results:
            print(result.id)


@app.command("import")
def import_command(
    file: str = typer.Argument(..., help="JSONL file, or - for standard input"),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="namespace for lines that name none"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Import memories from a JSONL file or stdin; safe to re-run.

    One JSON object a line; a bad line is reported on stderr and skipped (exit 1).
    """
    # Read as bytes: a line that is not UTF-8 is rejected alone, not the whole file.
    stream: BinaryIO
    if file == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = Path(file).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise fail(InvalidInputError(f"cannot read {file}: {exc.strerror}")) from None
    started = time.monotonic()
    try:
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            TextColumn("{task.fields[stored]} stored, {task.fields[rate]:.0f}/s"),
            TimeElapsedColumn(),
            console=err,
            transient=as_json,
        ) as progress:
            task = progress.add_task("import", total=None, stored=0, rate=0.0)

            def show(report: ImportReport) -> None:
                rate = report.stored / max(time.monotonic() - started, 1e-9)
                progress.update(task, stored=report.stored, rate=rate)

            report = with_store(
                lambda store: import_lines(store, stream, namespace=namespace, on_progress=show)
            )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    rejected = [{"line": r.line, "reason": r.reason} for r in report.rejected]
    if as_json:
        print_json(
            {
                "lines": report.lines,
                "stored": report.stored,
                "created": report.created,
                "embedded_afresh": report.embedded_afresh,
                "rejected": rejected,
            }
        )
    else:
        out.print(f"{report.stored} stored ({report.created} new), {len(rejected)} rejected")
        if report.embedded_afresh:
            err.print(
                f"{report.embedded_afresh} vectors of another embedding space were dropped: "
                "their texts were embedded afresh",
                highlight=False,
            )
    for item in rejected:
        err.print(f"line {item['line']}: {item['reason']}", highlight=False, markup=False)
    if rejected:
        raise typer.Exit(code=IMPORT_REJECTED_EXIT)


@app.command("recall")
def recall_command(
    query: str = typer.Argument(..., help="what to look for"),
    namespace: list[str] = typer.Option(..., "--namespace", "-n", help="namespace(s) to search"),
    k: int = typer.Option(10, "-k", help="how many memories"),
    filter_text: str | None = typer.Option(None, "--filter", help="metadata filter (JSON)"),
    min_score: float | None = typer.Option(None, "--min-score", help="drop hits below this"),
    exact: bool = typer.Option(False, "--exact", help="exact scan, whatever the size"),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or keyword"),
    as_of: str | None = typer.Option(None, "--as-of", help="as the memories were then (ISO)"),
    valid_at: str | None = typer.Option(None, "--valid-at", help="facts valid then (ISO)"),
    include_invalid: bool = typer.Option(
        False, "--include-invalid", help="keep facts whose validity has ended"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recall the memories that best match QUERY, best first.

    Hybrid by default: the vector ranking (meaning) and the keyword ranking fused.
    """
    if mode not in MODES:
        raise fail(InvalidInputError(f"--mode must be one of {', '.join(MODES)}"))
    options = RecallOptions(
        k=k,
        filter=_json_argument(filter_text, "filter"),
        min_score=min_score,
        exact=exact,
        mode=mode,
        as_of=timestamp(as_of, "--as-of"),
        valid_at=timestamp(valid_at, "--valid-at"),
        include_invalid=include_invalid,
    )
    hits: RecallResult = with_store(
        lambda store: store.recall(query, namespace=namespace, options=options)
    )
    if hits.degraded:
        err.print("the embedder is unavailable: these are keyword matches only", highlight=False)
    if hits.pending:
        err.print(
            f"{hits.pending} memories in scope are still pending: the answer may be incomplete",
            highlight=False,
        )
    if as_json:
        print_answer(RecallResponse.of(hits))
        return
    table = Table("score", "content", "namespace", "id", box=None)
    for hit in hits:
        shown = Text(visible(hit.content)), Text(visible(hit.namespace))
        table.add_row(f"{hit.score:.3f}", *shown, str(hit.id))
    out.print(table)


@app.command("get")
def get_command(
    memory: str = typer.Argument(..., help="memory id"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one memory."""
    found = with_store(lambda store: store.get(memory, namespace=namespace))
    answer = MemoryOut.of(found)
    if as_json:
        print_answer(answer)
    else:
        for name, value in answer.model_dump(mode="json").items():
            out.print(visible(f"{name}: {value}"), highlight=False, markup=False)


@app.command("list")
def list_command(
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="the namespace"),
    failed: bool = typer.Option(False, "--failed", help="memories that could not be embedded"),
    pending: bool = typer.Option(False, "--pending", help="memories waiting for a vector"),
    limit: int = typer.Option(50, "--limit", help="memories per page"),
    cursor: str | None = typer.Option(None, "--cursor", help="from a previous page"),
    as_of: str | None = typer.Option(None, "--as-of", help="as the memories were then (ISO)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List memories, newest first.

    A namespace's, or with --failed / --pending those of every namespace.
    """
    status: EmbedStatus | None = "failed" if failed else "pending" if pending else None
    then = timestamp(as_of, "--as-of")
    page: Page = with_store(
        lambda store: store.list(namespace, limit=limit, cursor=cursor, status=status, as_of=then)
    )
    if as_json:
        print_answer(PageOut.of(page))
    else:
        for memory in page.memories:
            line = f"{memory.created_at:%Y-%m-%d %H:%M:%S}  {memory.id}  {memory.content}"
            if memory.status != "embedded":
                line += f"  [{memory.status}: {memory.embed_error or 'waiting'}]"
            out.print(visible(line), highlight=False, markup=False)
    if page.next_cursor:
        err.print(f"next page: --cursor {page.next_cursor}", highlight=False)


@app.command("retry")
def retry_command(
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue failed memories for embedding again.

    Run it once the cause is fixed (the model pulled, say).
    """
    count = with_store(lambda store: store.retry_failed(namespace=namespace))
    if as_json:
        print_json({"requeued": count})
    else:
        out.print(f"{count} queued again")


@app.command("forget")
def forget_command(
    memories: list[str] = typer.Argument(None, help="ids of the memories to forget"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    filter_text: str | None = typer.Option(
        None, "--filter", help="forget the namespace's memories matching this ({} = all)"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget memories by id, or by namespace and filter."""
    document = _json_argument(filter_text, "filter")

    async def work(store: MemoryStore) -> int:
        if memories:
            return await store.forget(memories, namespace=namespace, filter=document)
        return await store.forget(namespace=namespace, filter=document)

    count = with_store(work)
    if as_json:
        print_answer(ForgetResponse(forgotten=count))
    else:
        out.print(f"{count} forgotten")


@app.command("stats")
def stats_command(
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Count memories per namespace, and show the embedding spaces."""
    stats: Stats = with_store(lambda store: store.stats(namespace=namespace))
    if as_json:
        print_answer(StatsOut.of(stats))
        return
    out.print(
        f"{stats.memories} memories: {stats.embedded} embedded, {stats.pending} pending, "
        f"{stats.failed} failed"
    )
    if stats.oldest_pending_seconds is not None:
        out.print(f"oldest pending: {stats.oldest_pending_seconds:.0f} s")
    if stats.space:
        out.print(f"space: {stats.space.describe()}", highlight=False)
    if stats.building:
        build = stats.building
        out.print(
            f"being built: {build.space.describe()}, {build.done} of {build.total} memories"
            + (" (complete: pgrecall reembed --switch)" if build.complete else ""),
            highlight=False,
        )
    if stats.previous_space:
        out.print(f"previous space: {stats.previous_space.describe()}", highlight=False)
    table = Table("namespace", "memories", "embedded", "pending", "failed", box=None)
    for item in stats.namespaces:
        table.add_row(
            Text(visible(item.namespace)),
            str(item.memories),
            str(item.embedded),
            str(item.pending),
            str(item.failed),
        )
    out.print(table)
