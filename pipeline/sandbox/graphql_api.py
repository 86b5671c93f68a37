"""The sandbox's GraphQL faces: ``/graphql`` generated from the metadata, and ``/metadata``.

Resolver names, arguments and the connection shape follow twenty-api.md §3; every
root field spends one token of the workspace bucket, as Twenty counts one
query-runner execution per root field (§5.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
)
from graphql.utilities import value_from_ast_untyped

from pipeline.sandbox.engine import Engine
from pipeline.sandbox.filters import encode_cursor, graphql_order_by
from pipeline.sandbox.values import InvalidArgs, NotFound, SandboxError
from pipeline.schema import Field, ObjectSchema


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

# composite type -> (GraphQL name, {sub-field: scalar kind})
_COMPOSITES: dict[str, tuple[str, dict[str, str]]] = {
    "FULL_NAME": ("FullName", {"firstName": "s", "lastName": "s"}),
    "EMAILS": ("Emails", {"primaryEmail": "s", "additionalEmails": "j"}),
    "PHONES": (
        "Phones",
        {
            "primaryPhoneNumber": "s",
            "primaryPhoneCountryCode": "s",
            "primaryPhoneCallingCode": "s",
            "additionalPhones": "j",
        },
    ),
    "LINKS": ("Links", {"primaryLinkUrl": "s", "primaryLinkLabel": "s", "secondaryLinks": "j"}),
    "CURRENCY": ("Currency", {"amountMicros": "b", "currencyCode": "s"}),
    "ADDRESS": (
        "Address",
        {
            "addressStreet1": "s",
            "addressStreet2": "s",
            "addressCity": "s",
            "addressPostcode": "s",
            "addressState": "s",
            "addressCountry": "s",
            "addressLat": "f",
            "addressLng": "f",
        },
    ),
    "ACTOR": ("Actor", {"source": "s", "workspaceMemberId": "u", "name": "s", "context": "j"}),
    "RICH_TEXT_V2": ("RichTextV2", {"blocknote": "s", "markdown": "s"}),
}
_KIND_OUT: dict[str, GraphQLOutputType] = {
    "s": GraphQLString,
    "j": JSONScalar,
    "b": BigFloatScalar,
    "f": GraphQLFloat,
    "u": UUIDScalar,
}
_KIND_IN: dict[str, GraphQLInputType] = {k: cast(GraphQLInputType, v) for k, v in _KIND_OUT.items()}
_KIND_FILTER = {
    "s": StringFilter,
    "j": RawJsonFilter,
    "b": BigFloatFilter,
    "f": FloatFilter,
    "u": UUIDFilter,
}

COMPOSITE_OUT = {
    t: GraphQLObjectType(n, {k: GraphQLField(_KIND_OUT[v]) for k, v in s.items()})
    for t, (n, s) in _COMPOSITES.items()
}
COMPOSITE_IN = {
    t: GraphQLInputObjectType(
        f"{n}Input", {k: GraphQLInputField(_KIND_IN[v]) for k, v in s.items()}
    )
    for t, (n, s) in _COMPOSITES.items()
}
COMPOSITE_FILTER = {
    t: GraphQLInputObjectType(
        f"{n}Filter", {k: GraphQLInputField(_KIND_FILTER[v]) for k, v in s.items()}
    )
    for t, (n, s) in _COMPOSITES.items()
}
COMPOSITE_ORDER = {
    t: GraphQLInputObjectType(
        f"{n}OrderByInput", {k: GraphQLInputField(OrderByDirection) for k in s}
    )
    for t, (n, s) in _COMPOSITES.items()
}

_SCALAR_OUT: dict[str, GraphQLOutputType] = {
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
_SCALAR_IN: dict[str, GraphQLInputType] = {
    **{k: cast(GraphQLInputType, v) for k, v in _SCALAR_OUT.items() if k != "RICH_TEXT"},
    "ARRAY": JSONScalar,
}
_SCALAR_FILTER: dict[str, GraphQLInputObjectType] = {
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


@dataclass
class GraphQLContext:
    """What resolvers need: the engine, the caller's actor, and the token spender."""

    engine: Engine
    actor: dict[str, Any]
    spend_token: Callable[[], GraphQLError | None]


