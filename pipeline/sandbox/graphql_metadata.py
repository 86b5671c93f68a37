"""The ``/metadata`` GraphQL face: objects and fields connections, createOne{Object,Field}.

A small schema (twenty-api.md §8.2): object and field nodes are the stored DTOs, so
the GraphQL and REST metadata faces answer the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
)

from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import SandboxError
from pipeline.sandbox.graphql_resolvers import to_graphql_error
from pipeline.sandbox.graphql_types import JSONScalar
from pipeline.sandbox.throttle import BucketKind


def _named(names: tuple[str, ...], kind: Any) -> dict[str, GraphQLField]:
    return {name: GraphQLField(kind) for name in names}


def _connection(name: str, node: GraphQLObjectType) -> GraphQLObjectType:
    """``{edges: [{node}], totalCount}``, the shape of the metadata connections."""
    edge = GraphQLObjectType(f"{name}Edge", {"node": GraphQLField(GraphQLNonNull(node))})
    return GraphQLObjectType(
        f"{name}Connection",
        {
            "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(edge)))),
            "totalCount": GraphQLField(GraphQLInt),
        },
    )


def _connection_of(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"edges": [{"node": item} for item in items], "totalCount": len(items)}


FIELD_TEXT = (
    "type",
    "name",
    "label",
    "description",
    "icon",
    "objectMetadataId",
    "createdAt",
    "updatedAt",
)
FIELD_FLAGS = (
    "isCustom",
    "isActive",
    "isSystem",
    "isNullable",
    "isUnique",
    "isLabelSyncedWithName",
)
FIELD_JSON = ("defaultValue", "options", "settings", "relation")
OBJECT_TEXT = (
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
OBJECT_FLAGS = ("isCustom", "isActive", "isSystem")

CursorPaging = GraphQLInputObjectType(
    "CursorPaging",
    {"first": GraphQLInputField(GraphQLInt), "after": GraphQLInputField(GraphQLString)},
)
LISTING_ARGS = {"paging": GraphQLArgument(CursorPaging), "filter": GraphQLArgument(JSONScalar)}


def _fields_of(parent: dict[str, Any], info: Any, **_: Any) -> dict[str, Any]:
    return _connection_of(parent.get("fields", []))


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """A root resolver whose sandbox errors become GraphQL errors."""

    def resolve(parent: Any, info: Any, **args: Any) -> Any:
        try:
            return func(**args)
        except SandboxError as exc:
            raise to_graphql_error(exc) from exc

    return resolve


def _node_types() -> tuple[GraphQLObjectType, GraphQLObjectType, GraphQLObjectType]:
    """The ``Field`` and ``Object`` node types, and the fields connection objects embed."""
    field_type = GraphQLObjectType(
        "Field",
        {
            **_named(FIELD_TEXT, GraphQLString),
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            **_named(FIELD_FLAGS, GraphQLBoolean),
            **_named(FIELD_JSON, JSONScalar),
        },
    )
    field_conn = _connection("Field", field_type)
    object_type = GraphQLObjectType(
        "Object",
        {
            **_named(OBJECT_TEXT, GraphQLString),
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            **_named(OBJECT_FLAGS, GraphQLBoolean),
            "fields": GraphQLField(
                GraphQLNonNull(field_conn),
                args=LISTING_ARGS,
                resolve=_fields_of,
            ),
        },
    )
    return field_type, object_type, field_conn


RATE_LIMIT_V2_FLAG = "IS_API_RATE_LIMIT_V2_ENABLED"
"""The workspace feature flag that switches Twenty's API throttling from the legacy
throttler to the usage-limit engine (twenty-api.md §5.2)."""

FeatureFlagType = GraphQLObjectType(
    "FeatureFlag",
    {
        "key": GraphQLField(GraphQLNonNull(GraphQLString)),
        "value": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
    },
)
WorkspaceType = GraphQLObjectType(
    "Workspace",
    {
        "id": GraphQLField(GraphQLNonNull(GraphQLID)),
        "displayName": GraphQLField(GraphQLString),
        "featureFlags": GraphQLField(GraphQLList(GraphQLNonNull(FeatureFlagType))),
    },
)


def current_workspace(engine: Engine, bucket: BucketKind) -> dict[str, Any]:
    """``currentWorkspace`` as an API key sees it: Twenty guards it with the workspace
    guard alone, so a key may read the workspace's feature flags, among them the one
    that says which rate-limit bucket counts its calls."""
    return {
        "id": engine.workspace_id,
        "displayName": "Sandbox",
        "featureFlags": [{"key": RATE_LIMIT_V2_FLAG, "value": bucket == "v2"}],
    }


def build_metadata_schema(engine: Engine, bucket: BucketKind = "legacy") -> GraphQLSchema:
    """A small ``/metadata`` schema: objects and fields connections, createOne{Object,Field},
    and ``currentWorkspace`` with its feature flags."""
    field_type, object_type, field_conn = _node_types()

    def objects(**_: Any) -> dict[str, Any]:
        return _connection_of(engine.object_dtos(with_fields=True))

    def all_fields(**_: Any) -> dict[str, Any]:
        return _connection_of(engine.field_dtos())

    def create_object(input: dict[str, Any]) -> dict[str, Any]:
        return engine.create_object(dict(input.get("object") or {}))

    def create_field(input: dict[str, Any]) -> dict[str, Any]:
        return engine.create_field(dict(input.get("field") or {}))

    def update_field(input: dict[str, Any]) -> dict[str, Any]:
        return engine.update_field(str(input.get("id") or ""), dict(input.get("update") or {}))

    update_input = GraphQLInputObjectType(
        "UpdateOneFieldMetadataInput",
        {
            "id": GraphQLInputField(GraphQLNonNull(GraphQLID)),
            "update": GraphQLInputField(GraphQLNonNull(JSONScalar)),
        },
    )
    object_input = GraphQLInputObjectType(
        "CreateOneObjectInput", {"object": GraphQLInputField(GraphQLNonNull(JSONScalar))}
    )
    field_input = GraphQLInputObjectType(
        "CreateOneFieldMetadataInput", {"field": GraphQLInputField(GraphQLNonNull(JSONScalar))}
    )
    query = {
        "currentWorkspace": GraphQLField(
            GraphQLNonNull(WorkspaceType),
            resolve=_guard(lambda: current_workspace(engine, bucket)),
        ),
        "objects": GraphQLField(
            GraphQLNonNull(_connection("Object", object_type)),
            args=LISTING_ARGS,
            resolve=_guard(objects),
        ),
        "fields": GraphQLField(
            GraphQLNonNull(field_conn), args=LISTING_ARGS, resolve=_guard(all_fields)
        ),
    }
    mutation = {
        "createOneObject": GraphQLField(
            GraphQLNonNull(object_type),
            args={"input": GraphQLArgument(GraphQLNonNull(object_input))},
            resolve=_guard(create_object),
        ),
        "createOneField": GraphQLField(
            GraphQLNonNull(field_type),
            args={"input": GraphQLArgument(GraphQLNonNull(field_input))},
            resolve=_guard(create_field),
        ),
        "updateOneField": GraphQLField(
            GraphQLNonNull(field_type),
            args={"input": GraphQLArgument(GraphQLNonNull(update_input))},
            resolve=_guard(update_field),
        ),
    }
    return GraphQLSchema(
        query=GraphQLObjectType("Query", query),
        mutation=GraphQLObjectType("Mutation", mutation),
    )
