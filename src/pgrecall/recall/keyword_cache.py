"""A process's cache of namespaces' keyword postings: BM25 of a large namespace scored in numpy
from postings held in memory, its statement left to return what changed since they were read.

Python BM25 (``recall.bm25``) reads the query's postings from ``memory_terms`` on every recall:
one index-only range per lexeme, each posting packed and sent (~0.3 us a posting; SciFact's
keyword statement took 1.8-2.1 ms for ~5,900 postings, a namespace of 100,000 long documents
~20 ms for ~100,000). So a process keeps each such namespace's postings (per lexeme, each
memory as an index into the namespace's memories, and the term frequency), read under one
snapshot, and a recall's statement (``bm25.postings_since_statement``) returns only what the
cache cannot know:

- the postings moved since that snapshot (``memory_terms.moved_by``, migration 0019: an index
  range);
- the rows not moved yet (from their tsvectors, as always);
- the query's lexemes (the text search configuration is the database's), BM25's N;
- the namespace's count of dropped postings (``memory_term_counts.dropped``).

**Exact.** BM25's statistics are the namespace's: a lexeme's df counts its postings, avgdl
averages the matching memories' lengths. A posting added since the snapshot is in the
statement's rows; one dropped since (its memory deleted, or its text changed) is the one
change the rows cannot show, and the count tells it, as it only grows: while it is the one the
cache read, the cache's postings are all still there, and the cache and the rows are the
namespace's postings, each memory in one of them. Otherwise the recall reads its postings as
without a cache, and the namespace is loaded again. Each memory's score is summed in the
lexemes' order, as ``bm25.ranked`` sums it, so the scores are the same bits.

**Kept fresh** as ``recall.process_cache`` says: the postings moved since are read in every
``REFRESH_SECONDS`` as a segment of their own, and a namespace is loaded again after 16 or when
it has grown by a quarter; one not read for ``STALE_SECONDS`` is not used until a refresh has
read it in. Loads read under one snapshot (a repeatable-read transaction): the memories with
postings, then the postings by lexeme through a cursor, each naming its memory by number
(PostgreSQL numbers them in the join: mapping 14 million uuids to numbers in numpy took 2.7 s),
decoded in a worker thread (SciFact's 524,551 postings: 0.8 s to read, 0.09 s to decode).
``PGRECALL_KEYWORD_CACHE_MB`` bounds the cache; 0 turns it off.

**Where it does not hold.** Not on Citus (``recall.process_cache``). ``moved_by`` is this
cluster's transaction id: a restored dump or a logical replica carries another's. Ids above any
this cluster has given are seen, and the namespace is not cached (they would read as moved
since, and count twice); ids below are not (``UPDATE memory_terms SET moved_by = NULL`` once
restored; run a replica's processes with the cache off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgrecall.recall import bm25
from pgrecall.recall.process_cache import REFRESH_SECONDS, Connection, NamespaceCache
from pgrecall.recall.sql import written_since

# Postings dated by a transaction this snapshot cannot have seen begin: another cluster's ids
# (a restored dump, a logical replica), which the statements would take for postings moved since
# the cache's snapshot, and count twice. A namespace with any is not cached (an index range of
# ``memory_terms_moved_by`` above the snapshot's xmax, empty otherwise).
_FOREIGN = """EXISTS (
        SELECT 1 FROM memory_terms p WHERE p.namespace = $1::text
          AND p.moved_by >= pg_snapshot_xmax(pg_current_snapshot()))"""
# What a load reads first, in its snapshot: the namespace's count of dropped postings and its
# size (no row: no postings moved yet).
_HEADER = f"""
    SELECT pg_current_snapshot()::text AS snapshot, c.dropped, c.documents,
           (SELECT count(*) FROM memory_terms p WHERE p.namespace = $1::text) AS postings,
           {_FOREIGN} AS foreign_ids
    FROM memory_term_counts c WHERE c.namespace = $1::text
"""
# The memories with postings, numbered in uuid order; the load's postings name them by number.
_MEMORIES = """
    SELECT coalesce(string_agg(uuid_send(m.id), ''::bytea ORDER BY m.id), ''::bytea) AS ids
    FROM memories m WHERE m.namespace = $1::text AND m.terms_indexed
