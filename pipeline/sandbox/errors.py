"""The errors the sandbox answers with, and how each face shows them (twenty-api.md §2.8, §3)."""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """An error the sandbox answers with; REST status and GraphQL code per twenty-api.md."""

    status = 400
    rest_error = "BadRequestException"
    graphql_code = "BAD_USER_INPUT"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class InvalidArgs(SandboxError):
    """INVALID_ARGS_DATA: the data does not fit the field (400 / BAD_USER_INPUT)."""


class NotFound(SandboxError):
    """RECORD_NOT_FOUND (404 / NOT_FOUND)."""

    status = 404
    rest_error = "NotFoundException"
    graphql_code = "NOT_FOUND"


class DuplicateEntry(SandboxError):
    """A unique index refused the write (400 / BAD_USER_INPUT with conflict details)."""

    def __init__(self, conflicting_id: str | None = None, object_name: str | None = None) -> None:
        super().__init__(
            "A duplicate entry was detected",
            conflictingRecordId=conflicting_id,
            conflictingObjectNameSingular=object_name,
        )
