from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgrecall import MemoryStore
from pgrecall.config import redact_url
from pgrecall.db import migrate
from pgrecall.db.errors import database_errors
from pgrecall.db.pool import connect, create_pool
from pgrecall.errors import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseError,
    DatabaseUnavailableError,
    PgRecallError,
    SchemaError,
)

from .conftest import TEST_DIMENSIONS, store_settings
from .fakes import HashEmbedder


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


PASSWORD = "s3cret-pw-0451"


async def _refused_start(dsn: str) -> list[PgRecallError]:
    """What the pool, a connection and a migration each raise on ``dsn``."""
    raised: list[PgRecallError] = []
    for start in (
        lambda: create_pool(dsn, min_size=1, max_size=1),
        lambda: connect(dsn),
        lambda: migrate.upgrade(dsn, TEST_DIMENSIONS),
    ):
        with pytest.raises(PgRecallError) as caught:
            await start()
        raised.append(caught.value)
    return raised


def _safe(error: PgRecallError, caplog: pytest.LogCaptureFixture) -> str:
    """The message, once checked for the password and the driver's words."""
    message = str(error)
    assert PASSWORD not in message + caplog.text
    assert error.__cause__ is None  # a logged traceback would print the driver's text
    for driver_text in ("Errno", "asyncpg", "sqlalchemy", "invalid literal", "authentication"):
        assert driver_text not in message
    return message


@pytest.mark.parametrize(
    ("dsn", "expected", "reason"),
    [
        (f"postgresql://someone:{PASSWORD}@127.0.0.1:1/nowhere", DatabaseUnavailableError,
         "nothing listens"),
        (f"postgresql://someone:{PASSWORD}@pgrecall.invalid/db", DatabaseUnavailableError,
         "does not resolve"),
        # The password where the port goes: the driver's error quotes it.
        (f"postgresql://127.0.0.1:{PASSWORD}/db", ConfigurationError, "cannot be used"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1/db?sslmode=sometimes", ConfigurationError,
         "cannot be used"),
        (f"mysql://u:{PASSWORD}@127.0.0.1/db", ConfigurationError, "cannot be used"),
    ],
    ids=["closed port", "unresolvable", "password as port", "bad option", "not postgresql"],
)  # fmt: skip
async def test_a_server_out_of_reach_is_a_typed_error_without_the_password(
    dsn: str, expected: type[PgRecallError], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    for error in await _refused_start(dsn):
        assert type(error) is expected
        message = _safe(error, caplog)
        assert reason in message
        if expected is DatabaseUnavailableError:
            assert message.startswith(f"cannot connect to {redact_url(dsn)}")


def _as_role(dsn: str, role: str) -> str:
    """``dsn`` as ``role``, giving PASSWORD."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}:{PASSWORD}@{parts.netloc.rpartition('@')[2]}"))


@pytest.fixture
async def password_dsn(server_dsn: str) -> AsyncIterator[str]:
    """The test server's DSN as a role that must give its password (pg_hba.conf gets a line
    for that role alone), with a wrong one."""
    admin = await asyncpg.connect(server_dsn)
    hba = Path(await admin.fetchval("SHOW hba_file"))
    if not os.access(hba, os.W_OK):
        await admin.close()
        pytest.skip("the test server's pg_hba.conf is not writable here")
    role = f"pgrecall_pw_{uuid.uuid4().hex[:8]}"
    original = await asyncio.to_thread(hba.read_text)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-{role}'")
    lines = f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
    await asyncio.to_thread(hba.write_text, lines + original)
    wrong = _as_role(server_dsn, role)
    try:
        await admin.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server reloads its configuration by itself
            try:
                await (await asyncpg.connect(wrong)).close()
            except asyncpg.InvalidPasswordError:
                break
            await asyncio.sleep(0.05)
        yield wrong
    finally:
        await asyncio.to_thread(hba.write_text, original)
        await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_wrong_password_is_a_typed_error_without_it(
    password_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    for error in await _refused_start(password_dsn):
        assert type(error) is DatabaseUnavailableError
        assert "the password was refused" in _safe(error, caplog)


async def test_a_refused_migration_names_the_sqlstate_not_the_servers_text(
    server_dsn: str, empty_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"pgrecall_weak_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    weak = _as_role(empty_dsn, role)
    try:
        with pytest.raises(SchemaError) as caught:
            await migrate.upgrade(weak, TEST_DIMENSIONS)
    finally:
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
    message = _safe(caught.value, caplog)
    assert "SQLSTATE 42501" in message  # insufficient privilege
    assert "permission denied" not in message


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


async def test_connections_whose_server_processes_were_terminated_fail_as_unavailable(
    migrated_dsn: str,
) -> None:
    store = await MemoryStore.open(
        store_settings(worker=False, pool_min_size=2, pool_max_size=2),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    admin = await asyncpg.connect(migrated_dsn)
    try:
        await store.remember("a memory kept", namespace="ns")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        outcomes = []
        for _ in range(4):  # bounded: each broken connection fails once, then is replaced
            try:
                hits = await store.recall("a memory", namespace="ns", mode="keyword")
            except DatabaseUnavailableError:
                outcomes.append("unavailable")
            else:
                outcomes.append(hits[0].content)
        # Never asyncpg's own error; the pool recovers.
        assert outcomes[-1] == "a memory kept", outcomes
        assert set(outcomes) <= {"unavailable", "a memory kept"}
    finally:
        await admin.close()
        await store.close()
