"""The sandbox workspace as an ASGI app: Twenty's REST, GraphQL and metadata faces.

Usable in-process (``httpx.ASGITransport(app=sandbox.app)``) and served by uvicorn
(``twenty-pipeline sandbox serve``). Envelopes, status codes and messages follow
twenty-api.md section by section; where a behaviour depends on the Twenty release,
``profile`` picks ``newest`` or ``legacy``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, execute, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from pipeline.sandbox.engine import Engine, PageResult
from pipeline.sandbox.filters import (
    Filter,
    decode_cursor,
    parse_rest_filter,
    parse_rest_order_by,
)
from pipeline.sandbox.graphql_api import GraphQLContext, WorkspaceGraphQL, build_metadata_schema
from pipeline.sandbox.throttle import Refusal, Throttler, wall_clock_ms
from pipeline.sandbox.values import InvalidArgs, NotFound, SandboxError, check_uuid
from pipeline.schema import ObjectSchema

Profile = Literal["newest", "legacy"]
DEFAULT_PAGE = 60  # QUERY_DEFAULT_LIMIT_RECORDS
MAX_PAGE = 200  # QUERY_MAX_RECORDS


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by the fault injector to cut a connection mid-answer.

    In-process, httpx sees it as the transport error it is; over a socket, uvicorn
    closes the connection because the answer had already started.
    """


