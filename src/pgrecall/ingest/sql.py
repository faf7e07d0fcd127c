"""SQL of ingestion: find rows that already hold a vector, upsert by text or by key.

Identity decides: an unkeyed memory is its text (``content_hash``), a keyed one its key. A row
keeps its vector only while its indexed text is unchanged; otherwise the new vector (or, when
there is none yet, the pending state) replaces it, so a row never holds a stale vector.
"""

# Which of a chunk's memories already have a row (they are upserted; the others are copied in),
# and which of those rows hold a vector this store can keep (their text is not embedded again);
# one row: the positions found, whether each is reusable, and the server's clock (new rows of a
# call are stamped from it, see COPY_COLUMNS). One branch per identity kind, each joined on the
# columns of its unique partial index, so every wanted row is one index probe (a join on
# "key IS NOT DISTINCT FROM" can use neither index and scanned the namespace or the table).
FIND_EXISTING = """
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $5::text[]) WITH ORDINALITY
                      AS w(namespace, content_hash, key, search_text, position)
    ), found AS (
        SELECT w.position,
               m.embedding IS NOT NULL AND m.space_id = $4
               AND m.search_text IS NOT DISTINCT FROM w.search_text AS reusable
        FROM wanted w
        JOIN memories m ON m.namespace = w.namespace AND m.content_hash = w.content_hash
                       AND m.key IS NULL
        WHERE w.key IS NULL
        UNION ALL
        SELECT w.position,
               m.content_hash = w.content_hash AND m.embedding IS NOT NULL AND m.space_id = $4
               AND m.search_text IS NOT DISTINCT FROM w.search_text
        FROM wanted w
        JOIN memories m ON m.namespace = w.namespace AND m.key = w.key
    )
    SELECT clock_timestamp() AS clock,
           coalesce(array_agg(position), '{}') AS positions,
           coalesce(array_agg(reusable), '{}') AS reusable
    FROM found
"""

# Which of the chunk's memories found with a reusable vector the upsert would leave as they
# are but for updated_at: the same text and vector of this space, settled (embedded, no error
# or attempts to reset), the same expiry, metadata the merge (unkeyed) or replacement (keyed)
# would not change. Those are not written at all: remembering a known fact again costs the two
# lookups, not a new version of the row in every index. Asked only about memories found
# reusable, so a chunk of new memories sends its metadata once, in the COPY.
FIND_UNCHANGED = """
    WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $5::text[], $6::text[],
                             $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
                      WITH ORDINALITY
                      AS w(namespace, content_hash, key, search_text, metadata, expires_at,
                           valid_from, valid_until, position)
    )
    SELECT w.position, m.id
    FROM wanted w
    JOIN memories m ON m.namespace = w.namespace AND m.content_hash = w.content_hash
                   AND m.key IS NULL
    WHERE w.key IS NULL AND m.status = 'embedded' AND m.embed_error IS NULL
      AND m.embed_attempts = 0 AND m.space_id = $4
      AND m.search_text IS NOT DISTINCT FROM w.search_text
      AND m.expires_at IS NOT DISTINCT FROM w.expires_at
      AND m.valid_from IS NOT DISTINCT FROM w.valid_from
      AND m.valid_until IS NOT DISTINCT FROM w.valid_until AND m.invalid_reason IS NULL
      AND m.metadata || w.metadata::jsonb = m.metadata
    UNION ALL
    SELECT w.position, m.id
    FROM wanted w
    JOIN memories m ON m.namespace = w.namespace AND m.key = w.key
    WHERE m.content_hash = w.content_hash AND m.status = 'embedded' AND m.embed_error IS NULL
      AND m.embed_attempts = 0 AND m.space_id = $4
      AND m.search_text IS NOT DISTINCT FROM w.search_text
      AND m.expires_at IS NOT DISTINCT FROM w.expires_at
      AND m.valid_from IS NOT DISTINCT FROM w.valid_from
      AND m.valid_until IS NOT DISTINCT FROM w.valid_until AND m.invalid_reason IS NULL
      AND m.metadata = w.metadata::jsonb
"""

# New memories go in by binary COPY (ids made by the client). A call's new rows are stamped
# created_at = updated_at = the server's clock at its first lookup plus one microsecond per input
# position: its chunks are written concurrently, and "newest first" still follows the order the
# memories were given in.
COPY_COLUMNS = (
    "created_at",
    "updated_at",
    "id",
    "namespace",
    "key",
    "content",
    "content_hash",
    "metadata",
    "embedding",
    "space_id",
    "expires_at",
    "status",
    "embed_error",
    "search_text",
    "valid_from",
    "valid_until",
)

# A row past its expiry is gone to every read (expiry.py) until the sweeper deletes it: written
# again, it starts afresh under its id, as a new row would: nothing of its metadata carried
# over, stamped like the call's new rows (created_at = updated_at, which tells it from an
# update in RETURNING: an update is stamped later, at its clock_timestamp()).
EXPIRED = "memories.expires_at <= now()"
STAMPS = f"""        created_at = CASE WHEN {EXPIRED} THEN EXCLUDED.created_at
                          ELSE memories.created_at END,
        updated_at = CASE WHEN {EXPIRED} THEN EXCLUDED.created_at ELSE clock_timestamp() END"""
