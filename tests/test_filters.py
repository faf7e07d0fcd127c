"""Every filter operator on a real database, and malformed filters."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from pgrecall import MemoryStore
from pgrecall.db.params import SqlParams
from pgrecall.errors import InvalidFilterError
from pgrecall.recall.filters import compile_filter, parse_filter
from pgrecall.validation import MAX_JSON_DEPTH

DOCUMENTS: dict[str, dict[str, Any]] = {
    "m1": {
        "kind": "fact",
        "priority": 3,
        "tags": ["work", "urgent"],
        "when": "2024-05-01T10:00:00+00:00",
        "person": {"name": "Ada", "age": 36},
    },
    "m2": {"kind": "preference", "priority": 1, "tags": ["home"], "when": "2024-06-01T10:00:00Z"},
    "m3": {"kind": "fact", "priority": 5.5, "score": "high"},
    "m4": {},
    "m5": {"kind": "event", "priority": "3", "when": "not a date"},
}


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"kind": "fact"}, {"m1", "m3"}),
    ({"kind": {"eq": "fact"}}, {"m1", "m3"}),
    ({"kind": {"ne": "fact"}}, {"m2", "m4", "m5"}),
    ({"kind": {"in": ["preference", "event"]}}, {"m2", "m5"}),
    ({"kind": {"nin": ["fact"]}}, {"m2", "m4", "m5"}),
    ({"priority": {"gt": 2}}, {"m1", "m3"}),
    ({"priority": {"gte": 3}}, {"m1", "m3"}),
    ({"priority": {"lt": 3}}, {"m2"}),
    ({"priority": {"lte": 1}}, {"m2"}),
    ({"priority": {"gt": 1, "lt": 5}}, {"m1"}),
    ({"when": {"gt": "2024-05-15T00:00:00+00:00"}}, {"m2"}),
    ({"when": {"lte": "2024-05-01T10:00:00Z"}}, {"m1"}),
    ({"when": {"gte": "2024-05-01"}}, {"m1", "m2"}),
    ({"tags": {"exists": True}}, {"m1", "m2"}),
    ({"tags": {"exists": False}}, {"m3", "m4", "m5"}),
    ({"tags": {"contains": "urgent"}}, {"m1"}),
    ({"tags": {"contains": ["work", "urgent"]}}, {"m1"}),
    ({"tags": ["work", "urgent"]}, {"m1"}),
    ({"person.name": "Ada"}, {"m1"}),
    ({"person": {"contains": {"age": 36}}}, {"m1"}),
    ({"person": {"eq": {"name": "Ada", "age": 36}}}, {"m1"}),
    ({"and": [{"kind": "fact"}, {"priority": {"gt": 4}}]}, {"m3"}),
    ({"or": [{"kind": "preference"}, {"tags": {"contains": "urgent"}}]}, {"m1", "m2"}),
    ({"not": {"kind": "fact"}}, {"m2", "m4", "m5"}),
    ({"kind": "fact", "priority": {"gt": 4}}, {"m3"}),
    ({"a'; DROP TABLE memories; --": "x"}, set()),
    ({"kind": "fact' OR '1'='1"}, set()),
    ({"score": {"in": ["high", "low"]}}, {"m3"}),
]


@pytest.fixture
async def labelled(store: MemoryStore) -> MemoryStore:
    for label, metadata in DOCUMENTS.items():
        await store.remember(f"memory {label}", namespace="f", metadata=metadata)
    return store


@pytest.mark.parametrize(("document", "expected"), CASES)
async def test_operator(
    labelled: MemoryStore, document: dict[str, Any], expected: set[str]
) -> None:
    hits = await labelled.recall("memory", namespace="f", k=10, filter=document)
    assert {hit.content.removeprefix("memory ") for hit in hits} == expected
    assert (await labelled.stats()).memories == len(DOCUMENTS)


async def test_forget_by_filter_uses_the_same_language(labelled: MemoryStore) -> None:
    assert await labelled.forget(namespace="f", filter={"tags": {"exists": True}}) == 2
    assert (await labelled.stats()).memories == 3


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"kind": {"like": "f%"}}, "unknown operator 'like'"),
        ({"kind": {}}, "unknown operator none"),
        ({"kind": {"in": "fact"}}, "non-empty list"),
        ({"kind": {"in": []}}, "non-empty list"),
        ({"priority": {"gt": "soon"}}, "number or an ISO-8601"),
        ({"priority": {"gt": True}}, "number or an ISO-8601"),
        ({"tags": {"exists": "yes"}}, "true or false"),
        ({"and": {"kind": "fact"}}, "non-empty list"),
        ({"or": []}, "non-empty list"),
        ({"not": "fact"}, "non-empty object"),
        ({"": 1}, "field names"),
        ({"a..b": 1}, "empty segment"),
        ({"x": {"eq": float("nan")}}, "plain JSON"),
        ({"a\x00": 1}, "filter.a.*: field name contains a NUL character"),
        ({"a": "x\x00"}, "filter.a: value holds a string that contains a NUL character"),
        ({"a": {"in": ["ok", "x\x00"]}}, "filter.a.in: value holds a string that contains a NUL"),
        ({"\ud800": 1}, "field name contains a lone surrogate"),
        ({"a": {"contains": {"\udfff": 1}}}, "value holds a key that contains a lone surrogate"),
        ({"a": {"eq": _nested_list(MAX_JSON_DEPTH + 1)}}, "deeper than 32"),
        ({"a": {"gt": 10**5000}}, "plain JSON"),
        ({"a": {"eq": "C:\\u0000dir"}}, None),
    ],
)
def test_malformed_filters_are_errors(document: dict[str, Any], message: str | None) -> None:
    if message is None:  # looks suspicious, is fine
        compile_filter(document, SqlParams())
        return
    with pytest.raises(InvalidFilterError, match=message):
        compile_filter(document, SqlParams())


async def test_a_filter_postgresql_cannot_take_is_refused_before_any_work(
    labelled: MemoryStore,
) -> None:
    for document in ({"kind\x00": "fact"}, {"kind": "\ud800"}):
        with pytest.raises(InvalidFilterError):
            await labelled.recall("memory", namespace="f", filter=document)
        with pytest.raises(InvalidFilterError):
            await labelled.forget(namespace="f", filter=document)
    assert (await labelled.stats()).memories == len(DOCUMENTS)


def test_limits_and_parsing() -> None:
    deep: dict[str, Any] = {"kind": "x"}
    for _ in range(20):
        deep = {"not": deep}
    with pytest.raises(InvalidFilterError, match="deeper"):
        compile_filter(deep, SqlParams())
    wide = {"or": [{f"k{i}": i} for i in range(300)]}
    with pytest.raises(InvalidFilterError, match="more than 256"):
        compile_filter(wide, SqlParams())
    with pytest.raises(InvalidFilterError, match="not valid JSON"):
        parse_filter("{kind: fact}")
    with pytest.raises(InvalidFilterError, match="JSON object"):
        parse_filter("[1]")
    params = SqlParams(first=3)
    sql = compile_filter({"a'b": {"gt": 1}}, params)
    assert "a'b" not in sql
    assert params.values[0] == ["a'b"]
    assert "$3::text[]" in sql


@pytest.mark.parametrize("document", [{"kind": "fact"}, {"person.name": "Ada"}, {"n": 3}])
async def test_equality_on_a_scalar_is_served_by_the_metadata_index(
    migrated_dsn: str, document: dict[str, Any]
) -> None:
    params = SqlParams()
    condition = compile_filter(document, params)
    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute("SET enable_seqscan = off")
        rows = await connection.fetch(
            f"EXPLAIN SELECT id FROM memories WHERE {condition}", *params.values
        )
    finally:
        await connection.close()
    assert "memories_metadata_gin" in "\n".join(row[0] for row in rows)
