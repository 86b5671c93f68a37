"""``export --with-labels``: beside each join column, the related record's unique label.

An id means nothing in another workspace; a company's domain or a person's e-mail does.
For each relation to one record (``companyId``) the exported file gains a column named
by the relation and the target's unique field (``company.domainName.primaryLinkUrl``),
which an import mapping looks up: ``company: {column: company.domainName.primaryLinkUrl,
lookup: domainName.primaryLinkUrl}``. The labels are read in batched ``id[in]`` calls
(100 ids a call, under 4 KB of query string, which any proxy in front of a server
takes; through the same pacer) and kept for the rest of the export, so each
related record is read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.schema import ObjectSchema, WorkspaceSchema
from pipeline.twenty import TwentyClient
from pipeline.twenty.paginate import PAGE_SIZE

IDS_PER_CALL = 100
"""Ids asked for in one ``id[in]`` read (37 bytes each in the query string)."""

_PREFERRED = ("domainName", "emails", "userEmail")
"""Label fields tried first: a company's domain, a person's e-mail, a member's e-mail."""


@dataclass(frozen=True)
class LabelColumn:
    """One relation's label: its join column, the target and the path read there."""

    join: str
    target: ObjectSchema
    path: str
    name: str


def label_path(target: ObjectSchema) -> str | None:
    """The path of the target's unique label (``domainName.primaryLinkUrl``), if it has one."""
    unique = [p for p in target.unique_paths if p != "id"]
    for head in _PREFERRED:
        for path in unique:
            if path.split(".")[0] == head:
                return path
        if head == "userEmail" and target.field(head) is not None:
            return head
    return unique[0] if unique else None


class Labels:
    """Label columns for an export's relations, looked up in batches and cached."""

    def __init__(
        self,
        client: TwentyClient,
        schema: WorkspaceSchema,
        obj: ObjectSchema,
        joins: Sequence[tuple[str, str]],
    ) -> None:
        """``joins``: (relation field name, join column) of each exported relation."""
        self.client = client
        self.columns: list[LabelColumn] = []
        self.unlabelled: list[str] = []
        for field_name, join in joins:
            item = obj.field(field_name)
            target = (
                schema.object(item.relation.target_object)
                if item is not None and item.relation is not None
                else None
            )
            path = label_path(target) if target is not None else None
            if target is None or path is None:
                self.unlabelled.append(field_name)
                continue
            self.columns.append(LabelColumn(join, target, path, f"{field_name}.{path}"))
        self._cache: dict[str, dict[str, str | None]] = {}

    @classmethod
    def of(cls, client: TwentyClient, columns: list[LabelColumn]) -> Labels:
        """Labels for columns already chosen (an import mapping's lookups)."""
        labels = cls.__new__(cls)
        labels.client, labels.columns, labels.unlabelled = client, columns, []
        labels._cache = {}
        return labels

    @property
    def names(self) -> list[str]:
        """The label columns the file gains."""
        return [c.name for c in self.columns]

    async def add(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with a label column beside each join column."""
        for column in self.columns:
            known = await self._read(column, frame[column.join].to_list())
            labels = [known.get(i) if i is not None else None for i in frame[column.join]]
            frame = frame.with_columns(pl.Series(column.name, labels, dtype=pl.String))
        return frame

    async def annotate(self, records: list[dict[str, Any]]) -> None:
        """Put each label in its record under ``_label:<column>``."""
        for column in self.columns:
            joins = [r.get(column.join) for r in records]
            known = await self._read(column, joins)
            for record, join in zip(records, joins, strict=True):
                record[f"_label:{column.name}"] = known.get(join) if join else None

    async def _read(self, column: LabelColumn, joins: list[Any]) -> dict[str, str | None]:
        """The labels of these ids (cached), reading the ones not seen yet."""
        key = f"{column.target.name_singular}:{column.path}"
        known = self._cache.setdefault(key, {})
        wanted = {str(j) for j in joins if j}
        ids = sorted(i for i in wanted if i not in known)
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            page = await self.client.find_many(
                column.target.names,
                filter=f"id[in]:[{','.join(chunk)}]",
                limit=PAGE_SIZE,
            )
            for record in page.records:
                known[str(record["id"])] = _value_at(record, column.path)
            for missing in set(chunk) - {str(r["id"]) for r in page.records}:
                known[missing] = None  # deleted since: no label to give
        return known


def _value_at(record: dict[str, Any], path: str) -> str | None:
    head, _, sub = path.partition(".")
    value = record.get(head)
    if sub:
        value = value.get(sub) if isinstance(value, dict) else None
    return str(value) if value not in (None, "") else None
