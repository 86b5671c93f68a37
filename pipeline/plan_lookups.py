"""Relations in a plan: lookup values resolved by reading, never by creating.

A row that looks a company up by domain would link its person to that company: the
plan reads the ids of the values (batched ``in`` filters on the target, 200 a call,
cached for the run), so it can say that a row would be rejected at load
(``on_missing: reject`` and no such record), or that its link changes (``company``:
the id now and after). ``on_missing: create`` targets are not created: the plan
only notes that the import would create them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipeline.existing import Record, get_path
from pipeline.mapping import FieldSpec
from pipeline.normalize import LOOKUP_PREFIX, Plan
from pipeline.schema import ObjectSchema
from pipeline.targets import TARGETS_PREFIX
from pipeline.twenty import PAGE_SIZE, TwentyClient


@dataclass
class _Lookup:
    spec: FieldSpec
    name: str
    target: ObjectSchema
    path: str
    column: str
    join: str
    ids: dict[str, str | None] = field(default_factory=dict)


@dataclass
class LinkVerdict:
    """What the lookups of one row say: a reason to reject, notes, link changes."""

    reject: str | None = None
    notes: list[str] = field(default_factory=list)
    changes: list[tuple[str, str | None, str]] = field(default_factory=list)
    """(relation field, id now, id after)."""
    ids: dict[str, str] = field(default_factory=dict)
    """Join column -> the id the row links to (``companyId``)."""


class PlanLookups:
    """Resolves the lookup columns of a plan's records by reading the targets."""

    def __init__(self, plan: Plan, client: TwentyClient) -> None:
        self.client = client
        self.calls = 0
        self.lookups: list[_Lookup] = []
        for spec, f in plan.lookups:
            if spec.target.startswith(TARGETS_PREFIX) or f.relation is None or not spec.lookup:
                continue  # note/task targets are checked by the import itself
            target = plan.schema.object(f.relation.target_object)
            if target is None:
                continue
            join = f.relation.join_column or f"{f.name}Id"
            self.lookups.append(
                _Lookup(spec, f.name, target, spec.lookup, LOOKUP_PREFIX + join, join)
            )

    async def _read(self, lookup: _Lookup, values: list[str]) -> None:
        wanted = [v for v in dict.fromkeys(values) if v not in lookup.ids]
        lookup.ids.update(dict.fromkeys(wanted))
        for start in range(0, len(wanted), PAGE_SIZE):
            part = ",".join(
                '"' + v.replace('"', '\\"') + '"' for v in wanted[start : start + PAGE_SIZE]
            )
            async for page in self.client.iter_pages(
                lookup.target.names, filter=f"{lookup.path}[in]:[{part}]"
            ):
                self.calls += 1
                for record in page.records:
                    value = get_path(record, lookup.path)
                    if value is not None and str(value) in lookup.ids:
                        lookup.ids[str(value)] = str(record["id"])

    async def judge(
        self, records: pl.DataFrame, existing: list[Record | None]
    ) -> list[LinkVerdict]:
        """One verdict per record; ``existing`` is the record each would update, if any."""
        out = [LinkVerdict() for _ in range(records.height)]
        for lookup in self.lookups:
            if lookup.column not in records.columns:
                continue
            values = records[lookup.column].to_list()
            await self._read(lookup, [v for v in values if v is not None])
            for verdict, value, stored in zip(out, values, existing, strict=True):
                if value is None:
                    continue
                found = lookup.ids.get(value)
                if found is None:
                    self._missing(lookup, value, verdict)
                    continue
                verdict.ids[lookup.join] = found
                if stored is not None and stored.get(lookup.join) != found:
                    verdict.changes.append((lookup.name, stored.get(lookup.join), found))
        return out

    @staticmethod
    def _missing(lookup: _Lookup, value: str, verdict: LinkVerdict) -> None:
        mode = lookup.spec.on_missing
        what = (
            f"{lookup.spec.label}: no {lookup.target.name_singular} "
            f"has {lookup.path} = {value} (on_missing: {mode})"
        )
        if mode == "reject":
            verdict.reject = "; ".join(filter(None, [verdict.reject, what]))
        elif mode == "create":
            verdict.notes.append(f"{what}: the import creates it")
        else:
            verdict.notes.append(f"{what}: loaded without the link")
