"""A lever of issue 25 measured before it is built: BM25 from a postings table.

    python -m benchmarks.keyword_postings [--claims 300] [--depth 10] [--rows 4000] [--rounds 3]

Read side: the SciFact abstracts in one namespace and a table of their postings (namespace,
lexeme, memory, term frequency, document length) filled from the tsvectors by hand. Each test
claim's keyword ranking is computed twice on one connection, alternated: by today's statement
(the shape of ``recall.sql.keyword_ranking``: every row of the namespace whose tsvector matches
is read and cut down to the query's lexemes) and from the postings of the query's lexemes only,
checked against the namespace's rows in score order. Printed: p50 of each, nDCG@10 and how many
top-10 lists are identical.

Write side: ``remember`` of ``--rows`` 12-word memories per round, alternated, with no trigger,
with a row trigger keeping the postings, and with a statement trigger (transition table) doing
the same in one INSERT per statement: the cost on the write path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import asyncpg
import numpy as np

from benchmarks.common import (
    CONTENT_ONLY,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    remember_all,
)
from benchmarks.scifact import _load, _score_module
from pgrecall import MemoryInput, MemoryStore, load_settings

TABLE = """
    CREATE TABLE memory_terms (
        namespace text NOT NULL, lexeme text NOT NULL, memory_id uuid NOT NULL,
        tf int NOT NULL, dl int NOT NULL, PRIMARY KEY (namespace, lexeme, memory_id))
"""
FILL = """
    INSERT INTO memory_terms
    SELECT m.namespace, t.lexeme, m.id, cardinality(t.positions), length(m.search)
    FROM memories m, unnest(m.search) AS t
"""
TERMS = """terms AS (
    SELECT DISTINCT lexeme
    FROM unnest(tsvector_to_array(to_tsvector(pgrecall_text_config(), $1::text))) AS lexeme)"""
SCORE = """sum(ln(1 + (c.n - f.df + 0.5) / (f.df + 0.5)) * p.tf * 1.9
               / (p.tf + 0.9 * (0.6 + 0.4 * p.dl / greatest(c.avgdl, 1))))"""
UNEXPIRED = "(m.expires_at IS NULL OR m.expires_at > now())"
TODAY = f"""WITH {TERMS},
    query AS (SELECT (SELECT array_agg(lexeme) FROM terms) AS lexemes,
                     (SELECT string_agg(
                         '''' || replace(replace(lexeme, chr(92), chr(92) || chr(92)),
                                         '''', '''''') || '''',
                         ' | ')
                      FROM terms)::tsquery AS tsq),
    matched AS MATERIALIZED (
        SELECT m.id, ts_filter(setweight(m.search, 'A', query.lexemes), '{{a}}') AS hits,
               length(m.search) AS dl
        FROM memories m, query
        WHERE m.namespace = $2::text AND {UNEXPIRED} AND m.search @@ query.tsq),
    postings AS MATERIALIZED (
        SELECT d.id, t.lexeme, cardinality(t.positions)::float8 AS tf, d.dl::float8 AS dl
        FROM matched d, unnest(d.hits) AS t),
    frequency AS (SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme),
    collection AS (
        SELECT (SELECT count(*) FROM memories WHERE namespace = $2::text)::float8 AS n,
               (SELECT avg(dl) FROM matched)::float8 AS avgdl)
    SELECT p.id, {SCORE} AS score
    FROM postings p JOIN frequency f USING (lexeme), collection c
    GROUP BY p.id ORDER BY score DESC, p.id LIMIT $3::int"""
FROM_POSTINGS = f"""WITH {TERMS},
    postings AS MATERIALIZED (
        SELECT p.memory_id AS id, p.lexeme, p.tf::float8 AS tf, p.dl::float8 AS dl
        FROM memory_terms p
        WHERE p.namespace = $2::text AND p.lexeme = ANY(ARRAY(SELECT lexeme FROM terms))),
    frequency AS (SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme),
    collection AS (
        SELECT (SELECT count(*) FROM memories WHERE namespace = $2::text)::float8 AS n,
               (SELECT avg(dl) FROM (SELECT DISTINCT id, dl FROM postings) AS d)::float8 AS avgdl),
    scored AS (
        SELECT p.id, {SCORE} AS score
        FROM postings p JOIN frequency f USING (lexeme), collection c GROUP BY p.id)
    SELECT s.id, s.score FROM (SELECT * FROM scored ORDER BY score DESC, id) AS s
    WHERE EXISTS (SELECT 1 FROM memories m
                  WHERE m.namespace = $2::text AND m.id = s.id AND {UNEXPIRED})
    ORDER BY s.score DESC, s.id LIMIT $3::int"""
ROW_TRIGGER = """
    CREATE OR REPLACE FUNCTION keep_terms() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM memory_terms WHERE namespace = OLD.namespace AND memory_id = OLD.id
                AND lexeme = ANY(tsvector_to_array(OLD.search));
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO memory_terms
            SELECT NEW.namespace, t.lexeme, NEW.id, cardinality(t.positions), length(NEW.search)
            FROM unnest(NEW.search) AS t;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER keep_terms AFTER INSERT OR DELETE OR UPDATE OF content, search_text
        ON memories FOR EACH ROW EXECUTE FUNCTION keep_terms();
