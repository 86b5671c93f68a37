"""``POST /rest/{plural}/duplicates``: records that look like the ones given (twenty-api.md §2.6).

Twenty declares duplicate criteria per object (``@WorkspaceDuplicateCriteria``): person
``[nameFirstName, nameLastName]``, ``[linkedinLinkPrimaryLinkUrl]``,
``[emailsPrimaryEmail]``; company ``[name]``, ``[domainNamePrimaryLinkUrl]``. For each
input (a record in ``data``, or an existing record named in ``ids``) it ORs the groups
whose values are all present, as equality filters, leaves out the record itself, and
answers one connection per input: ``{"<singular>Duplicates": [...], "totalCount",
"pageInfo"}``. Soft-deleted records are not candidates. Objects without criteria
answer an empty connection per input.
"""

from __future__ import annotations

from typing import Any

from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import InvalidArgs
from pipeline.sandbox.filters import Filter
from pipeline.sandbox.model import ObjectModel
from pipeline.sandbox.pagination import encode_cursor
from pipeline.sandbox.values import check_uuid

Record = dict[str, Any]

CRITERIA: dict[str, tuple[tuple[str, ...], ...]] = {
    "person": (
        ("name.firstName", "name.lastName"),
        ("linkedinLink.primaryLinkUrl",),
        ("emails.primaryEmail",),
    ),
    "company": (("name",), ("domainName.primaryLinkUrl",)),
}


def _value(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _leaf(path: str, value: Any) -> Filter:
    head, _, sub = path.partition(".")
    return {head: {sub: {"eq": value}}} if sub else {head: {"eq": value}}


def duplicate_filter(obj: ObjectModel, record: dict[str, Any]) -> Filter | None:
    """The filter of the records that look like ``record``; None when no group applies."""
    groups = []
    for group in CRITERIA.get(obj.name_singular, ()):
        values = [_value(record, p) for p in group]
        if all(v not in (None, "") for v in values):
            groups.append({"and": [_leaf(p, v) for p, v in zip(group, values, strict=True)]})
    if not groups:
        return None
    flt: Filter = {"or": groups}
    if record.get("id"):
        flt = {"and": [flt, {"not": {"id": {"eq": record["id"]}}}]}
    return flt


def duplicate_inputs(body: Any) -> tuple[list[dict[str, Any]] | None, list[str] | None]:
    """``data`` (records) or ``ids`` of a request body; 400 when neither or both."""
    if not isinstance(body, dict):
        raise InvalidArgs("Body must be a JSON object")
    data, ids = body.get("data"), body.get("ids")
    if (data is None) == (ids is None):
        raise InvalidArgs("You have to provide either 'data' or 'ids' argument")
    if data is not None:
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise InvalidArgs("'data' must be an array of records")
        return data, None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidArgs("'ids' must be an array of record ids")
    return None, ids


def _index(engine: Engine, obj: ObjectModel) -> list[dict[tuple[Any, ...], list[Record]]]:
    """Per criteria group, its values -> the live records holding them (one read per call)."""
    groups = CRITERIA.get(obj.name_singular, ())
    index: list[dict[tuple[Any, ...], list[Record]]] = [{} for _ in groups]
    if not groups:
        return index
    for row in engine.records.table.select(obj, None):
        for table, group in zip(index, groups, strict=True):
            values = tuple(_value(row, p) for p in group)
            if all(v not in (None, "") for v in values):
                table.setdefault(values, []).append(row)
    return index


def _matches(
    obj: ObjectModel, record: Record, index: list[dict[tuple[Any, ...], list[Record]]]
) -> list[Record]:
    """What :func:`duplicate_filter` selects, looked up in the index (ordered by id)."""
    found: dict[str, Record] = {}
    for table, group in zip(index, CRITERIA.get(obj.name_singular, ()), strict=True):
        values = tuple(_value(record, p) for p in group)
        if all(v not in (None, "") for v in values):
            for row in table.get(values, []):
                if row["id"] != record.get("id"):
                    found[row["id"]] = row
    return [found[k] for k in sorted(found)]


def find_duplicates(engine: Engine, obj: ObjectModel, body: Any) -> list[Record]:
    """One connection per input of the request ``body`` (``data`` or ``ids``)."""
    data, ids = duplicate_inputs(body)
    if ids is not None:
        records = [engine.find_one(obj, check_uuid(i)) for i in ids]
    else:
        # inputs are read as an update would read them: emails lower-cased, URLs tidied
        records = [engine.prepare(obj, d, for_create=False) for d in data or []]
    index = _index(engine, obj)
    out = []
    for record in records:
        found = _matches(obj, record, index)
        shown = [engine.present(obj, r) for r in found]
        cursors = [encode_cursor(r, []) for r in found]
        out.append(
            {
                f"{obj.name_singular}Duplicates": shown,
                "totalCount": len(shown),
                "pageInfo": {
                    "hasNextPage": False,
                    "hasPreviousPage": False,
                    "startCursor": cursors[0] if cursors else None,
                    "endCursor": cursors[-1] if cursors else None,
                },
            }
        )
    return out