AnswerFault = Literal["no_ids", "wrong_ids", "duplicate_ids", "short", "garbage", "trickle"]
ANSWER_FAULTS: tuple[AnswerFault, ...] = (
    "no_ids",
    "wrong_ids",
    "duplicate_ids",
    "short",
    "garbage",
    "trickle",
)
GARBAGE_BODIES: tuple[tuple[bytes, bytes], ...] = (
    (b"application/json", b'{"data": {"createNotes": [{"id": '),  # malformed JSON
    (b"application/json", b""),  # empty body
    (b"text/html", b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
)


@dataclass(frozen=True)
class Faults:
    """Fault injection for tests, off by default; applies to core REST and GraphQL calls.

    Each call draws one number; the shares below are consecutive slices of [0, 1), so
    at most one fault hits a call. With only the first four set, the draws are the
    same as before the later ones existed (same seed, same faults).

    Attributes:
        latency: (min, max) seconds by which each answer is held back. The call is
            applied on arrival and its answer is late, like a slow database or a long
            way back; arrival times (what the token bucket measures) are not jittered.
        error_rate: share of calls answered 500 before anything is applied.
        reset_rate: share of calls whose connection is cut before anything is applied.
        drop_after_apply_rate: share of calls applied, whose answer is then lost.
        seed: seed of the random draws, so a test sees the same faults every run.
        no_ids_rate: share of calls applied whose batch-create answer lists ``{}``
            for every record (no id at all).
        wrong_ids_rate: ... whose answer carries fresh ids, not those stored.
        duplicate_ids_rate: ... whose answer repeats the first record's id throughout.
        short_rate: ... whose answer lists one record fewer than were sent.
        garbage_rate: ... answered 200 with malformed JSON, an empty body or an HTML page.
        trickle_rate: ... whose answer body comes ``trickle_bytes_per_s`` bytes a second.
        echo_key_rate: share of calls answered 500, before anything is applied, with
            a message that quotes the caller's Authorization header (a leaky proxy).
        spike_rate: share of calls applied whose answer is held ``spike_s`` seconds
            (past the client's timeout, if ``spike_s`` is larger).
        outage: (start, duration) seconds, counted from the first faulted call: while
            it lasts, every faulted call gets ``outage_mode`` and nothing is applied.
        outage_mode: ``503`` (an HTML page from a load balancer) or ``reset`` (the
            connection is cut before an answer).
        metadata: fault the metadata API too (schema reads), not only core calls.
        trace: a file to which lines are appended as calls pass: ``arrive``,
            ``applied``, ``answered`` and ``fault:<kind>``, each with the call's number,
            method and path, so a test can act at a precise moment of a run and count
            the faults it met.

    The answer faults (``no_ids`` to ``trickle``) change only the answers of batch
    creates (REST ``/rest/batch/...``, GraphQL ``create<Plural>``); other calls that
    draw them pass unchanged.
    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_apply_rate: float = 0.0
    seed: int | None = None
    no_ids_rate: float = 0.0
    wrong_ids_rate: float = 0.0
    duplicate_ids_rate: float = 0.0
    short_rate: float = 0.0
    garbage_rate: float = 0.0
    trickle_rate: float = 0.0
    trickle_bytes_per_s: float = 1.0
    echo_key_rate: float = 0.0
    spike_rate: float = 0.0
    spike_s: float = 0.0
    outage: tuple[float, float] = (0.0, 0.0)
    outage_mode: Literal["503", "reset"] = "503"
    metadata: bool = False
    trace: str | None = None

    def answer_rate(self, kind: AnswerFault) -> float:
        """The share of calls whose batch-create answer gets fault ``kind``."""
        rate: float = getattr(self, f"{kind}_rate")
        return rate

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return (
            self.latency[1] > 0
            or self.error_rate > 0
            or self.reset_rate > 0
            or self.drop_after_apply_rate > 0
            or any(self.answer_rate(kind) > 0 for kind in ANSWER_FAULTS)
            or self.echo_key_rate > 0
            or self.spike_rate > 0
            or self.outage[1] > 0
            or self.trace is not None
        )


@dataclass(frozen=True)
class SandboxOptions:
    """How the sandbox behaves; defaults are Twenty's own."""

    profile: Profile = "newest"
    rate_limit: int = 100
    rate_window_ms: float = 60_000
    short_limit: int = 100
    short_window_ms: float = 1_000
    throttle: bool = True
    max_records: int = 200
    faults: Faults = field(default_factory=Faults)


def rest_error(status: int, error: str, message: str) -> JSONResponse:
    """Twenty's REST error body (twenty-api.md §2.8)."""
    return JSONResponse(
        {"statusCode": status, "error": error, "messages": [message]}, status_code=status
    )


def _sandbox_error(exc: SandboxError) -> JSONResponse:
    return rest_error(exc.status, exc.rest_error, exc.message)


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


class Sandbox:
    """A local Twenty-compatible workspace over one SQLite file."""

    def __init__(
        self,
        db_path: str | Path,
        options: SandboxOptions | None = None,
        *,
        api_key: str | None = None,
        clock_ms: Callable[[], float] = wall_clock_ms,
    ) -> None:
        self.options = options or SandboxOptions()
        self.engine = Engine(db_path, max_records=self.options.max_records)
        self.api_key = self.engine.ensure_api_key(api_key)
        self.throttler = Throttler(
            self.options.rate_limit,
            self.options.rate_window_ms,
            short_limit=self.options.short_limit,
            short_window_ms=self.options.short_window_ms,
            clock=clock_ms,
            enabled=self.options.throttle,
        )
        self.graphql = WorkspaceGraphQL(self.engine)
        self._metadata_schema: tuple[object, GraphQLSchema] | None = None
        self._rng = random.Random(self.options.faults.seed)
        routes = [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/rest/metadata/{kind:str}", self.metadata_list, methods=["GET", "POST"]),
            Route("/rest/metadata/{kind:str}/{id:str}", self.metadata_one, methods=["GET"]),
            Route("/rest/open-api/core", self.open_api, methods=["GET"]),
            Route("/open-api/core", self.open_api, methods=["GET"]),
            Route("/rest/batch/{plural:str}", self.batch, methods=["POST"]),
            Route("/rest/restore/{plural:str}/{id:str}", self.restore_one, methods=["PATCH"]),
            Route("/rest/restore/{plural:str}", self.restore_many, methods=["PATCH"]),
            Route("/rest/{plural:str}/{id:str}/restore", self.restore_one, methods=["PATCH"]),
            Route(
                "/rest/{plural:str}", self.collection, methods=["GET", "POST", "PATCH", "DELETE"]
            ),
            Route(
                "/rest/{plural:str}/{id:str}",
                self.member,
                methods=["GET", "PATCH", "PUT", "DELETE"],
            ),
            Route("/graphql", self.graphql_endpoint, methods=["POST"]),
            Route("/metadata", self.metadata_graphql, methods=["POST"]),
        ]
        self.app = FaultInjector(Starlette(routes=routes), self)

    def close(self) -> None:
        """Close the database (and the fault trace)."""
        self.app.close()
        self.engine.close()

    # ------------------------------------------------------------------ auth + throttle

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.query_params.get("token") or None

    def authenticate(self, request: Request) -> tuple[dict[str, Any] | None, SandboxError | None]:
        """The caller's actor, or the auth error Twenty would answer (twenty-api.md §1)."""
        token = self._token(request)
        if token is None:
            return None, _auth_error(
                403, "FORBIDDEN_EXCEPTION", "FORBIDDEN", "Missing authentication token"
            )
        key = self.engine.find_api_key(token)
        if key is None:
            return None, _auth_error(401, "UNAUTHENTICATED", "UNAUTHENTICATED", "Token invalid.")
        if key.revoked_at is not None:
            return None, _auth_error(
                403, "FORBIDDEN_EXCEPTION", "FORBIDDEN", "This API Key is revoked"
            )
        if key.expires_at is not None and key.expires_at <= _utc_now():
            return None, _auth_error(
                401, "UNAUTHENTICATED", "UNAUTHENTICATED", "Token has expired."
            )
        actor: dict[str, Any] = {
            "source": "API",
            "name": key.name,
            "workspaceMemberId": None,
            "context": {},
        }
        return actor, None

    def _limit_message(self, refusal: Refusal) -> str:
        if self.options.profile == "legacy":
            return f"Limit reached ({refusal.limit} tokens per {refusal.window_ms:g} ms)"
        return (
            f"Rate limit exceeded for apiKey: {refusal.limit} requests per "
            f"{refusal.window_ms / 1000:g}s."
        )

    def _retry_after_s(self, refusal: Refusal) -> int:
        return max(1, math.ceil(refusal.retry_after_ms / 1000))

    def rest_throttled(self, refusal: Refusal) -> JSONResponse:
        """The 429 of the configured profile (twenty-api.md §5.1 / §5.2)."""
        message = self._limit_message(refusal)
        if self.options.profile == "legacy":
            return rest_error(429, "HttpException", message)
        retry = self._retry_after_s(refusal)
        body = {
            "statusCode": 429,
            "error": "RATE_LIMITED",
            "messages": [message],
            "limitKind": "speed",
            "exhaustedKind": "limit",
            "scope": {"spenderType": "apiKey", "spenderId": None, "operationType": "API_REQUEST"},
            "limit": refusal.limit,
            "remaining": 0,
            "periodCount": int(refusal.window_ms / 1000) or 1,
            "periodUnit": "second",
            "retryAfterSeconds": retry,
        }
        headers = {
            "Retry-After": str(retry),
            "X-RateLimit-Limit": str(refusal.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry),
        }
        return JSONResponse(body, status_code=429, headers=headers)

    def graphql_throttled(self, refusal: Refusal) -> GraphQLError:
        """The GraphQL error of the configured profile for a refused root field."""
        message = self._limit_message(refusal)
        if self.options.profile == "legacy":
            return GraphQLError(
                message, extensions={"code": "BAD_USER_INPUT", "userFriendlyMessage": message}
            )
        return GraphQLError(
            message,
            extensions={
                "code": "RATE_LIMITED",
                "userFriendlyMessage": message,
                "limitKind": "speed",
                "limit": refusal.limit,
                "remaining": 0,
                "periodCount": int(refusal.window_ms / 1000) or 1,
                "periodUnit": "second",
                "retryAfterMs": max(1000, math.ceil(refusal.retry_after_ms)),
                "scope": {
                    "spenderType": "apiKey",
                    "spenderId": None,
                    "operationType": "API_REQUEST",
                },
            },
        )

    # ------------------------------------------------------------------ REST helpers

    async def _core(
        self,
        request: Request,
        run: Callable[[ObjectSchema, dict[str, Any]], Awaitable[Response]],
    ) -> Response:
        """Auth, object routing, one token, then ``run``; errors in Twenty's REST shape."""
        actor, error = self.authenticate(request)
        if error is not None or actor is None:
            assert error is not None
            return _sandbox_error(error)
        plural = request.path_params["plural"]
        obj = self.engine.object_by_plural(plural)
        if obj is None:
            return rest_error(400, "BadRequestException", f"object '{plural}' not found")
        refusal = self.throttler.check()
        if refusal is not None:
            return self.rest_throttled(refusal)
        try:
            response = await run(obj, actor)
        except SandboxError as exc:
            return _sandbox_error(exc)
        return response

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise InvalidArgs("Invalid JSON body") from None

    def _filter(
        self, obj: ObjectSchema, request: Request, *, required: str | None = None
    ) -> Filter | None:
        text = request.query_params.get("filter")
        if not text:
            if required:
                raise InvalidArgs(required)
            return None
        return parse_rest_filter(obj, text)

    def _page_envelope(self, obj: ObjectSchema, page: PageResult) -> dict[str, Any]:
        info: dict[str, Any] = {
            "hasNextPage": page.has_next_page,
            "startCursor": page.start_cursor,
            "endCursor": page.end_cursor,
        }
        if self.options.profile == "newest" or page.has_previous_page:
            info["hasPreviousPage"] = page.has_previous_page
        return {
            "data": {obj.name_plural: page.records},
            "totalCount": page.total_count,
            "pageInfo": info,
        }

    # ------------------------------------------------------------------ REST core routes

    async def health(self, request: Request) -> Response:
        """Readiness probe for ``sandbox serve``."""
        return JSONResponse({"status": "ok"})

    async def collection(self, request: Request) -> Response:
        """``/rest/{plural}``: list, create one, update many, delete many."""

        async def run(obj: ObjectSchema, actor: dict[str, Any]) -> Response:
            q = request.query_params
            if request.method == "GET":
                limit = _limit(q.get("limit"))
                depth = _depth(q.get("depth"))
                order = parse_rest_order_by(obj, q["order_by"]) if q.get("order_by") else []
                page = self.engine.find_many(
                    obj,
                    self._filter(obj, request),
                    order,
                    limit=limit,
                    after=q.get("starting_after"),
                    before=q.get("ending_before"),
                    depth=depth,
                )
                return JSONResponse(self._page_envelope(obj, page))
            if request.method == "POST":
                body = await self._body(request)
                if not isinstance(body, dict):
                    raise InvalidArgs("Body must be a JSON object")
                records = self.engine.create_many(
                    obj, [body], upsert=q.get("upsert") == "true", actor=actor
                )
                return JSONResponse(
                    {"data": {f"create{_cap(obj.name_singular)}": records[0]}}, status_code=201
                )
            if request.method == "PATCH":
                flt = self._filter(
                    obj, request, required="Filters are mandatory for bulk update operations."
                )
                records = self.engine.update_many(obj, flt or {}, await self._body(request), actor)
                return JSONResponse({"data": {f"update{_cap(obj.name_plural)}": records}})
            flt = self._filter(
                obj,
                request,
                required=(
                    "Filters are mandatory for bulk delete operations. "
                    "Use a filter to select the records to delete."
                ),
            )
            records = self.engine.delete(obj, flt or {}, soft=self._soft(request))
            return JSONResponse({"data": {f"delete{_cap(obj.name_plural)}": records}})

        return await self._core(request, run)

    def _soft(self, request: Request) -> bool:
        value = request.query_params.get("soft_delete")
        if value is None:
            return self.options.profile == "legacy"  # newest: DELETE destroys by default
        return value == "true"

    async def member(self, request: Request) -> Response:
        """``/rest/{plural}/{id}``: get, update, delete one."""

        async def run(obj: ObjectSchema, actor: dict[str, Any]) -> Response:
            record_id = check_uuid(request.path_params["id"])
            if request.method == "GET":
                record = self.engine.find_one(
                    obj, record_id, _depth(request.query_params.get("depth"))
                )
                return JSONResponse({"data": {obj.name_singular: record}})
            if request.method in ("PATCH", "PUT"):
                record = self.engine.update_one(obj, record_id, await self._body(request), actor)
                return JSONResponse({"data": {f"update{_cap(obj.name_singular)}": record}})
            self.engine.find_one(obj, record_id)
            rows = self.engine.delete(obj, {"id": {"eq": record_id}}, soft=self._soft(request))
            return JSONResponse({"data": {f"delete{_cap(obj.name_singular)}": rows[0]}})

        return await self._core(request, run)

    async def batch(self, request: Request) -> Response:
        """``POST /rest/batch/{plural}[?upsert=true]`` (twenty-api.md §2.4, §2.4a)."""

        async def run(obj: ObjectSchema, actor: dict[str, Any]) -> Response:
            body = await self._body(request)
            legacy = self.options.profile == "legacy"
            upsert = request.query_params.get("upsert") == "true" and not legacy
            records = self.engine.create_many(
                obj,
                body,
                upsert=upsert,
                actor=actor,
                id_conflict_message="Record already exists" if legacy else None,
            )
            return JSONResponse(
                {"data": {f"create{_cap(obj.name_plural)}": records}}, status_code=201
            )

        return await self._core(request, run)

    async def restore_one(self, request: Request) -> Response:
        """``PATCH /rest/restore/{plural}/{id}`` (and the ``/{id}/restore`` variant)."""

        async def run(obj: ObjectSchema, actor: dict[str, Any]) -> Response:
            record_id = check_uuid(request.path_params["id"])
            rows = self.engine.restore(obj, {"id": {"eq": record_id}})
            if not rows:
                raise NotFound("Record not found")
            return JSONResponse({"data": {f"restore{_cap(obj.name_singular)}": rows[0]}})

        return await self._core(request, run)

    async def restore_many(self, request: Request) -> Response:
        """``PATCH /rest/restore/{plural}?filter=...``."""

        async def run(obj: ObjectSchema, actor: dict[str, Any]) -> Response:
            flt = self._filter(obj, request, required="Filters are mandatory for bulk restore.")
            rows = self.engine.restore(obj, flt or {})
            return JSONResponse({"data": {f"restore{_cap(obj.name_plural)}": rows}})

        return await self._core(request, run)

    # ------------------------------------------------------------------ metadata REST

    async def metadata_list(self, request: Request) -> Response:
        """``GET|POST /rest/metadata/objects|fields`` in the profile's envelope (§8.1)."""
        _actor, error = self.authenticate(request)
        if error is not None:
            return _sandbox_error(error)
        kind = request.path_params["kind"]
        if kind not in ("objects", "fields"):
            return rest_error(
                404, "NotFoundException", f"Cannot {request.method} {request.url.path}"
            )
        legacy = self.options.profile == "legacy"
        try:
            if request.method == "POST":
                body = await self._body(request)
                if not isinstance(body, dict):
                    raise InvalidArgs("Body must be a JSON object")
                if kind == "objects":
                    created = self.engine.create_object(body)
                    wrapped = {"data": {"createOneObject": created}} if legacy else created
                else:
                    created = self.engine.create_field(body)
                    wrapped = {"data": {"createOneField": created}} if legacy else created
                return JSONResponse(wrapped, status_code=201)
            items = (
                self.engine.object_dtos(with_fields=not legacy)
                if kind == "objects"
                else self.engine.field_dtos()
            )
            items.sort(key=lambda item: str(item["id"]))
            limit = _limit(request.query_params.get("limit"))
            after = request.query_params.get("starting_after")
            if after:
                items_after = [i for i in items if str(i["id"]) > _metadata_cursor(after)]
            else:
                items_after = items
            page = items_after[:limit]
            info = {
                "hasNextPage": len(items_after) > limit,
                "hasPreviousPage": bool(after),
                "startCursor": _encode_metadata_cursor(page[0]["id"]) if page else None,
                "endCursor": _encode_metadata_cursor(page[-1]["id"]) if page else None,
            }
            data: Any = {kind: page} if legacy else page
            return JSONResponse({"data": data, "pageInfo": info, "totalCount": len(items)})
        except SandboxError as exc:
            return _sandbox_error(exc)

    async def metadata_one(self, request: Request) -> Response:
        """``GET /rest/metadata/objects|fields/{id}``."""
        _actor, error = self.authenticate(request)
        if error is not None:
            return _sandbox_error(error)
        kind, item_id = request.path_params["kind"], request.path_params["id"]
        try:
            if kind == "objects":
                item = self.engine.object_dtos_by_id(item_id)
            elif kind == "fields":
                item = self.engine.field_dto_by_id(item_id)
            else:
                raise NotFound(f"Cannot GET {request.url.path}")
        except SandboxError as exc:
            return _sandbox_error(exc)
        if self.options.profile == "legacy":
            return JSONResponse({"data": {kind[:-1]: item}})
        return JSONResponse(item)

    async def open_api(self, request: Request) -> Response:
        """A minimal OpenAPI document: the base schema, plus paths with a valid key (§9)."""
        doc: dict[str, Any] = {
            "openapi": "3.0.3",
            "info": {"title": "Twenty sandbox", "version": "1"},
            "paths": {},
        }
        actor, error = self.authenticate(request)
        if actor is not None and error is None:
            for obj in self.engine.schema.objects:
                p = obj.name_plural
                for path in (f"/{p}", f"/batch/{p}", f"/{p}/{{id}}", f"/restore/{p}/{{id}}"):
                    doc["paths"][path] = {}
        return JSONResponse(doc)

    # ------------------------------------------------------------------ GraphQL

    def _run_graphql(self, schema: GraphQLSchema, body: Any, context: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return {
                "errors": [
                    {
                        "message": "Must provide query string.",
                        "extensions": {"code": "GRAPHQL_PARSE_FAILED"},
                    }
                ]
            }
        try:
            document = parse(body["query"])
        except GraphQLError as exc:
            return {"errors": [_format(exc, "GRAPHQL_PARSE_FAILED")]}
        problems = validate(schema, document)
        if problems:
            return {"errors": [_format(p, "GRAPHQL_VALIDATION_FAILED") for p in problems]}
        result = execute(
            schema,
            document,
            variable_values=body.get("variables") or {},
            operation_name=body.get("operationName"),
            context_value=context,
        )
        if not isinstance(result, ExecutionResult):  # every resolver here is synchronous
            raise TypeError("asynchronous GraphQL execution is not expected")
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            # An error without a path is a variable coercion failure: bad input, not a crash.
            out["errors"] = [
                _format(e, "BAD_USER_INPUT" if e.path is None else "INTERNAL_SERVER_ERROR")
                for e in result.errors
            ]
        return out

    async def graphql_endpoint(self, request: Request) -> Response:
        """``POST /graphql``: 200 with ``errors`` for failures, auth included (§1, §3)."""
        actor, error = self.authenticate(request)
        if error is not None or actor is None:
            assert error is not None
            return JSONResponse(
                {
                    "errors": [
                        _format(
                            GraphQLError(error.message, extensions={"code": error.graphql_code}),
                            "UNAUTHENTICATED",
                        )
                    ]
                }
            )
        try:
            body = await self._body(request)
        except SandboxError as exc:
            return JSONResponse(
                {"errors": [{"message": exc.message, "extensions": {"code": "BAD_USER_INPUT"}}]}
            )

        def spend() -> GraphQLError | None:
            refusal = self.throttler.check()
            return self.graphql_throttled(refusal) if refusal is not None else None

        context = GraphQLContext(engine=self.engine, actor=actor, spend_token=spend)
        return JSONResponse(self._run_graphql(self.graphql.schema, body, context))

    async def metadata_graphql(self, request: Request) -> Response:
        """``POST /metadata``: objects/fields queries, createOneObject/createOneField (§8.2)."""
        _actor, error = self.authenticate(request)
        if error is not None:
            return JSONResponse(
                {"errors": [{"message": error.message, "extensions": {"code": error.graphql_code}}]}
            )
        try:
            body = await self._body(request)
        except SandboxError as exc:
            return JSONResponse(
                {"errors": [{"message": exc.message, "extensions": {"code": "BAD_USER_INPUT"}}]}
            )
        if self._metadata_schema is None or self._metadata_schema[0] is not self.engine.schema:
            self._metadata_schema = (self.engine.schema, build_metadata_schema(self.engine))
        return JSONResponse(self._run_graphql(self._metadata_schema[1], body, None))


def _format(error: GraphQLError, default_code: str) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", default_code)
    extensions.setdefault("userFriendlyMessage", error.message)
    formatted["extensions"] = extensions
    return formatted


class _AuthError(SandboxError):
    """An auth failure; status and codes are set per case by :func:`_auth_error`."""


def _auth_error(status: int, rest_error_name: str, graphql_code: str, message: str) -> SandboxError:
    exc = _AuthError(message)
    exc.status = status
    exc.rest_error = rest_error_name
    exc.graphql_code = graphql_code
    return exc


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit():
        raise InvalidArgs(f"limit '{raw}' is invalid. Should be an integer")
    return min(int(raw), MAX_PAGE)


def _depth(raw: str | None) -> int:
    if raw is None:
        return 0
    if raw not in ("0", "1"):
        raise InvalidArgs(f"'depth={raw}' parameter invalid. Allowed values are 0, 1")
    return int(raw)


def _encode_metadata_cursor(item_id: str) -> str:
    return base64.b64encode(json.dumps({"id": item_id}).encode()).decode()


def _metadata_cursor(cursor: str) -> str:
    return str(decode_cursor(cursor)["id"])


# --------------------------------------------------------------------------- faults


class FaultInjector:
    """ASGI wrapper that adds latency, 500s, cut connections and bad answers to API calls."""

    def __init__(self, app: Starlette, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox
        self._calls = 0
        self._first_call: float | None = None
        faults = sandbox.options.faults
        self._trace = open(faults.trace, "a", buffering=1) if faults.trace else None  # noqa: SIM115

    def close(self) -> None:
        """Close the trace file, if any."""
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    def _note(self, event: str, number: int, scope: Scope) -> None:
        if self._trace is not None:
            self._trace.write(f"{event} {number} {scope.get('method')} {scope.get('path')}\n")

    def _in_outage(self) -> bool:
        start, duration = self.sandbox.options.faults.outage
        if duration <= 0:
            return False
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        return start <= now - self._first_call < start + duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.sandbox.options.faults
        path = scope.get("path", "") if scope["type"] == "http" else ""
        is_core = path == "/graphql" or (
            path.startswith("/rest/") and not path.startswith("/rest/metadata")
        )
        if faults.metadata and (path == "/metadata" or path.startswith("/rest/metadata")):
            is_core = True
        if not faults.active or not is_core:
            await self.app(scope, receive, send)
            return
        self._calls += 1
        number = self._calls
        self._note("arrive", number, scope)
        traced = send

        async def answered(message: Message) -> None:
            await traced(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self._note("answered", number, scope)

        send = answered
        if self._in_outage():
            self._note(f"fault:outage-{faults.outage_mode}", number, scope)
            if faults.outage_mode == "reset":
                await _cut(send, "injected fault: outage, connection reset")
            await Response(
                b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
                status_code=503,
                media_type="text/html",
            )(scope, receive, send)
            return
        rng = self.sandbox._rng
        low, high = faults.latency
        delay = rng.uniform(low, high) if high > 0 else 0.0
        if delay:
            send = _delayed(send, delay)
        roll = rng.random()
        if roll < faults.reset_rate:
            self._note("fault:reset", number, scope)
            await _cut(send, "injected fault: connection reset before the call was applied")
            return
        roll -= faults.reset_rate
        if roll < faults.error_rate:
            self._note("fault:error", number, scope)
            response = rest_error(500, "InternalServerErrorException", "Injected fault")
            await response(scope, receive, send)
            return
        roll -= faults.error_rate
        if roll < faults.drop_after_apply_rate:
            self._note("fault:drop_after_apply", number, scope)

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            self._note("applied", number, scope)
            await _cut(send, "injected fault: the call was applied, then the connection dropped")
            return
        roll -= faults.drop_after_apply_rate
        for kind in ANSWER_FAULTS:
            rate = faults.answer_rate(kind)
            if roll < rate:
                await self._bad_answer(kind, scope, receive, send, number)
                return
            roll -= rate
        if roll < faults.echo_key_rate:
            self._note("fault:echo_key", number, scope)
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode()
            response = rest_error(
                500,
                "InternalServerErrorException",
                f"upstream refused the request with Authorization: {header}",
            )
            await response(scope, receive, send)
            return
        roll -= faults.echo_key_rate
        if roll < faults.spike_rate:
            self._note("fault:spike", number, scope)
            send = _delayed(send, faults.spike_s)
        await self.app(scope, receive, _applied(send, lambda: self._note("applied", number, scope)))

    async def _bad_answer(
        self, kind: AnswerFault, scope: Scope, receive: Receive, send: Send, number: int
    ) -> None:
        """Apply the call, then send its answer changed by ``kind`` (batch creates only)."""
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        self._note("applied", number, scope)
        body = b"".join(chunks)
        content_type = b"application/json"
        changed = _changed_answer(kind, body, self.sandbox._rng)
        if changed is None:  # not a batch create, or an error: the answer passes unchanged
            changed = body
        else:
            self._note(f"fault:{kind}", number, scope)
            if kind == "garbage":
                content_type, changed = self.sandbox._rng.choice(GARBAGE_BODIES)
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", content_type),
            (b"content-length", str(len(changed)).encode()),
        ]
        await send({**start, "headers": headers})
        if kind == "trickle" and changed is not body:
            pause = 1 / self.sandbox.options.faults.trickle_bytes_per_s
            for index in range(len(changed)):
                last = index == len(changed) - 1
                await send(
                    {
                        "type": "http.response.body",
                        "body": changed[index : index + 1],
                        "more_body": not last,
                    }
                )
                if not last:
                    await asyncio.sleep(pause)
            return
        await send({"type": "http.response.body", "body": changed})


def _created_list(answer: Any) -> list[Any] | None:
    """The record list of a batch-create answer (REST or GraphQL), or None."""
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        return None
    data = answer["data"]
    if len(data) != 1:
        return None
    ((name, value),) = data.items()
    if not name.startswith("create") or not isinstance(value, list):
        return None
    return value


def _changed_answer(kind: AnswerFault, body: bytes, rng: random.Random) -> bytes | None:
    """``body`` with fault ``kind``, or None when it is no batch-create answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    records = _created_list(answer)
    if not records:
        return None
    if kind == "no_ids":
        records[:] = [{} for _ in records]
    elif kind == "wrong_ids":
        for record in records:
            if isinstance(record, dict):
                record["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    elif kind == "duplicate_ids":
        first = records[0].get("id") if isinstance(records[0], dict) else None
        for record in records:
            if isinstance(record, dict):
                record["id"] = first
    elif kind == "short":
        del records[-1]
    return json.dumps(answer).encode()


def _applied(send: Send, note: Callable[[], None]) -> Send:
    """A ``send`` that notes the call as applied when its answer starts."""

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            note()
        await send(message)

    return noting


def _delayed(send: Send, delay: float) -> Send:
    """A ``send`` that holds the answer back for ``delay`` seconds before it starts."""

    async def delayed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay)
        await send(message)

    return delayed_send


async def _cut(send: Send, reason: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"data":', "more_body": True})
    raise InjectedDisconnect(reason)
