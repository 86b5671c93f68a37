"""Field values: what Twenty accepts for each type, and how it stores it (twenty-api.md §6).

``coerce`` validates one input value for one field and returns the stored form,
or raises :class:`InvalidArgs` with a message in Twenty's wording.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.schema import COMPOSITE_SUBFIELDS, Field


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


EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Composite sub-fields that hold text (stored as "" when unset); the others are lists,
# numbers, ids or JSON (stored as null).
NON_TEXT_SUBFIELDS = frozenset(
    {
        "additionalEmails",
        "additionalPhones",
        "secondaryLinks",
        "amountMicros",
        "addressLat",
        "addressLng",
        "workspaceMemberId",
        "context",
    }
)
TEXT_SUBFIELDS = (
    frozenset(sub for subs in COMPOSITE_SUBFIELDS.values() for sub in subs) - NON_TEXT_SUBFIELDS
)


def is_uuid(value: Any) -> bool:
    """True for a canonical UUID string."""
    return isinstance(value, str) and bool(UUID_RE.match(value))


def check_uuid(value: Any) -> str:
    """Return ``value`` if it is a UUID, else raise Twenty's message."""
    if not is_uuid(value):
        raise InvalidArgs(f"'{value}' is not a valid UUID")
    return str(value).lower()


def normalize_url(url: str) -> str:
    """Lower-case the origin of an http(s) URL and drop a trailing slash.

    Like Twenty's ``lowercaseUrlOriginAndRemoveTrailingSlash``: text that does not
    parse as an absolute URL is returned as given.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return url
    rebuilt = urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment)
    )
    return rebuilt.rstrip("/")


def composite_default(field_type: str) -> dict[str, Any]:
    """The stored value of a composite field nobody wrote: text parts "", others null."""
    return {sub: ("" if sub in TEXT_SUBFIELDS else None) for sub in COMPOSITE_SUBFIELDS[field_type]}


def _bad(value: Any, field: Field, kind: str = "") -> InvalidArgs:
    shown = value if not isinstance(value, str) else f"'{value}'"
    kind = f"{kind} " if kind else ""
    return InvalidArgs(f'Invalid {kind}value {shown} for field "{field.name}"')


def _number(value: Any, field: Field, *, allow_string: bool) -> int | float:
    if isinstance(value, bool):
        raise _bad(value, field, "number")
    if isinstance(value, int | float):
        return value
    if allow_string and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _bad(value, field, "number") from None
        return int(number) if number.is_integer() and "." not in value else number
    raise _bad(value, field, "number")


_DATE_FORMATS = ("%m/%d/%Y", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%Y/%m/%d")


def parse_datetime(value: Any, field: Field) -> datetime:
    """Parse the date strings Twenty accepts; reject impossible dates and bare years."""
    if not isinstance(value, str) or not re.search(r"\d{1,4}\D\d{1,2}|[A-Za-z]{3}", value):
        raise _bad(value, field, "date")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise _bad(value, field, "date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(moment: datetime) -> str:
    """Twenty's DATE_TIME output: UTC with milliseconds and Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _composite(value: Any, field: Field, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgs(f'Invalid value {json.dumps(value)} for {label} field "{field.name}"')
    for key in value:
        if key not in field.subfields:
            raise InvalidArgs(f"Invalid subfield {key} for {label} field")
    return dict(value)


