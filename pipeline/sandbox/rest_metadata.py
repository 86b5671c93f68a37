"""REST metadata routes (``/rest/metadata/objects|fields``, §8.1) and the OpenAPI stub (§9).

Lists are paginated by id; the ``newest`` profile answers bare lists of objects with
their fields embedded, the ``legacy`` one wraps them in ``{"objects": [...]}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.sandbox.auth import Gatekeeper
from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import InvalidArgs, NotFound, SandboxError
from pipeline.sandbox.http_errors import rest_error, sandbox_error
from pipeline.sandbox.pagination import decode_cursor
from pipeline.sandbox.rest_core import page_limit, read_json_body

METADATA_KINDS = ("objects", "fields")


def _encode_metadata_cursor(item_id: str) -> str:
    return base64.b64encode(json.dumps({"id": item_id}).encode()).decode()


def _metadata_cursor(cursor: str) -> str:
    return str(decode_cursor(cursor)["id"])


class RestMetadata:
    """The metadata routes of the REST face (not rate counted)."""

    def __init__(self, engine: Engine, gate: Gatekeeper) -> None:
        self.engine = engine
        self.gate = gate

    @property
    def legacy(self) -> bool:
        """Whether the sandbox answers as a legacy Twenty release."""
        return self.gate.profile == "legacy"

    async def metadata_list(self, request: Request) -> Response:
        """``GET|POST /rest/metadata/objects|fields`` in the profile's envelope (§8.1)."""
        _actor, error = self.gate.authenticate(request)
        if error is not None:
            return sandbox_error(error)
        kind = request.path_params["kind"]
        if kind not in METADATA_KINDS:
            return rest_error(
                404, "NotFoundException", f"Cannot {request.method} {request.url.path}"
            )
        try:
            if request.method == "POST":
                return await self._create(kind, request)
            return self._list(kind, request)
        except SandboxError as exc:
            return sandbox_error(exc)

    async def _create(self, kind: str, request: Request) -> Response:
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise InvalidArgs("Body must be a JSON object")
        if kind == "objects":
            created = self.engine.create_object(body)
            wrapped = {"data": {"createOneObject": created}} if self.legacy else created
        else:
            created = self.engine.create_field(body)
            wrapped = {"data": {"createOneField": created}} if self.legacy else created
        return JSONResponse(wrapped, status_code=201)

    def _list(self, kind: str, request: Request) -> Response:
        items = (
            self.engine.object_dtos(with_fields=not self.legacy)
            if kind == "objects"
            else self.engine.field_dtos()
        )
        items.sort(key=lambda item: str(item["id"]))
        limit = page_limit(request.query_params.get("limit"))
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
        data: Any = {kind: page} if self.legacy else page
        return JSONResponse({"data": data, "pageInfo": info, "totalCount": len(items)})

    async def metadata_one(self, request: Request) -> Response:
        """``GET /rest/metadata/objects|fields/{id}``."""
        _actor, error = self.gate.authenticate(request)
        if error is not None:
            return sandbox_error(error)
        kind, item_id = request.path_params["kind"], request.path_params["id"]
        if request.method == "PATCH":
            return await self._update(kind, item_id, request)
        try:
            if kind == "objects":
                item = self.engine.object_dtos_by_id(item_id)
            elif kind == "fields":
                item = self.engine.field_dto_by_id(item_id)
            else:
                raise NotFound(f"Cannot GET {request.url.path}")
        except SandboxError as exc:
            return sandbox_error(exc)
        if self.legacy:
            return JSONResponse({"data": {kind[:-1]: item}})
        return JSONResponse(item)

    async def _update(self, kind: str, item_id: str, request: Request) -> Response:
        """``PATCH /rest/metadata/fields/{id}``: the body is UpdateOneField's ``update``."""
        if kind != "fields":
            return rest_error(
                404, "NotFoundException", f"Cannot {request.method} {request.url.path}"
            )
        try:
            body = await read_json_body(request)
            if not isinstance(body, dict):
                raise InvalidArgs("Body must be a JSON object")
            updated = self.engine.update_field(item_id, body)
        except SandboxError as exc:
            return sandbox_error(exc)
        return JSONResponse({"data": {"updateOneField": updated}} if self.legacy else updated)

    async def open_api(self, request: Request) -> Response:
        """A minimal OpenAPI document: the base schema, plus paths with a valid key (§9)."""
        doc: dict[str, Any] = {
            "openapi": "3.0.3",
            "info": {"title": "Twenty sandbox", "version": "1"},
            "paths": {},
        }
        actor, error = self.gate.authenticate(request)
        if actor is not None and error is None:
            for obj in self.engine.schema.objects:
                p = obj.name_plural
                for path in (f"/{p}", f"/batch/{p}", f"/{p}/{{id}}", f"/restore/{p}/{{id}}"):
                    doc["paths"][path] = {}
        return JSONResponse(doc)
