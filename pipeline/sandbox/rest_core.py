"""REST core routes (``/rest/{plural}``, ``/rest/batch/...``, ``/rest/restore/...``) (§2).

Each call is authenticated, routed to its object, spends one token, and then runs
one query runner; envelopes and messages follow twenty-api.md §2.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.sandbox.auth import Gatekeeper
from pipeline.sandbox.duplicates import find_duplicates
from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import InvalidArgs, NotFound, SandboxError
from pipeline.sandbox.filters import Filter, parse_rest_filter, parse_rest_order_by
from pipeline.sandbox.http_errors import rest_error, sandbox_error
from pipeline.sandbox.model import ObjectModel
from pipeline.sandbox.pagination import PageResult
from pipeline.sandbox.values import check_uuid

DEFAULT_PAGE = 60  # QUERY_DEFAULT_LIMIT_RECORDS
MAX_PAGE = 200  # QUERY_MAX_RECORDS
Actor = dict[str, Any]
Runner = Callable[[ObjectModel, Actor], Awaitable[Response]]


async def read_json_body(request: Request) -> Any:
    """The request's JSON body (null when empty); 400 ``Invalid JSON body`` otherwise."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise InvalidArgs("Invalid JSON body") from None


def page_limit(raw: str | None) -> int:
    """The ``limit`` parameter: 60 by default, at most 200."""
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


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _filter(obj: ObjectModel, request: Request, *, required: str | None = None) -> Filter | None:
    text = request.query_params.get("filter")
    if not text:
        if required:
            raise InvalidArgs(required)
        return None
    return parse_rest_filter(obj, text)


