"""Field values: what Twenty accepts for each type, and how it stores it (twenty-api.md §6).

``coerce`` validates one input value for one field and returns the stored form,
or raises :class:`InvalidArgs` with a message in Twenty's wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.sandbox.errors import InvalidArgs
from pipeline.sandbox.model import COMPOSITE_TYPES, FieldModel

EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
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
    composite = COMPOSITE_TYPES[field_type]
    return {sub.name: ("" if sub.kind == "text" else None) for sub in composite.subfields}


def _bad(value: Any, field: FieldModel, kind: str = "") -> InvalidArgs:
    shown = value if not isinstance(value, str) else f"'{value}'"
    kind = f"{kind} " if kind else ""
    return InvalidArgs(f'Invalid {kind}value {shown} for field "{field.name}"')


def _number(value: Any, field: FieldModel, *, allow_string: bool) -> int | float:
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


def parse_datetime(value: Any, field: FieldModel) -> datetime:
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


def _composite(value: Any, field: FieldModel, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgs(f'Invalid value {json.dumps(value)} for {label} field "{field.name}"')
    for key in value:
        if key not in field.subfields:
            raise InvalidArgs(f"Invalid subfield {key} for {label} field")
    return dict(value)


def _text_part(value: Any, field: FieldModel, sub: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgs(f'Invalid string value {value} for {sub} of field "{field.name}"')


def _email(value: Any, field: FieldModel) -> str:
    if not isinstance(value, str) or (value and not EMAIL_RE.match(value.strip())):
        raise InvalidArgs(f"Invalid email value '{value}' for field \"{field.name}\"")
    return value.strip().lower()


# --------------------------------------------------------------------------- scalars


def _text(field: FieldModel, value: Any) -> Any:
    if not isinstance(value, str):
        raise InvalidArgs(f'Invalid string value {value} for text field "{field.name}"')
    return value or None


def _position(field: FieldModel, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgs(f"Invalid position value '{value}' for field \"{field.name}\"")
    return value


def _boolean(field: FieldModel, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _bad(value, field, "boolean")
    return value


def _select(field: FieldModel, value: Any) -> Any:
    if not isinstance(value, str) or not field.has_option(value):
        raise InvalidArgs(f"Invalid value '{value}' for field \"{field.name}\"")
    return value


def _multi_select(field: FieldModel, value: Any) -> Any:
    if not isinstance(value, list):
        raise InvalidArgs(f"Invalid value '{value}' for field \"{field.name}\"")
    for item in value:
        if not field.has_option(item):
            raise InvalidArgs(f"Invalid value '{item}' for field \"{field.name}\"")
    return list(value) or None


def _array(field: FieldModel, value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidArgs(f'Invalid value {json.dumps(value)} for array field "{field.name}"')
    return list(items) or None


def _raw_json(field: FieldModel, value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidArgs(f'Invalid JSON value for field "{field.name}"') from None
    return value or None


def _unwritable(field: FieldModel, value: Any) -> Any:
    raise InvalidArgs(f"Field {field.name} does not support write operations.")


# --------------------------------------------------------------------------- composites


def _full_name(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "full name")
    return {k: _text_part(v, field, k) or "" for k, v in parts.items()}


def _list_part(parts: dict[str, Any], key: str, field: FieldModel) -> list[Any] | None:
    """The list sub-field ``key`` of a composite input; None when absent or null."""
    items = parts[key]
    if items is not None and not isinstance(items, list):
        raise InvalidArgs(f'Invalid {key} for field "{field.name}"')
    return items


def _emails(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "emails")
    out: dict[str, Any] = {}
    if "primaryEmail" in parts:
        out["primaryEmail"] = _email(parts["primaryEmail"] or "", field)
    if "additionalEmails" in parts:
        extra = _list_part(parts, "additionalEmails", field)
        out["additionalEmails"] = [_email(e, field) for e in extra or []] or None
    return out


def _links(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "links")
    out: dict[str, Any] = {}
    if "primaryLinkUrl" in parts:
        url = _text_part(parts["primaryLinkUrl"], field, "primaryLinkUrl") or ""
        out["primaryLinkUrl"] = normalize_url(url.strip())
    if "primaryLinkLabel" in parts:
        out["primaryLinkLabel"] = _text_part(parts["primaryLinkLabel"], field, "label") or ""
    if "secondaryLinks" in parts:
        links = _list_part(parts, "secondaryLinks", field)
        out["secondaryLinks"] = [
            {"url": normalize_url(str(link.get("url") or "")), "label": link.get("label") or ""}
            for link in links or []
            if isinstance(link, dict)
        ] or None
    return out


def _phones(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "phones")
    out: dict[str, Any] = {
        k: _text_part(v, field, k) or "" for k, v in parts.items() if k != "additionalPhones"
    }
    if "additionalPhones" in parts:
        out["additionalPhones"] = _list_part(parts, "additionalPhones", field) or None
    return out


def _currency(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "currency")
    out: dict[str, Any] = {}
    if "amountMicros" in parts:
        micros = parts["amountMicros"]
        out["amountMicros"] = None if micros is None else _number(micros, field, allow_string=True)
    if "currencyCode" in parts:
        out["currencyCode"] = _text_part(parts["currencyCode"], field, "currencyCode") or ""
    return out


def _address(field: FieldModel, value: Any) -> Any:
    parts = _composite(value, field, "address")
    out: dict[str, Any] = {}
    for k, v in parts.items():
        if k in ("addressLat", "addressLng"):
            out[k] = None if v is None else _number(v, field, allow_string=True)
        else:
            out[k] = _text_part(v, field, k) or ""
    return out


def _actor(field: FieldModel, value: Any) -> Any:
    return _composite(value, field, "actor")


def _rich_text_v2(field: FieldModel, value: Any) -> Any:
    """Markdown-only input gets a blocknote document of one paragraph per line."""
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


_COERCERS: dict[str, Callable[[FieldModel, Any], Any]] = {
    "TEXT": _text,
    "NUMBER": lambda field, value: _number(value, field, allow_string=False),
    "NUMERIC": lambda field, value: _number(value, field, allow_string=True),
    "POSITION": _position,
    "BOOLEAN": _boolean,
    "UUID": lambda field, value: check_uuid(value),
    "DATE_TIME": lambda field, value: iso(parse_datetime(value, field)),
    "DATE": lambda field, value: parse_datetime(value, field).date().isoformat(),
    "SELECT": _select,
    "RATING": _select,
    "MULTI_SELECT": _multi_select,
    "ARRAY": _array,
    "RAW_JSON": _raw_json,
    "RICH_TEXT": _unwritable,
    "TS_VECTOR": _unwritable,
    "FULL_NAME": _full_name,
    "EMAILS": _emails,
    "LINKS": _links,
    "PHONES": _phones,
    "CURRENCY": _currency,
    "ADDRESS": _address,
    "ACTOR": _actor,
    "RICH_TEXT_V2": _rich_text_v2,
}


def coerce(field: FieldModel, value: Any) -> Any:
    """Validate ``value`` for ``field`` and return what Twenty stores (null stays null)."""
    if value is None:
        return None
    coercer = _COERCERS.get(field.type)
    return value if coercer is None else coercer(field, value)
