"""Prepare: a source read and normalized into records to send and rows to reject.

``validate`` and ``import`` run the same pass (source -> plan -> duplicate index ->
read rejects -> normalized chunks); :class:`PreparedSource` is that pass, so the two
commands differ only in where the records go.

Duplicate keys are found by a first pass over the key columns only, so that every
row knows whether a later one repeats its key: ``on_duplicate_key`` then keeps the
first or the last occurrence (the others go to the rejects file, saying which row
won) or rejects them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.cells import LEDGER_COLUMNS, is_ledger, unescape_frame
from pipeline.errors import InputError
from pipeline.mapping import Mapping
from pipeline.normalize import KEY, LOOKUP_PREFIX, Plan, make_plan, normalize
from pipeline.schema import WorkspaceSchema
from pipeline.sources import ROW, SourceReader


@dataclass
class PreparedChunk:
    """One chunk of the source: the rows it holds, the records kept, the rows rejected."""

    rows: pl.DataFrame
    records: pl.DataFrame
    rejects: pl.DataFrame
    skipped: pl.DataFrame
    """``_row``, ``_reason`` of the rows with nothing to load (see :func:`normalize`)."""
    dropped: pl.DataFrame | None = None
    """Values left out of kept records (``on_invalid: drop_value``), one line each."""


@dataclass
class PreparedSource:
    """An open source with its plan; the duplicate pass runs when first needed."""

    reader: SourceReader
    mapping: Mapping
    plan: Plan
    columns: list[str]

    @classmethod
    def build(
        cls, reader: SourceReader, mapping: Mapping, schema: WorkspaceSchema
    ) -> PreparedSource:
        """Plan the mapping against the workspace and the source's columns."""
        columns = data_columns(reader, mapping)
        return cls(reader, mapping, make_plan(mapping, schema, columns), columns)

    @cached_property
    def duplicates(self) -> DuplicateIndex:
        """Keys repeated in the source (one pass over the key columns)."""
        return DuplicateIndex.build(self.reader, self.plan, self.columns)

    @cached_property
    def read_rejects(self) -> pl.DataFrame:
        """Rows the reader could not split into the header's columns."""
        return read_rejects_frame(self.reader, self.columns)

    @property
    def total_rows(self) -> int:
        """Every row an outcome is owed for: data rows and rows the reader refused."""
        return self.duplicates.rows + self.read_rejects.height

    def chunks(self) -> Iterator[PreparedChunk]:
        """The source, chunk by chunk, normalized under ``on_duplicate_key``."""
        for chunk in source_chunks(self.reader, self.columns):
            records, rejects, skipped, dropped = prepare_chunk(
                chunk, self.plan, self.duplicates, self.mapping.on_duplicate_key
            )
            yield PreparedChunk(chunk, records, rejects, skipped, dropped)


def source_path(mapping: Mapping, override: str | Path | None) -> Path:
    """SOURCE from the command line, else the mapping's source.path."""
    if override is not None:
        return Path(override)
    if mapping.source.path is None:
        raise InputError(
            f"{mapping.path}: no source: give SOURCE on the command line or "
            "source.path in the mapping"
        )
    return mapping.source.path


RESERVED_COLUMNS = frozenset((*LEDGER_COLUMNS, KEY))


def _reserved(column: str) -> bool:
    return column in RESERVED_COLUMNS or column.startswith(LOOKUP_PREFIX)


def data_columns(reader: SourceReader, mapping: Mapping) -> list[str]:
    """The source's columns without the tool's own ledger columns.

    A rejects file fixed by hand and imported again holds ``_row``, ``_stage``,
    ``_reason``...: those are ignored (and its cells, escaped when the tool wrote
    them, read back as they were). A mapping that reads such a column is refused.
    """
    mapped = [c for c in mapping.source_columns if _reserved(c)]
    if mapped:
        names = ", ".join(repr(c) for c in mapped)
        raise InputError(
            f"{mapping.path}: the mapping reads column(s) {names}, but twenty-pipeline "
            "uses those names for its own ledger columns; rename the column(s) in the "
            "file and the mapping"
        )
    return [c for c in reader.info.columns if not _reserved(c)]


def source_chunks(
    reader: SourceReader, columns: list[str], wanted: list[str] | None = None
) -> Iterator[pl.DataFrame]:
    """The reader's chunks limited to ``wanted`` (default: the data columns).

    A file the tool wrote (a rejects file) has its formula-escaped cells undone.
    """
    ledger = is_ledger(reader.info.columns)
    for chunk in reader.chunks(wanted if wanted is not None else columns):
        yield unescape_frame(chunk, columns) if ledger else chunk


