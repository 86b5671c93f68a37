"""Workspace metadata: the objects and fields a workspace defines (twenty-api.md §8).

Metadata calls are not paced (Twenty does not count them against the workspace
bucket); they page through the same paginator as record lists.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import FatalApiError
from pipeline.twenty.answers import single_list
from pipeline.twenty.names import Record
from pipeline.twenty.paginate import PAGE_SIZE, Page, collect, page_of, paginate
from pipeline.twenty.session import Session

OBJECTS_PATH = "/rest/metadata/objects"
FIELDS_PATH = "/rest/metadata/fields"


class Metadata:
    """The data model of one workspace, read through its session."""

    def __init__(self, session: Session, *, page_size: int = PAGE_SIZE) -> None:
        self.session = session
        self.page_size = page_size
        """Items asked for per call: Twenty's largest page, so a workspace takes one or two."""

    async def objects(self) -> list[Record]:
        """Every object of the workspace (with ``fields`` when the server embeds them)."""
        return await self._list(OBJECTS_PATH)

    async def fields(self) -> list[Record]:
        """Every field of the workspace, each with its ``objectMetadataId``."""
        return await self._list(FIELDS_PATH)

    async def create_object(self, body: dict[str, Any]) -> Record:
        """Create a custom object (CreateObjectInput, twenty-api.md §8.1); the object."""
        return await self._create(OBJECTS_PATH, body, "createOneObject")

    async def create_field(self, body: dict[str, Any]) -> Record:
        """Create a custom field (CreateFieldInput, twenty-api.md §8.1); the field."""
        return await self._create(FIELDS_PATH, body, "createOneField")

    async def update_field(self, field_id: str, update: dict[str, Any]) -> Record:
        """Change a field (``PATCH /rest/metadata/fields/{id}``, UpdateOneFieldMetadataInput's
        ``update``): a select's whole option list, the existing options with their ids."""
        path = f"{FIELDS_PATH}/{field_id}"
        # the same update sent twice leaves the same field: safe to send again
        answer = await self.session.request(
            "metadata", "PATCH", path, json_body=update, idempotent=True
        )
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            updated = answer["data"].get("updateOneField", answer["data"])
        else:
            updated = answer
        if not isinstance(updated, dict) or updated.get("id") != field_id:
            raise FatalApiError(f"PATCH {path}: the answer is not the field asked for")
        return updated

    async def _create(self, path: str, body: dict[str, Any], legacy_key: str) -> Record:
        # a create is not idempotent: an unconfirmed answer is not sent again
        answer = await self.session.request(
            "metadata", "POST", path, json_body=body, idempotent=False
        )
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            created = answer["data"].get(legacy_key, answer["data"])  # legacy envelope
        else:
            created = answer
        if not isinstance(created, dict) or not created.get("id"):
            raise FatalApiError(f"POST {path}: the answer does not give the created id")
        return created

    async def _list(self, path: str) -> list[Record]:
        async def fetch(cursor: str | None) -> Page:
            params: dict[str, Any] = {"limit": self.page_size}
            if cursor:
                params["starting_after"] = cursor
            body = await self.session.request("metadata", "GET", path, params=params)
            return page_of(single_list(body.get("data"), what=f"GET {path}"), body)

        return await collect(paginate(fetch, what=f"GET {path}"))
