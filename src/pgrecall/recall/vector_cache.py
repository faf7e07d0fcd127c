"""A process's cache of namespaces' vector copies: the exact scan of a copied namespace scored
in numpy, the statement left to check the few best and the copies written since.

The copied plan (``recall.sql.copied_nearest``) reads every copy of the namespace for each
recall: ~0.42 us a copy in PostgreSQL (the tuple, its conditions, the 384-d distance), 2.2 ms of
SciFact's 5,183 and most of a vector recall's 3.8 ms in process. numpy scores the same copies
in 0.5 ms on one core (``np.vecdot``; benchmarks/RESULTS.md, issue 25 session 20). So a
process keeps each such namespace's copies (ids and float32 vectors, as ``vector_send`` gives
them) with the snapshot they were read under, and a recall gives its statement the best cached
copies as candidates (``recall.sql.cached_nearest``), which the statement scores exactly
together with what the cache cannot know: the copies written since that snapshot
(``memory_vectors.copied_by``, migration 0018: an index range) and the rows not copied yet.

**Exact, by proof.** numpy sums in another order than pgvector: each distance differs from the
statement's by at most ``_error_bound`` (twice the worst rounding of a float32 sum of ``d``
products, times the norms). Every cached copy that is not a candidate is then at an exact
distance of at least ``Candidates.beyond`` (the farthest candidate's numpy distance less that
bound). If the statement's ``depth``-th nearest lies strictly nearer (``certified``), no copy
left out could be among the ``depth`` nearest; otherwise the recall runs the copied plan. A
copy deleted since the cache was loaded is a candidate the statement does not find (it scores
the copies by id), so a stale cache costs candidates, never a wrong answer; a copy replaced
(the copier's conflict update) is read again as written since. Memories out of scope when the
copies were read (expired, or their validity ended: a fact's superseded versions lie next to
it) are marked, and the candidates reach past them: they stay candidates, but take none of the
``depth`` + 32 places, so a crowd of them does not void the proof.

**Kept fresh in the background.** A namespace is loaded the first time a recall asks for it,
while that recall runs the copied plan; the copies written since are read in every
``REFRESH_SECONDS`` while recalls ask for it, each refresh a segment of its own (nothing cached
is copied: a merge into 166k cached copies held the event loop 0.6 s in a review), and a
namespace is loaded again when a proof fails (deleted copies crowding the candidates), when it
has grown by a quarter, or after 16 segments. Loads and refreshes decode in a worker thread.
The cache holds at most ``PGRECALL_VECTOR_CACHE_MB`` (least recently used namespaces go first);
0 turns it off. A load that fails, finds no copy, or whose namespace was evicted, is not tried
again for ``RELOAD_SECONDS``, one that would not fit (its size is asked first) for
``TOO_LARGE_SECONDS``: a review found a namespace recalled before its copies existed never
cached, a failing load and two namespaces taking turns in too small a budget each read on
every recall.

**Where it does not hold.** Not on Citus, whose shards keep their own transaction ids (the
cache turns itself off). ``copied_by`` is this cluster's transaction id: a database restored
from a dump carries another cluster's, which the statements then take for copies written
since (every recall scores them exactly, as the copied plan did; ``UPDATE memory_vectors SET
copied_by = NULL`` once restored); a logical replica applies the publisher's, which can hide
copies from a cache, so processes reading one run with the cache off. A transaction left open
keeps the snapshots' xmin back, and the range of copies written since grows with it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import asyncpg
import numpy as np
import numpy.typing as npt
from asyncpg.pgproto.pgproto import UUID

from pgrecall.offload import off_loop
from pgrecall.recall.process_cache import Connection, NamespaceCache
from pgrecall.recall.sql import newer_copies, scope_exclusions

# Candidates a recall gives its statement beyond the rows its ranking keeps: the proof fails
# only when the depth-th nearest lies within the error bound (~5e-5 for unit vectors of 384
# dimensions) of the last candidate, or when excluded or deleted copies take the spare places.
# Each costs the statement a probe by its key (~2.5 us).
SPARE_CANDIDATES = 32

# A float32 (pgvector's and numpy's sums): the unit roundoff, 2^-24, and the smallest subnormal.
_UNIT_ROUNDOFF = 2.0**-24
_SUBNORMAL = 2.0**-149
# Candidates beyond the ``count`` asked for (marked copies as near) past this share of the
# namespace's copies: the copied plan's scan costs less than probing them.
_MOST_MARKED_SHARE = 4
# Refreshes a namespace takes as segments of their own before it is loaded whole again.
_MOST_SEGMENTS = 16
_ID = np.dtype("V16")
# Vector values ranked per item of the offload's policy: a thousand copies of 384 dimensions.
_ITEM_VALUES = 384_000

# The copies of one namespace and space: all of them (``_LOAD``), or those written since a
# snapshot (``_NEWER``), with the snapshot of the statement that read them; and whether each
# memory was then out of a recall's scope (expired, or its validity ended: ``excluded``).
_EXCLUDED = scope_exclusions("= $1::text", include_invalid=False)
_COPIES = f"""
    SELECT pg_current_snapshot()::text AS snapshot, count(*) AS copies,
           coalesce(string_agg(uuid_send(v.id), ''::bytea), ''::bytea) AS ids,
           coalesce(string_agg(vector_send(v.embedding), ''::bytea), ''::bytea) AS vectors,
           coalesce(string_agg(CASE WHEN v.id IN ({_EXCLUDED}) THEN '\\x01'::bytea
                                    ELSE '\\x00'::bytea END, ''::bytea), ''::bytea) AS excluded
    FROM memory_vectors v
    WHERE v.namespace = $1::text AND v.space_id = $2::int {{newer}}