"""
_LOAD = """
    WITH numbered AS MATERIALIZED (
        SELECT m.id, (row_number() OVER (ORDER BY m.id) - 1)::int AS at
        FROM memories m WHERE m.namespace = $1::text AND m.terms_indexed
    )
    SELECT p.lexeme, string_agg(int4send(n.at), ''::bytea) AS members,
           string_agg(int4send(p.tf), ''::bytea) AS tfs,
           string_agg(int4send(p.dl), ''::bytea) AS dls
    FROM memory_terms p JOIN numbered n ON n.id = p.memory_id
    WHERE p.namespace = $1::text
    GROUP BY p.lexeme
"""
_REFRESH_HEADER = f"""
    SELECT pg_current_snapshot()::text AS snapshot, c.dropped, {_FOREIGN} AS foreign_ids
    FROM memory_term_counts c WHERE c.namespace = $1::text
"""
# The postings moved since a snapshot, naming their memories (new ones) by id.
_REFRESH = f"""
    SELECT p.lexeme, string_agg(uuid_send(p.memory_id), ''::bytea) AS ids,
           string_agg(int4send(p.tf), ''::bytea) AS tfs,
           string_agg(int4send(p.dl), ''::bytea) AS dls
    FROM memory_terms p
    WHERE p.namespace = $1::text AND {written_since("p.moved_by", "$2::text")}
    GROUP BY p.lexeme
"""

# Cached postings read longer ago than this are not used until a refresh has read in what was
# moved since: after an idle spell under heavy writes, every posting moved meanwhile.
STALE_SECONDS = 10 * REFRESH_SECONDS
# Lexemes a cursor fetch brings (one row each, ~30 postings a lexeme on SciFact's abstracts).
_CHUNK_ROWS = 2_000
# Bytes a load counts per posting (a memory index and a term frequency, int32 each), per memory
# (its id and length) and per lexeme (the dictionary's entry, its string and tuple, ~200 bytes).
_POSTING_BYTES = 8
_MEMORY_BYTES = 16 + 8
_LEXEME_BYTES = 200
# Refreshes a namespace takes as segments of their own before it is loaded whole again.
_MOST_SEGMENTS = 16
_ID = np.dtype("V16")
_COUNT = np.dtype(">i4")


@dataclass(frozen=True, slots=True)
class _Segment:
    """The postings one load or refresh read, by lexeme: ``lexemes[l]`` is the (start, stop)
    of its postings in ``memories`` (indices into ``Postings.ids``) and ``tfs``."""

    lexemes: dict[str, tuple[int, int]]
    memories: npt.NDArray[np.int32]
    tfs: npt.NDArray[np.int32]

    @property
    def size(self) -> int:
        return int(self.memories.nbytes + self.tfs.nbytes) + _LEXEME_BYTES * len(self.lexemes)


@dataclass(frozen=True, slots=True)
class Postings:
    """A namespace's cached postings: its memories with postings, and the segments."""

    ids: npt.NDArray[np.void]  # 16 bytes each (uuid_send); a load's sorted, then refreshes'
    lengths: npt.NDArray[np.float64]  # each memory's dl
    segments: tuple[_Segment, ...]
    snapshot: str  # what the statements read since
    dropped: int  # the namespace's count of dropped postings when read
    loaded: float  # time.monotonic() of the load its first segment came from
    first_read: int  # the memories that load read

    @property
    def size(self) -> int:
        return int(self.ids.nbytes + self.lengths.nbytes) + sum(s.size for s in self.segments)

    def read(self, lexemes: Sequence[str]) -> int:
        """The scoring's size: the cached postings of ``lexemes``, and the memories (``ranked``
        counts over all of them)."""
        return len(self.ids) + sum(
            stop - start
            for segment in self.segments
            for start, stop in (segment.lexemes.get(lexeme, (0, 0)) for lexeme in lexemes)
        )

    def ranked(self, namespace: str, rows: Sequence[Any], k1: float, b: float) -> bm25.Scored:
        """BM25 of every memory of the namespace that shares a lexeme with the query, from the
        cached postings and ``rows`` (``bm25.postings_since_statement``'s, whose ``dropped``
        is the cache's), as ``bm25.ranked`` scores the same postings."""
        lexemes = sorted(rows[0]["lexemes"] or ())
        added = {row["lexeme"]: row for row in rows if row["lexeme"] is not None}
        # The memories of the rows: none is cached (a cached one would have lost its postings).
        added_ids = np.frombuffer(b"".join([row["ids"] for row in added.values()]), _ID)
        group, first = bm25.memories(added_ids, np.zeros(len(added_ids), np.intp))
        added_at, at = {}, 0  # each row's first posting in ``added_ids``
        for lexeme, row in added.items():
            added_at[lexeme], at = at, at + len(row["ids"]) // _ID.itemsize
        members: list[npt.NDArray[np.integer[Any]]] = []
        tfs: list[npt.NDArray[np.int32]] = []
        lengths: list[npt.NDArray[np.float64]] = []
        sizes: list[int] = []
        for lexeme in lexemes:
            size = 0
            for segment in self.segments:
                start, stop = segment.lexemes.get(lexeme, (0, 0))
                members.append(segment.memories[start:stop])
                tfs.append(segment.tfs[start:stop])
                lengths.append(self.lengths[segment.memories[start:stop]])
                size += stop - start
            row = added.get(lexeme)
            if row is not None:
                at = added_at[lexeme]
                count = len(row["ids"]) // _ID.itemsize
                members.append(len(self.ids) + group[at : at + count])
                tfs.append(np.frombuffer(row["tfs"], _COUNT))
                lengths.append(np.frombuffer(row["dls"], _COUNT).astype(np.float64))
                size += count
            sizes.append(size)
        scope = len(self.ids) + len(first)
        member = np.concatenate(members).astype(np.intp) if members else np.empty(0, np.intp)
        tf = np.concatenate(tfs).astype(np.float64) if tfs else np.empty(0)
        dl = np.concatenate(lengths) if lengths else np.empty(0)
        matched = np.flatnonzero(np.bincount(member, minlength=scope))
        if not len(matched):
            return bm25.Scored([namespace], np.empty(0, np.intp), np.empty(0, _ID), np.empty(0))
        # Each matched memory's length and id: the cached ones', then the rows' (their first
        # posting's dl, as ``bm25.ranked`` takes it).
        cached = matched[matched < len(self.ids)]
        fresh = matched[matched >= len(self.ids)] - len(self.ids)
        added_dl = np.frombuffer(b"".join([r["dls"] for r in added.values()]), _COUNT)
        matched_dl = np.concatenate([self.lengths[cached], added_dl[first[fresh]]])
        df = dict(zip(lexemes, sizes, strict=True))
        weight = np.repeat(bm25.idf_weights(float(rows[0]["documents"]), df, k1, lexemes), sizes)
        avgdl = float(matched_dl.astype(np.float64).mean())
        scores = bm25.bm25_sums(weight, tf, dl, member, scope, avgdl, k1, b)
        return bm25.Scored(
            [namespace],
            np.zeros(len(matched), np.intp),
            np.concatenate([self.ids[cached], added_ids[first[fresh]]]),
            scores[matched],
        )


