"""SQL of ingestion: find rows that already hold a vector, upsert by text or by key.

Identity decides: an unkeyed memory is its text (``content_hash``), a keyed one its key. A row
keeps its vector only while its indexed text is unchanged; otherwise the new vector (or, when
there is none yet, the pending state) replaces it, so a row never holds a stale vector.
"""

from pgrecall.ingest.plan import COLUMN_NAMES, column_types


def _probe(identity: str, namespace: str, columns: str, conditions: str = "") -> str:
    """A LATERAL subquery returning ``columns`` of the row of memories, in the namespace
    ``namespace`` (a parameter), whose ``identity`` (``content_hash``, of unkeyed rows, or
    ``key``) is the wanted row ``w``'s and that meets ``conditions``: one probe of the unique
    index of that identity kind, whatever the statistics say.

    The identity is asked as an ordered range, ``BETWEEN`` it and itself ``ORDER BY`` it, not
    as an equality: for a namespace the statistics have not seen (estimated at one row) the
    primary key, led by the namespace too, cost the same as the unique index for an equality,
    and the planner kept whichever it had met first (the newer OID), so after a ``REINDEX
    CONCURRENTLY memories_pkey`` each probe read the whole new namespace through the primary
    key, filtering the identity (a first bulk import 0.22-0.28x the rate; RESULTS.md, issue
    21, sessions 13-14). Ordered, only the unique index returns the row without a sort. Both
    bounds, not ``>=`` alone: with no upper bound the btree read the rest of the leaf page at
    each probe, and remembering 100,000 known memories again took 1.45x the backends' CPU.
    """
    unkeyed = " AND m.key IS NULL" if identity == "content_hash" else ""
    return f"""CROSS JOIN LATERAL (
            SELECT {columns} FROM memories m
            WHERE m.namespace = {namespace}::text AND m.namespace = w.namespace
              AND m.{identity} BETWEEN w.{identity} AND w.{identity}{unkeyed}{conditions}
            ORDER BY m.{identity} LIMIT 1
        ) AS m"""


# Which of a chunk's memories already have a row (they are upserted; the others are copied in),
# and which of those rows hold a vector this store can keep (their text is not embedded again);
# one row: the positions found, whether each is reusable, and the server's clock (new rows of a
# call are stamped from it, see COPY_COLUMNS). One branch per identity kind, each probing the
# unique index of its kind for each wanted row (``_probe``; a join on "key IS NOT DISTINCT FROM"
# can use neither index and scanned the namespace or the table).
#
# Asked of one namespace at a time ($6, the namespace of every wanted row; the service groups a
# chunk's memories by namespace), so Citus routes it to that namespace's shard. Each probe is a
# LATERAL subquery with a LIMIT, which the planner cannot fold into a join: as a join it read the
# namespace once per wanted row whenever the statistics had not seen the namespace yet (they
# estimate one row for it), e.g. the first imports into a new namespace of a store holding one
# large one: 380 ms for 400 wanted rows against 2.3 ms probing (30,000 rows in one namespace plus
# 5,000 new; switch_cost's batched legs ran at 538-773 memories/s instead of ~8,000).
_FOUND = "m.embedding, m.space_id, m.search_text"
FIND_EXISTING = f"""
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $5::text[]) WITH ORDINALITY
                      AS w(namespace, content_hash, key, search_text, position)
    ), found AS (
        SELECT w.position,
               m.embedding IS NOT NULL AND m.space_id = $4
               AND m.search_text IS NOT DISTINCT FROM w.search_text AS reusable
        FROM wanted w
        {_probe("content_hash", "$6", _FOUND)}
        WHERE w.key IS NULL
        UNION ALL
        SELECT w.position,
               m.content_hash = w.content_hash AND m.embedding IS NOT NULL AND m.space_id = $4
               AND m.search_text IS NOT DISTINCT FROM w.search_text
        FROM wanted w
        {_probe("key", "$6", "m.content_hash, " + _FOUND)}
    )
    SELECT clock_timestamp() AS clock,
           coalesce(array_agg(position), '{{}}') AS positions,
           coalesce(array_agg(reusable), '{{}}') AS reusable
    FROM found
"""