"""


def candidate_count(depth: int) -> int:
    """How many candidates a ranking of ``depth`` rows gives its statement."""
    return depth + SPARE_CANDIDATES


_LOAD = _COPIES.format(newer="")
# What a load would read, before it reads it: the copies and their size.
_SIZE = """
    SELECT (SELECT count(*) FROM memory_vectors v
            WHERE v.namespace = $1::text AND v.space_id = $2::int) AS copies,
           coalesce((SELECT vector_dims(v.embedding) FROM memory_vectors v
                     WHERE v.namespace = $1::text AND v.space_id = $2::int LIMIT 1), 0)
           AS dimensions
"""
_NEWER = _COPIES.format(newer="AND " + newer_copies("v", "$3::text"))


@dataclass(frozen=True, slots=True)
class Candidates:
    """The best cached copies for one query, for the statement to score exactly."""

    ids: list[UUID]  # nearest first by numpy's distance
    snapshot: str  # the cache's: copies written since are the statement's to score
    beyond: float  # every cached copy not in ``ids`` is at an exact distance >= this
    complete: bool  # ``ids`` holds every cached copy

    def certified(self, found: int, farthest: float | None, depth: int) -> bool:
        """Whether the nearest the statement ``found`` in scope (its ranking of ``depth`` rows:
        candidates, copies written since, rows not copied), the ``farthest`` at that exact
        distance, are the namespace's ``depth`` nearest: no copy left out could be nearer than
        the ``depth``-th."""
        if self.complete:
            return True
        return found >= depth and farthest is not None and farthest < self.beyond


@dataclass(frozen=True, slots=True)
class _Copies:
    """A namespace's cached copies: those its load read, then those each refresh read, as
    segments of vectors (a refresh appends one: nothing cached is copied or changed)."""

    ids: npt.NDArray[np.void]  # every segment's, in order
    excluded: npt.NDArray[np.bool_]  # out of scope when read: expired, or validity ended
    vectors: tuple[npt.NDArray[np.float32], ...]  # the segments, one row a copy
    largest_norm: float
    snapshot: str
    loaded: float  # time.monotonic() of the load its first segment came from

    @property
    def size(self) -> int:
        return int(self.ids.nbytes + self.excluded.nbytes + sum(v.nbytes for v in self.vectors))

    @property
    def dimensions(self) -> int:
        return int(self.vectors[0].shape[1])

    def distances(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """numpy's distance (``<#>``, the negative inner product) of every copy to ``query``.
        vecdot, not ``@``: OpenBLAS runs a matrix-vector product this size on every core
        (0.22 ms, but 2.0 cores busy, its threads spinning after it), taking them from the
        PostgreSQL backends; vecdot's loop takes one (0.51 ms for SciFact's 5,183 x 384)."""
        return np.concatenate([-np.vecdot(segment, query) for segment in self.vectors])

    def with_segment(self, read: _Read) -> _Copies:
        """These copies and those a refresh read (a copy replaced since is in both: its old
        vector only costs a candidate's place, the statement reads it by id)."""
        return _Copies(
            ids=np.concatenate([self.ids, read.ids]),
            excluded=np.concatenate([self.excluded, read.excluded]),
            vectors=(*self.vectors, read.vectors),
            largest_norm=max(self.largest_norm, read.largest_norm),
            snapshot=read.snapshot,
            loaded=self.loaded,
        )


@dataclass(frozen=True, slots=True)
class _Read:
    """The copies one statement read (``_COPIES``), decoded."""

    ids: npt.NDArray[np.void]
    excluded: npt.NDArray[np.bool_]
    vectors: npt.NDArray[np.float32]
    largest_norm: float
    snapshot: str

    @classmethod
    def of(cls, row: asyncpg.Record) -> _Read | None:
        """The copies of ``row``; None if their sizes differ (not one space's)."""
        ids = np.frombuffer(row["ids"], _ID)
        vectors = _vectors(row["vectors"], len(ids))
        if vectors is None:
            return None
        norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(1)
        return cls(
            ids=ids,
            excluded=np.frombuffer(row["excluded"], np.bool_),
            vectors=vectors,
            largest_norm=float(norms.max()),
            snapshot=row["snapshot"],
        )


class VectorCache(NamespaceCache[tuple[str, int], _Copies]):
    """The copies of the namespaces recent recalls asked for, at most ``max_bytes``."""

    what = "vector cache"

    async def candidates(
        self,
        namespace: str,
        space_id: int,
        vector: Sequence[float],
        count: int,
        *,
        beside: bool = False,
    ) -> Candidates | None:
        """The ``count`` cached copies nearest ``vector``, or None when the namespace is not
        cached (its load is then started, for the recalls after this one). Ranked in a worker
        thread when large (``offload``: a thousand 384-d copies an item, ~0.1 ms), or when the
        caller does other work ``beside`` it (numpy lets go of the GIL while it sums)."""
        copies = self._entry((namespace, space_id))
        if copies is None:
            return None
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (copies.dimensions,):
            return None
        items = len(copies.ids) * len(query) // _ITEM_VALUES
        if beside:
            distances = await asyncio.to_thread(copies.distances, query)
        else:
            distances = await off_loop(items, lambda: copies.distances(query))
        # The ``count`` nearest of the copies in scope when read, and every copy as near: the
        # excluded ones (superseded facts crowd their successors) stay candidates, for an
        # expiry or validity may have changed since, but take no place of the ``count``.
        ranked = np.where(copies.excluded, np.inf, distances)
        complete = count >= len(distances) - int(copies.excluded.sum())
        if complete:
            chosen = np.argsort(distances, kind="stable")
            beyond = math.inf
        else:
            last = np.partition(ranked, count - 1)[count - 1]
            chosen = np.flatnonzero(distances <= last)
            if len(chosen) > count + len(distances) // _MOST_MARKED_SHARE:
                return None  # probed by key (~2.5 us each), dearer than the scan (~0.42 us)
            chosen = chosen[np.argsort(distances[chosen], kind="stable")]
            beyond = float(last) - _error_bound(query, copies.largest_norm)
        return Candidates(
            ids=_uuids(copies.ids[chosen]),
            snapshot=copies.snapshot,
            beyond=beyond,
            complete=complete,
        )

    def unproven(self, namespace: str, space_id: int) -> None:
        """A statement given this namespace's candidates could not prove its answer: load the
        namespace again (deleted copies among the candidates are the likely cause), at most
        every ``RELOAD_SECONDS``."""
        self._outdated((namespace, space_id))

    async def _load(self, key: tuple[str, int]) -> None:
        """Read the namespace's copies whole, if they fit; else, or on a failure or none, no
        load again for ``RELOAD_SECONDS`` (the copied plan serves meanwhile)."""
        self._loading(key)
        row = await self._fetch_row(key, _SIZE, *key)
        if row is None or not row["copies"]:
            return
        if not self._fits(row["copies"] * (row["dimensions"] * 4 + _ID.itemsize + 1)):
            self._too_large(key)
            return
        row = await self._fetch_row(key, _LOAD, *key)
        read = None if row is None else await asyncio.to_thread(_Read.of, row)
        if read is None or not len(read.ids) or not self._fits(read.vectors.nbytes):
            self._dropped(key)
            return
        copies = _Copies(
            ids=read.ids,
            excluded=read.excluded,
            vectors=(read.vectors,),
            largest_norm=read.largest_norm,
            snapshot=read.snapshot,
            loaded=time.monotonic(),
        )
        self._kept(key, copies, loaded=True)

    async def _refresh(self, key: tuple[str, int]) -> None:
        """Read in the copies written since the cache's snapshot, as a segment of its own; a
        namespace grown by a quarter since its load, or in 16 segments, is loaded again."""
        copies = self._entries.get(key)
        if copies is None:
            return
        row = await self._fetch_row(key, _NEWER, *key, copies.snapshot)
        read = None if row is None else await asyncio.to_thread(_Read.of, row)
        if read is None or self._entries.get(key) is not copies:
            return  # failed, or evicted or loaded again meanwhile
        if not len(read.ids):
            self._read[key] = time.monotonic()  # the same copies, as of a later snapshot
            self._entries[key] = replace(copies, snapshot=read.snapshot)
            return
        if read.vectors.shape[1] != copies.dimensions:
            self._dropped(key)
            return
        grown = copies.with_segment(read)
        self._kept(key, grown, loaded=False)
        if len(grown.vectors) > _MOST_SEGMENTS or len(grown.ids) > 1.25 * len(copies.vectors[0]):
            await self._load(key)

    async def _fetch_row(
        self, key: tuple[str, int], sql: str, *values: object
    ) -> asyncpg.Record | None:
        async def read(connection: Connection) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await connection.fetchrow(sql, *values)
            return row

        return await self._fetch(key, read)


def _error_bound(query: npt.NDArray[np.float32], largest_norm: float) -> float:
    """How far numpy's distance may lie from pgvector's for any cached copy: each is a float32
    sum of ``d`` products, off the exact inner product by at most gamma_d |q| |v| (gamma_d = d u
    / (1 - d u), whatever the order of the sum, fused multiply-adds or not), so they differ by
    twice that; doubled again for margin, plus ``d`` of float32's smallest subnormal for each
    sum (products that underflow fall outside the relative bound)."""
    d = len(query)
    gamma = d * _UNIT_ROUNDOFF / (1 - d * _UNIT_ROUNDOFF)
    return 4.0 * gamma * float(np.linalg.norm(query)) * largest_norm + 4.0 * d * _SUBNORMAL


def _uuids(ids: npt.NDArray[np.void]) -> list[UUID]:
    raw = ids.tobytes()
    return [UUID(raw[start : start + 16]) for start in range(0, len(raw), 16)]


def _vectors(packed: bytes, count: int) -> npt.NDArray[np.float32] | None:
    """``count`` vectors as ``vector_send`` packs them (int16 dimensions, int16 unused, then
    big-endian float4s), one row each; None if their sizes differ."""
    if count == 0:
        return np.zeros((0, 0), np.float32)
    if len(packed) % count:
        return None
    width = len(packed) // count
    rows = np.frombuffer(packed, np.uint8).reshape(count, width)
    dimensions = rows[:, :2].copy().view(">u2").ravel()
    if (width - 4) % 4 or not np.all(dimensions == (width - 4) // 4):
        return None
    return np.ascontiguousarray(rows[:, 4:]).view(">f4").astype(np.float32)