class RestCore:
    """The record routes of the REST face."""

    def __init__(self, engine: Engine, gate: Gatekeeper) -> None:
        self.engine = engine
        self.gate = gate

    @property
    def legacy(self) -> bool:
        """Whether the sandbox answers as a legacy Twenty release."""
        return self.gate.profile == "legacy"

    async def _core(self, request: Request, run: Runner) -> Response:
        """Auth, object routing, one token, then ``run``; errors in Twenty's REST shape."""
        actor, error = self.gate.authenticate(request)
        if error is not None or actor is None:
            assert error is not None
            return sandbox_error(error)
        plural = request.path_params["plural"]
        obj = self.engine.object_by_plural(plural)
        if obj is None:
            return rest_error(400, "BadRequestException", f"object '{plural}' not found")
        refused = self.gate.spend_rest()
        if refused is not None:
            return refused
        await self.gate.await_database()  # other calls are counted while this one writes
        try:
            return await run(obj, actor)
        except SandboxError as exc:
            return sandbox_error(exc)

    def _page_envelope(self, obj: ObjectModel, page: PageResult) -> dict[str, Any]:
        info: dict[str, Any] = {
            "hasNextPage": page.has_next_page,
            "startCursor": page.start_cursor,
            "endCursor": page.end_cursor,
        }
        if not self.legacy or page.has_previous_page:
            info["hasPreviousPage"] = page.has_previous_page
        return {
            "data": {obj.name_plural: page.records},
            "totalCount": page.total_count,
            "pageInfo": info,
        }

    def _soft(self, request: Request) -> bool:
        value = request.query_params.get("soft_delete")
        if value is None:
            return self.legacy  # newest: DELETE destroys by default
        return value == "true"

    # ------------------------------------------------------------------ /rest/{plural}

    async def collection(self, request: Request) -> Response:
        """``/rest/{plural}``: list, create one, update many, delete many."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            if request.method == "GET":
                return self._list(obj, request)
            if request.method == "POST":
                return await self._create_one(obj, request, actor)
            if request.method == "PATCH":
                return await self._update_many(obj, request, actor)
            return self._delete_many(obj, request)

        return await self._core(request, run)

    def _list(self, obj: ObjectModel, request: Request) -> Response:
        q = request.query_params
        limit = page_limit(q.get("limit"))
        depth = _depth(q.get("depth"))
        order = parse_rest_order_by(obj, q["order_by"]) if q.get("order_by") else []
        page = self.engine.find_many(
            obj,
            _filter(obj, request),
            order,
            limit=limit,
            after=q.get("starting_after"),
            before=q.get("ending_before"),
            depth=depth,
        )
        return JSONResponse(self._page_envelope(obj, page))

    async def _create_one(self, obj: ObjectModel, request: Request, actor: Actor) -> Response:
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise InvalidArgs("Body must be a JSON object")
        upsert = request.query_params.get("upsert") == "true"
        records = self.engine.create_many(obj, [body], upsert=upsert, actor=actor)
        return JSONResponse(
            {"data": {f"create{_cap(obj.name_singular)}": records[0]}}, status_code=201
        )

    async def _update_many(self, obj: ObjectModel, request: Request, actor: Actor) -> Response:
        flt = _filter(obj, request, required="Filters are mandatory for bulk update operations.")
        records = self.engine.update_many(obj, flt or {}, await read_json_body(request), actor)
        return JSONResponse({"data": {f"update{_cap(obj.name_plural)}": records}})

    def _delete_many(self, obj: ObjectModel, request: Request) -> Response:
        flt = _filter(
            obj,
            request,
            required=(
                "Filters are mandatory for bulk delete operations. "
                "Use a filter to select the records to delete."
            ),
        )
        records = self.engine.delete(obj, flt or {}, soft=self._soft(request))
        return JSONResponse({"data": {f"delete{_cap(obj.name_plural)}": records}})

    # ------------------------------------------------------------------ other routes

    async def member(self, request: Request) -> Response:
        """``/rest/{plural}/{id}``: get, update, delete one."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            record_id = check_uuid(request.path_params["id"])
            if request.method == "GET":
                depth = _depth(request.query_params.get("depth"))
                record = self.engine.find_one(obj, record_id, depth)
                return JSONResponse({"data": {obj.name_singular: record}})
            if request.method in ("PATCH", "PUT"):
                body = await read_json_body(request)
                record = self.engine.update_one(obj, record_id, body, actor)
                return JSONResponse({"data": {f"update{_cap(obj.name_singular)}": record}})
            self.engine.find_one(obj, record_id)
            rows = self.engine.delete(obj, {"id": {"eq": record_id}}, soft=self._soft(request))
            return JSONResponse({"data": {f"delete{_cap(obj.name_singular)}": rows[0]}})

        return await self._core(request, run)

    async def batch(self, request: Request) -> Response:
        """``POST /rest/batch/{plural}[?upsert=true]`` (twenty-api.md §2.4, §2.4a)."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            body = await read_json_body(request)
            upsert = request.query_params.get("upsert") == "true" and not self.legacy
            records = self.engine.create_many(
                obj,
                body,
                upsert=upsert,
                actor=actor,
                id_conflict_message="Record already exists" if self.legacy else None,
            )
            return JSONResponse(
                {"data": {f"create{_cap(obj.name_plural)}": records}}, status_code=201
            )

        return await self._core(request, run)

    async def duplicates(self, request: Request) -> Response:
        """``POST /rest/{plural}/duplicates`` (twenty-api.md §2.6)."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            found = find_duplicates(self.engine, obj, await read_json_body(request))
            return JSONResponse({"data": found})

        return await self._core(request, run)

    async def restore_one(self, request: Request) -> Response:
        """``PATCH /rest/restore/{plural}/{id}`` (and the ``/{id}/restore`` variant)."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            record_id = check_uuid(request.path_params["id"])
            rows = self.engine.restore(obj, {"id": {"eq": record_id}})
            if not rows:
                raise NotFound("Record not found")
            return JSONResponse({"data": {f"restore{_cap(obj.name_singular)}": rows[0]}})

        return await self._core(request, run)

    async def restore_many(self, request: Request) -> Response:
        """``PATCH /rest/restore/{plural}?filter=...``."""

        async def run(obj: ObjectModel, actor: Actor) -> Response:
            flt = _filter(obj, request, required="Filters are mandatory for bulk restore.")
            rows = self.engine.restore(obj, flt or {})
            return JSONResponse({"data": {f"restore{_cap(obj.name_plural)}": rows}})

        return await self._core(request, run)