def _text_part(value: Any, field: Field, sub: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgs(f'Invalid string value {value} for {sub} of field "{field.name}"')


def _email(value: Any, field: Field) -> str:
    if not isinstance(value, str) or (value and not EMAIL_RE.match(value.strip())):
        raise InvalidArgs(f"Invalid email value '{value}' for field \"{field.name}\"")
    return value.strip().lower()


def coerce(field: Field, value: Any) -> Any:
    """Validate ``value`` for ``field`` and return what Twenty stores."""
    t = field.type
    if value is None:
        return None
    if t in ("TEXT",):
        if not isinstance(value, str):
            raise InvalidArgs(f'Invalid string value {value} for text field "{field.name}"')
        return value or None
    if t == "NUMBER":
        return _number(value, field, allow_string=False)
    if t == "NUMERIC":
        return _number(value, field, allow_string=True)
    if t == "POSITION":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgs(f"Invalid position value '{value}' for field \"{field.name}\"")
        return value
    if t == "BOOLEAN":
        if not isinstance(value, bool):
            raise _bad(value, field, "boolean")
        return value
    if t == "UUID":
        return check_uuid(value)
    if t == "DATE_TIME":
        return iso(parse_datetime(value, field))
    if t == "DATE":
        return parse_datetime(value, field).date().isoformat()
    if t in ("SELECT", "RATING"):
        if not isinstance(value, str) or not any(o.value == value for o in field.options):
            raise InvalidArgs(f"Invalid value '{value}' for field \"{field.name}\"")
        return value
    if t == "MULTI_SELECT":
        if not isinstance(value, list):
            raise InvalidArgs(f"Invalid value '{value}' for field \"{field.name}\"")
        for item in value:
            if not any(o.value == item for o in field.options):
                raise InvalidArgs(f"Invalid value '{item}' for field \"{field.name}\"")
        return list(value) or None
    if t == "ARRAY":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidArgs(f'Invalid value {json.dumps(value)} for array field "{field.name}"')
        return list(items) or None
    if t == "RAW_JSON":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidArgs(f'Invalid JSON value for field "{field.name}"') from None
        return value or None
    if t in ("RICH_TEXT", "TS_VECTOR"):
        raise InvalidArgs(f"Field {field.name} does not support write operations.")
    if t == "FULL_NAME":
        parts = _composite(value, field, "full name")
        return {k: _text_part(v, field, k) or "" for k, v in parts.items()}
    if t == "EMAILS":
        parts = _composite(value, field, "emails")
        out: dict[str, Any] = {}
        if "primaryEmail" in parts:
            out["primaryEmail"] = _email(parts["primaryEmail"] or "", field)
        if "additionalEmails" in parts:
            extra = parts["additionalEmails"]
            if extra is not None and not isinstance(extra, list):
                raise InvalidArgs(f'Invalid additionalEmails for field "{field.name}"')
            out["additionalEmails"] = [_email(e, field) for e in extra or []] or None
        return out
    if t == "LINKS":
        parts = _composite(value, field, "links")
        out = {}
        if "primaryLinkUrl" in parts:
            url = _text_part(parts["primaryLinkUrl"], field, "primaryLinkUrl") or ""
            out["primaryLinkUrl"] = normalize_url(url.strip())
        if "primaryLinkLabel" in parts:
            out["primaryLinkLabel"] = _text_part(parts["primaryLinkLabel"], field, "label") or ""
        if "secondaryLinks" in parts:
            links = parts["secondaryLinks"]
            if links is not None and not isinstance(links, list):
                raise InvalidArgs(f'Invalid secondaryLinks for field "{field.name}"')
            out["secondaryLinks"] = [
                {"url": normalize_url(str(link.get("url") or "")), "label": link.get("label") or ""}
                for link in links or []
                if isinstance(link, dict)
            ] or None
        return out
    if t == "PHONES":
        parts = _composite(value, field, "phones")
        out = {k: v for k, v in parts.items() if k != "additionalPhones"}
        for k, v in out.items():
            out[k] = _text_part(v, field, k) or ""
        if "additionalPhones" in parts:
            phones = parts["additionalPhones"]
            if phones is not None and not isinstance(phones, list):
                raise InvalidArgs(f'Invalid additionalPhones for field "{field.name}"')
            out["additionalPhones"] = phones or None
        return out
    if t == "CURRENCY":
        parts = _composite(value, field, "currency")
        out = {}
        if "amountMicros" in parts:
            micros = parts["amountMicros"]
            out["amountMicros"] = (
                None if micros is None else _number(micros, field, allow_string=True)
            )
        if "currencyCode" in parts:
            out["currencyCode"] = _text_part(parts["currencyCode"], field, "currencyCode") or ""
        return out
    if t == "ADDRESS":
        parts = _composite(value, field, "address")
        out = {}
        for k, v in parts.items():
            if k in ("addressLat", "addressLng"):
                out[k] = None if v is None else _number(v, field, allow_string=True)
            else:
                out[k] = _text_part(v, field, k) or ""
        return out
    if t == "ACTOR":
        return _composite(value, field, "actor")
    if t == "RICH_TEXT_V2":
        parts = _composite(value, field, "rich text")
        markdown = parts.get("markdown")
        blocknote = parts.get("blocknote")
        if markdown is not None and blocknote is None:
            blocknote = json.dumps(
                [
                    {"type": "paragraph", "content": [{"type": "text", "text": line}]}
                    for line in str(markdown).split("\n")
                ]
            )
        return {"markdown": markdown, "blocknote": blocknote}
    return value
