"""The ``pgrecall`` command: a thin layer over MemoryStore; errors become one line on stderr."""

from __future__ import annotations

import sys

from pgrecall.cli import (  # noqa: F401 - they register
    admin,
    demo,
    export,
    mcp,
    memories,
    reembed,
    serve,
    versions,
)
from pgrecall.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
