"""The front page of ``pgrecall --help``: commands in panels, the memory commands first.

Commands are placed by name, so a command registered in any module (in any order) lands in its
panel; one missing from ``MENU`` is shown at the end of the last panel rather than lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    # Typer 0.29 vendors Click; its types live only here (imported for type checking alone, so a
    # Typer that moves them cannot break the command at run time).
    from typer import _click as click

# Panels in the order shown, each with its commands in order (names, so a command may be listed
# before its module registers it).
MENU: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Memories",
        (
            "remember",
            "recall",
            "import",
            "export",
            "list",
            "get",
            "history",
            "invalidate",
            "forget",
            "audit",
            "stats",
            "retry",
        ),
    ),
    ("Serving", ("serve", "mcp", "worker")),
    ("Setup and administration", ("demo", "doctor", "pull", "migrate", "index", "reembed")),
)


def menu_place(name: str) -> tuple[int, int]:
    """(panel, position) of a command on the front page; unplaced commands go last."""
    for panel, (_, names) in enumerate(MENU):
        if name in names:
            return panel, names.index(name)
    return len(MENU) - 1, len(MENU[-1][1])


def _quiet_flags(command: click.Command, ctx: click.Context) -> None:
    """A flag takes no value, so the ``<bool>`` Typer shows as its type is noise."""
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""


class MenuGroup(TyperGroup):
    """The ``pgrecall`` group: commands listed and paneled as ``MENU`` says."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Command names in ``MENU`` order (a stable sort keeps unplaced ones as registered)."""
        return sorted(super().list_commands(ctx), key=menu_place)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, put in its panel, with its flags shown without a type."""
        command = super().get_command(ctx, cmd_name)
        if isinstance(command, TyperCommand | TyperGroup):
            command.rich_help_panel = MENU[menu_place(cmd_name)[0]][0]
            _quiet_flags(command, ctx)
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The front page; the group's own flags (``--help``) without a type too."""
        _quiet_flags(self, ctx)
        super().format_help(ctx, formatter)
