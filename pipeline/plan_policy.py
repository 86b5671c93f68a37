"""Import options that act on the plan: ``--only-create``, ``--keep-existing``,
``--on-possible-duplicate``.

Each chunk of records is judged as ``plan`` judges it (:class:`pipeline.plan.Judge`,
reads only) before its batches are cut, and every row an option holds back is
recorded with its reason, so that the ledgers still add up (rows read = loaded +
rejected + unchanged + skipped):

* ``--only-create``: a row whose key matches a record (live or soft-deleted) is
  ``skipped`` ("exists; not updated").
* ``--keep-existing F,...``: the fields F whose stored value is not empty are left out
  of what is sent; an update left with nothing to change is ``unchanged``.
* ``--on-possible-duplicate skip|reject|create``: a row to create that looks like an
  existing record is ``skipped``, ``rejected`` (stage load) or created, with the
  record's id and why in the reason.

With any of them, rows the plan finds identical to their record are ``unchanged``
and not sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from pipeline.duplicates import OnPossibleDuplicate
from pipeline.errors import InputError
from pipeline.normalize import KEY, LOOKUP_PREFIX, Plan
from pipeline.plan import Judge, Judged, keep_existing_changes
from pipeline.sources import ROW
from pipeline.state import RowOutcome, StateStore
from pipeline.twenty import TwentyClient


@dataclass(frozen=True)
class PlanOptions:
    """What the import does with what the plan finds."""

    only_create: bool = False
    keep_existing: frozenset[str] = frozenset()
    on_possible_duplicate: OnPossibleDuplicate | None = None
    """None: duplicates are not looked for (rows to create are created)."""

    @property
    def active(self) -> bool:
        """Whether any option is set (else the import does not judge rows at all)."""
        return self.only_create or bool(self.keep_existing) or bool(self.on_possible_duplicate)

    def describe(self) -> str:
        """The options as one line (part of the run's fingerprint)."""
        return (
            f"only_create={self.only_create} keep_existing={','.join(sorted(self.keep_existing))} "
            f"on_possible_duplicate={self.on_possible_duplicate}"
        )


def parse_keep_existing(text: str | None) -> frozenset[str]:
    """``jobTitle,city`` -> the top-level field names (``name.firstName`` keeps ``name``)."""
    if not text:
        return frozenset()
    return frozenset(p.strip().split(".")[0] for p in text.split(",") if p.strip())


@dataclass
class _Verdicts:
    send: list[bool]
    unchanged: list[RowOutcome]
    skipped: list[RowOutcome]
    rejected: dict[int, str]
    blank: dict[str, list[bool]]
    """Field -> per record, whether to leave it out (``--keep-existing``)."""


class PlanPolicy:
    """Applies :class:`PlanOptions` to the records of an import, chunk by chunk."""

    def __init__(self, plan: Plan, client: TwentyClient, options: PlanOptions) -> None:
        self.plan = plan
        self.options = options
        self.judge = Judge(plan, client, duplicates=options.on_possible_duplicate is not None)
        self.object = plan.object.name_singular
        unknown = sorted(f for f in options.keep_existing if plan.object.field(f) is None)
        if unknown:
            raise InputError(
                f"--keep-existing: {self.object} has no field {', '.join(map(repr, unknown))}"
            )

    async def prepare(self) -> None:
        """Before the first chunk: the soft-deleted records."""
        await self.judge.prepare()

    async def apply(
        self, records: pl.DataFrame, rows: pl.DataFrame, store: StateStore
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Record what the options hold back; return (records to send, rejects frame)."""
        verdicts = await self.judge.judge(records)
        decided = self._decide(verdicts, records[KEY].to_list())
        if decided.unchanged:
            store.mark_unchanged(decided.unchanged)
        if decided.skipped:
            store.record_rows(decided.skipped)
        kept = records.filter(pl.Series(decided.send, dtype=pl.Boolean))
        for name, blank in decided.blank.items():
            mask = pl.Series(blank, dtype=pl.Boolean).filter(pl.Series(decided.send))
            column = self._column(name)
            if column in kept.columns and mask.any():
                kept = kept.with_columns(
                    pl.when(mask).then(None).otherwise(pl.col(column)).alias(column)
                )
        reasons = pl.DataFrame(
            {ROW: list(decided.rejected), "_reason": list(decided.rejected.values())},
            schema={ROW: rows.schema[ROW], "_reason": pl.String},
        )
        rejects = rows.join(reasons, on=ROW, how="inner").with_columns(
            pl.lit("load").alias("_stage"),
            pl.lit(None, pl.String).alias("_column"),
            pl.lit(None, pl.String).alias("_value"),
        )
        return kept, rejects

    def _column(self, name: str) -> str:
        """The records' column of a field: its own, or its lookup column for a relation."""
        f = self.plan.object.field(name)
        if f is not None and f.relation is not None:
            return LOOKUP_PREFIX + (f.relation.join_column or f"{name}Id")
        return name

    def _decide(self, verdicts: list[Judged], keys: list[str | None]) -> _Verdicts:
        out = _Verdicts([], [], [], {}, {f: [] for f in self.options.keep_existing})
        for verdict, key in zip(verdicts, keys, strict=True):
            send, blank = self._one(verdict, key, out)
            out.send.append(send)
            for name in out.blank:
                out.blank[name].append(name in blank)
        return out

    def _one(self, v: Judged, key: str | None, out: _Verdicts) -> tuple[bool, set[str]]:
        o = self.options
        if v.action == "rejected":
            return True, set()  # the import rejects it at load, with the same reason
        if v.action != "create" and o.only_create:
            state = "a soft-deleted" if v.action == "restore" else "a"
            reason = (
                f"{state} {self.object} {v.record_id} has this key; not updated (--only-create)"
            )
            out.skipped.append(RowOutcome(v.row, "skipped", key, v.record_id, reason=reason))
            return False, set()
        if v.action == "unchanged":
            reason = f"the workspace holds it as it is ({self.object} {v.record_id})"
            out.unchanged.append(RowOutcome(v.row, "unchanged", key, v.record_id, reason=reason))
            return False, set()
        if v.action in ("update", "restore"):
            made, kept = keep_existing_changes(v, o.keep_existing)
            held = {c.field.split(".")[0] for c in kept}
            if v.action == "update" and kept and not made:
                fields = ", ".join(sorted(held))
                reason = f"only {fields} differ(s), kept as stored (--keep-existing)"
                out.unchanged.append(
                    RowOutcome(v.row, "unchanged", key, v.record_id, reason=reason)
                )
                return False, set()
            return True, held
        dup = v.duplicate
        if dup is None or o.on_possible_duplicate in (None, "create"):
            return True, set()
        reason = (
            f"possible duplicate of {self.object} {dup.record_id}: {dup.why} "
            f"(--on-possible-duplicate {o.on_possible_duplicate})"
        )
        if o.on_possible_duplicate == "skip":
            out.skipped.append(RowOutcome(v.row, "skipped", key, reason=reason))
        else:
            out.rejected[v.row] = reason
        return False, set()


def describe(options: PlanOptions | None) -> Iterator[tuple[str, str]]:
    """The fingerprint entries of the options (none when no option is set)."""
    if options is not None and options.active:
        yield "plan", options.describe()
