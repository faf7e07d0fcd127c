from __future__ import annotations

import types

import pgrecall
from pgrecall import errors


def test_all_is_sorted_and_complete() -> None:
    assert pgrecall.__all__ == sorted(pgrecall.__all__)
    exported = {
        name
        for name, value in vars(pgrecall).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported == set(pgrecall.__all__)


def test_every_error_is_exported_and_derives_from_the_base() -> None:
    error_classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert error_classes <= set(pgrecall.__all__)
    for name in error_classes:
        assert issubclass(getattr(pgrecall, name), pgrecall.PgRecallError)
