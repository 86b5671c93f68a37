"""Plan: what an import would create, change, restore and possibly duplicate, with no write.

The source is read and normalized as ``validate`` does (:mod:`pipeline.prepare`); the
records its rows would upsert onto are read by key (:mod:`pipeline.existing`); each
row is then judged: ``create`` (no record has its key), ``update`` (which fields
change, compared field by field and composite sub-field by sub-field through the
codecs, as text), ``unchanged``, or ``restore`` (its record is soft-deleted). Rows
to create are asked about on Twenty's duplicates route (:mod:`pipeline.duplicates`).

:class:`Judge` is shared by ``plan`` and by the import options that act on the plan
(:mod:`pipeline.plan_policy`), so both see the same thing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from pipeline.duplicates import (
    PossibleDuplicate,
    find_possible_duplicates,
    has_criteria,
    probe,
    why,
)
from pipeline.existing import ExistingRecords, Record
from pipeline.fields import codec_for
from pipeline.normalize import KEY, KEY_SEPARATOR, Plan, to_payloads
from pipeline.plan_lookups import PlanLookups
from pipeline.sources import ROW
from pipeline.twenty import TwentyClient

Action = Literal["create", "update", "unchanged", "restore", "rejected"]


@dataclass(frozen=True)
class Change:
    """One field (or composite sub-field) a row would change: its text now and after."""

    field: str
    now: str | None
    after: str | None


@dataclass
class Judged:
    """What the import would do with one row."""

    row: int
    key: str
    action: Action
    record_id: str | None = None
    changes: list[Change] = field(default_factory=list)
    existing: Record | None = None
    duplicate: PossibleDuplicate | None = None
    note: str | None = None
    """Why it would be rejected at load, or what its links do (lookups)."""
    links: dict[str, str] = field(default_factory=dict)
    """Join column -> the id a lookup of the row resolves to."""


def _same(now: str | None, after: str | None) -> bool:
    if now == after:
        return True
    if now is None or after is None:
        return False
    try:
        a, b = float(now), float(after)
    except ValueError:
        pass
    else:
        return math.isclose(a, b) if math.isfinite(a) and math.isfinite(b) else a == b
    if now[:1] in "[{" and after[:1] in "[{":
        try:
            return bool(json.loads(now) == json.loads(after))
        except ValueError:
            return False
    return False


def diff(plan: Plan, payload: Record, existing: Record) -> list[Change]:
    """The values of ``payload`` that differ from the stored record, by (sub-)field.

    Only what the payload sends is compared: an empty cell is not sent and so never
    erases a value (:func:`pipeline.normalize.to_payloads`). Join columns filled by
    lookups at load time are not compared.
    """
    changes = []
    for name, value in payload.items():
        if name == "id":
            continue
        f = plan.object.field(name)
        if f is None or f.relation is not None:
            continue
        codec = codec_for(f.type)
        after = codec.flatten(name, value)
        now = codec.flatten(name, existing.get(name))
        for column, new in after.items():
            if new is None:
                continue
            old = now.get(column)
            if not _same(old, new):
                changes.append(Change(column, old, new))
    return changes


def display_key(key: str | None) -> str:
    """A key as a person reads it (parts joined by `` | ``)."""
    return "" if key is None else key.replace(KEY_SEPARATOR, " | ")


class Judge:
    """Judges chunks of normalized records against the workspace; reads only."""

    def __init__(self, plan: Plan, client: TwentyClient, *, duplicates: bool = True) -> None:
        self.plan = plan
        self.client = client
        self.existing = ExistingRecords(plan, client)
        self.duplicates = duplicates and has_criteria(plan.object.name_singular)
        self.duplicate_calls = 0
        self.links = PlanLookups(plan, client)

    @property
    def read_calls(self) -> int:
        """Read calls made so far (keys, soft-deleted records, duplicates)."""
        return self.existing.calls + self.duplicate_calls + self.links.calls

    async def prepare(self) -> None:
        """Before the first chunk: the soft-deleted records."""
        await self.existing.read_deleted()

    async def judge(self, records: pl.DataFrame) -> list[Judged]:
        """One verdict per record, in order."""
        identities = self.existing.identities(records)
        await self.existing.read([i for i in identities if i is not None])
        payloads = to_payloads(records)
        out: list[Judged] = []
        rows = records[ROW].to_list()
        keys = records[KEY].to_list() if KEY in records.columns else identities
        for row, key, identity, payload in zip(rows, keys, identities, payloads, strict=True):
            shown = display_key(key)
            live = self.existing.live.get(identity) if identity else None
            gone = self.existing.deleted.get(identity) if identity else None
            if live is not None:
                changes = diff(self.plan, payload, live)
                action: Action = "update" if changes else "unchanged"
                out.append(Judged(int(row), shown, action, str(live["id"]), changes, live))
            elif gone is not None:
                changes = diff(self.plan, payload, gone)
                out.append(Judged(int(row), shown, "restore", str(gone["id"]), changes, gone))
            else:
                out.append(Judged(int(row), shown, "create"))
        if self.links.lookups:
            await self._links(records, out)
        if self.duplicates:
            await self._duplicates(out, payloads)
        self.existing.forget(i for i in identities if i is not None)
        return out

    async def _links(self, records: pl.DataFrame, judged: list[Judged]) -> None:
        links = await self.links.judge(records, [v.existing for v in judged])
        for verdict, link in zip(judged, links, strict=True):
            verdict.note = "; ".join(link.notes) or None
            verdict.links = link.ids
            if link.reject is not None:
                verdict.action, verdict.note = "rejected", link.reject
                continue
            verdict.changes.extend(Change(name, now, after) for name, now, after in link.changes)
            if verdict.action == "unchanged" and verdict.changes:
                verdict.action = "update"

    async def _duplicates(self, judged: list[Judged], payloads: list[Record]) -> None:
        name = self.plan.object.name_singular
        asked: list[tuple[Judged, Record]] = []
        for verdict, payload in zip(judged, payloads, strict=True):
            if verdict.action == "create":
                found = probe(name, payload)
                if found is not None:
                    asked.append((verdict, found))
        if not asked:
            return
        answers, calls = await find_possible_duplicates(
            self.client, self.plan.object.names, [p for _, p in asked]
        )
        self.duplicate_calls += calls
        for (verdict, sent), matches in zip(asked, answers, strict=True):
            if matches:
                first = matches[0]
                reason = why(name, sent, first, verdict.links.get("companyId"))
                verdict.duplicate = PossibleDuplicate(
                    verdict.row, verdict.key, str(first["id"]), reason
                )


def keep_existing_changes(
    verdict: Judged, keep: frozenset[str]
) -> tuple[list[Change], list[Change]]:
    """(changes still made, changes kept back) under ``--keep-existing``.

    A field is kept when the record holds a non-empty value for it (any sub-field of a
    composite): the whole field is then left out of what is sent.
    """
    if not keep or verdict.existing is None:
        return verdict.changes, []
    stored = verdict.existing
    held = {f for f in keep if _non_empty(stored.get(f)) or _non_empty(stored.get(f"{f}Id"))}
    made = [c for c in verdict.changes if c.field.split(".")[0] not in held]
    kept = [c for c in verdict.changes if c.field.split(".")[0] in held]
    return made, kept


def _non_empty(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_non_empty(v) for v in value.values())
    if isinstance(value, list):
        return bool(value)
    return value not in (None, "")
