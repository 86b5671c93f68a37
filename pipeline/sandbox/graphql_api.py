"""The core ``/graphql`` schema, generated from the workspace model (twenty-api.md §3).

Per object: a node type, its connection, filter / orderBy / create / update inputs,
the ``people`` / ``person`` queries and the create, update, delete, destroy and
restore mutations in one and many forms. The schema is rebuilt when the metadata
changes, as Twenty regenerates its workspace schema.
"""

from __future__ import annotations

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
)

from pipeline.sandbox import graphql_resolvers as resolvers
from pipeline.sandbox.engine import Engine
from pipeline.sandbox.graphql_resolvers import GraphQLContext, to_graphql_error
from pipeline.sandbox.graphql_types import (
    COMPOSITE_FILTER,
    COMPOSITE_ORDER,
    COMPOSITE_OUT,
    SCALAR_FILTER,
    SCALAR_OUT,
    OrderByDirection,
    PageInfo,
    UUIDFilter,
    UUIDScalar,
    writable_inputs,
)
from pipeline.sandbox.model import ObjectModel, WorkspaceModel

__all__ = ["GraphQLContext", "WorkspaceGraphQL", "to_graphql_error"]


class WorkspaceGraphQL:
    """Builds (and rebuilds after metadata changes) the core GraphQL schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._schema: GraphQLSchema | None = None
        self._built_for: WorkspaceModel | None = None

    @property
    def schema(self) -> GraphQLSchema:
        """The schema for the current metadata."""
        if self._schema is None or self._built_for is not self.engine.schema:
            self._schema = _SchemaBuilder(self.engine).build()
            self._built_for = self.engine.schema
        return self._schema


class _SchemaBuilder:
    """One build of the core schema; node and filter types refer to each other lazily."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.objects = [o for o in engine.schema.objects if o.is_active]
        self.types: dict[str, GraphQLObjectType] = {}
        self.connections: dict[str, GraphQLObjectType] = {}
        self.filters: dict[str, GraphQLInputObjectType] = {}
        self.query: dict[str, GraphQLField] = {}
        self.mutation: dict[str, GraphQLField] = {}

    def build(self) -> GraphQLSchema:
        """The schema: every node and connection type first, then the root fields."""
        for obj in self.objects:
            self.types[obj.name_singular] = GraphQLObjectType(
                obj.singular_type,
                (lambda o=obj: self._output_fields(o)),  # type: ignore[misc]
            )
        for obj in self.objects:
            self.connections[obj.name_singular] = self._connection_type(obj)
        for obj in self.objects:
            self.filters[obj.name_singular] = GraphQLInputObjectType(
                f"{obj.singular_type}FilterInput",
                (lambda o=obj: self._filter_fields(o)),  # type: ignore[misc]
            )
            self._add_queries(obj)
            self._add_mutations(obj)
        return GraphQLSchema(
            query=GraphQLObjectType("Query", self.query),
            mutation=GraphQLObjectType("Mutation", self.mutation),
        )

    def _output_fields(self, obj: ObjectModel) -> dict[str, GraphQLField]:
        out: dict[str, GraphQLField] = {}
        for f in obj.fields.values():
            if not f.is_active or f.type == "TS_VECTOR":
                continue
            rel = f.relation
            if rel is not None:
                target = rel.target_object
                if target not in self.types:
                    continue
                if rel.join_column:
                    out[rel.join_column] = GraphQLField(UUIDScalar)
                    out[f.name] = GraphQLField(
                        self.types[target], resolve=resolvers.many_to_one(f, self.engine)
                    )
                else:
                    out[f.name] = GraphQLField(
                        self.connections[target], resolve=resolvers.one_to_many(f, self.engine)
                    )
            elif f.type in COMPOSITE_OUT:
                out[f.name] = GraphQLField(COMPOSITE_OUT[f.type])
            elif f.type in SCALAR_OUT:
                out[f.name] = GraphQLField(SCALAR_OUT[f.type])
        out["id"] = GraphQLField(GraphQLNonNull(UUIDScalar))
        return out

    def _connection_type(self, obj: ObjectModel) -> GraphQLObjectType:
        edge = GraphQLObjectType(
            f"{obj.singular_type}Edge",
            {
                "node": GraphQLField(GraphQLNonNull(self.types[obj.name_singular])),
                "cursor": GraphQLField(GraphQLNonNull(GraphQLString)),
            },
        )
        return GraphQLObjectType(
            f"{obj.singular_type}Connection",
            {
                "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(edge)))),
                "pageInfo": GraphQLField(GraphQLNonNull(PageInfo)),
                "totalCount": GraphQLField(GraphQLInt),
            },
        )

    def _filter_fields(self, obj: ObjectModel) -> dict[str, GraphQLInputField]:
        me = self.filters[obj.name_singular]
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
            elif f.type in SCALAR_FILTER:
                out[f.name] = GraphQLInputField(SCALAR_FILTER[f.type])
        out["id"] = GraphQLInputField(UUIDFilter)
        return out

    def _order_fields(self, obj: ObjectModel) -> dict[str, GraphQLInputField]:
        out: dict[str, GraphQLInputField] = {}
        for f in obj.fields.values():
            if not f.is_active or (f.relation is not None and not f.relation.join_column):
                continue
            if f.relation is not None and f.relation.join_column:
                out[f.relation.join_column] = GraphQLInputField(OrderByDirection)
            elif f.type in COMPOSITE_ORDER:
                out[f.name] = GraphQLInputField(COMPOSITE_ORDER[f.type])
            elif f.type in SCALAR_FILTER:
                out[f.name] = GraphQLInputField(OrderByDirection)
        return out

    def _add_queries(self, obj: ObjectModel) -> None:
        """``people(filter, orderBy, first, last, before, after, limit)`` and ``person``."""
        order = GraphQLInputObjectType(
            f"{obj.singular_type}OrderByInput",
            (lambda o=obj: self._order_fields(o)),  # type: ignore[misc]
        )
        flt = self.filters[obj.name_singular]
        self.query[obj.name_plural] = GraphQLField(
            GraphQLNonNull(self.connections[obj.name_singular]),
            args={
                "filter": GraphQLArgument(flt),
                "orderBy": GraphQLArgument(GraphQLList(order)),
                "first": GraphQLArgument(GraphQLInt),
                "last": GraphQLArgument(GraphQLInt),
                "before": GraphQLArgument(GraphQLString),
                "after": GraphQLArgument(GraphQLString),
                "limit": GraphQLArgument(GraphQLInt),
            },
            resolve=resolvers.find_many(obj),
        )
        self.query[obj.name_singular] = GraphQLField(
            self.types[obj.name_singular],
            args={"filter": GraphQLArgument(GraphQLNonNull(flt))},
            resolve=resolvers.find_one(obj),
        )

    def _add_mutations(self, obj: ObjectModel) -> None:
        """create / update / delete / destroy / restore, each in a one and a many form."""
        writable = writable_inputs(obj)
        create_in = GraphQLInputObjectType(
            f"{obj.singular_type}CreateInput",
            {k: GraphQLInputField(v) for k, v in writable.items()},
        )
        update_in = GraphQLInputObjectType(
            f"{obj.singular_type}UpdateInput",
            {k: GraphQLInputField(v) for k, v in writable.items() if k != "id"},
        )
        node = self.types[obj.name_singular]
        many = GraphQLNonNull(GraphQLList(node))
        plural, singular = obj.plural_type, obj.singular_type
        upsert = {"upsert": GraphQLArgument(GraphQLBoolean)}
        self.mutation[f"create{plural}"] = GraphQLField(
            many,
            args={
                "data": GraphQLArgument(GraphQLNonNull(GraphQLList(GraphQLNonNull(create_in)))),
                **upsert,
            },
            resolve=resolvers.create(obj, many=True),
        )
        self.mutation[f"create{singular}"] = GraphQLField(
            node,
            args={"data": GraphQLArgument(GraphQLNonNull(create_in)), **upsert},
            resolve=resolvers.create(obj, many=False),
        )
        id_arg = {"id": GraphQLArgument(GraphQLNonNull(UUIDScalar))}
        filter_arg = {"filter": GraphQLArgument(GraphQLNonNull(self.filters[obj.name_singular]))}
        data_arg = {"data": GraphQLArgument(GraphQLNonNull(update_in))}
        self.mutation[f"update{singular}"] = GraphQLField(
            node, args={**id_arg, **data_arg}, resolve=resolvers.update(obj, many=False)
        )
        self.mutation[f"update{plural}"] = GraphQLField(
            many, args={**filter_arg, **data_arg}, resolve=resolvers.update(obj, many=True)
        )
        for verb in ("delete", "destroy", "restore"):
            self.mutation[f"{verb}{singular}"] = GraphQLField(
                node, args=id_arg, resolve=resolvers.lifecycle(obj, verb, many=False)
            )
            self.mutation[f"{verb}{plural}"] = GraphQLField(
                many, args=filter_arg, resolve=resolvers.lifecycle(obj, verb, many=True)
            )
