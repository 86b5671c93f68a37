"""The workspace records a file's rows would upsert onto, read by key before any write.

A plan (and the import options that act on it) needs, for every row, the record its
upsert would match: read with batched ``in`` filters on the key (200 values a call,
twenty-api.md §2.2), through the client, so the reads are paced like every call.
Soft-deleted records are hidden from those lists, so they are read once apart
(``deletedAt[is]:NOT_NULL``): an upsert onto one restores it (twenty-api.md §4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.normalize import KEY, KEY_SEPARATOR, Plan
from pipeline.twenty import PAGE_SIZE, TwentyClient

Record = dict[str, Any]


def get_path(record: Record, path: str) -> Any:
    """``record[a][b]`` for ``a.b`` (None where a part is missing)."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _quote(value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"'


@dataclass
class ExistingRecords:
    """Reads and holds the workspace records matching the keys of a plan."""

    plan: Plan
    client: TwentyClient
    live: dict[str, Record] = field(default_factory=dict)
    deleted: dict[str, Record] = field(default_factory=dict)
    calls: int = 0
    _asked: set[str] = field(default_factory=set)

    @property
    def by_id(self) -> bool:
        """Whether records are matched by id (a derived or mapped id), not a unique field."""
        return self.plan.derive_id or self.plan.key == ("id",)

    @property
    def filter_path(self) -> str:
        """The field the ``in`` filter runs on."""
        return "id" if self.by_id else self.plan.key[0]

    def identities(self, records: pl.DataFrame) -> list[str | None]:
        """Each normalized record's identity: its id, or its key as the workspace holds it."""
        if self.by_id:
            if "id" not in records.columns:
                return [None] * records.height
            return [str(v) if v else None for v in records["id"].to_list()]
        return [None if v is None else str(v) for v in records[KEY].to_list()]

    def identity_of(self, record: Record) -> str | None:
        """A stored record's identity (see :meth:`identities`)."""
        if self.by_id:
            return str(record.get("id"))
        parts = [get_path(record, p) for p in self.plan.key]
        if any(p in (None, "") for p in parts):
            return None
        return KEY_SEPARATOR.join(str(p) for p in parts)

    def filter_values(self, identities: Iterable[str]) -> list[str]:
        """The values of :attr:`filter_path` to ask for (first key part for a multi-part key)."""
        if self.by_id or len(self.plan.key) == 1:
            return list(identities)
        return list(dict.fromkeys(i.split(KEY_SEPARATOR)[0] for i in identities))

    @staticmethod
    def calls_for(values: int) -> int:
        """Read calls for ``values`` keys (at least; a value held by many records pages)."""
        return -(-values // PAGE_SIZE)

    async def read_deleted(self) -> None:
        """Every soft-deleted record of the object, by identity (usually one call)."""
        names = self.plan.object.names
        async for page in self.client.iter_pages(names, filter="deletedAt[is]:NOT_NULL"):
            self.calls += 1
            for record in page.records:
                identity = self.identity_of(record)
                if identity:
                    self.deleted[identity] = record

    async def read(self, identities: Iterable[str]) -> None:
        """Read the live records of ``identities`` not asked for yet."""
        wanted = [i for i in dict.fromkeys(identities) if i not in self._asked]
        self._asked.update(wanted)
        values = self.filter_values(wanted)
        names = self.plan.object.names
        for start in range(0, len(values), PAGE_SIZE):
            part = ",".join(_quote(v) for v in values[start : start + PAGE_SIZE])
            flt = f"{self.filter_path}[in]:[{part}]"
            async for page in self.client.iter_pages(names, filter=flt):
                self.calls += 1
                for record in page.records:
                    identity = self.identity_of(record)
                    if identity:
                        self.live[identity] = record

    def forget(self, identities: Iterable[str]) -> None:
        """Drop records no longer needed (a long file is read chunk by chunk)."""
        for identity in identities:
            self.live.pop(identity, None)
