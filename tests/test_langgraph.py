"""PgRecallStore against LangGraph's documented BaseStore behaviour, on a real database with the
local model. LangGraph ships no reusable store test suite (its conformance package covers
checkpointers only), so each method's documented behaviour is tested here, with the namespace
prefix cases PostgresStore got wrong."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from pgrecall import MemoryStore
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import InvalidFilterError
from pgrecall.http.metrics import InstrumentedEmbedder, Metrics
from pgrecall.langgraph import PgRecallStore

from .conftest import store_settings


@pytest.fixture
async def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def memories(
    migrated_dsn: str, local_embedder: LocalEmbedder, metrics: Metrics
) -> AsyncIterator[MemoryStore]:
    embedder = InstrumentedEmbedder(local_embedder, metrics)
    opened = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=embedder)
    yield opened
    await opened.close()


@pytest.fixture
async def store(memories: MemoryStore) -> PgRecallStore:
    return PgRecallStore(memories)


def _documents_embedded(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("pgrecall_embed_seconds_count", {"kind": "documents"})
    return value or 0.0


async def test_put_get_update_delete(store: PgRecallStore) -> None:
    namespace = ("users", "ada")
    before = datetime.now(UTC)
    await store.aput(namespace, "home", {"city": "London", "since": 1843})
    item = await store.aget(namespace, "home")
    assert item is not None
    assert item.value == {"city": "London", "since": 1843}
    assert item.key == "home"
    assert item.namespace == namespace
    assert item.created_at >= before - timedelta(seconds=5)
    await store.aput(namespace, "home", {"city": "Paris"})
    updated = await store.aget(namespace, "home")
    assert updated is not None
    assert updated.value == {"city": "Paris"}
    assert updated.created_at == item.created_at
    assert updated.updated_at >= item.updated_at
    assert await store.aget(namespace, "elsewhere") is None
    assert await store.aget(("users", "bob"), "home") is None
    await store.adelete(namespace, "home")
    assert await store.aget(namespace, "home") is None
    await store.adelete(namespace, "home")  # deleting what is gone is fine


async def test_sync_methods_from_another_thread(store: PgRecallStore) -> None:
    namespace = ("sync",)
    await asyncio.to_thread(store.put, namespace, "k", {"text": "written from a thread"})
    got = await asyncio.to_thread(store.get, namespace, "k")
    assert got is not None
    assert got.value == {"text": "written from a thread"}
    found = await asyncio.to_thread(store.search, namespace, query="a thread wrote this")
    assert [hit.key for hit in found] == ["k"]
    assert await asyncio.to_thread(store.list_namespaces) == [namespace]
    await asyncio.to_thread(store.delete, namespace, "k")
    assert await asyncio.to_thread(store.get, namespace, "k") is None
    # On the store's own loop the sync methods would deadlock: they refuse instead.
    with pytest.raises(RuntimeError, match="async methods"):
        store.get(namespace, "k")


async def test_search_by_meaning_with_filters_limit_and_offset(store: PgRecallStore) -> None:
    namespace = ("memories", "ada")
    facts = {
        "deploy": ({"text": "We ship to production every Thursday afternoon."}, "ops", 3),
        "coffee": ({"text": "The coffee machine is descaled monthly."}, "office", 1),
        "tests": ({"text": "Tests use a real PostgreSQL, never SQLite."}, "ops", 2),
    }
    for key, (value, kind, rank) in facts.items():
        await store.aput(namespace, key, {**value, "kind": kind, "rank": rank})
    hits = await store.asearch(namespace, query="Which day do we release to prod?")
    assert hits[0].key == "deploy"
    assert hits[0].score is not None
    assert hits[0].score > hits[-1].score  # type: ignore[operator]
    assert hits[0].namespace == namespace
    ops_only = await store.asearch(namespace, query="office routine", filter={"kind": "ops"})
    assert {hit.key for hit in ops_only} == {"deploy", "tests"}
    ranked = await store.asearch(namespace, filter={"rank": {"$gte": 2}})
    assert {hit.key for hit in ranked} == {"deploy", "tests"}
    assert all(hit.score is None for hit in ranked)
    assert [h.key for h in await store.asearch(namespace, filter={"rank": {"$ne": 1}})] != []
    everything = await store.asearch(namespace, limit=10)
    assert len(everything) == 3
    first = await store.asearch(namespace, limit=1, offset=0)
    second = await store.asearch(namespace, limit=1, offset=1)
    assert [*first, *second] == everything[:2]
    paged = await store.asearch(namespace, query="release day", limit=2, offset=1)
    full = await store.asearch(namespace, query="release day", limit=3)
    assert [hit.key for hit in paged] == [hit.key for hit in full[1:3]]
    with pytest.raises(InvalidFilterError, match=r"\$regex"):
        await store.asearch(namespace, filter={"text": {"$regex": "x"}})


async def test_prefixes_never_leak(store: PgRecallStore) -> None:
    await store.aput(("foo",), "a", {"text": "in foo"})
    await store.aput(("foo", "bar"), "b", {"text": "in foo/bar"})
    await store.aput(("foobar",), "c", {"text": "in foobar"})
    await store.aput(("foo/bar",), "d", {"text": "in the label foo/bar"})
    await store.aput(("fo",), "e", {"text": "in fo"})
    under_foo = await store.asearch(("foo",), limit=10)
    assert {(hit.namespace, hit.key) for hit in under_foo} == {
        (("foo",), "a"),
        (("foo", "bar"), "b"),
    }
    by_query = await store.asearch(("foo",), query="in foobar", limit=10)
    assert {hit.key for hit in by_query} == {"a", "b"}
    assert {hit.key for hit in await store.asearch(("foo", "bar"), limit=10)} == {"b"}
    assert {hit.key for hit in await store.asearch(("foo/bar",), limit=10)} == {"d"}
    assert await store.aget(("foo", "bar"), "d") is None
    assert await store.aget(("foo/bar",), "b") is None
    listed = await store.alist_namespaces(prefix=("foo",))
    assert listed == [("foo",), ("foo", "bar")]
    # A dot would merge ("foo.bar",) with ("foo", "bar") in a dot-joined mapping: refused.
    with pytest.raises(InvalidNamespaceError):
        await store.aput(("foo.bar",), "x", {"text": "dotted"})
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([SearchOp(("foo.bar",))])
    assert {hit.key for hit in await store.asearch((), limit=10)} == {"a", "b", "c", "d", "e"}
    # LIKE's wildcards mean nothing in a prefix: ("a_",) sees neither ("ab",) nor ("a%",)'s twin.
    await store.aput(("a_",), "u", {"text": "underscore"})
    await store.aput(("ab",), "v", {"text": "letter"})
    await store.aput(("a%",), "w", {"text": "percent"})
    assert [hit.key for hit in await store.asearch(("a_",))] == ["u"]
    assert [hit.key for hit in await store.asearch(("a%",))] == ["w"]


async def test_another_root_is_another_store(memories: MemoryStore, store: PgRecallStore) -> None:
    other = PgRecallStore(memories, root="tenant-b/")
    await store.aput(("shared",), "k", {"text": "tenant a"})
    await other.aput(("shared",), "k", {"text": "tenant b"})
    mine = await store.aget(("shared",), "k")
    theirs = await other.aget(("shared",), "k")
    assert mine is not None
    assert theirs is not None
    assert (mine.value, theirs.value) == ({"text": "tenant a"}, {"text": "tenant b"})
    assert [hit.value for hit in await other.asearch((), query="tenant")] == [{"text": "tenant b"}]


async def test_index_false_embeds_nothing_and_is_left_out_of_query_search(
    store: PgRecallStore, memories: MemoryStore, metrics: Metrics
) -> None:
    namespace = ("notes",)
    before = _documents_embedded(metrics)
    await store.aput(namespace, "raw", {"text": "Thursday is release day."}, index=False)
    assert _documents_embedded(metrics) == before
    got = await store.aget(namespace, "raw")
    assert got is not None
    assert got.value == {"text": "Thursday is release day."}
    await store.aput(namespace, "indexed", {"text": "We deploy on Thursdays."})
    assert _documents_embedded(metrics) > before
    found = await store.asearch(namespace, query="Thursday release day")
    assert [hit.key for hit in found] == ["indexed"]
    listed = await store.asearch(namespace)
    assert {hit.key for hit in listed} == {"raw", "indexed"}


async def test_index_fields_choose_what_is_embedded(memories: MemoryStore) -> None:
    store = PgRecallStore(memories, index={"dims": 384, "embed": "ignored", "fields": ["title"]})
    value = {"title": "Release schedule", "body": "Bananas are yellow.", "tags": ["a", "b"]}
    await store.aput(("docs",), "one", value)
    await store.aput(("docs",), "two", value, index=["body", "tags[*]"])
    stored = {
        memory.key: memory.content
        for memory in await memories.get_keyed(
            [(store.paths.encode(("docs",)), "one"), (store.paths.encode(("docs",)), "two")]
        )
    }
    assert stored == {"one": "Release schedule", "two": "Bananas are yellow.\na\nb"}
    whole = PgRecallStore(memories, root="whole/")
    await whole.aput(("docs",), "k", {"b": 1, "a": "x"})
    (memory,) = await memories.get_keyed([(whole.paths.encode(("docs",)), "k")])
    assert memory.content == '{"a": "x", "b": 1}'


async def test_ttl_sets_and_refreshes_expiry(memories: MemoryStore) -> None:
    store = PgRecallStore(memories, ttl={"default_ttl": 30, "refresh_on_read": True})
    namespace = ("ttl",)
    key = (store.paths.encode(namespace), "k")
    await store.aput(namespace, "k", {"text": "fades"})
    (first,) = await memories.get_keyed([key])
    assert first.expires_at is not None
    expected = datetime.now(UTC) + timedelta(minutes=30)
    assert abs((first.expires_at - expected).total_seconds()) < 30
    await store.aput(namespace, "short", {"text": "fades fast"}, ttl=1)
    (short,) = await memories.get_keyed([(key[0], "short")])
    assert short.expires_at is not None
    assert short.expires_at < first.expires_at
    await asyncio.sleep(0.05)
    assert await store.aget(namespace, "k") is not None  # refreshes
    (again,) = await memories.get_keyed([key])
    assert again.expires_at is not None
    assert again.expires_at > first.expires_at
    assert await store.aget(namespace, "k", refresh_ttl=False) is not None
    (kept,) = await memories.get_keyed([key])
    assert kept.expires_at == again.expires_at
    await store.aput(namespace, "forever", {"text": "stays"}, ttl=None)
    (forever,) = await memories.get_keyed([(key[0], "forever")])
    assert forever.expires_at is None
    # An item whose TTL ran out is gone from every read at once.
    await store.aput(namespace, "gone", {"text": "already expired"}, ttl=-1)
    assert await store.aget(namespace, "gone") is None
    assert "gone" not in {hit.key for hit in await store.asearch(namespace)}


async def test_list_namespaces_matching_depth_and_paging(store: PgRecallStore) -> None:
    for namespace in [
        ("a", "x", "v1"),
        ("a", "y", "v1"),
        ("a", "y", "v2"),
        ("b", "x", "v1"),
        ("b",),
    ]:
        await store.aput(namespace, "k", {"text": "/".join(namespace)})
    assert await store.alist_namespaces() == [
        ("a", "x", "v1"),
        ("a", "y", "v1"),
        ("a", "y", "v2"),
        ("b",),
        ("b", "x", "v1"),
    ]
    assert await store.alist_namespaces(prefix=("a", "y")) == [("a", "y", "v1"), ("a", "y", "v2")]
    assert await store.alist_namespaces(suffix=("v1",)) == [
        ("a", "x", "v1"),
        ("a", "y", "v1"),
        ("b", "x", "v1"),
    ]
    assert await store.alist_namespaces(prefix=("*", "x")) == [("a", "x", "v1"), ("b", "x", "v1")]
    assert await store.alist_namespaces(max_depth=1) == [("a",), ("b",)]
    assert await store.alist_namespaces(prefix=("a",), max_depth=2) == [("a", "x"), ("a", "y")]
    assert await store.alist_namespaces(limit=2, offset=1) == [("a", "y", "v1"), ("a", "y", "v2")]
    condition = MatchCondition(match_type="prefix", path=("b",))
    (listed,) = await store.abatch([ListNamespacesOp(match_conditions=(condition,))])
    assert listed == [("b",), ("b", "x", "v1")]


async def test_batch_keeps_order_and_the_last_write_wins(store: PgRecallStore) -> None:
    namespace = ("batch",)
    results = await store.abatch(
        [
            PutOp(namespace, "k", {"v": 1}),
            PutOp(namespace, "k", None),
            PutOp(namespace, "k", {"v": 2}),
            PutOp(namespace, "gone", {"v": 0}),
            PutOp(namespace, "gone", None),
            GetOp(namespace, "k"),
            GetOp(namespace, "gone"),
            SearchOp(namespace, filter={"v": 2}),
            PutOp(namespace, "k", None),
            GetOp(namespace, "k"),
        ]
    )
    assert results[:5] == [None] * 5
    assert results[5] is not None
    assert results[5].value == {"v": 2}  # type: ignore[union-attr]
    assert results[6] is None
    assert [hit.key for hit in results[7]] == ["k"]  # type: ignore[union-attr]
    assert results[8:] == [None, None]