INSERTED = "(xmax = 0 OR created_at = updated_at) AS inserted"
# The valid time is the newest call's, like the expiry; remembering a fact again states it anew,
# so an invalidation's reason goes with the old validity.
VALID_TIME = """        valid_from = EXCLUDED.valid_from,
        valid_until = EXCLUDED.valid_until,
        invalid_reason = NULL,"""
# What a written row was to the audit log (a new version gets version_since = updated_at from
# the memories_keep_version trigger, migration 0010).
ACTION = """CASE WHEN inserted THEN 'create'
                 WHEN version_since IS NOT DISTINCT FROM updated_at THEN 'supersede'
                 ELSE 'update' END"""


def audited(upsert: str, actor: str) -> str:
    """``upsert`` (its RETURNING list ends with ``inserted``, version_since, updated_at and
    version) writing one audit entry per row, in the same statement; ``actor`` a placeholder."""
    return f"""
    WITH written AS ({upsert}), audit AS (
        INSERT INTO memory_audit (namespace, memory_id, action, actor, version)
        SELECT namespace, id, {ACTION}, {actor}, version FROM written
    )
    SELECT * FROM written
    """


UPSERT_BY_CONTENT = f"""
    INSERT INTO memories (namespace, content, content_hash, metadata, embedding, space_id,
                          expires_at, status, embed_error, search_text, created_at, updated_at,
                          valid_from, valid_until)
    SELECT namespace, content, content_hash, metadata, embedding, space_id, expires_at,
           status, embed_error, search_text, created_at, created_at, valid_from, valid_until
    FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[], $5::vector[], $6::int[],
                $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
                $12::timestamptz[], $13::timestamptz[])
         AS incoming(namespace, content, content_hash, metadata, embedding, space_id, expires_at,
                     status, embed_error, search_text, created_at, valid_from, valid_until)
    ON CONFLICT (namespace, content_hash) WHERE key IS NULL DO UPDATE SET
        metadata = CASE WHEN {EXPIRED} THEN EXCLUDED.metadata
                        ELSE memories.metadata || EXCLUDED.metadata END,
        search_text = EXCLUDED.search_text,
        expires_at = EXCLUDED.expires_at,
{VALID_TIME}
        embedding = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding
            WHEN memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 THEN memories.embedding
        END,
        space_id = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.space_id
            WHEN memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 THEN memories.space_id
        END,
        status = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN 'embedded'
            WHEN memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 AND memories.embedding IS NOT NULL THEN 'embedded'
            ELSE EXCLUDED.status
        END,
        embed_error = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN NULL
            WHEN memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 AND memories.embedding IS NOT NULL THEN NULL
            ELSE EXCLUDED.embed_error
        END,
        embed_attempts = 0,
        embed_after = now(),
{STAMPS}
    RETURNING id, namespace, content_hash, {INSERTED}, status, embed_error, version_since,
              updated_at, version
"""

# A new row takes the call's stamp (see COPY_COLUMNS). A keyed row whose text changed under us
# keeps no stale vector: it goes pending.
UPSERT_BY_KEY = f"""
    INSERT INTO memories (namespace, key, content, content_hash, metadata, embedding, space_id,
                          expires_at, status, embed_error, search_text, created_at, updated_at,
                          valid_from, valid_until)
    SELECT namespace, key, content, content_hash, metadata, embedding, space_id, expires_at,
           status, embed_error, search_text, created_at, created_at, valid_from, valid_until
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[], $6::vector[],
                $7::int[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])
         AS incoming(namespace, key, content, content_hash, metadata, embedding, space_id,
                     expires_at, status, embed_error, search_text, created_at, valid_from,
                     valid_until)
    ON CONFLICT (namespace, key) WHERE key IS NOT NULL DO UPDATE SET
        content = EXCLUDED.content,
        search_text = EXCLUDED.search_text,
        content_hash = EXCLUDED.content_hash,
        metadata = EXCLUDED.metadata,
        expires_at = EXCLUDED.expires_at,
{VALID_TIME}
        embedding = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding
            WHEN memories.content_hash = EXCLUDED.content_hash
                 AND memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 THEN memories.embedding
        END,
        space_id = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.space_id
            WHEN memories.content_hash = EXCLUDED.content_hash
                 AND memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 THEN memories.space_id
        END,
        status = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN 'embedded'
            WHEN memories.content_hash = EXCLUDED.content_hash
                 AND memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 AND memories.embedding IS NOT NULL THEN 'embedded'
            ELSE EXCLUDED.status
        END,
        embed_error = CASE
            WHEN EXCLUDED.embedding IS NOT NULL THEN NULL
            WHEN memories.content_hash = EXCLUDED.content_hash
                 AND memories.search_text IS NOT DISTINCT FROM EXCLUDED.search_text
                 AND memories.embedding IS NOT NULL THEN NULL
            ELSE EXCLUDED.embed_error
        END,
        embed_attempts = 0,
        embed_after = now(),
{STAMPS}
    RETURNING id, namespace, key, {INSERTED}, status, embed_error, version_since, updated_at,
              version
"""

# The upserts with their audit entries; the actor is the parameter after the column arrays.
AUDITED_UPSERT_BY_CONTENT = audited(UPSERT_BY_CONTENT, "$14::text")
AUDITED_UPSERT_BY_KEY = audited(UPSERT_BY_KEY, "$15::text")
