"""Resolvers of the core ``/graphql`` schema: each root field is one query-runner call.

Every root field spends one token of the workspace bucket first, as Twenty counts
one query-runner execution per root field (twenty-api.md §5.1); sandbox errors
become GraphQL errors with Twenty's codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import InvalidArgs, NotFound, SandboxError
from pipeline.sandbox.filters import graphql_order_by
from pipeline.sandbox.model import FieldModel, ObjectModel
from pipeline.sandbox.pagination import encode_cursor


@dataclass
class GraphQLContext:
    """What resolvers need: the engine, the caller's actor, the token spender, and the
    wait for the database that follows a counted call."""

    engine: Engine
    actor: dict[str, Any]
    spend_token: Callable[[], GraphQLError | None]
    await_database: Callable[[], Awaitable[None]]


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


def _context(info: Any) -> GraphQLContext:
    ctx = info.context
    assert isinstance(ctx, GraphQLContext)
    return ctx


def _root(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a root resolver: spend a token first, turn sandbox errors into GraphQL errors.

    Twenty counts a call and then awaits its database, so calls that reach it together
    are all counted before the first one's records are written. The resolver awaits
    between the two (:meth:`Gatekeeper.await_database`), so the sandbox counts them the
    same way rather than one call's write after the other's (which would spread their
    arrivals at the bucket by the whole of each write).
    """

    async def resolve(parent: Any, info: Any, **args: Any) -> Any:
        ctx = _context(info)
        refused = ctx.spend_token()
        if refused is not None:
            raise refused
        await ctx.await_database()
        try:
            return func(ctx, **args)
        except SandboxError as exc:
            raise to_graphql_error(exc) from exc

    return resolve


def _connection(
    obj: ObjectModel,
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


def find_many(obj: ObjectModel) -> Callable[..., Any]:
    """The ``people(...)`` connection resolver of ``obj``."""

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


def find_one(obj: ObjectModel) -> Callable[..., Any]:
    """The ``person(filter)`` resolver of ``obj``."""

    def run(ctx: GraphQLContext, filter: Any) -> Any:
        return ctx.engine.find_first(obj, filter)

    return _root(run)


def create(obj: ObjectModel, *, many: bool) -> Callable[..., Any]:
    """The ``createPeople`` / ``createPerson`` resolver (``upsert`` as the REST batch)."""

    def run(ctx: GraphQLContext, data: Any, upsert: bool | None = None) -> Any:
        records = ctx.engine.create_many(
            obj, data if many else [data], upsert=bool(upsert), actor=ctx.actor
        )
        return records if many else records[0]

    return _root(run)


def update(obj: ObjectModel, *, many: bool) -> Callable[..., Any]:
    """The ``updatePerson(id)`` / ``updatePeople(filter)`` resolver."""

    def run(ctx: GraphQLContext, data: Any, id: str | None = None, filter: Any = None) -> Any:
        if many:
            return ctx.engine.update_many(obj, filter, data, ctx.actor)
        assert id is not None
        return ctx.engine.update_one(obj, id, data, ctx.actor)

    return _root(run)


def lifecycle(obj: ObjectModel, verb: str, *, many: bool) -> Callable[..., Any]:
    """delete (soft), destroy or restore, one by id or many by filter."""

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


def many_to_one(f: FieldModel, engine: Engine) -> Callable[..., Any]:
    """The linked record of a MANY_TO_ONE field, null when unset or gone."""
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


def one_to_many(f: FieldModel, engine: Engine) -> Callable[..., Any]:
    """The records whose join column points at the parent, as a connection."""

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
