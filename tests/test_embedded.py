from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from pgrecall.db.embedded import EmbeddedPostgres, _answers, _postmaster_pid


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private to root, and as root the server runs as
    # another user who must reach the directory.
    path = Path(tempfile.mkdtemp(prefix="pgrecall-embedded-"))
    yield path
    pgdata = path / "postgres"
    if _postmaster_pid(pgdata) is not None and _answers(pgdata):
        EmbeddedPostgres(path).start()
        EmbeddedPostgres(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def _server_running(data_dir: Path) -> bool:
    pid = _postmaster_pid(data_dir / "postgres")
    return pid is not None and psutil.pid_exists(pid)


def test_start_reuse_and_clean_stop(data_dir: Path) -> None:
    first, second = EmbeddedPostgres(data_dir), EmbeddedPostgres(data_dir)
    dsn = first.start()
    assert "host=" in dsn
    assert second.start() == dsn
    first.stop()
    assert _answers(data_dir / "postgres"), "another handle still holds the server"
    second.stop()
    assert not _server_running(data_dir)


def test_server_orphaned_by_sigkill_is_reused_then_stopped(data_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from pgrecall.db.embedded import EmbeddedPostgres
        print(EmbeddedPostgres(Path(sys.argv[1])).start(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    orphan_pid = _postmaster_pid(data_dir / "postgres")
    assert orphan_pid is not None
    assert psutil.pid_exists(orphan_pid)

    handle = EmbeddedPostgres(data_dir)
    assert handle.start() == killed.stdout.strip()
    assert _postmaster_pid(data_dir / "postgres") == orphan_pid  # reused, not restarted
    handle.stop()
    assert not _server_running(data_dir)


def test_stale_pid_file_does_not_block_start(data_dir: Path) -> None:
    handle = EmbeddedPostgres(data_dir)
    handle.start()
    handle.stop()
    pgdata = data_dir / "postgres"
    # A pid file left by a crash whose pid now belongs to an unrelated process (this one).
    (pgdata / "postmaster.pid").write_text(
        f"{os.getpid()}\n{pgdata}\n0\n5432\n{pgdata}\n\n0 0\nready\n"
    )
    dsn = handle.start()
    assert _answers(pgdata)
    assert dsn
    handle.stop()
    assert not _server_running(data_dir)


def _runs_as_nobody() -> bool:
    if os.geteuid() != 0:
        return False
    probe = ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import pgrecall"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(
    not _runs_as_nobody(),
    reason="needs root, and a Python interpreter and venv that the user nobody can read",
)
def test_works_for_an_unprivileged_user(data_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chown(data_dir, nobody.pw_uid, nobody.pw_gid)
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        import asyncpg
        from pgrecall.db.embedded import EmbeddedPostgres
        handle = EmbeddedPostgres(Path(sys.argv[1]))
        dsn = handle.start()
        async def ask():
            connection = await asyncpg.connect(dsn)
            user = await connection.fetchval("SELECT current_user")
            await connection.close()
            return user
        print(asyncio.run(ask()))
        handle.stop()
        """
    )
    environment = {
        **os.environ,
        "HOME": str(data_dir),
        "XDG_RUNTIME_DIR": str(data_dir),
    }
    completed = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", script, str(data_dir)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "postgres"
    assert (data_dir / "postgres").stat().st_uid == nobody.pw_uid
    assert not _server_running(data_dir)


def test_a_new_cluster_is_sized_to_the_machine(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()

    async def shared_buffers() -> str:
        connection = await asyncpg.connect(dsn)
        try:
            return str(await connection.fetchval("SHOW shared_buffers"))
        finally:
            await connection.close()

    try:
        megabytes = psutil.virtual_memory().total // 2**20
        expected = min(max(megabytes // 4, 128), 2048)
        running = asyncio.run(shared_buffers())
        assert running in (f"{expected}MB", f"{expected // 1024}GB")
    finally:
        server.stop()
    assert not _server_running(data_dir)