def to_graphql_error(exc: SandboxError) -> GraphQLError:
    """A sandbox error as Twenty's GraphQL error (code + userFriendlyMessage)."""
    return GraphQLError(
        exc.message,
        extensions={
            "code": exc.graphql_code,
            "userFriendlyMessage": exc.message,
            **{k: v for k, v in exc.extensions.items() if v is not None},
        },
    )


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _writable_inputs(obj: ObjectSchema) -> dict[str, GraphQLInputType]:
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
        elif f.type in _SCALAR_IN:
            out[f.name] = _SCALAR_IN[f.type]
    return out


class WorkspaceGraphQL:
    """Builds (and rebuilds after metadata changes) the core GraphQL schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._schema: GraphQLSchema | None = None
        self._built_for: object = None

    @property
    def schema(self) -> GraphQLSchema:
        """The schema for the current metadata."""
        if self._schema is None or self._built_for is not self.engine.schema:
            self._schema = self._build()
            self._built_for = self.engine.schema
        return self._schema

    def _build(self) -> GraphQLSchema:
        engine = self.engine
        objects = [o for o in engine.schema.objects if o.is_active]
        types: dict[str, GraphQLObjectType] = {}
        connections: dict[str, GraphQLObjectType] = {}
        filters: dict[str, GraphQLInputObjectType] = {}

        def output_fields(obj: ObjectSchema) -> dict[str, GraphQLField]:
            out: dict[str, GraphQLField] = {}
            for f in obj.fields.values():
                if not f.is_active or f.type == "TS_VECTOR":
                    continue
                rel = f.relation
                if rel is not None:
                    target = rel.target_object
                    if target not in types:
                        continue
                    if rel.join_column:
                        out[rel.join_column] = GraphQLField(UUIDScalar)
                        out[f.name] = GraphQLField(types[target], resolve=_many_to_one(f, engine))
                    else:
                        out[f.name] = GraphQLField(
                            connections[target], resolve=_one_to_many(f, engine)
                        )
                elif f.type in COMPOSITE_OUT:
                    out[f.name] = GraphQLField(COMPOSITE_OUT[f.type])
                elif f.type in _SCALAR_OUT:
                    out[f.name] = GraphQLField(_SCALAR_OUT[f.type])
            out["id"] = GraphQLField(GraphQLNonNull(UUIDScalar))
            return out

        for obj in objects:
            types[obj.name_singular] = GraphQLObjectType(
                obj.names.singular_type,
                (lambda o=obj: output_fields(o)),  # type: ignore[misc]
            )
        for obj in objects:
            edge = GraphQLObjectType(
                f"{obj.names.singular_type}Edge",
                {
                    "node": GraphQLField(GraphQLNonNull(types[obj.name_singular])),
                    "cursor": GraphQLField(GraphQLNonNull(GraphQLString)),
                },
            )
            connections[obj.name_singular] = GraphQLObjectType(
                f"{obj.names.singular_type}Connection",
                {
                    "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(edge)))),
                    "pageInfo": GraphQLField(GraphQLNonNull(PageInfo)),
                    "totalCount": GraphQLField(GraphQLInt),
                },
            )

        def filter_fields(obj: ObjectSchema) -> dict[str, GraphQLInputField]:
            me = filters[obj.name_singular]
            out: dict[str, GraphQLInputField] = {
                "and": GraphQLInputField(GraphQLList(me)),
                "or": GraphQLInputField(GraphQLList(me)),
                "not": GraphQLInputField(me),
            }
            for f in obj.fields.values():
                if not f.is_active:
                    continue
                if f.relation is not None:
                    if f.relation.join_column:
                        out[f.relation.join_column] = GraphQLInputField(UUIDFilter)
                elif f.type in COMPOSITE_FILTER:
                    out[f.name] = GraphQLInputField(COMPOSITE_FILTER[f.type])
                elif f.type in _SCALAR_FILTER:
                    out[f.name] = GraphQLInputField(_SCALAR_FILTER[f.type])
            out["id"] = GraphQLInputField(UUIDFilter)
            return out

        def order_fields(obj: ObjectSchema) -> dict[str, GraphQLInputField]:
            out: dict[str, GraphQLInputField] = {}
            for f in obj.fields.values():
                if not f.is_active or (f.relation is not None and not f.relation.join_column):
                    continue
                if f.relation is not None and f.relation.join_column:
                    out[f.relation.join_column] = GraphQLInputField(OrderByDirection)
                elif f.type in COMPOSITE_ORDER:
                    out[f.name] = GraphQLInputField(COMPOSITE_ORDER[f.type])
                elif f.type in _SCALAR_FILTER:
                    out[f.name] = GraphQLInputField(OrderByDirection)
            return out

        query: dict[str, GraphQLField] = {}
        mutation: dict[str, GraphQLField] = {}
        for obj in objects:
            t = obj.names.singular_type
            filters[obj.name_singular] = GraphQLInputObjectType(
                f"{t}FilterInput",
                (lambda o=obj: filter_fields(o)),  # type: ignore[misc]
            )
            order = GraphQLInputObjectType(f"{t}OrderByInput", (lambda o=obj: order_fields(o)))  # type: ignore[misc]
            writable = _writable_inputs(obj)
            create_in = GraphQLInputObjectType(
                f"{t}CreateInput", {k: GraphQLInputField(v) for k, v in writable.items()}
            )
            update_in = GraphQLInputObjectType(
                f"{t}UpdateInput",
                {k: GraphQLInputField(v) for k, v in writable.items() if k != "id"},
            )
            flt = filters[obj.name_singular]
            node = types[obj.name_singular]
            many = GraphQLNonNull(GraphQLList(node))
            plural, singular = obj.names.plural_type, obj.names.singular_type
            query[obj.name_plural] = GraphQLField(
                GraphQLNonNull(connections[obj.name_singular]),
                args={
                    "filter": GraphQLArgument(flt),
                    "orderBy": GraphQLArgument(GraphQLList(order)),
                    "first": GraphQLArgument(GraphQLInt),
                    "last": GraphQLArgument(GraphQLInt),
                    "before": GraphQLArgument(GraphQLString),
                    "after": GraphQLArgument(GraphQLString),
                    "limit": GraphQLArgument(GraphQLInt),
                },
                resolve=_find_many(obj),
            )
            query[obj.name_singular] = GraphQLField(
                node, args={"filter": GraphQLArgument(GraphQLNonNull(flt))}, resolve=_find_one(obj)
            )
            mutation[f"create{plural}"] = GraphQLField(
                many,
                args={
                    "data": GraphQLArgument(GraphQLNonNull(GraphQLList(GraphQLNonNull(create_in)))),
                    "upsert": GraphQLArgument(GraphQLBoolean),
                },
                resolve=_create(obj, many=True),
            )
            mutation[f"create{singular}"] = GraphQLField(
                node,
                args={
                    "data": GraphQLArgument(GraphQLNonNull(create_in)),
                    "upsert": GraphQLArgument(GraphQLBoolean),
                },
                resolve=_create(obj, many=False),
            )
            id_arg = {"id": GraphQLArgument(GraphQLNonNull(UUIDScalar))}
            filter_arg = {"filter": GraphQLArgument(GraphQLNonNull(flt))}
            mutation[f"update{singular}"] = GraphQLField(
                node,
                args={**id_arg, "data": GraphQLArgument(GraphQLNonNull(update_in))},
                resolve=_update(obj, many=False),
            )
            mutation[f"update{plural}"] = GraphQLField(
                many,
                args={**filter_arg, "data": GraphQLArgument(GraphQLNonNull(update_in))},
                resolve=_update(obj, many=True),
            )
            for verb in ("delete", "destroy", "restore"):
                mutation[f"{verb}{singular}"] = GraphQLField(
                    node, args=id_arg, resolve=_lifecycle(obj, verb, many=False)
                )
                mutation[f"{verb}{plural}"] = GraphQLField(
                    many, args=filter_arg, resolve=_lifecycle(obj, verb, many=True)
                )
        return GraphQLSchema(
            query=GraphQLObjectType("Query", query),
            mutation=GraphQLObjectType("Mutation", mutation),
        )


def _context(info: Any) -> GraphQLContext:
    ctx = info.context
    assert isinstance(ctx, GraphQLContext)
    return ctx


def _root(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a root resolver: spend a token first, turn sandbox errors into GraphQL errors."""

    def resolve(parent: Any, info: Any, **args: Any) -> Any:
        ctx = _context(info)
        refused = ctx.spend_token()
        if refused is not None:
            raise refused
        try:
            return func(ctx, **args)
        except SandboxError as exc:
            raise to_graphql_error(exc) from exc

    return resolve