# Which of the chunk's memories found with a reusable vector the upsert would leave as they
# are but for updated_at: the same text and vector of this space, settled (embedded, no error
# or attempts to reset), the same expiry, metadata the merge (unkeyed) or replacement (keyed)
# would not change. Those are not written at all: remembering a known fact again costs the two
# lookups, not a new version of the row in every index. Asked only about memories found
# reusable, so a chunk of new memories sends its metadata once, in the COPY; asked of one
# namespace at a time ($10) and probed row by row, as FIND_EXISTING is.
_SETTLED = """m.status = 'embedded' AND m.embed_error IS NULL
              AND m.embed_attempts = 0 AND m.space_id = $4
              AND m.search_text IS NOT DISTINCT FROM w.search_text
              AND m.expires_at IS NOT DISTINCT FROM w.expires_at
              AND m.valid_from IS NOT DISTINCT FROM w.valid_from
              AND m.valid_until IS NOT DISTINCT FROM w.valid_until AND m.invalid_reason IS NULL"""
# What an unchanged unkeyed row also holds: metadata the merge would not change; a keyed one:
# the same text and metadata.
_UNKEYED_UNCHANGED = f" AND {_SETTLED} AND m.metadata || w.metadata::jsonb = m.metadata"
_KEYED_UNCHANGED = (
    f" AND m.content_hash = w.content_hash AND {_SETTLED} AND m.metadata = w.metadata::jsonb"
)
FIND_UNCHANGED = f"""
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $5::text[], $6::text[],
                             $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
                      WITH ORDINALITY
                      AS w(namespace, content_hash, key, search_text, metadata, expires_at,
                           valid_from, valid_until, position)
    )
    SELECT w.position, m.id
    FROM wanted w
    {_probe("content_hash", "$10", "m.id", _UNKEYED_UNCHANGED)}
    WHERE w.key IS NULL
    UNION ALL
    SELECT w.position, m.id
    FROM wanted w
    {_probe("key", "$10", "m.id", _KEYED_UNCHANGED)}
"""

# New memories go in by binary COPY (ids made by the client), known ones by an upsert of the same
# rows; both take the columns of the one column spec, plan.Columns. A call's new rows are stamped
# created_at = updated_at = the server's clock at its first lookup plus one microsecond per input
# position: its chunks are written concurrently, and "newest first" still follows the order the
# memories were given in.
COPY_COLUMNS = COLUMN_NAMES

# A row past its expiry is gone to every read (expiry.py) until the sweeper deletes it: written
# again, it starts afresh under its id, as a new row would: nothing of its metadata carried
# over, stamped like the call's new rows (created_at = updated_at, which tells it from an
# update in RETURNING: an update is stamped later, at the statement's clock).
#
# The statement's clock is read once (CTE ``clock``) and reaches DO UPDATE SET through the
# proposed row's embed_after (EXCLUDED.embed_after; a new row takes it as its embed_after, as
# the column's default would): Citus runs DO UPDATE SET on the shards and refuses any function
# there but immutable ones (now() and clock_timestamp() in it failed).
CLOCK = "clock AS (SELECT clock_timestamp() AS at)"
EXPIRED = "memories.expires_at <= EXCLUDED.embed_after"
INSERTED = "(xmax = 0 OR created_at = updated_at) AS inserted"
# What a written row was to the audit log (a new version gets version_since = updated_at from
# the memories_keep_version trigger, migration 0011).
ACTION = """CASE WHEN inserted THEN 'create'
                 WHEN version_since IS NOT DISTINCT FROM updated_at THEN 'supersede'
                 ELSE 'update' END"""


