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
``REFRESH_SECONDS`` while recalls ask for it, and a namespace is loaded again when a proof
fails (deleted copies crowding the candidates). The cache holds at most ``PGRECALL_VECTOR_CACHE_MB``
(least recently used namespaces go first); 0 turns it off. Not on Citus, whose shards keep
their own transaction ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
import numpy.typing as npt
from asyncpg.pgproto.pgproto import UUID

from pgrecall.db.errors import database_errors
from pgrecall.db.inspect import on_citus
from pgrecall.errors import PgRecallError
from pgrecall.offload import off_loop
from pgrecall.recall.sql import newer_copies, scope_exclusions

log = logging.getLogger(__name__)

# How often a cached namespace reads in the copies written since its snapshot, while recalls
# ask for it: until then its statements score them exactly (an index range, ~0.4 us a copy as
# the copied plan pays for every copy), at most what the copier wrote in that time.
REFRESH_SECONDS = 2.0
# Candidates a recall gives its statement beyond the rows its ranking keeps: the proof fails
# only when the depth-th nearest lies within the error bound (~5e-5 for unit vectors of 384
# dimensions) of the last candidate, or when excluded or deleted copies take the spare places.
# Each costs the statement a probe by its key (~2.5 us).
SPARE_CANDIDATES = 32

# A namespace whose proofs fail is loaded again at most this often (a load reads every copy).
RELOAD_SECONDS = 10.0

# A float32 (pgvector's and numpy's sums): the unit roundoff, 2^-24.
_UNIT_ROUNDOFF = 2.0**-24
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


@dataclass(slots=True)
class _Copies:
    ids: npt.NDArray[np.void]
    vectors: npt.NDArray[np.float32]  # one row a copy
    excluded: npt.NDArray[np.bool_]  # out of scope when read: expired, or validity ended
    snapshot: str
    largest_norm: float
    loaded: float  # time.monotonic() of the load its copies came from
    read: float  # of the statement its snapshot is (a load or a refresh)
    used: float  # of the last recall that read it

    @property
    def size(self) -> int:
        return int(self.ids.nbytes + self.vectors.nbytes + self.excluded.nbytes)