@dataclass(frozen=True, slots=True)
class _Read:
    """The postings one load or refresh read, decoded: a segment and its new memories."""

    snapshot: str
    dropped: int
    ids: npt.NDArray[np.void]
    lengths: npt.NDArray[np.float64]
    segment: _Segment


class KeywordCache(NamespaceCache[str, Postings]):
    """The postings of the namespaces recent recalls asked for, at most ``max_bytes``."""

    what = "keyword cache"

    def postings(self, namespace: str) -> Postings | None:
        """The namespace's cached postings, or None (their load is then started): not while
        they were read more than ``STALE_SECONDS`` ago (the statement would read every posting
        moved since; a refresh reads them in the background first)."""
        return self._entry(namespace, stale_after=STALE_SECONDS)

    def outdated(self, namespace: str) -> None:
        """A statement found postings dropped since the cache's snapshot: the cache is no
        longer used, and loaded again (at most every ``RELOAD_SECONDS``)."""
        self._discard(namespace)

    async def _load(self, key: str) -> None:
        """Read the namespace's postings whole, if they fit; else, or on a failure or none, no
        load again for ``RELOAD_SECONDS`` (recalls read their postings meanwhile)."""
        self._loading(key)
        read = await self._fetch(key, lambda connection: self._read_all(connection, key))
        if read is None:
            self._dropped(key)
            return
        postings = Postings(
            ids=read.ids,
            lengths=read.lengths,
            segments=(read.segment,),
            snapshot=read.snapshot,
            dropped=read.dropped,
            loaded=time.monotonic(),
            first_read=len(read.ids),
        )
        if not self._fits(postings.size):
            self._too_large(key)
            return
        self._kept(key, postings, loaded=True)

    async def _read_all(self, connection: Connection, namespace: str) -> _Read | None:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            header = await connection.fetchrow(_HEADER, namespace)
            if header is None or not header["postings"] or header["foreign_ids"]:
                return None
            size = (
                header["postings"] * _POSTING_BYTES
                + header["documents"] * _MEMORY_BYTES
                + _LEXEME_BYTES
            )
            if not self._fits(size):
                self._too_large(namespace)
                return None
            packed = await connection.fetchval(_MEMORIES, namespace)
            ids = np.frombuffer(packed, _ID)
            chunks = await _chunks(connection, _LOAD, namespace)
        return await asyncio.to_thread(_decoded, header, ids, chunks)

    async def _refresh(self, key: str) -> None:
        """Read in the postings moved since the cache's snapshot, as a segment of its own; the
        namespace is loaded again when postings were dropped since, when it has grown by a
        quarter, or after 16 segments."""
        postings = self._entries.get(key)
        if postings is None:
            return
        read = await self._fetch(
            key, lambda connection: self._read_since(connection, key, postings)
        )
        if read is None or self._entries.get(key) is not postings:
            return  # failed, or evicted or loaded again meanwhile
        if read.dropped != postings.dropped:
            self.outdated(key)
            return
        if not len(read.segment.memories):
            self._read[key] = time.monotonic()  # the same postings, as of a later snapshot
            self._entries[key] = replace(postings, snapshot=read.snapshot)
            return
        grown = Postings(
            ids=np.concatenate([postings.ids, read.ids]),
            lengths=np.concatenate([postings.lengths, read.lengths]),
            segments=(*postings.segments, _offset(read.segment, len(postings.ids))),
            snapshot=read.snapshot,
            dropped=read.dropped,
            loaded=postings.loaded,
            first_read=postings.first_read,
        )
        self._kept(key, grown, loaded=False)
        if len(grown.segments) > _MOST_SEGMENTS or len(grown.ids) > 1.25 * postings.first_read:
            await self._load(key)

    async def _read_since(
        self, connection: Connection, namespace: str, postings: Postings
    ) -> _Read | None:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            header = await connection.fetchrow(_REFRESH_HEADER, namespace)
            if header is None or header["foreign_ids"]:
                return None
            chunks = await _chunks(connection, _REFRESH, namespace, postings.snapshot)
        return await asyncio.to_thread(_decoded, header, None, chunks)


