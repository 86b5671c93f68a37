"""Filters, ordering and cursors shared by the REST and GraphQL faces (twenty-api.md §2.2-2.3).

A filter is held in GraphQL's shape whatever face it came from:
``{"and": [...], "or": [...], "not": {...}, "field": {"op": value},
"composite": {"sub": {"op": value}}}``; REST's ``field[op]:value`` strings are parsed
into it, and it compiles to a SQL condition over the JSON column of a record.
"""

from __future__ import annotations

from typing import Any

from pipeline.sandbox.errors import InvalidArgs
from pipeline.sandbox.model import FieldModel, ObjectModel
from pipeline.sandbox.pagination import OrderBy
from pipeline.sandbox.values import iso, parse_datetime

OPERATORS = (
    "eq",
    "neq",
    "in",
    "containsAny",
    "is",
    "gt",
    "gte",
    "lt",
    "lte",
    "startsWith",
    "endsWith",
    "like",
    "ilike",
)
DIRECTIONS = ("AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast")
Filter = dict[str, Any]


# --------------------------------------------------------------------------- REST parsing


def _split_top(text: str) -> list[str]:
    """Split on commas that are outside quotes, brackets and parentheses."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _typed(obj: ObjectModel, path: str, raw: str) -> Any:
    """REST filter values arrive as text; numbers and booleans are typed by the field."""
    resolved = obj.resolve_path(path)
    if resolved is None:
        raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{path}" field.')
    field, sub = resolved
    kind = field.type if sub is None else _sub_field_kind(field, sub)
    if kind in ("NUMBER", "NUMERIC", "POSITION", "RATING_NUMBER"):
        try:
            return float(raw) if "." in raw else int(raw)
        except ValueError:
            raise InvalidArgs(f"Invalid number '{raw}' in filter on {path}") from None
    if kind == "BOOLEAN":
        if raw.lower() not in ("true", "false"):
            raise InvalidArgs(f"Invalid boolean '{raw}' in filter on {path}")
        return raw.lower() == "true"
    return raw


def _sub_field_kind(field: FieldModel, sub: str) -> str:
    """How a REST filter types a composite part: numbers for numeric parts, else text."""
    composite = field.composite
    parts = {p.name: p.kind for p in composite.subfields} if composite is not None else {}
    return "NUMBER" if parts.get(sub) in ("bigfloat", "float") else "TEXT"


def _leaf(obj: ObjectModel, text: str) -> Filter:
    head, sep, raw_value = text.partition(":")
    if not sep or not head.endswith("]") or "[" not in head:
        raise InvalidArgs(f"'{text}' is not a valid filter: use field[operator]:value")
    path, _, op = head[:-1].partition("[")
    if op not in OPERATORS:
        raise InvalidArgs(
            f"'{op}' is not a valid operator. Allowed operators are: {', '.join(OPERATORS)}"
        )
    value: Any
    if op in ("in", "containsAny"):
        inner = raw_value.strip()
        if not (inner.startswith("[") and inner.endswith("]")):
            raise InvalidArgs(f"'{op}' needs a list of values like [a,b] in '{text}'")
        value = [_typed(obj, path, _unquote(v)) for v in _split_top(inner[1:-1])]
    elif op == "is":
        value = _unquote(raw_value).upper()
        if value not in ("NULL", "NOT_NULL"):
            raise InvalidArgs(f"'is' takes NULL or NOT_NULL, not '{raw_value}'")
    else:
        value = _typed(obj, path, _unquote(raw_value))
    node: Filter = {op: value}
    for part in reversed(path.split(".")):
        node = {part: node}
    return node


def parse_rest_filter(obj: ObjectModel, text: str) -> Filter:
    """Parse ``field[op]:value,and(...),or(...),not(...)`` into a filter dict."""

    def parse(expr: str) -> Filter:
        for conj in ("and", "or", "not"):
            if expr.startswith(conj + "(") and expr.endswith(")"):
                items = [parse(p) for p in _split_top(expr[len(conj) + 1 : -1])]
                if conj == "not":
                    if len(items) != 1:
                        raise InvalidArgs("not() takes exactly one condition")
                    return {"not": items[0]}
                return {conj: items}
        return _leaf(obj, expr)

    items = [parse(p) for p in _split_top(text)]
    return items[0] if len(items) == 1 else {"and": items}


def parse_rest_order_by(obj: ObjectModel, text: str) -> OrderBy:
    """``a,b[DescNullsLast],name.firstName`` -> [(path, direction), ...]."""
    out: OrderBy = []
    for item in _split_top(text):
        path, direction = item, "AscNullsFirst"
        if item.endswith("]") and "[" in item:
            path, _, direction = item[:-1].partition("[")
        if direction not in DIRECTIONS:
            raise InvalidArgs(
                f"'{direction}' is not a valid order direction. Allowed: {', '.join(DIRECTIONS)}"
            )
        if obj.resolve_path(path) is None:
            raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{path}" field.')
        out.append((path, direction))
    return out


def graphql_order_by(obj: ObjectModel, items: list[dict[str, Any]] | None) -> OrderBy:
    """GraphQL ``orderBy: [{name: {firstName: AscNullsFirst}}]`` -> the same list."""
    out: OrderBy = []
    for item in items or []:
        for key, value in item.items():
            if isinstance(value, dict):
                out.extend((f"{key}.{sub}", str(d)) for sub, d in value.items())
            else:
                out.append((key, str(value)))
    for path, _ in out:
        if obj.resolve_path(path) is None:
            raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{path}" field.')
    return out


# --------------------------------------------------------------------------- compile


def mentions_deleted_at(flt: Any) -> bool:
    """Whether a filter names ``deletedAt`` anywhere (then soft-deleted rows are included)."""
    if isinstance(flt, dict):
        return any(k == "deletedAt" or mentions_deleted_at(v) for k, v in flt.items())
    if isinstance(flt, list):
        return any(mentions_deleted_at(v) for v in flt)
    return False


def _sql_value(field: FieldModel, sub: str | None, value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if field.type in ("DATE_TIME",) and sub is None and isinstance(value, str):
        try:
            return iso(parse_datetime(value, field))
        except InvalidArgs:
            return value
    return value


def _condition(
    expr: str, op: str, value: Any, field: FieldModel, sub: str | None, params: list[Any]
) -> str:
    if op == "is":
        if value not in ("NULL", "NOT_NULL"):
            raise InvalidArgs(f"'is' takes NULL or NOT_NULL, not '{value}'")
        return f"{expr} IS NULL" if value == "NULL" else f"{expr} IS NOT NULL"
    if op in ("in", "containsAny"):
        if not isinstance(value, list):
            raise InvalidArgs(f"'{op}' needs a list of values")
        if not value:
            return "0"
        params.extend(_sql_value(field, sub, v) for v in value)
        marks = ",".join("?" * len(value))
        if op == "in":
            return f"{expr} IN ({marks})"
        return f"EXISTS (SELECT 1 FROM json_each({expr}) AS e WHERE e.value IN ({marks}))"
    sql_value = _sql_value(field, sub, value)
    simple = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    if op in simple:
        params.append(sql_value)
        return f"{expr} {simple[op]} ?"
    if op == "startsWith":
        params.extend([sql_value, sql_value])
        return f"substr({expr}, 1, length(?)) = ?"
    if op == "endsWith":
        params.extend([sql_value, sql_value])
        return f"substr({expr}, -length(?)) = ?"
    if op == "like":
        params.append(sql_value)
        return f"{expr} LIKE ?"
    if op == "ilike":
        params.append(sql_value)
        return f"lower({expr}) LIKE lower(?)"
    raise InvalidArgs(
        f"'{op}' is not a valid operator. Allowed operators are: {', '.join(OPERATORS)}"
    )


def compile_filter(obj: ObjectModel, flt: Filter | None, params: list[Any]) -> str:
    """SQL condition (with ``?`` placeholders appended to ``params``) for ``flt``."""
    if not flt:
        return "1"
    clauses: list[str] = []
    for key, value in flt.items():
        if value is None:
            continue
        if key in ("and", "or"):
            if not isinstance(value, list):
                raise InvalidArgs(f"'{key}' takes a list of conditions")
            inner = [compile_filter(obj, v, params) for v in value]
            joiner = " AND " if key == "and" else " OR "
            clauses.append("(" + (joiner.join(inner) or ("1" if key == "and" else "0")) + ")")
            continue
        if key == "not":
            clauses.append(f"NOT ({compile_filter(obj, value, params)})")
            continue
        field = obj.field(key)
        if field is None:
            raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{key}" field.')
        if not isinstance(value, dict):
            raise InvalidArgs(f'Invalid filter on "{key}": expected {{operator: value}}')
        column = key
        if field.relation is not None and field.relation.join_column and key == field.name:
            column = field.relation.join_column
        if field.subfields and not set(value) & set(OPERATORS):
            for sub, ops in value.items():
                if sub not in field.subfields:
                    raise InvalidArgs(
                        f'Object {obj.name_singular} doesn\'t have any "{key}.{sub}" field.'
                    )
                expr = f"json_extract(data, '$.{column}.{sub}')"
                clauses.extend(
                    _condition(expr, op, v, field, sub, params)
                    for op, v in ops.items()
                    if v is not None
                )
        else:
            expr = f"json_extract(data, '$.{column}')"
            clauses.extend(
                _condition(expr, op, v, field, None, params)
                for op, v in value.items()
                if v is not None
            )
    return "(" + " AND ".join(clauses) + ")" if clauses else "1"
