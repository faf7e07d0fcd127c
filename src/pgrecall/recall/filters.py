"""The metadata filter language, compiled to a SQL boolean expression with bound parameters.

Grammar (a JSON document)::

    filter    := {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
               | {field: condition, ...}                  several fields: all must hold
    condition := value                                    shorthand for {"eq": value}
               | {operator: operand, ...}                 several operators: all must hold
    operator  := eq | ne | in | nin | gt | gte | lt | lte | exists | contains
    field     := a metadata key; "a.b" reaches into nested objects

Operands: ``eq``/``ne`` any JSON value; ``in``/``nin`` a non-empty list; ``gt``/``gte``/``lt``/
``lte`` a number, or an ISO-8601 timestamp string compared as a point in time; ``exists`` true or
false; ``contains`` any JSON value, matched by JSON containment (an array field contains an
element, an object field contains key/value pairs). ``ne`` and ``nin`` match memories that lack
the field. Keys and values are always bound parameters, never spliced into the SQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pgrecall import validation
from pgrecall.db.params import SqlParams
from pgrecall.errors import InvalidFilterError

OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "contains")
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
MAX_DEPTH = 16
MAX_CONDITIONS = 256
MAX_KEY_LENGTH = 256


def parse_filter(text: str) -> dict[str, Any]:
    """Parse a filter given as JSON text (CLI, HTTP)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFilterError(f"filter is not valid JSON: {exc.msg} at {exc.pos}") from exc
    if not isinstance(document, dict):
        raise InvalidFilterError("filter must be a JSON object")
    return document


def compile_filter(
    document: Mapping[str, Any] | None, params: SqlParams, column: str = "metadata"
) -> str:
    """SQL for ``document`` over the metadata ``column`` (a fixed name such as
    ``m.metadata``, never user input); ``TRUE`` when there is no filter."""
    if document is None or (isinstance(document, Mapping) and not document):
        return "TRUE"
    return _Compiler(params, column).node(document, "filter", 0)


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _json(value: object, where: str) -> str:
    try:
        return validation.json_text(value)
    except ValueError as exc:
        raise InvalidFilterError(f"{where}: value {exc}") from exc


def _nested(path: list[str], value: object) -> object:
    for key in reversed(path):
        value = {key: value}
    return value


class _Compiler:
    def __init__(self, params: SqlParams, column: str) -> None:
        self.params = params
        self.column = column
        self.conditions = 0

    def node(self, document: object, where: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise InvalidFilterError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if not isinstance(document, Mapping) or not document:
            raise InvalidFilterError(f"{where}: expected a non-empty object")
        parts = []
        for key, value in document.items():
            here = f"{where}.{key}"
            if key in ("and", "or"):
                parts.append(self.combine(key, value, here, depth))
            elif key == "not":
                parts.append(f"(({self.node(value, here, depth + 1)}) IS NOT TRUE)")
            else:
                parts.append(self.field(key, value, here))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def combine(self, combinator: str, children: object, where: str, depth: int) -> str:
        if not isinstance(children, list) or not children:
            raise InvalidFilterError(f"{where}: expected a non-empty list of filters")
        compiled = [
            self.node(child, f"{where}[{i}]", depth + 1) for i, child in enumerate(children)
        ]
        return "(" + f" {combinator.upper()} ".join(compiled) + ")"

    def field(self, key: object, condition: object, where: str) -> str:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidFilterError(f"{where}: field names are 1 to {MAX_KEY_LENGTH} characters")
        path = key.split(".")
        if any(not part for part in path):
            raise InvalidFilterError(f"{where}: empty segment in field path {key!r}")
        problem = validation.text_problem(key)
        if problem is not None:
            raise InvalidFilterError(f"{where}: field name {problem}")
        if not isinstance(condition, Mapping):
            return self.operator("eq", path, condition, where)
        unknown = [k for k in condition if k not in OPERATORS]
        if not condition or unknown:
            shown = repr(unknown[0]) if unknown else "none"
            raise InvalidFilterError(
                f"{where}: unknown operator {shown} (use one of {', '.join(OPERATORS)}; "
                'to match an object write {"eq": {...}})'
            )
        parts = [self.operator(op, path, value, f"{where}.{op}") for op, value in condition.items()]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def operator(self, op: str, path: list[str], value: object, where: str) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise InvalidFilterError(f"filter has more than {MAX_CONDITIONS} conditions")
        if op in ("eq", "ne") and not isinstance(value, dict | list):
            # Containment of a scalar is equality, and the GIN index serves it. The path's
            # levels are checked keys: only the value needs checking.
            _json(value, where)
            nested = json.dumps(_nested(path, value), ensure_ascii=False)
            sql = f"({self.column} @> {self.params.add(nested, 'jsonb')})"
            return sql if op == "eq" else f"({sql} IS NOT TRUE)"
        field = f"({self.column} #> {self.params.add(path, 'text[]')})"
        if op in ("eq", "ne"):
            sql = f"({field} = {self.params.add(_json(value, where), 'jsonb')})"
            return sql if op == "eq" else f"({sql} IS NOT TRUE)"
        if op in ("in", "nin"):
            if not isinstance(value, list) or not value:
                raise InvalidFilterError(f"{where}: expected a non-empty list")
            options = self.params.add([_json(item, where) for item in value], "jsonb[]")
            sql = f"({field} = ANY({options}))"
            return sql if op == "in" else f"({sql} IS NOT TRUE)"
        if op in _COMPARISONS:
            return self.comparison(_COMPARISONS[op], field, value, where)
        if op == "exists":
            if not isinstance(value, bool):
                raise InvalidFilterError(f"{where}: expected true or false")
            return f"({field} IS {'NOT ' if value else ''}NULL)"
        # contains
        return f"COALESCE({field} @> {self.params.add(_json(value, where), 'jsonb')}, FALSE)"

    def comparison(self, symbol: str, field: str, value: object, where: str) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            operand = self.params.add(_json(value, where), "jsonb")
            return (
                f"COALESCE(jsonb_path_match({field}, '$ {symbol} $v', "
                f"jsonb_build_object('v', {operand}), TRUE), FALSE)"
            )
        if _is_timestamp(value):
            operand = self.params.add(value, "text")
            return (
                f"COALESCE(jsonb_path_match_tz({field}, '$.datetime() {symbol} $v.datetime()', "
                f"jsonb_build_object('v', {operand}), TRUE), FALSE)"
            )
        raise InvalidFilterError(f"{where}: expected a number or an ISO-8601 timestamp")
