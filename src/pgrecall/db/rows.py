"""Value types read from rows by name: a record's fields are the columns selected for it.

A statement selects the columns named as the record's fields; ``from_row`` builds the record
from them, so a list of ``name=row["name"]`` is never written out (and never drifts from the
record when a field is added).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import asyncpg

Record = TypeVar("Record")


# The field names of each record kind: dataclasses.fields() builds its tuple on every call,
# 2-3 us a row, ten rows a recall.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = tuple(field.name for field in dataclasses.fields(kind))
        _FIELD_NAMES[kind] = names
    return names


def from_row(kind: type[Record], row: asyncpg.Record, **given: Any) -> Record:
    """A ``kind`` (a dataclass) from the columns of ``row`` named as its fields; the fields in
    ``given`` are taken from there instead (decoded or computed by the caller)."""
    values = {name: row[name] for name in _field_names(kind) if name not in given}
    return kind(**values, **given)
