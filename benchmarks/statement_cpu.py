"""PostgreSQL's CPU per vector recall: pgrecall's statement against the hand-written floor's.

    python -m benchmarks.statement_cpu --data-dir DIR [--queries 200] [--rounds 5]
                                       [--namespaces 100] [--per-namespace 1000]

On the database ``benchmarks.http_load`` left in ``--data-dir`` (its sizes: 100 namespaces of
1,000 by default), the
statements of real ``recall(mode="vector")`` calls are captured, then replayed on one
connection, variant after variant in alternating rounds; the backend's CPU time
(``/proc/<pid>/stat``, user + system) is read around each variant, so the figures are the
server's own work per statement, whatever the client and other jobs cost. Variants:

- ``floor``: the floor's bare ``ORDER BY embedding <#> $1 LIMIT 10`` in the namespace;
- ``pgrecall``: the recall's statement as sent (prepared, PostgreSQL picks generic or custom);
- ``pgrecall generic`` / ``pgrecall custom``: the same under ``plan_cache_mode``
  ``force_generic_plan`` / ``force_custom_plan`` (what planning each call costs);
- ``no pending count``: the statement with the scope's pending count replaced by a constant.

Issue 22: HTTP vector recall cost PostgreSQL 0.59 ms more CPU a recall than the floor; this
says which part of the statement that is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from benchmarks.common import database_url, embedded_server, sentences
from benchmarks.http_load import DIMENSIONS, FLOOR_SQL, MODEL, _queries, running_standin
from pgrecall import MemoryStore, RecallOptions, load_settings
from pgrecall.db.vectors import register_vector_codec

TICKS = os.sysconf("SC_CLK_TCK")
VECTOR_LITERAL = re.compile(r"'\[[^\]]*\]'::vector")
PENDING = re.compile(r"\(SELECT count\(\*\) AS n FROM memories.*?\) AS pending", re.S)


def backend_seconds(pid: int) -> float:
    """User + system CPU seconds of a backend so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def capture(
    dsn: str, ollama_url: str, args: argparse.Namespace
) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL and arguments of ``args.queries`` vector recalls, as the store sent them (the
    queries ``benchmarks.http_load`` asks, from the memories it wrote)."""
    generator = np.random.default_rng(3)
    texts: list[str] = []
    namespaces: list[str] = []
    for i in range(args.namespaces):
        name = f"agent-{i:03d}"
        texts.extend(sentences(args.per_namespace, generator, tag=f"{name}-"))
        namespaces.extend([name] * args.per_namespace)
    queries = _queries(texts, namespaces, args.queries)
    captured: list[tuple[str, tuple[Any, ...]]] = []
    original = asyncpg.pool.Pool.fetch

    async def recording(self: asyncpg.Pool, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "pending" in sql:
            captured.append((sql, args))
        return await original(self, sql, *args, **kwargs)

    settings = load_settings(
        database_url=dsn,
        ollama_url=ollama_url,
        embed_model=MODEL,
        embed_dimensions=DIMENSIONS,
        worker=False,
    )
    asyncpg.pool.Pool.fetch = recording  # type: ignore[method-assign, assignment]
    try:
        async with await MemoryStore.open(settings) as store:
            for query in queries:
                await store.recall(
                    query.text, namespace=query.namespace, options=RecallOptions(mode="vector")
                )
    finally:
        asyncpg.pool.Pool.fetch = original  # type: ignore[method-assign]
    return captured


async def measure(dsn: str, statements: list[tuple[str, tuple[Any, ...]]], rounds: int) -> None:
    """Replay ``statements`` and their variants on one connection, ``rounds`` times
    alternated; print the backend's CPU per statement and both plans."""
    connection = await asyncpg.connect(dsn)
    await register_vector_codec(connection)
    pid = await connection.fetchval("SELECT pg_backend_pid()")
    floor = [(FLOOR_SQL, (args[_vector_index(args)], _namespace(args))) for _, args in statements]
    plain = statements
    no_pending = [
        (PENDING.sub("(SELECT 0::bigint AS n) AS pending", sql), args) for sql, args in statements
    ]
    variants: dict[str, tuple[str, list[tuple[str, tuple[Any, ...]]]]] = {
        "floor": ("auto", floor),
        "pgrecall": ("auto", plain),
        "pgrecall generic": ("force_generic_plan", plain),
        "pgrecall custom": ("force_custom_plan", plain),
        "no pending count": ("auto", no_pending),
    }
    spent = dict.fromkeys(variants, 0.0)
    calls = dict.fromkeys(variants, 0)
    for mode, calls_of in variants.values():  # warm: plans cached, pages in memory
        await connection.execute(f"SET plan_cache_mode = {mode}")
        for sql, args in calls_of[:20]:
            await connection.fetch(sql, *args)
    for _ in range(rounds):
        for name, (mode, calls_of) in variants.items():
            await connection.execute(f"SET plan_cache_mode = {mode}")
            before = backend_seconds(pid)
            for sql, args in calls_of:
                await connection.fetch(sql, *args)
            spent[name] += backend_seconds(pid) - before
            calls[name] += len(calls_of)
    floor_ms = 1000 * spent["floor"] / calls["floor"]
    print(f"\nPostgreSQL backend CPU ms per statement ({rounds} rounds of {len(plain)}):")
    for name in variants:
        ms = 1000 * spent[name] / calls[name]
        print(f"  {name:<18} {ms:7.3f}  ({ms - floor_ms:+.3f} over the floor)")
    await connection.execute("SET plan_cache_mode = auto")
    sql, args = plain[0]
    for label, text, values in (("floor", FLOOR_SQL, floor[0][1]), ("pgrecall", sql, args)):
        plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS, SUMMARY) {text}", *values)
        print(f"\nEXPLAIN ANALYZE, {label}:")
        print("\n".join(VECTOR_LITERAL.sub("'[...]'::vector", row[0]) for row in plan))
    await connection.close()


def _vector_index(args: tuple[Any, ...]) -> int:
    return next(i for i, value in enumerate(args) if isinstance(value, list | bytes))


def _namespace(args: tuple[Any, ...]) -> str:
    return next(value for value in args if isinstance(value, str))


async def run(args: argparse.Namespace) -> None:
    with running_standin() as (ollama_url, _):
        async with embedded_server(args.data_dir) as admin:
            dsn = database_url(admin, "http_load")
            statements = await capture(dsn, ollama_url, args)
            await measure(dsn, statements, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="of a benchmarks.http_load run"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--namespaces", type=int, default=100, help="as in the http_load run")
    parser.add_argument("--per-namespace", type=int, default=1000, help="as in the http_load run")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
