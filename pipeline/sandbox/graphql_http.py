"""The GraphQL endpoints (``POST /graphql``, ``POST /metadata``) over HTTP (§1, §3, §8.2).

GraphQL answers 200 with ``errors`` for every failure, authentication included;
parse and validation failures carry Twenty's codes.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from inspect import isawaitable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    execute,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.sandbox.auth import Gatekeeper
from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import SandboxError
from pipeline.sandbox.graphql_api import WorkspaceGraphQL
from pipeline.sandbox.graphql_metadata import build_metadata_schema
from pipeline.sandbox.graphql_resolvers import GraphQLContext
from pipeline.sandbox.http_errors import format_graphql_error, graphql_errors
from pipeline.sandbox.model import WorkspaceModel
from pipeline.sandbox.rest_core import read_json_body


class ValidatedDocuments:
    """Parsed and validated documents by query text, per schema (bounded).

    Twenty's GraphQL server (Yoga) keeps the same caches, so a client that sends one
    document with new variables call after call is parsed and validated once; here it
    also keeps the work done before a call is counted as small as Twenty's.
    """

    SIZE = 256

    def __init__(self) -> None:
        self._by_schema: weakref.WeakKeyDictionary[GraphQLSchema, OrderedDict[str, DocumentNode]]
        self._by_schema = weakref.WeakKeyDictionary()

    def get(self, schema: GraphQLSchema, query: str) -> DocumentNode | None:
        """The document of ``query`` if it was parsed and validated against ``schema``."""
        known = self._by_schema.get(schema)
        if known is None or query not in known:
            return None
        known.move_to_end(query)
        return known[query]

    def put(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> None:
        """Keep a valid ``document`` (the least recently used goes past ``SIZE``)."""
        known = self._by_schema.setdefault(schema, OrderedDict())
        known[query] = document
        if len(known) > self.SIZE:
            known.popitem(last=False)


DOCUMENTS = ValidatedDocuments()


async def run_graphql(schema: GraphQLSchema, body: Any, context: Any) -> dict[str, Any]:
    """Parse, validate and execute one GraphQL request body into its answer."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return {
            "errors": [
                {
                    "message": "Must provide query string.",
                    "extensions": {"code": "GRAPHQL_PARSE_FAILED"},
                }
            ]
        }
    query = body["query"]
    document = DOCUMENTS.get(schema, query)
    if document is None:
        try:
            document = parse(query)
        except GraphQLError as exc:
            return {"errors": [format_graphql_error(exc, "GRAPHQL_PARSE_FAILED")]}
        problems = validate(schema, document)
        if problems:
            return {
                "errors": [format_graphql_error(p, "GRAPHQL_VALIDATION_FAILED") for p in problems]
            }
        DOCUMENTS.put(schema, query, document)
    result = execute(
        schema,
        document,
        variable_values=body.get("variables") or {},
        operation_name=body.get("operationName"),
        context_value=context,
    )
    if isawaitable(result):  # the core schema's root resolvers yield after counting
        result = await result
    assert isinstance(result, ExecutionResult)
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        # An error without a path is a variable coercion failure: bad input, not a crash.
        out["errors"] = [
            format_graphql_error(e, "BAD_USER_INPUT" if e.path is None else "INTERNAL_SERVER_ERROR")
            for e in result.errors
        ]
    return out


class GraphQLEndpoints:
    """``/graphql`` (the workspace schema) and ``/metadata`` (the metadata schema)."""

    def __init__(self, engine: Engine, gate: Gatekeeper) -> None:
        self.engine = engine
        self.gate = gate
        self.workspace = WorkspaceGraphQL(engine)
        self._metadata_schema: tuple[WorkspaceModel, GraphQLSchema] | None = None

    async def graphql_endpoint(self, request: Request) -> Response:
        """``POST /graphql``: 200 with ``errors`` for failures, auth included (§1, §3)."""
        actor, error = self.gate.authenticate(request)
        if error is not None or actor is None:
            assert error is not None
            auth_error = GraphQLError(error.message, extensions={"code": error.graphql_code})
            return JSONResponse({"errors": [format_graphql_error(auth_error, "UNAUTHENTICATED")]})
        try:
            body = await read_json_body(request)
        except SandboxError as exc:
            return graphql_errors(exc.message, "BAD_USER_INPUT")
        context = GraphQLContext(
            engine=self.engine,
            actor=actor,
            spend_token=self.gate.spend_graphql,
            await_database=self.gate.await_database,
        )
        return JSONResponse(await run_graphql(self.workspace.schema, body, context))

    async def metadata_graphql(self, request: Request) -> Response:
        """``POST /metadata``: objects/fields queries, createOneObject/createOneField (§8.2)."""
        _actor, error = self.gate.authenticate(request)
        if error is not None:
            return graphql_errors(error.message, error.graphql_code)
        try:
            body = await read_json_body(request)
        except SandboxError as exc:
            return graphql_errors(exc.message, "BAD_USER_INPUT")
        return JSONResponse(await run_graphql(self.metadata_schema(), body, None))

    def metadata_schema(self) -> GraphQLSchema:
        """The metadata schema for the current metadata (built again when it changes)."""
        model = self.engine.schema
        if self._metadata_schema is None or self._metadata_schema[0] is not model:
            schema = build_metadata_schema(self.engine, self.gate.throttler.kind)
            self._metadata_schema = (model, schema)
        return self._metadata_schema[1]
