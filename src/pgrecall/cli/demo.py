"""``pgrecall demo``: remember a few agent memories and recall them, on the embedded default."""

from __future__ import annotations

import time

from rich.table import Table

from pgrecall.cli.base import app, out, settings, with_store
from pgrecall.records import MemoryInput, RecallResult
from pgrecall.store import MemoryStore

NAMESPACE = "demo-assistant"
OTHER_NAMESPACE = "demo-other-agent"
MEMORIES = [
    ("The user's name is Ada and she lives in London.", "fact"),
    ("Ada is allergic to peanuts.", "health"),
    ("Ada prefers green tea over coffee in the morning.", "preference"),
    ("Ada's daughter starts school in September.", "family"),
    ("Ada is writing a paper on the Analytical Engine, due on March 3.", "work"),
    ("The weekly team sync moved to Tuesdays at 9:30.", "work"),
    ("Ada dislikes long meetings and prefers written updates.", "preference"),
    ("The staging server's deploy key was rotated last week.", "work"),
]
QUESTIONS = [
    ("What should I avoid when ordering food for Ada?", None),
    ("What does she like to drink?", None),
    ("When is her paper due?", {"kind": "work"}),
]


async def _demo(store: MemoryStore) -> list[tuple[str, dict[str, str] | None, RecallResult, float]]:
    items = [MemoryInput(text, metadata={"kind": kind}) for text, kind in MEMORIES]
    started = time.perf_counter()
    await store.remember(items, namespace=NAMESPACE)
    await store.remember("Bob's favourite drink is espresso.", namespace=OTHER_NAMESPACE)
    out.print(
        f"remembered {len(MEMORIES)} memories in namespace {NAMESPACE!r} "
        f"(and one in {OTHER_NAMESPACE!r}) in {time.perf_counter() - started:.2f}s"
    )
    answers = []
    for question, document in QUESTIONS:
        started = time.perf_counter()
        hits = await store.recall(question, namespace=NAMESPACE, k=3, filter=document)
        answers.append((question, document, hits, time.perf_counter() - started))
    return answers


@app.command("demo")
def demo_command() -> None:
    """Remember and recall a few memories with the local model.

    In a database of its own (under the data directory), never yours.
    """
    defaults = settings()
    # Its own data directory and model, so the demo never mixes with a store of yours.
    config = settings(embedder="local", data_dir=defaults.data_dir / "demo", database_url=None)
    out.print(
        f"[bold]pgrecall demo[/bold]: embedded PostgreSQL in {config.data_dir}, "
        f"local model {config.model}",
        highlight=False,
    )
    for question, document, hits, seconds in with_store(_demo, config):
        where = f" [dim](filter {document})[/dim]" if document else ""
        out.print(f"\n[bold]? {question}[/bold]{where} [dim]{seconds * 1000:.0f} ms[/dim]")
        table = Table("score", "memory", box=None)
        for hit in hits:
            table.add_row(f"{hit.score:.3f}", hit.content)
        out.print(table)
    out.print(
        f"\nexplore: PGRECALL_EMBEDDER=local PGRECALL_DATA_DIR={config.data_dir} "
        f"pgrecall list --namespace {NAMESPACE}",
        highlight=False,
    )
