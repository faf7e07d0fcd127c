from __future__ import annotations

import hashlib
import math
import random

import asyncpg
import pytest

from pgrecall.config import redact_url
from pgrecall.db.errors import database_errors
from pgrecall.db.pool import create_pool
from pgrecall.errors import (
    DatabaseBusyError,
    DatabaseError,
    DatabaseUnavailableError,
    SchemaError,
)

from .conftest import TEST_DIMENSIONS


def _unit_vector(seed: int) -> list[float]:
    generator = random.Random(seed)
    values = [generator.gauss(0.0, 1.0) for _ in range(TEST_DIMENSIONS)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


async def test_vectors_round_trip_in_binary(migrated_dsn: str) -> None:
    pool = await create_pool(migrated_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as connection:
            space_id = await connection.fetchval(
                "INSERT INTO embedding_spaces (kind, model, dimensions, document_prefix, "
                "query_prefix, embedder_version) VALUES ('local', 'm', $1, '', '', '') "
                "RETURNING id",
                TEST_DIMENSIONS,
            )
            vectors = [_unit_vector(seed) for seed in range(20)]
            await connection.copy_records_to_table(
                "memories",
                records=[
                    (
                        f"ns{i % 2}",
                        f"text {i}",
                        hashlib.sha256(f"text {i}".encode()).digest(),
                        vector,
                        space_id,
                        "embedded",
                    )
                    for i, vector in enumerate(vectors)
                ],
                columns=["namespace", "content", "content_hash", "embedding", "space_id", "status"],
            )
            rows = await connection.fetch(
                "SELECT content, embedding, -(embedding <#> $1) AS score FROM memories "
                "ORDER BY embedding <#> $1 LIMIT 3",
                vectors[7],
            )
    finally:
        await pool.close()
    assert rows[0]["content"] == "text 7"
    assert rows[0]["score"] == pytest.approx(1.0, abs=1e-5)
    stored = rows[0]["embedding"].to_list()
    assert len(stored) == TEST_DIMENSIONS
    assert stored == pytest.approx(vectors[7], abs=1e-7)  # float32 precision
    assert rows[1]["score"] < rows[0]["score"]


async def test_unmigrated_database_is_a_schema_error(empty_dsn: str) -> None:
    with pytest.raises(SchemaError, match="pgrecall migrate"):
        await create_pool(empty_dsn, min_size=1, max_size=1)


async def test_unreachable_server_is_a_typed_error() -> None:
    dsn = "postgresql://someone:secret@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseUnavailableError) as caught:
        await create_pool(dsn, min_size=1, max_size=1)
    assert "secret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_redact_hides_only_the_password() -> None:
    assert redact_url("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redact_url("postgresql://postgres:@/postgres?host=/tmp/x") == (
        "postgresql://postgres:***@/postgres?host=/tmp/x"
    )


async def test_a_released_connection_is_not_reset(migrated_dsn: str) -> None:
    # asyncpg's default reset (RESET ALL and more) would cost a round trip on every release.
    pool = await create_pool(migrated_dsn, min_size=1, max_size=1)
    try:
        await pool.fetchval("SELECT set_config('application_name', 'marker', false)")
        kept = await pool.fetchval("SHOW application_name")
    finally:
        await pool.close()
    assert kept == "marker"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (asyncpg.PostgresSyntaxError('syntax error in tsquery: "o\'reilly"'), DatabaseError),
        (asyncpg.DeadlockDetectedError("Process 4242 waits for ShareLock"), DatabaseBusyError),
        (asyncpg.UndefinedTableError('relation "memories" does not exist'), SchemaError),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), DatabaseUnavailableError),
    ],
)
def test_database_errors_carry_no_database_text(
    raised: Exception, expected: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(expected) as caught, database_errors():
        raise raised
    message = str(caught.value)
    assert str(raised) not in message
    assert "asyncpg" not in message
    assert "SQLSTATE" not in message
    assert caught.value.__cause__ is raised
    for record in caplog.records:
        assert str(raised) not in record.getMessage()
    if isinstance(raised, asyncpg.PostgresError) and expected is not DatabaseUnavailableError:
        assert f"SQLSTATE {raised.sqlstate}" in caplog.text
