"""What an installed pgrecall shows of itself: its version, and no Python warnings on a machine
without XDG_RUNTIME_DIR (containers, CI, cron). The wheel's contents are checked by
.ci/check_wheel.py, which needs a built wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

import pgrecall


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgrecall-packaging-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pgrecall(*arguments: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PGRECALL_") and key != "XDG_RUNTIME_DIR"
    }
    environment["PGRECALL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "pgrecall.cli", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_version_comes_from_the_package_metadata(data_dir: Path) -> None:
    assert pgrecall.__version__ == version("pgrecall")
    completed = _pgrecall("--version", data_dir=data_dir)
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"pgrecall {version('pgrecall')}"


def test_commands_print_no_python_warning_without_xdg_runtime_dir(data_dir: Path) -> None:
    # Each starts or joins the embedded server, the path where platformdirs used to warn.
    for arguments in (["--help"], ["migrate"], ["stats"], ["list", "--namespace", "n"]):
        completed = _pgrecall(*arguments, data_dir=data_dir)
        assert completed.returncode == 0, completed.stderr
        assert "Warning" not in completed.stderr, (arguments, completed.stderr)
        assert "warn" not in completed.stderr.lower(), (arguments, completed.stderr)
