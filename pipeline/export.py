"""Export: fetch every record of one object, flatten it, write it (fetch → flatten → write).

Pages of up to 200 records are read in ``id`` order through the workspace's client, so
they are paced by the same pacer as writes and the cursor stays stable while records
change. Every field is flattened by its codec into text columns (``emails.primaryEmail``,
``emails.additionalEmails`` as JSON text, ``amount.amountMicros``, ``address.addressCity``,
…); a MANY_TO_ONE relation becomes its join column (``companyId``).

**Resume.** Each page is written to a part file (temporary name, fsync, rename) and only
then recorded, with the cursor after it, in ``export.sqlite`` beside the parts; a part
that was written but not recorded is discarded on the next start. A killed export run
again with the same options goes on after the last recorded page, and the file it ends
with holds every record exactly once. The output file is assembled from the parts
through a sink (temporary name, renamed when complete), so it is whole or absent.

**Incremental.** ``since`` keeps records whose ``updatedAt`` is at or after it; the
latest ``updatedAt`` exported is printed and stored as the next ``since``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.errors import ConfigError
from pipeline.export_labels import Labels
from pipeline.export_mapping import MappedColumn, mapped_columns
from pipeline.export_pages import read_pages
from pipeline.export_state import ExportState
from pipeline.fields import codec_for
from pipeline.lock import state_lock
from pipeline.mapping import Mapping
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.sinks import open_sink, sink_format
from pipeline.twenty import TwentyClient
from pipeline.twenty.paginate import Page

Money = Literal["micros", "units"]

FILTER_OPERATORS = frozenset(
    [
        "eq",
        "neq",
        "in",
        "containsAny",
        "is",
        "gt",
        "gte",
        "lt",
        "lte",
        "startsWith",
        "endsWith",
        "like",
        "ilike",
    ]
)
"""Twenty's REST filter comparators (twenty-api.md §2.2)."""
_CONDITION_RE = re.compile(r"([A-Za-z_][\w.]*)\[([A-Za-z]+)\]\s*:")
_TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how.

    Attributes:
        fields: field names to export (None: every readable field).
        filter: a Twenty REST filter (``city[eq]:Paris``), checked against the metadata.
        since: keep records updated at or after this ISO timestamp.
        include_deleted: soft-deleted records too (with their ``deletedAt``).
        money: amounts as ``micros`` (``amount.amountMicros``, exact as stored) or
            ``units`` (``amount.amount``, the same value as a decimal).
        fmt: ``csv``, ``jsonl`` or ``parquet`` (None: from the output's extension).
        with_labels: beside each join column, the related record's unique label
            (:mod:`pipeline.export_labels`).
        mapping: write the columns of this import mapping instead
            (:mod:`pipeline.export_mapping`).
    """

    fields: tuple[str, ...] | None = None
    filter: str | None = None
    since: str | None = None
    include_deleted: bool = False
    money: Money = "micros"
    fmt: str | None = None
    with_labels: bool = False
    mapping: Mapping | None = None

    def fingerprint(self, obj: str) -> str:
        """What a resumed export must share with the one it continues."""
        return json.dumps(
            {
                "object": obj,
                "fields": self.fields,
                "filter": self.filter,
                "since": self.since,
                "include_deleted": self.include_deleted,
                "money": self.money,
                "with_labels": self.with_labels,
                "mapping": str(self.mapping.path) if self.mapping is not None else None,
            },
            sort_keys=True,
        )


@dataclass
class ExportReport:
    """What an export did, for the summary and ``report.json``."""

    object: str
    output: Path
    records: int = 0
    pages: int = 0
    resumed_pages: int = 0
    total: int | None = None
    next_since: str | None = None
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)
    """Relations ``with_labels`` could not label (their target has no unique field)."""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "object": self.object,
            "output": str(self.output),
            "records": self.records,
            "pages": self.pages,
            "resumed_pages": self.resumed_pages,
            "total_count": self.total,
            "next_since": self.next_since,
            "seconds": round(self.seconds, 3),
            "calls": self.calls,
            "unlabelled": self.unlabelled,
        }


@dataclass(frozen=True)
class Column:
    """One field's share of the output: the columns its flattened value fills."""

    field: Field
    names: tuple[str, ...]


def plan_columns(obj: ObjectSchema, options: ExportOptions) -> list[Column]:
    """The output columns of ``obj``: every readable field, or the ``fields`` asked for."""
    wanted = options.fields
    problems: list[str] = []
    if wanted is not None:
        for name in wanted:
            if obj.field(name) is None:
                problems.append(f"--fields: {obj.name_singular} has no field {name!r}")
    if problems:
        raise ConfigError(problems)
    columns: list[Column] = []
    for item in obj.fields.values():
        join = item.relation.join_column if item.relation is not None else None
        asked = wanted is None or item.name in wanted or (join is not None and join in wanted)
        if not item.is_active or not asked:
            continue
        if item.name == "deletedAt" and not options.include_deleted:
            continue
        if item.relation is not None:
            if item.relation.type == "MANY_TO_ONE" and join:
                columns.append(Column(item, (join,)))
            continue
        names = tuple(codec_for(item.type).flatten(item.name, None))
        if item.type == "CURRENCY" and options.money == "units":
            names = tuple(n.replace(".amountMicros", ".amount") for n in names)
        columns.append(Column(item, names))
    if wanted is None or "id" in wanted:
        columns.sort(key=lambda c: c.field.name != "id")  # id first
    return columns


def check_filter(obj: ObjectSchema, text: str) -> list[str]:
    """Every problem of a REST filter against the object's fields (empty: fine)."""
    problems: list[str] = []
    conditions = _CONDITION_RE.findall(text)
    if not conditions:
        problems.append(
            f"--filter {text!r}: no condition found; write field[operator]:value, "
            "such as city[eq]:Paris or createdAt[gte]:2026-01-01"
        )
    for path, operator in conditions:
        if obj.resolve_path(path) is None:
            problems.append(f"--filter: {obj.name_singular} has no field {path!r}")
        if operator not in FILTER_OPERATORS:
            allowed = ", ".join(sorted(FILTER_OPERATORS))
            problems.append(f"--filter: unknown operator {operator!r} (Twenty's: {allowed})")
    return problems


def request_filter(obj: ObjectSchema, options: ExportOptions) -> str | None:
    """The REST filter sent: the user's, the ``since`` bound and the deleted rows, ANDed."""
    problems = check_filter(obj, options.filter) if options.filter else []
    parts = [options.filter] if options.filter else []
    if options.since is not None:
        if not _TIMESTAMP_RE.match(options.since.strip()):
            problems.append(
                f"--since {options.since!r}: not an ISO 8601 timestamp "
                "(2026-12-01T00:00:00Z, or the next --since an export printed)"
            )
        parts.append(f"updatedAt[gte]:{options.since.strip()}")
    if options.include_deleted:
        parts.append("or(deletedAt[is]:NULL,deletedAt[is]:NOT_NULL)")
    if problems:
        raise ConfigError(problems)
    return ",".join(parts) if parts else None


def flatten_page(
    records: list[dict[str, Any]], columns: list[Column], money: Money
) -> pl.DataFrame:
    """One page of records as a frame of text columns, in the planned order."""
    data: dict[str, list[str | None]] = {name: [] for c in columns for name in c.names}
    for record in records:
        for column in columns:
            for name, value in _flatten(record, column, money).items():
                data[name].append(value)
    return pl.DataFrame(data, schema={name: pl.String for name in data})


def mapped_frame(records: list[dict[str, Any]], columns: list[MappedColumn]) -> pl.DataFrame:
    """One page in an import mapping's columns."""
    data = {c.name: [c.render(r) for r in records] for c in columns}
    return pl.DataFrame(data, schema={c.name: pl.String for c in columns})


def _flatten(record: dict[str, Any], column: Column, money: Money) -> dict[str, str | None]:
    item = column.field
    if item.relation is not None:
        value = record.get(column.names[0])
        return {column.names[0]: str(value) if value not in (None, "") else None}
    flat = codec_for(item.type).flatten(item.name, record.get(item.name))
    if item.type == "CURRENCY" and money == "units":
        micros = flat.pop(f"{item.name}.amountMicros", None)
        flat[f"{item.name}.amount"] = _units(micros)
    return flat


def _units(micros: str | None) -> str | None:
    """``amountMicros`` as a decimal amount, exactly (1500000 -> 1.5)."""
    if micros is None:
        return None
    units = Decimal(micros) / Decimal(1_000_000)
    text = format(units.normalize(), "f")
    return text


async def export_object(
    client: TwentyClient,
    schema: WorkspaceSchema,
    object_name: str,
    output: Path,
    *,
    state_dir: Path,
    options: ExportOptions = ExportOptions(),
    restart: bool = False,
    readers: int = 1,
    on_total: Callable[[int | None], None] | None = None,
    on_page: Callable[[int], None] | None = None,
) -> ExportReport:
    """Export every matching record of ``object_name`` to ``output``; resumable.

    ``readers`` ids ranges are read side by side after the first page
    (:mod:`pipeline.export_pages`). Raises :class:`~pipeline.errors.ConfigError`
    (nothing fetched) for an unknown object, field, filter or format.
    """
    obj = schema.object(object_name)
    if obj is None:
        hint = schema.suggest_object(object_name)
        extra = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise ConfigError(f"the workspace has no object {object_name!r}{extra}")
    fmt = sink_format(output, options.fmt)
    columns = plan_columns(obj, options)
    where = request_filter(obj, options)
    started = time.monotonic()
    calls_before = client.stats.as_dict()
    report = ExportReport(object=obj.name_singular, output=output)
    labels = None
    mapped: list[MappedColumn] = []
    if options.mapping is not None:
        mapped, lookups = mapped_columns(options.mapping, schema, obj)
        labels = Labels.of(client, lookups)
    elif options.with_labels:
        joins = [(c.field.name, c.names[0]) for c in columns if c.field.relation is not None]
        labels = Labels(client, schema, obj, joins)
        report.unlabelled = labels.unlabelled
    folder = state_dir / "export" / obj.name_singular
    folder.mkdir(parents=True, exist_ok=True)
    with state_lock(folder, f"export {obj.name_singular}"):
        state = ExportState.open(folder, options.fingerprint(obj.name_singular), restart=restart)
        try:
            report.resumed_pages = state.pages
            report.records = state.rows

            async def flatten(records: list[dict[str, Any]]) -> pl.DataFrame:
                if mapped:
                    if labels is not None:
                        await labels.annotate(records)
                    return mapped_frame(records, mapped)
                frame = flatten_page(records, columns, options.money)
                return await labels.add(frame) if labels is not None else frame

            def seen(page: Page, rows: int, part: int) -> None:
                if part == 0 and report.total is None:
                    report.total = page.total_count
                    if on_total is not None:
                        on_total(page.total_count)
                report.records += rows
                report.pages += 1
                if on_page is not None:
                    on_page(rows)

            if not state.complete:
                await read_pages(
                    client, obj, where, state, readers=readers, flatten=flatten, seen=seen
                )
                state.mark_complete()
            latest = state.latest
            names = [name for c in columns for name in c.names]
            names += labels.names if labels is not None else []
            if mapped:
                names = [c.name for c in mapped]
            with open_sink(output, fmt, columns=names, label="export file") as sink:
                for frame in state.frames():
                    sink.write(frame.select(names))
            report.next_since = latest
            state.finish(latest)
        finally:
            state.close()
    report.seconds = time.monotonic() - started
    report.calls = {k: v - calls_before.get(k, 0) for k, v in client.stats.as_dict().items()}
    return report
