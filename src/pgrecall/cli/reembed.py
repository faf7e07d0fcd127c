"""``pgrecall reembed``: move the store to the embedding space its settings describe."""

from __future__ import annotations

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pgrecall.cli.base import app, err, fail, out, run, settings
from pgrecall.errors import InvalidInputError
from pgrecall.spaces import SpaceMover


async def _build(mover: SpaceMover) -> int:
    active, build = await mover.begin()
    err.print(
        f"re-embedding from {active.space.describe()} into {build.space.describe()}",
        highlight=False,
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("re-embedding", total=build.total, completed=build.done)
        return await mover.build(lambda count: progress.advance(task, count))


async def _reembed(switch: bool, rollback: bool, drop_old: bool) -> None:
    async with await SpaceMover.open(settings()) as mover:
        if rollback:
            done = await mover.switch(rollback=True)
            out.print(
                f"rolled back to {done.new.space.describe()}: {done.moved} vectors moved back, "
                f"{done.requeued} memories changed since the switch queued to embed again; "
                "restart every process with its settings",
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
            err.print("switching (waits for running processes to notice)", highlight=False)
            done = await mover.switch()
            out.print(
                f"switched to {done.new.space.describe()}: {done.moved} vectors moved, "
                f"{done.requeued} written meanwhile queued to embed again; restart every process "
                "with the new settings (pgrecall reembed --rollback goes back)",
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
) -> None:
    """Re-embed every memory with the configured model, resumably.

    Safe in several processes at once; PGRECALL_REEMBED_RATE throttles each (texts/s).
    """
    if switch + rollback + drop_old > 1:
        raise fail(InvalidInputError("--switch, --rollback and --drop-old go one at a time"))
    run(_reembed(switch, rollback, drop_old))