async def _chunks(connection: Connection, sql: str, *values: object) -> list[list[asyncpg.Record]]:
    """``sql``'s rows, fetched ``_CHUNK_ROWS`` at a time through a cursor (in the transaction)."""
    cursor = await connection.cursor(sql, *values)
    chunks = []
    while rows := await cursor.fetch(_CHUNK_ROWS):
        chunks.append(rows)
    return chunks


def _decoded(
    header: asyncpg.Record, ids: npt.NDArray[np.void] | None, chunks: list[list[asyncpg.Record]]
) -> _Read | None:
    """The postings of ``chunks`` as a segment: a load's name the memories ``ids`` by number
    (``members``), a refresh's name their own memories (new ones, numbered here from 0) by id;
    None if a number is not one of ``ids``."""
    lexemes: dict[str, tuple[int, int]] = {}
    packed: list[bytes] = []
    tfs: list[bytes] = []
    dls: list[bytes] = []
    at = 0
    for rows in chunks:
        for row in rows:
            named = row["members"] if ids is not None else row["ids"]
            count = len(row["tfs"]) // _COUNT.itemsize
            lexemes[row["lexeme"]] = (at, at + count)
            at += count
            packed.append(named)
            tfs.append(row["tfs"])
            dls.append(row["dls"])
    if ids is None:
        posted = np.frombuffer(b"".join(packed), _ID)
        members, first = bm25.memories(posted, np.zeros(len(posted), np.intp))
        ids = posted[first]
    else:
        members = np.frombuffer(b"".join(packed), _COUNT).astype(np.intp)
        if len(members) and (members.min() < 0 or members.max() >= len(ids)):
            return None
    lengths = np.zeros(len(ids), np.float64)
    lengths[members] = np.frombuffer(b"".join(dls), _COUNT)
    return _Read(
        snapshot=header["snapshot"],
        dropped=header["dropped"],
        ids=ids,
        lengths=lengths,
        segment=_Segment(
            lexemes=lexemes,
            memories=members.astype(np.int32),
            tfs=np.frombuffer(b"".join(tfs), _COUNT).astype(np.int32),
        ),
    )


def _offset(segment: _Segment, by: int) -> _Segment:
    """``segment`` naming memories ``by`` places further on (a refresh's after the cached)."""
    return replace(segment, memories=segment.memories + np.int32(by))
