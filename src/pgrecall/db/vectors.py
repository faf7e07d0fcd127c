"""pgvector's binary wire format, encoded without a per-value object.

pgvector's own encoder builds a ``Vector`` for every value (7 us for 384 floats); ingestion
packs its vectors once with ``vector_binary`` (3 us) and the codec passes such bytes through.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache

import asyncpg
from pgvector import Vector


@lru_cache(maxsize=8)
def _layout(dimensions: int) -> struct.Struct:
    # dimension count, an unused int16, then big-endian float32 values
    return struct.Struct(f">HH{dimensions}f")


def vector_binary(values: Sequence[float]) -> bytes:
    """``values`` in the binary format PostgreSQL's ``vector_recv`` reads."""
    return _layout(len(values)).pack(len(values), 0, *values)


def _encode(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, Vector):
        return value.to_binary()
    return Vector(value).to_binary()  # type: ignore[arg-type]


async def register_vector_codec(connection: asyncpg.Connection) -> None:
    """Binary codec for ``vector``: accepts ``vector_binary`` bytes, ``Vector``, lists, arrays."""
    await connection.set_type_codec(
        "vector", encoder=_encode, decoder=Vector.from_binary, format="binary"
    )
