"""pgvector's binary wire format, encoded without a per-value object.

pgvector's own encoder builds a ``Vector`` for every value (7 us for 384 floats); ingestion
packs its vectors once with ``vector_binary`` (3 us) and the codec passes such bytes through.
"""

from __future__ import annotations

import struct
import sys
from array import array
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


def float32_bytes(values: Sequence[float]) -> bytes:
    """``values`` as big-endian float32: pgvector's binary format without its 4-byte header."""
    return vector_binary(values)[4:]


def float32_values(packed: bytes) -> array[float]:
    """Big-endian float32 values (pgvector's binary format after its 4-byte header) as a
    compact array: 4 bytes a value where a list of floats takes 32."""
    values = array("f", packed)
    if sys.byteorder == "little":
        values.byteswap()
    return values


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