"""
STATEMENT_TRIGGER = """
    CREATE OR REPLACE FUNCTION keep_new_terms() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO memory_terms
        SELECT n.namespace, t.lexeme, n.id, cardinality(t.positions), length(n.search)
        FROM new_rows n, unnest(n.search) AS t;
        RETURN NULL;
    END $$;
    CREATE TRIGGER keep_terms AFTER INSERT ON memories REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION keep_new_terms();
"""
TRIGGERS = {"none": "", "row trigger": ROW_TRIGGER, "statement trigger": STATEMENT_TRIGGER}


def _load_average() -> str:
    return "load " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def _open(database: str) -> MemoryStore:
    settings = load_settings(
        database_url=database, worker=False, auto_migrate=False, **CONTENT_ONLY
    )
    return MemoryStore.open(settings, embedder=PrecomputedEmbedder())  # type: ignore[return-value]


async def read_side(dsn: str, claims: int, depth: int) -> None:
    memories = _load("memories.jsonl")
    tests = _load("queries.jsonl", claims)
    database = await fresh_database(dsn, "keyword_postings")
    store = await _open(database)
    try:
        # Keyword ranking does not read vectors: any unit vectors do.
        generator = np.random.default_rng(0)
        vectors = generator.standard_normal((len(memories), 384)).astype(np.float32)
        store.embedder.learn(  # type: ignore[attr-defined]
            [m["text"] for m in memories], vectors / np.linalg.norm(vectors, axis=1)[:, None]
        )
        for start in range(0, len(memories), 500):
            await store.remember(
                [MemoryInput(m["text"], key=m["id"]) for m in memories[start : start + 500]],
                namespace="scifact",
            )
    finally:
        await store.close()
    connection = await asyncpg.connect(database)
    try:
        started = time.perf_counter()
        await connection.execute(TABLE)
        await connection.execute(FILL)
        await connection.execute("VACUUM ANALYZE memory_terms")
        await connection.execute("VACUUM ANALYZE memories")
        built = time.perf_counter() - started
        size = await connection.fetchrow(
            "SELECT count(*) AS n, pg_total_relation_size('memory_terms') AS bytes,"
            " pg_total_relation_size('memories') AS memories FROM memory_terms"
        )
        keys = {
            row["id"]: row["key"] for row in await connection.fetch("SELECT id, key FROM memories")
        }
        statements = {"today": TODAY, "postings": FROM_POSTINGS}
        times: dict[str, list[float]] = {name: [] for name in statements}
        ranked: dict[str, dict[str, list[str]]] = {name: {} for name in statements}
        for round_number in range(3):
            order = list(statements.items())
            for claim in tests:
                for name, sql in order if round_number % 2 else order[::-1]:
                    started = time.perf_counter()
                    rows = await connection.fetch(sql, claim["question"], "scifact", depth)
                    if round_number:  # the first round warms the caches
                        times[name].append(time.perf_counter() - started)
                    ranked[name][claim["id"]] = [keys[row["id"]] for row in rows]
        score = _score_module()
        print(
            f"SciFact keyword ranking, {len(tests)} claims, depth {depth}; postings table: "
            f"{size['n']} rows, {size['bytes'] / 2**20:.0f} MB (memories "
            f"{size['memories'] / 2**20:.0f} MB), filled in {built:.1f} s; {_load_average()}"
        )
        for name in statements:
            metrics = score.score(tests, ranked[name], [10])["ALL"]
            print(
                f"  {name:<9} p50 {statistics.median(times[name]) * 1000:7.2f} ms  "
                f"nDCG@10 {metrics['ndcg@10']:.3f}  hit@10 {metrics['hit@10']:.3f}"
            )
        same = sum(ranked["today"][c["id"]] == ranked["postings"][c["id"]] for c in tests)
        ratio = statistics.median(times["today"]) / statistics.median(times["postings"])
        print(f"  identical rankings {same}/{len(tests)}; postings {ratio:.1f}x faster")
    finally:
        await connection.close()


async def write_side(dsn: str, rows: int, rounds: int) -> None:
    database = await fresh_database(dsn, "keyword_postings_writes")
    admin = await asyncpg.connect(database)
    store = await _open(database)
    rates: dict[str, list[float]] = {name: [] for name in TRIGGERS}
    try:
        await admin.execute(TABLE)
        for round_number in range(rounds):
            order = list(TRIGGERS.items())
            for name, trigger in order if round_number % 2 == 0 else order[::-1]:
                await admin.execute("DROP TRIGGER IF EXISTS keep_terms ON memories")
                if trigger:
                    await admin.execute(trigger)
                data = corpus([(f"{name}-{round_number}", rows)], seed=10 + round_number)
                store.embedder.learn(data.texts, data.vectors)  # type: ignore[attr-defined]
                await admin.execute("CHECKPOINT")
                rates[name].append(rows / await remember_all(store, data))
                store.embedder.forget()  # type: ignore[attr-defined]
    finally:
        await store.close()
        await admin.close()
    print(f"\nremember of {rows} 12-word memories a round, {rounds} rounds; {_load_average()}")
    baseline = statistics.median(rates["none"])
    for name, measured in rates.items():
        median = statistics.median(measured)
        print(
            f"  {name:<18} {median:8.0f}/s  {median / baseline:5.2f}x  "
            f"{[round(rate) for rate in measured]}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--depth", type=int, default=10, help="10: keyword mode; 100: hybrid")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    async with embedded_server() as dsn:
        await read_side(dsn, arguments.claims, arguments.depth)
        await write_side(dsn, arguments.rows, arguments.rounds)


if __name__ == "__main__":
    asyncio.run(main())