# --------------------------------------------------------------------------- duplicates


def _hashes(keys: pl.Series) -> pl.DataFrame:
    # two 64-bit hashes with different seeds: a false "duplicate" needs a 128-bit collision
    return pl.DataFrame({"h1": keys.hash(seed=1), "h2": keys.hash(seed=2)})


def other_unique_paths(plan: Plan) -> list[str]:
    """Unique fields of the object that the mapping fills, besides the key.

    Twenty matches an upsert on any of them (twenty-api.md §4), so two rows with
    different keys but one e-mail would end as one record: they are duplicates too.
    """
    mapped = {s.target for s in plan.mapping.fields}
    return [
        p
        for p in plan.object.unique_paths
        if p not in plan.key and (p in mapped or p.split(".")[0] in mapped)
    ]


def _unique_losers(reader: SourceReader, plan: Plan, columns: list[str], path: str) -> pl.DataFrame:
    """Rows that lose, under ``on_duplicate_key``, to another row with one value of ``path``."""
    unique_plan = replace(plan, key=(path,)).key_only()
    parts = []
    for chunk in source_chunks(reader, columns, unique_plan.mapping.source_columns):
        values = normalize(chunk, unique_plan).records.filter(pl.col(KEY).is_not_null())
        parts.append(values.select(ROW, pl.col(KEY).alias("value")))
    if not parts:
        return pl.DataFrame(schema={ROW: pl.Int64, "_reason": pl.String})
    every = pl.concat(parts).filter(pl.col("value").is_duplicated())
    groups = every.group_by("value").agg(
        pl.col(ROW).min().alias("first"), pl.col(ROW).max().alias("last"), pl.len().alias("n")
    )
    marked = every.join(groups, on="value")
    mode = plan.mapping.on_duplicate_key
    why = (
        f"{path} {{}} is on {{}} rows (first row {{}}, last row {{}}): it is a unique field of "
        f"{plan.object.name_singular}, so Twenty would merge them into one record"
    )
    reason = pl.format(why, pl.col("value"), pl.col("n"), pl.col("first"), pl.col("last"))
    if mode == "reject":
        lose = pl.lit(True)
        reason = pl.format("{} (on_duplicate_key: reject)", reason)
    else:
        winner = pl.col(mode)
        lose = pl.col(ROW) != winner
        reason = pl.format(
            "{}; row {} is kept (on_duplicate_key: {})", reason, winner, pl.lit(mode)
        )
    return marked.filter(lose).select(ROW, reason.alias("_reason"))


