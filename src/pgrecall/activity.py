"""Writes over time: how many of the stored memories were written in each hour or day.

Read from the memories themselves (``created_at``, ``updated_at``), not from a log: a memory
forgotten since is not counted, and one changed twice counts once, at its last change. Buckets
are whole UTC hours or days ending with the current one, every bucket present (0 when empty),
so a client draws the series as it comes.
"""

from __future__ import annotations

from typing import Literal, get_args

import asyncpg

from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.errors import InvalidInputError
from pgrecall.records import WriteCount
from pgrecall.transfer.exporter import ExportScope

Bucket = Literal["hour", "day"]
BUCKET_HOURS: dict[str, int] = {"hour": 1, "day": 24}
MAX_BUCKETS = 400  # a year and more of days, or two weeks of hours


def check(bucket: str, buckets: int) -> None:
    """Raise InvalidInputError unless ``bucket`` and ``buckets`` make a series we draw."""
    if bucket not in get_args(Bucket):
        raise InvalidInputError(f"bucket is one of {', '.join(get_args(Bucket))}")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidInputError(f"buckets must be a whole number from 1 to {MAX_BUCKETS}")


async def writes(
    pool: asyncpg.Pool, scope: ExportScope, bucket: Bucket, buckets: int
) -> list[WriteCount]:
    """Memories of ``scope`` created, and changed after creation, per bucket, oldest first."""
    check(bucket, buckets)
    params = SqlParams()
    unit = params.add(bucket, "text")
    step = f"make_interval(hours => {params.add(BUCKET_HOURS[bucket], 'int')})"
    count = params.add(buckets - 1, "int")
    where = f"{scope.condition(params)} AND {unexpired()}"
    sql = f"""
        WITH series AS (
            SELECT generate_series(date_trunc({unit}, now(), 'UTC') - {count} * {step},
                                   date_trunc({unit}, now(), 'UTC'), {step}) AS start
        ),
        created AS (
            SELECT date_trunc({unit}, created_at, 'UTC') AS start, count(*) AS n
            FROM memories
            WHERE {where} AND created_at >= (SELECT min(start) FROM series)
            GROUP BY 1
        ),
        updated AS (
            SELECT date_trunc({unit}, updated_at, 'UTC') AS start, count(*) AS n
            FROM memories
            WHERE {where} AND updated_at > created_at
              AND updated_at >= (SELECT min(start) FROM series)
            GROUP BY 1
        )
        SELECT s.start, coalesce(c.n, 0) AS created, coalesce(u.n, 0) AS updated
        FROM series s LEFT JOIN created c USING (start) LEFT JOIN updated u USING (start)
        ORDER BY s.start
    """
    with database_errors():
        rows = await pool.fetch(sql, *params.values)
    return [WriteCount(row["start"], row["created"], row["updated"]) for row in rows]