class VectorCache:
    """The copies of the namespaces recent recalls asked for, at most ``max_bytes``."""

    def __init__(self, pool: asyncpg.Pool, max_bytes: int) -> None:
        self._pool = pool
        self._max_bytes = max_bytes
        self._copies: dict[tuple[str, int], _Copies] = {}
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._too_large: set[tuple[str, int]] = set()
        self._citus: bool | None = None  # asked before the first load

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0

    async def candidates(
        self, namespace: str, space_id: int, vector: Sequence[float], count: int
    ) -> Candidates | None:
        """The ``count`` cached copies nearest ``vector``, or None when the namespace is not
        cached (its load is then started, for the recalls after this one). Ranked in a worker
        thread when large (``offload``: a thousand 384-d copies an item, ~0.1 ms)."""
        key = (namespace, space_id)
        copies = self._copies.get(key)
        if copies is None:
            if key not in self._too_large:
                self._start(key, full=True)
            return None
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != copies.vectors.shape[1:]:
            return None
        copies.used = now = time.monotonic()
        if now - copies.read >= REFRESH_SECONDS:
            self._start(key, full=False)
        # vecdot, not ``@``: OpenBLAS runs a matrix-vector product this size on every core
        # (0.22 ms, but 2.0 cores busy, its threads spinning after it), taking them from the
        # PostgreSQL backends; vecdot's loop takes one (0.51 ms for SciFact's 5,183 x 384).
        vectors = copies.vectors  # a refresh replaces the arrays, never changes them
        distances = await off_loop(vectors.size // _ITEM_VALUES, lambda: -np.vecdot(vectors, query))
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
        key = (namespace, space_id)
        copies = self._copies.get(key)
        if copies is None or time.monotonic() - copies.loaded >= RELOAD_SECONDS:
            self._start(key, full=True)

    def _start(self, key: tuple[str, int], *, full: bool) -> None:
        if not self.enabled or key in self._tasks:
            return
        task = asyncio.create_task(self._read(key, full=full))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _read(self, key: tuple[str, int], *, full: bool) -> None:
        """Load the namespace's copies (``full``) or read in those written since the cache's
        snapshot. A failure leaves the cache as it was: recall runs the copied plan meanwhile."""
        namespace, space_id = key
        cached = self._copies.get(key)
        try:
            with database_errors():
                if self._citus is None:
                    async with self._pool.acquire() as connection:
                        self._citus = await on_citus(connection)
                if self._citus:
                    self._max_bytes = 0
                    return
                if full or cached is None:
                    row = await self._pool.fetchrow(_LOAD, namespace, space_id)
                else:
                    row = await self._pool.fetchrow(_NEWER, namespace, space_id, cached.snapshot)
        except PgRecallError as exc:
            log.warning("vector cache: reading %r failed: %s", namespace, exc)
            return
        if row is None:
            return
        ids = np.frombuffer(row["ids"], _ID)
        vectors = _vectors(row["vectors"], len(ids))
        excluded = np.frombuffer(row["excluded"], np.bool_)
        if not (full or cached is None):
            # Newer copies merge into the copies they were read against, still cached; a
            # snapshot's newer copies alone are not the namespace.
            if self._copies.get(key) is not cached or vectors is None:
                return
            merged = _merged(cached, ids, vectors, excluded)
            if merged is None:
                self._copies.pop(key, None)
                return
            ids, vectors, excluded = merged
        if vectors is None:  # copies of several sizes: not one space's
            self._copies.pop(key, None)
            return
        if ids.nbytes + vectors.nbytes > self._max_bytes:
            self._too_large.add(key)
            self._copies.pop(key, None)
            return
        norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(1)
        now = time.monotonic()
        self._copies[key] = _Copies(
            ids=ids,
            vectors=vectors,
            excluded=excluded,
            snapshot=row["snapshot"],
            largest_norm=float(norms.max()),
            loaded=now if full or cached is None else cached.loaded,
            read=now,
            used=now,
        )
        self._evict(keep=key)

    def _evict(self, keep: tuple[str, int]) -> None:
        """Drop the least recently used namespaces until the cache fits ``max_bytes``."""
        total = sum(copies.size for copies in self._copies.values())
        for key in sorted(self._copies, key=lambda k: self._copies[k].used):
            if total <= self._max_bytes:
                break
            if key != keep:
                total -= self._copies.pop(key).size

    async def aclose(self) -> None:
        """Stop the loads in flight (before the pool closes)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _error_bound(query: npt.NDArray[np.float32], largest_norm: float) -> float:
    """How far numpy's distance may lie from pgvector's for any cached copy: each is a float32
    sum of ``d`` products, off the exact inner product by at most gamma_d |q| |v| (gamma_d = d u
    / (1 - d u), whatever the order of the sum), so they differ by twice that; doubled again
    for the rounding of the products and the norms themselves."""
    d = len(query)
    gamma = d * _UNIT_ROUNDOFF / (1 - d * _UNIT_ROUNDOFF)
    return 4.0 * gamma * float(np.linalg.norm(query)) * largest_norm


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


def _merged(
    cached: _Copies,
    ids: npt.NDArray[np.void],
    vectors: npt.NDArray[np.float32],
    excluded: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.float32], npt.NDArray[np.bool_]] | None:
    """The cached copies with those written since: a replaced copy (the same id) takes its new
    vector, a new one is added; None if their sizes differ."""
    if len(ids) == 0:
        return cached.ids, cached.vectors, cached.excluded
    if vectors.shape[1] != cached.vectors.shape[1]:
        return None
    raw = cached.ids.tobytes()
    position = {raw[start : start + 16]: start // 16 for start in range(0, len(raw), 16)}
    merged_vectors, merged_excluded = cached.vectors.copy(), cached.excluded.copy()
    added: list[int] = []
    new = ids.tobytes()
    for place in range(len(ids)):
        known = position.get(new[place * 16 : place * 16 + 16])
        if known is None:
            added.append(place)
        else:
            merged_vectors[known] = vectors[place]
            merged_excluded[known] = excluded[place]
    return (
        np.concatenate([cached.ids, ids[added]]),
        np.concatenate([merged_vectors, vectors[added]]),
        np.concatenate([merged_excluded, excluded[added]]),
    )