@dataclass
class DuplicateIndex:
    """Keys that occur on more than one row: their first and last row and count."""

    table: pl.DataFrame
    rows: int = 0
    """Data rows seen by the pass (ragged rows, which the reader holds back, excluded)."""
    unique_losers: pl.DataFrame | None = None
    """Rows that share another unique field's value with a row that is kept."""

    @classmethod
    def build(cls, reader: SourceReader, plan: Plan, columns: list[str]) -> DuplicateIndex:
        """One pass over the source, reading and normalizing the key columns only.

        Unique fields mapped besides the key get a pass each (usually there is none).
        """
        index = cls._build_keys(reader, plan, columns)
        losers = [_unique_losers(reader, plan, columns, p) for p in other_unique_paths(plan)]
        losers = [frame for frame in losers if frame.height]
        if losers:
            index.unique_losers = (
                pl.concat(losers).group_by(ROW, maintain_order=True).agg(pl.col("_reason").first())
            )
        return index

    @classmethod
    def _build_keys(cls, reader: SourceReader, plan: Plan, columns: list[str]) -> DuplicateIndex:
        key_plan = plan.key_only()
        parts = []
        rows = 0
        for chunk in source_chunks(reader, columns, key_plan.mapping.source_columns):
            rows += chunk.height
            keys = normalize(chunk, key_plan).records
            keys = keys.filter(pl.col(KEY).is_not_null())
            parts.append(pl.concat([_hashes(keys[KEY]), keys.select(ROW)], how="horizontal"))
        if not parts:
            return cls(
                pl.DataFrame(
                    schema={
                        "h1": pl.UInt64,
                        "h2": pl.UInt64,
                        "first": pl.Int64,
                        "last": pl.Int64,
                        "count": pl.UInt32,
                    }
                ),
                rows,
            )
        every = pl.concat(parts)
        parts.clear()
        # One u64 hash table over every key finds the few candidates; only those are
        # grouped on both hashes (much lighter than grouping every key).
        candidates = every.filter(pl.col("h1").is_duplicated())
        del every
        table = (
            candidates.group_by("h1", "h2")
            .agg(
                pl.col(ROW).min().alias("first"),
                pl.col(ROW).max().alias("last"),
                pl.len().alias("count"),
            )
            .filter(pl.col("count") > 1)
        )
        return cls(table, rows)

    @property
    def repeated_keys(self) -> int:
        """How many distinct keys occur more than once."""
        return self.table.height

    def split(self, records: pl.DataFrame, mode: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(records kept, records rejected with ``_reason``) under ``on_duplicate_key``."""
        kept, lost = self._split_keys(records, mode)
        if self.unique_losers is None or kept.height == 0:
            return kept, lost
        losing = kept.join(self.unique_losers, on=ROW, how="inner")
        if losing.height == 0:
            return kept, lost
        kept = kept.join(self.unique_losers, on=ROW, how="anti")
        return kept, pl.concat([lost, losing], how="diagonal_relaxed")

    def _split_keys(self, records: pl.DataFrame, mode: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        if self.table.height == 0 or records.height == 0:
            return records, records.head(0).with_columns(pl.lit(None, pl.String).alias("_reason"))
        joined = pl.concat([records, _hashes(records[KEY])], how="horizontal").join(
            self.table, on=["h1", "h2"], how="left", maintain_order="left"
        )
        if mode == "first":
            lose = pl.col("first").is_not_null() & (pl.col(ROW) != pl.col("first"))
            reason = pl.format(
                "duplicate key: row {} has the same key and is kept (on_duplicate_key: first)",
                pl.col("first"),
            )
        elif mode == "last":
            lose = pl.col("last").is_not_null() & (pl.col(ROW) != pl.col("last"))
            reason = pl.format(
                "duplicate key: row {} has the same key and is kept (on_duplicate_key: last)",
                pl.col("last"),
            )
        else:
            lose = pl.col("count").is_not_null()
            reason = pl.format(
                "duplicate key: {} rows have this key (first row {}, last row {}; "
                "on_duplicate_key: reject)",
                pl.col("count"),
                pl.col("first"),
                pl.col("last"),
            )
        marked = joined.with_columns(lose.alias("_lose"), reason.alias("_reason"))
        extra = ["h1", "h2", "first", "last", "count"]
        kept = marked.filter(~pl.col("_lose")).drop([*extra, "_lose", "_reason"])
        lost = marked.filter(pl.col("_lose")).drop([*extra, "_lose"])
        return kept, lost


def prepare_chunk(
    chunk: pl.DataFrame, plan: Plan, duplicates: DuplicateIndex, mode: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Normalize a chunk and apply ``on_duplicate_key``: (records, rejects in row order,
    skipped rows, values dropped from the records kept)."""
    result = normalize(chunk, plan)
    kept, lost = duplicates.split(result.records, mode)
    duplicate_rejects = chunk.join(lost.select(ROW, "_reason"), on=ROW, how="inner").with_columns(
        pl.lit("normalize").alias("_stage"),
        pl.lit("key").alias("_column"),
        pl.lit(None, pl.String).alias("_value"),
    )
    rejects = pl.concat([result.rejects, duplicate_rejects], how="diagonal_relaxed").sort(ROW)
    dropped = result.dropped if result.dropped is not None else chunk.head(0)
    if dropped.height:
        dropped = dropped.filter(pl.col(ROW).is_in(kept[ROW].implode()))
    return kept, rejects, result.skipped, dropped


def read_rejects_frame(reader: SourceReader, columns: list[str]) -> pl.DataFrame:
    """The reader's ragged rows as a rejects frame (values spread over the header's columns)."""
    header = reader.info.columns
    ledger = is_ledger(header)
    rows = []
    for r in reader.info.rejects:
        spread = {h: (r.values[i] if i < len(r.values) else None) for i, h in enumerate(header)}
        record: dict[str, Any] = {c: spread.get(c) for c in columns}
        # every field the line had, in order: a ragged line may hold more than the header
        every = json.dumps(list(r.values), ensure_ascii=False)
        record.update(
            {
                "_row": r.row,
                "_stage": "read",
                "_column": r.column,
                "_value": every,
                "_reason": r.reason,
            }
        )
        rows.append(record)
    schema = dict.fromkeys(columns, pl.String) | {
        "_row": pl.Int64,
        "_stage": pl.String,
        "_column": pl.String,
        "_value": pl.String,
        "_reason": pl.String,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return unescape_frame(frame, columns) if ledger else frame