def _upsert(conflict: str, assignments: str, same_text: str, identity: str) -> str:
    """An INSERT of plan.Columns's columns, one ``unnest`` array each, that writes a known memory
    over its row (``conflict``: the unique index of its identity kind). ``assignments`` are the
    kind's own; ``same_text`` holds when the row's indexed text is the incoming one, so its
    vector is still good when no new one comes."""
    columns = ", ".join(COPY_COLUMNS)
    arrays = ", ".join(
        f"${position}::{sql_type}[]"
        for position, sql_type in enumerate(column_types().values(), start=1)
    )
    return f"""
    WITH {CLOCK}
    INSERT INTO memories ({columns}, embed_after)
    SELECT incoming.*, clock.at FROM clock, unnest({arrays}) AS incoming({columns})
    ON CONFLICT {conflict} DO UPDATE SET
{assignments}
        search_text = EXCLUDED.search_text,
        expires_at = EXCLUDED.expires_at,
        -- The valid time is the newest call's, like the expiry: remembering a fact again
        -- states it anew, so an invalidation's reason goes with the old validity.
        valid_from = EXCLUDED.valid_from,
        valid_until = EXCLUDED.valid_until,
        invalid_reason = NULL,
        embedding = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding
            WHEN {same_text} THEN memories.embedding
        END,
        space_id = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.space_id
            WHEN {same_text} THEN memories.space_id
        END,
        status = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN 'embedded'
            WHEN {same_text} AND memories.embedding IS NOT NULL THEN 'embedded'
            ELSE EXCLUDED.status
        END,
        embed_error = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN NULL
            WHEN {same_text} AND memories.embedding IS NOT NULL THEN NULL
            ELSE EXCLUDED.embed_error
        END,
        embed_attempts = 0,
        embed_after = EXCLUDED.embed_after,
        created_at = CASE WHEN {EXPIRED} THEN EXCLUDED.created_at
                          ELSE memories.created_at END,
        updated_at = CASE WHEN {EXPIRED} THEN EXCLUDED.created_at ELSE EXCLUDED.embed_after END
    RETURNING id, namespace, {identity}, {INSERTED}, status, embed_error, version_since,
              updated_at, version
"""


def _audited(upsert: str) -> str:
    """``upsert`` writing one audit entry per row it wrote, in the same statement; the actor is
    the parameter after the column arrays."""
    actor = f"${len(COPY_COLUMNS) + 1}::text"
    return f"""
    WITH written AS ({upsert}), audit AS (
        INSERT INTO memory_audit (namespace, memory_id, action, actor, version)
        SELECT namespace, id, {ACTION}, {actor}, version FROM written
    )
    SELECT * FROM written
    """


_SAME_SEARCH_TEXT = "memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text"

# An unkeyed memory is its text: known again, its metadata is merged (the newest keys winning).
UPSERT_BY_CONTENT = _upsert(
    conflict="(namespace, content_hash) WHERE key IS NULL",
    assignments=f"""        metadata = CASE WHEN {EXPIRED} THEN EXCLUDED.metadata
                        ELSE memories.metadata || EXCLUDED.metadata END,""",
    same_text=_SAME_SEARCH_TEXT,
    identity="content_hash",
)

# A keyed memory takes the new text, metadata and expiry; a row whose text changed under us
# keeps no stale vector: it goes pending.
UPSERT_BY_KEY = _upsert(
    conflict="(namespace, key) WHERE key IS NOT NULL",
    assignments="""        content = EXCLUDED.content,
        content_hash = EXCLUDED.content_hash,
        metadata = EXCLUDED.metadata,""",
    same_text=f"memories.content_hash = EXCLUDED.content_hash AND {_SAME_SEARCH_TEXT}",
    identity="key",
)

# The upsert of each identity kind (plan.Upsert.kind).
UPSERTS = {"content": _audited(UPSERT_BY_CONTENT), "key": _audited(UPSERT_BY_KEY)}
