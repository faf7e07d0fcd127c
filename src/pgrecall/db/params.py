"""Bound parameters of one statement, shared by every SQL builder: user values never reach SQL
text, only placeholders do."""

from __future__ import annotations


class SqlParams:
    """Bound values for one statement; ``add`` returns the placeholder (``$n::cast``)."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.values: list[object] = []

    def add(self, value: object, cast: str) -> str:
        """Bind ``value`` and return its placeholder."""
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{cast}"