def _connection(
    obj: ObjectSchema,
    ctx: GraphQLContext,
    filter: Any,
    orderBy: Any,
    first: int | None,
    last: int | None,
    before: str | None,
    after: str | None,
    limit: int | None,
) -> dict[str, Any]:
    order = graphql_order_by(obj, orderBy)
    size = first if first is not None else (last if last is not None else limit)
    size = 200 if size is None else size
    if size < 0:
        raise InvalidArgs("first/last must not be negative")
    page = ctx.engine.find_many(obj, filter, order, limit=size, after=after, before=before)
    return {
        "edges": [{"node": r, "cursor": encode_cursor(r, order)} for r in page.records],
        "pageInfo": {
            "hasNextPage": page.has_next_page,
            "hasPreviousPage": page.has_previous_page,
            "startCursor": page.start_cursor,
            "endCursor": page.end_cursor,
        },
        "totalCount": page.total_count,
    }


def _find_many(obj: ObjectSchema) -> Callable[..., Any]:
    def run(
        ctx: GraphQLContext,
        filter: Any = None,
        orderBy: Any = None,
        first: int | None = None,
        last: int | None = None,
        before: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        return _connection(obj, ctx, filter, orderBy, first, last, before, after, limit)

    return _root(run)


def _find_one(obj: ObjectSchema) -> Callable[..., Any]:
    def run(ctx: GraphQLContext, filter: Any) -> Any:
        return ctx.engine.find_first(obj, filter)

    return _root(run)


def _create(obj: ObjectSchema, *, many: bool) -> Callable[..., Any]:
    def run(ctx: GraphQLContext, data: Any, upsert: bool | None = None) -> Any:
        records = ctx.engine.create_many(
            obj, data if many else [data], upsert=bool(upsert), actor=ctx.actor
        )
        return records if many else records[0]

    return _root(run)


def _update(obj: ObjectSchema, *, many: bool) -> Callable[..., Any]:
    def run(ctx: GraphQLContext, data: Any, id: str | None = None, filter: Any = None) -> Any:
        if many:
            return ctx.engine.update_many(obj, filter, data, ctx.actor)
        assert id is not None
        return ctx.engine.update_one(obj, id, data, ctx.actor)

    return _root(run)


def _lifecycle(obj: ObjectSchema, verb: str, *, many: bool) -> Callable[..., Any]:
    def run(ctx: GraphQLContext, id: str | None = None, filter: Any = None) -> Any:
        flt = filter if many else {"id": {"eq": id}}
        if not many and verb != "restore":
            ctx.engine.find_one(obj, str(id))  # 404 for a missing record
        if verb == "restore":
            rows = ctx.engine.restore(obj, flt)
        else:
            rows = ctx.engine.delete(obj, flt, soft=verb == "delete")
        if many:
            return rows
        if not rows:
            raise NotFound("Record not found")
        return rows[0]

    return _root(run)


def _many_to_one(f: Field, engine: Engine) -> Callable[..., Any]:
    assert f.relation is not None

    def resolve(parent: dict[str, Any], info: Any) -> Any:
        assert f.relation is not None and f.relation.join_column is not None
        linked = parent.get(f.relation.join_column)
        if not linked:
            return None
        target = engine.object(f.relation.target_object)
        try:
            return engine.find_one(target, linked)
        except SandboxError:
            return None

    return resolve


def _one_to_many(f: Field, engine: Engine) -> Callable[..., Any]:
    def resolve(parent: dict[str, Any], info: Any) -> Any:
        assert f.relation is not None
        target = engine.object(f.relation.target_object)
        back = target.fields.get(f.relation.target_field or "")
        if back is None or back.relation is None or back.relation.join_column is None:
            return {
                "edges": [],
                "pageInfo": {"hasNextPage": False, "hasPreviousPage": False},
                "totalCount": 0,
            }
        page = engine.find_many(
            target, {back.relation.join_column: {"eq": parent["id"]}}, limit=200
        )
        return {
            "edges": [{"node": r, "cursor": encode_cursor(r, [])} for r in page.records],
            "pageInfo": {
                "hasNextPage": page.has_next_page,
                "hasPreviousPage": False,
                "startCursor": page.start_cursor,
                "endCursor": page.end_cursor,
            },
            "totalCount": page.total_count,
        }

    return resolve


# --------------------------------------------------------------------------- /metadata


def build_metadata_schema(engine: Engine) -> GraphQLSchema:
    """A small ``/metadata`` schema: objects and fields connections, createOne{Object,Field}."""
    field_type = GraphQLObjectType(
        "Field",
        {
            **{
                k: GraphQLField(GraphQLString)
                for k in (
                    "type",
                    "name",
                    "label",
                    "description",
                    "icon",
                    "objectMetadataId",
                    "createdAt",
                    "updatedAt",
                )
            },
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            **{
                k: GraphQLField(GraphQLBoolean)
                for k in (
                    "isCustom",
                    "isActive",
                    "isSystem",
                    "isNullable",
                    "isUnique",
                    "isLabelSyncedWithName",
                )
            },
            **{
                k: GraphQLField(JSONScalar)
                for k in ("defaultValue", "options", "settings", "relation")
            },
        },
    )
    field_edge = GraphQLObjectType("FieldEdge", {"node": GraphQLField(GraphQLNonNull(field_type))})
    field_conn = GraphQLObjectType(
        "FieldConnection",
        {
            "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(field_edge)))),
            "totalCount": GraphQLField(GraphQLInt),
        },
    )
    paging = GraphQLInputObjectType(
        "CursorPaging",
        {"first": GraphQLInputField(GraphQLInt), "after": GraphQLInputField(GraphQLString)},
    )

    def fields_of(parent: dict[str, Any], info: Any, **_: Any) -> dict[str, Any]:
        items = parent.get("fields", [])
        return {"edges": [{"node": f} for f in items], "totalCount": len(items)}

    object_type = GraphQLObjectType(
        "Object",
        {
            **{
                k: GraphQLField(GraphQLString)
                for k in (
                    "nameSingular",
                    "namePlural",
                    "labelSingular",
                    "labelPlural",
                    "description",
                    "icon",
                    "createdAt",
                    "updatedAt",
                    "labelIdentifierFieldMetadataId",
                    "imageIdentifierFieldMetadataId",
                )
            },
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            **{k: GraphQLField(GraphQLBoolean) for k in ("isCustom", "isActive", "isSystem")},
            "fields": GraphQLField(
                GraphQLNonNull(field_conn),
                args={"paging": GraphQLArgument(paging), "filter": GraphQLArgument(JSONScalar)},
                resolve=fields_of,
            ),
        },
    )
    object_edge = GraphQLObjectType(
        "ObjectEdge", {"node": GraphQLField(GraphQLNonNull(object_type))}
    )
    object_conn = GraphQLObjectType(
        "ObjectConnection",
        {
            "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(object_edge)))),
            "totalCount": GraphQLField(GraphQLInt),
        },
    )

    def guard(func: Callable[..., Any]) -> Callable[..., Any]:
        def resolve(parent: Any, info: Any, **args: Any) -> Any:
            try:
                return func(**args)
            except SandboxError as exc:
                raise to_graphql_error(exc) from exc

        return resolve

    def objects(**_: Any) -> dict[str, Any]:
        items = engine.object_dtos(with_fields=True)
        return {"edges": [{"node": o} for o in items], "totalCount": len(items)}

    def all_fields(**_: Any) -> dict[str, Any]:
        items = engine.field_dtos()
        return {"edges": [{"node": f} for f in items], "totalCount": len(items)}

    def create_object(input: dict[str, Any]) -> dict[str, Any]:
        return engine.create_object(dict(input.get("object") or {}))

    def create_field(input: dict[str, Any]) -> dict[str, Any]:
        return engine.create_field(dict(input.get("field") or {}))

    listing = {"paging": GraphQLArgument(paging), "filter": GraphQLArgument(JSONScalar)}
    object_input = GraphQLInputObjectType(
        "CreateOneObjectInput", {"object": GraphQLInputField(GraphQLNonNull(JSONScalar))}
    )
    field_input = GraphQLInputObjectType(
        "CreateOneFieldMetadataInput", {"field": GraphQLInputField(GraphQLNonNull(JSONScalar))}
    )
    return GraphQLSchema(
        query=GraphQLObjectType(
            "Query",
            {
                "objects": GraphQLField(
                    GraphQLNonNull(object_conn), args=listing, resolve=guard(objects)
                ),
                "fields": GraphQLField(
                    GraphQLNonNull(field_conn), args=listing, resolve=guard(all_fields)
                ),
            },
        ),
        mutation=GraphQLObjectType(
            "Mutation",
            {
                "createOneObject": GraphQLField(
                    GraphQLNonNull(object_type),
                    args={"input": GraphQLArgument(GraphQLNonNull(object_input))},
                    resolve=guard(create_object),
                ),
                "createOneField": GraphQLField(
                    GraphQLNonNull(field_type),
                    args={"input": GraphQLArgument(GraphQLNonNull(field_input))},
                    resolve=guard(create_field),
                ),
            },
        ),
    )
