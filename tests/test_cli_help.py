"""The CLI's front page: what a newcomer reads first in ``pgrecall`` and ``pgrecall --help``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from pgrecall.cli import app
from pgrecall.cli.base import FIRST_STEP
from pgrecall.cli.menu import MENU

MEMORY_COMMANDS = (
    "remember", "recall", "import", "export", "list", "get", "history", "invalidate", "forget",
)  # fmt: skip
# A row of a commands panel: "│ name      Description.   │"
_ROW = re.compile(r"^│ (\S+)\s{2,}(.*?)\s*│$")
_PANEL = re.compile(r"^╭─ (.+?) ─")
_TERMINAL = {"COLUMNS": "80", "NO_COLOR": "1"}


def _help(*arguments: str) -> str:
    result = CliRunner().invoke(app, [*arguments, "--help"], env=_TERMINAL)
    assert result.exit_code == 0, result.output
    return result.output


def _front_page(output: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Panel titles and (command, description) rows, in the order shown."""
    panels: list[str] = []
    rows: list[tuple[str, str]] = []
    inside: str | None = None
    for line in output.splitlines():
        panel = _PANEL.match(line)
        if panel:
            inside = panel.group(1)
            panels.append(inside)
        elif line.startswith("╰"):
            inside = None
        elif inside is not None and inside not in ("Options", "Arguments"):
            row = _ROW.match(line)
            assert row, f"a description wraps onto a second line: {line!r}"
            rows.append((row.group(1), row.group(2)))
    return panels, rows


def test_memory_commands_come_first_then_serving_then_administration() -> None:
    panels, rows = _front_page(_help())
    assert panels == ["Options", *(title for title, _ in MENU)]
    names = [name for name, _ in rows]
    shown_memory = [name for name in MEMORY_COMMANDS if name in names]
    assert names[: len(shown_memory)] == shown_memory
    assert {"remember", "recall", "import", "list", "get", "forget"} <= set(shown_memory)
    assert names.index("forget") < names.index("serve") < names.index("migrate")
    placed = {name for _, listed in MENU for name in listed}
    assert set(names) <= placed, "a command without a place in commands/menu.py's MENU"


def test_descriptions_are_single_sentences_on_one_line() -> None:
    _, rows = _front_page(_help())  # a wrapped row fails the parse
    for name, description in rows:
        assert description.endswith("."), (name, description)
        assert ". " not in description, (name, description)
        assert len(description) <= 64, (name, description)


def test_no_bool_noise_anywhere() -> None:
    _, rows = _front_page(_help())
    for output in [_help(), *(_help(name) for name, _ in rows)]:
        assert "<bool>" not in output
    assert "<int>" in _help("recall")  # options that take a value still say what kind


def test_no_command_prints_the_front_page_and_a_first_step() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    completed = subprocess.run(
        [sys.executable, "-m", "pgrecall.cli"],
        env={**clean, **_TERMINAL},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    page, hint = completed.stdout.rstrip("\n").rsplit("\n", 1)
    assert hint == FIRST_STEP
    assert len(hint) <= 80
    assert "pgrecall demo" in hint
    assert _front_page(page) == _front_page(_help())
