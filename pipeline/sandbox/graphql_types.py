"""The GraphQL types every workspace schema shares: scalars, filters, composites (§3).

Composite object, input, filter and order types are built from the sandbox's own
composite table (:data:`pipeline.sandbox.model.COMPOSITE_TYPES`), so a sub-field's
GraphQL type follows what it holds.
"""

from __future__ import annotations

from typing import Any, cast

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
)
from graphql.utilities import value_from_ast_untyped

from pipeline.sandbox.model import COMPOSITE_TYPES, ObjectModel, SubFieldKind


def _identity(value: Any) -> Any:
    return value


def _literal(node: Any, variables: Any = None) -> Any:
    return value_from_ast_untyped(node, variables)


def _passthrough(name: str) -> GraphQLScalarType:
    return GraphQLScalarType(
        name, serialize=_identity, parse_value=_identity, parse_literal=_literal
    )


UUIDScalar = _passthrough("UUID")
DateTimeScalar = _passthrough("DateTime")
DateScalar = _passthrough("Date")
BigFloatScalar = _passthrough("BigFloat")
JSONScalar = _passthrough("JSON")
PositionScalar = _passthrough("Position")

OrderByDirection = GraphQLEnumType(
    "OrderByDirection",
    {d: d for d in ("AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast")},
)
FilterIs = GraphQLEnumType("FilterIs", {"NULL": "NULL", "NOT_NULL": "NOT_NULL"})


def _filter_type(
    name: str, scalar: GraphQLInputType, ops: tuple[str, ...]
) -> GraphQLInputObjectType:
    fields: dict[str, GraphQLInputField] = {}
    for op in ops:
        if op in ("in", "containsAny"):
            fields[op] = GraphQLInputField(GraphQLList(scalar))
        elif op == "is":
            fields[op] = GraphQLInputField(FilterIs)
        else:
            fields[op] = GraphQLInputField(scalar)
    return GraphQLInputObjectType(name, fields)


_CMP = ("eq", "neq", "in", "is", "gt", "gte", "lt", "lte")
StringFilter = _filter_type(
    "StringFilter", GraphQLString, (*_CMP, "like", "ilike", "startsWith", "endsWith")
)
FloatFilter = _filter_type("FloatFilter", GraphQLFloat, _CMP)
BigFloatFilter = _filter_type("BigFloatFilter", BigFloatScalar, _CMP)
BooleanFilter = _filter_type("BooleanFilter", GraphQLBoolean, ("eq", "is"))
UUIDFilter = _filter_type("UUIDFilter", UUIDScalar, ("eq", "neq", "in", "is"))
DateFilter = _filter_type("DateFilter", DateTimeScalar, _CMP)
ArrayFilter = _filter_type("ArrayFilter", GraphQLString, ("containsAny", "is"))
RawJsonFilter = _filter_type("RawJsonFilter", GraphQLString, ("is", "like"))
SelectFilter = _filter_type("SelectFilter", GraphQLString, ("eq", "neq", "in", "is"))

PageInfo = GraphQLObjectType(
    "PageInfo",
    {
        "hasNextPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
        "hasPreviousPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
        "startCursor": GraphQLField(GraphQLString),
        "endCursor": GraphQLField(GraphQLString),
    },
)

_KIND_OUT: dict[SubFieldKind, GraphQLOutputType] = {
    "text": GraphQLString,
    "json": JSONScalar,
    "bigfloat": BigFloatScalar,
    "float": GraphQLFloat,
    "uuid": UUIDScalar,
}
_KIND_IN: dict[SubFieldKind, GraphQLInputType] = {
    k: cast(GraphQLInputType, v) for k, v in _KIND_OUT.items()
}
_KIND_FILTER: dict[SubFieldKind, GraphQLInputObjectType] = {
    "text": StringFilter,
    "json": RawJsonFilter,
    "bigfloat": BigFloatFilter,
    "float": FloatFilter,
    "uuid": UUIDFilter,
}

COMPOSITE_OUT = {
    t: GraphQLObjectType(
        c.graphql_name, {s.name: GraphQLField(_KIND_OUT[s.kind]) for s in c.subfields}
    )
    for t, c in COMPOSITE_TYPES.items()
}
COMPOSITE_IN = {
    t: GraphQLInputObjectType(
        f"{c.graphql_name}Input", {s.name: GraphQLInputField(_KIND_IN[s.kind]) for s in c.subfields}
    )
    for t, c in COMPOSITE_TYPES.items()
}
COMPOSITE_FILTER = {
    t: GraphQLInputObjectType(
        f"{c.graphql_name}Filter",
        {s.name: GraphQLInputField(_KIND_FILTER[s.kind]) for s in c.subfields},
    )
    for t, c in COMPOSITE_TYPES.items()
}
COMPOSITE_ORDER = {
    t: GraphQLInputObjectType(
        f"{c.graphql_name}OrderByInput",
        {s.name: GraphQLInputField(OrderByDirection) for s in c.subfields},
    )
    for t, c in COMPOSITE_TYPES.items()
}

SCALAR_OUT: dict[str, GraphQLOutputType] = {
    "TEXT": GraphQLString,
    "NUMBER": GraphQLFloat,
    "NUMERIC": BigFloatScalar,
    "BOOLEAN": GraphQLBoolean,
    "DATE_TIME": DateTimeScalar,
    "DATE": DateScalar,
    "SELECT": GraphQLString,
    "MULTI_SELECT": GraphQLList(GraphQLString),
    "RATING": GraphQLString,
    "UUID": UUIDScalar,
    "RAW_JSON": JSONScalar,
    "ARRAY": GraphQLList(GraphQLString),
    "POSITION": PositionScalar,
    "RICH_TEXT": GraphQLString,
}
# Inputs take the same scalars, except that an ARRAY may come as one string (§6).
SCALAR_IN: dict[str, GraphQLInputType] = {
    **{k: cast(GraphQLInputType, v) for k, v in SCALAR_OUT.items() if k != "RICH_TEXT"},
    "ARRAY": JSONScalar,
}
SCALAR_FILTER: dict[str, GraphQLInputObjectType] = {
    "TEXT": StringFilter,
    "NUMBER": FloatFilter,
    "NUMERIC": BigFloatFilter,
    "BOOLEAN": BooleanFilter,
    "DATE_TIME": DateFilter,
    "DATE": DateFilter,
    "SELECT": SelectFilter,
    "MULTI_SELECT": ArrayFilter,
    "RATING": SelectFilter,
    "UUID": UUIDFilter,
    "RAW_JSON": RawJsonFilter,
    "ARRAY": ArrayFilter,
    "POSITION": FloatFilter,
}


def writable_inputs(obj: ObjectModel) -> dict[str, GraphQLInputType]:
    """The input fields of create / update: writable fields, join columns, system fields."""
    out: dict[str, GraphQLInputType] = {
        "id": UUIDScalar,
        "position": PositionScalar,
        "createdAt": DateTimeScalar,
        "createdBy": COMPOSITE_IN["ACTOR"],
    }
    for f in obj.fields.values():
        if not f.writable:
            continue
        if f.relation is not None:
            if f.relation.join_column:
                out[f.relation.join_column] = UUIDScalar
        elif f.type in COMPOSITE_IN:
            out[f.name] = COMPOSITE_IN[f.type]
        elif f.type in SCALAR_IN:
            out[f.name] = SCALAR_IN[f.type]
    return out
