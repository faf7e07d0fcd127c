"""``pgrecall reembed``: move the store to the embedding space its settings describe."""

from __future__ import annotations

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pgrecall.background.compaction import Compaction
from pgrecall.background.compaction import Progress as Compacting
from pgrecall.background.switch import Switched
from pgrecall.cli.base import app, err, fail, out, run, settings
from pgrecall.errors import InvalidInputError
from pgrecall.spaces import SpaceMover


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )


def _compacting(progress: Progress, task: TaskID) -> Compacting:
    """The compaction's steps shown on ``task``: the index being rebuilt, then the end."""

    def step(done: int, total: int, name: str) -> None:
        label = f"compacting {name}" if name else "compacted"
        progress.update(task, description=label, completed=done, total=total)

    return step


async def _switch(mover: SpaceMover, *, rollback: bool, compact: bool) -> Switched:
    """The switch (or rollback), with a bar over the indexes it compacts after the commit
    (``compact``: unless ``--no-compact``)."""
    with _bar() as progress:
        task = progress.add_task("switching (waits for running processes to notice)", total=None)
        return await mover.switch(
            rollback=rollback, compact_indexes=compact, compacting=_compacting(progress, task)
        )


def _heap(done: Switched) -> str:
    if done.heap_pages is None:
        return ""
    before, after = done.heap_pages
    return f"; the heap of memories {before:,} pages before the move, {after:,} after"


def _compacted(compaction: Compaction | None) -> str:
    if compaction is None:
        return ""
    dropped = len(compaction.dropped)
    leftovers = f", {dropped} left by an interrupted compaction dropped" if dropped else ""
    return f"; {len(compaction.rebuilt)} indexes compacted in {compaction.seconds:.1f} s{leftovers}"


async def _build(mover: SpaceMover) -> int:
    active, build = await mover.begin()
    err.print(
        f"re-embedding from {active.space.describe()} into {build.space.describe()}",
        highlight=False,
    )
    with _bar() as progress:
        task = progress.add_task("re-embedding", total=build.total, completed=build.done)
        return await mover.build(lambda count: progress.advance(task, count))


async def _reembed(switch: bool, rollback: bool, drop_old: bool, compact: bool) -> None:
    async with await SpaceMover.open(settings()) as mover:
        if compact and not (switch or rollback):
            with _bar() as progress:
                task = progress.add_task("compacting", total=None)
                compaction = await mover.compact(_compacting(progress, task))
            out.print(_compacted(compaction).removeprefix("; "), highlight=False)
            return
        if rollback:
            done = await _switch(mover, rollback=True, compact=compact)
            out.print(
                f"rolled back to {done.new.space.describe()}: {done.moved} vectors moved back, "
                f"{done.requeued} memories changed since the switch queued to embed again"
                f"{_compacted(done.compaction)}{_heap(done)}; restart every process with its "
                "settings",
                highlight=False,
            )
            return
        if drop_old:
            dropped = await mover.drop_old()
            out.print(f"dropped the vectors of {dropped.space.describe()}", highlight=False)
            return
        embedded = await _build(mover)
        out.print(f"{embedded} memories embedded by this process", highlight=False)
        if switch:
            done = await _switch(mover, rollback=False, compact=compact)
            out.print(
                f"switched to {done.new.space.describe()}: {done.moved} vectors moved, "
                f"{done.requeued} written meanwhile queued to embed again"
                f"{_compacted(done.compaction)}{_heap(done)}; restart every process with the new "
                "settings "
                "(pgrecall reembed --rollback goes back)",
                highlight=False,
            )
        else:
            out.print("complete: pgrecall reembed --switch makes it active", highlight=False)


@app.command("reembed")
def reembed_command(
    switch: bool = typer.Option(
        False, "--switch", help="once every memory has its new vector, make the new space active"
    ),
    rollback: bool = typer.Option(
        False, "--rollback", help="make the previous space active again (its vectors are kept)"
    ),
    drop_old: bool = typer.Option(
        False, "--drop-old", help="free the previous space's vectors (no rollback afterwards)"
    ),
    compact: bool | None = typer.Option(
        None,
        "--compact/--no-compact",
        help="rebuild the indexes a switch leaves half-empty (keyword recall reads ~12% fewer "
        "pages): the last step of --switch and --rollback unless --no-compact; --compact alone "
        "runs it by itself (again after an interrupted one)",
    ),
) -> None:
    """Re-embed every memory with the configured model, resumably.

    Safe in several processes at once; PGRECALL_REEMBED_RATE throttles each (texts/s).
    """
    moves = switch or rollback
    if (
        switch + rollback + drop_old > 1
        or (compact is not None and drop_old)
        or (compact is False and not moves)
    ):
        raise fail(
            InvalidInputError(
                "--switch, --rollback and --drop-old go one at a time; "
                "--compact alone or with --switch or --rollback; --no-compact with --switch or "
                "--rollback"
            )
        )
    run(_reembed(switch, rollback, drop_old, compact is not False if moves else bool(compact)))
