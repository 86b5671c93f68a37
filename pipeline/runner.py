"""Runs that tie the stages together: ``validate`` (read + normalize, zero writes) and
``import`` (read + normalize + load, checkpointed and resumable).

Duplicate keys are found by a first pass over the key columns only, so that every
row knows whether a later one repeats its key: ``on_duplicate_key`` then keeps the
first or the last occurrence (the others go to the rejects file, saying which row
won) or rejects them all.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.cells import LEDGER_COLUMNS, escape_row, is_ledger, unescape_frame
from pipeline.checkpoint import SCHEMA_VERSION, Checkpoint, RowOutcome, StateError
from pipeline.client import TwentyClient
from pipeline.errors import EXIT_REJECTED, InputError, PipelineError
from pipeline.load import Batch, Loader, LoadStats, OnDeleted, batches_of
from pipeline.lock import state_lock
from pipeline.mapping import Mapping
from pipeline.normalize import KEY, LOOKUP_PREFIX, Plan, make_plan, normalize
from pipeline.read import ROW, SourceReader, open_source
from pipeline.schema import WorkspaceSchema, load_schema

Progress = Callable[[int], None]
log = logging.getLogger("pipeline.runner")


@dataclass
class ValidationReport:
    """What validate found."""

    source: Path
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    blank_rows: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    first_rejects: list[dict[str, Any]] = field(default_factory=list)
    rejects_path: Path | None = None
    encoding: str | None = None
    delimiter: str | None = None
    key: tuple[str, ...] = ()
    key_is_unique: bool = True
    lookups: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for ``--json`` output and reports."""
        return {
            "source": str(self.source),
            "rows": self.rows,
            "valid": self.valid,
            "rejected": self.rejected,
            "blank_rows": self.blank_rows,
            "rejected_by_reason": dict(self.by_reason.most_common()),
            "rejects_file": str(self.rejects_path) if self.rejects_path else None,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "key": list(self.key),
            "key_matches_on": "unique fields" if self.key_is_unique else "derived ids (UUIDv5)",
            "lookups_to_resolve": self.lookups,
        }


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
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalize a chunk and apply ``on_duplicate_key``: (records, rejects in row order)."""
    result = normalize(chunk, plan)
    kept, lost = duplicates.split(result.records, mode)
    duplicate_rejects = chunk.join(lost.select(ROW, "_reason"), on=ROW, how="inner").with_columns(
        pl.lit("normalize").alias("_stage"),
        pl.lit("key").alias("_column"),
        pl.lit(None, pl.String).alias("_value"),
    )
    rejects = pl.concat([result.rejects, duplicate_rejects], how="diagonal_relaxed").sort(ROW)
    return kept, rejects


# --------------------------------------------------------------------------- rejects file


def rejects_header(columns: list[str]) -> list[str]:
    """The columns of every rejects file: the source's, then the ledger's own."""
    return [*columns, *LEDGER_COLUMNS]


class RejectsWriter:
    """Appends rejected rows to a CSV: the original columns, then the ledger columns."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = rejects_header(columns)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise self._failed(exc) from None
        self._writer = csv.writer(self._handle)
        self._writer.writerow(escape_row(self.columns))
        self.count = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Write rejected rows (missing columns are left empty)."""
        if frame.height == 0:
            return
        for name in self.columns:
            if name not in frame.columns:
                frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
        rows = frame.select([pl.col(c).cast(pl.String) for c in self.columns]).rows()
        try:
            self._writer.writerows(escape_row(r) for r in rows)
        except OSError as exc:
            raise self._failed(exc) from None
        self.count += frame.height

    def close(self) -> None:
        """Flush and close the file."""
        try:
            self._handle.close()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> StateError:
        return StateError(f"cannot write the rejects file {self.path}: {exc.strerror or exc}")


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


# --------------------------------------------------------------------------- validate


def validate(
    mapping: Mapping,
    schema: WorkspaceSchema,
    *,
    source: str | Path | None = None,
    rejects_path: Path | None = None,
    chunk_size: int = 100_000,
    progress: Progress | None = None,
    sample: int = 5,
) -> ValidationReport:
    """Read and normalize the whole source; count, and write the rejects file."""
    path = source_path(mapping, source)
    with open_source(path, mapping.source, chunk_size=chunk_size) as reader:
        columns = data_columns(reader, mapping)
        plan = make_plan(mapping, schema, columns)
        report = ValidationReport(
            source=path,
            encoding=reader.info.describe_encoding(),
            delimiter=reader.info.delimiter,
            key=plan.key,
            key_is_unique=plan.key_unique,
            blank_rows=reader.info.blank_rows,
        )
        duplicates = DuplicateIndex.build(reader, plan, columns)
        writer = RejectsWriter(rejects_path, columns) if rejects_path else None
        lookup_values: dict[str, set[str]] = {}

        def reject(frame: pl.DataFrame) -> None:
            if frame.height == 0:
                return
            report.rejected += frame.height
            reasons = frame["_reason"].to_list()
            for reason in reasons:
                report.by_reason[_reason_kind(reason)] += 1
            if len(report.first_rejects) < sample:
                report.first_rejects.extend(
                    frame.select("_row", "_reason")
                    .head(sample - len(report.first_rejects))
                    .to_dicts()
                )
            if writer is not None:
                writer.write(frame)

        try:
            read_rejects = read_rejects_frame(reader, columns)
            report.rows += read_rejects.height
            reject(read_rejects)
            for chunk in source_chunks(reader, columns):
                report.rows += chunk.height
                kept, rejects = prepare_chunk(chunk, plan, duplicates, mapping.on_duplicate_key)
                reject(rejects)
                report.valid += kept.height
                for column in kept.columns:
                    if column.startswith(LOOKUP_PREFIX):
                        lookup_values.setdefault(column[len(LOOKUP_PREFIX) :], set()).update(
                            kept[column].drop_nulls().unique().to_list()
                        )
                if progress is not None:
                    progress(chunk.height)
        finally:
            if writer is not None:
                writer.close()
        report.rejects_path = rejects_path if rejects_path and report.rejected else None
        if rejects_path and not report.rejected:
            rejects_path.unlink(missing_ok=True)
        report.lookups = {k: len(v) for k, v in lookup_values.items()}
    return report


def _reason_kind(reason: str) -> str:
    """Group reasons for the summary: the column and the kind of problem, not the value."""
    first = reason.split("; ")[0]
    if first.startswith("duplicate key"):
        return "duplicate key"
    column, _, rest = first.partition(": ")
    if rest.startswith("'"):
        rest = rest.split("' ", 1)[-1]
    if rest.startswith("is not a valid email address"):
        rest = "is not a valid email address"
    return f"{column}: {rest}" if rest else column


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """The outcome of an import run (report.json)."""

    mapping: str
    object: str
    source: str
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    restored: int = 0
    unchanged: int = 0
    rejected: int = 0
    blank_rows: int = 0
    links_left_empty: int = 0
    encoding: str | None = None
    delimiter: str | None = None
    batches: int = 0
    resumed: bool = False
    already_done: bool = False
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    state_dir: str = ""

    @property
    def loaded(self) -> int:
        """Rows written to the workspace."""
        return self.created + self.updated + self.restored

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for report.json."""
        return {
            "mapping": self.mapping,
            "object": self.object,
            "source": self.source,
            "rows": {
                "read": self.rows_read,
                "loaded": self.loaded,
                "created": self.created,
                "updated": self.updated,
                "restored": self.restored,
                "unchanged": self.unchanged,
                "rejected": self.rejected,
                "blank_lines_skipped": self.blank_rows,
            },
            "links_left_empty": self.links_left_empty,
            "encoding": self.encoding,
            "batches": self.batches,
            "resumed": self.resumed,
            "already_done": self.already_done,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class Fingerprint:
    """What makes a checkpoint valid, part by part, so a refusal can say what changed."""

    mapping: str
    source: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, mapping: Mapping, source: Path, **settings: Any) -> Fingerprint:
        """Digests of the mapping text and source content, and the batch-shaping settings."""
        digest = hashlib.sha256()
        with source.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        mapping_digest = hashlib.sha256(mapping.path.read_bytes()).hexdigest()
        return cls(mapping_digest, digest.hexdigest(), settings)

    @property
    def digest(self) -> str:
        """One value for the whole fingerprint."""
        text = json.dumps([self.mapping, self.source, self.settings], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def store(self) -> dict[str, str]:
        """Meta values of a checkpoint."""
        return {
            "fingerprint": self.digest,
            "mapping_digest": self.mapping,
            "source_digest": self.source,
            "settings": json.dumps(self.settings, sort_keys=True, default=str),
        }

    def differences(self, checkpoint: Checkpoint) -> list[str]:
        """What differs from the fingerprint stored in ``checkpoint``, in words."""
        out = []
        if checkpoint.get("mapping_digest") not in (None, self.mapping):
            out.append("the mapping file changed")
        if checkpoint.get("source_digest") not in (None, self.source):
            out.append(f"the source file changed (was {checkpoint.get('source')})")
        before = json.loads(checkpoint.get("settings") or "{}")
        for name, value in self.settings.items():
            if name in before and before[name] != value:
                out.append(f"{name.replace('_', ' ')} {before[name]} -> {value}")
        return out or ["the mapping, source or settings changed"]


def state_folder(state_dir: Path, mapping: Mapping) -> Path:
    """Where a mapping's checkpoint, ledgers and report live: ``STATE_DIR/<name>``.

    Two mappings with one file name in different folders must not share it: a folder
    records the mapping file it belongs to, and another mapping of that name gets
    ``<name>-<8 hex digits of its path>`` instead (the summary prints which is used).
    """
    me = str(mapping.path.resolve())
    base = state_dir / mapping.name
    try:
        owner = (base / "mapping.path").read_text(encoding="utf-8").strip()
    except OSError:
        return base
    if owner == me or not Path(owner).exists():
        return base
    return state_dir / f"{mapping.name}-{hashlib.sha256(me.encode()).hexdigest()[:8]}"


def write_ledgers(checkpoint: Checkpoint, folder: Path, columns: list[str]) -> None:
    """success.csv and rejects.csv, from the checkpoint (so they always agree with it)."""
    try:
        _write_ledgers(checkpoint, folder, columns)
    except OSError as exc:
        raise StateError(
            f"the ledgers in {folder} could not be written ({exc.strerror or exc}); the "
            "checkpoint is complete: free space, then run the same command again to write them"
        ) from None


def _write_ledgers(checkpoint: Checkpoint, folder: Path, columns: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "success.csv.tmp"
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["_row", "key", "id", "outcome", "note"])
        for row, key, record_id, outcome, _stage, note, _ in checkpoint.iter_rows(rejected=False):
            shown = (key or "").replace("\x1f", " | ")
            writer.writerow(escape_row([row, shown, record_id or "", outcome, note or ""]))
    tmp.replace(folder / "success.csv")
    tmp = folder / "rejects.csv.tmp"
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(escape_row(rejects_header(columns)))
        for row, _key, _id, _outcome, stage, reason, original in checkpoint.iter_rows(
            rejected=True
        ):
            values = json.loads(original) if original else {}
            cells = [*(values.get(c) for c in columns), row, stage]
            cells += [values.get("_column"), values.get("_value"), reason]
            writer.writerow(escape_row(cells))
    tmp.replace(folder / "rejects.csv")


async def import_file(
    mapping: Mapping,
    client: TwentyClient,
    *,
    state_dir: Path,
    source: str | Path | None = None,
    batch_size: int = 60,
    concurrency: int = 4,
    on_deleted: OnDeleted = "restore",
    restart: bool = False,
    chunk_size: int = 100_000,
    progress: Callable[[LoadStats, int], None] | None = None,
    on_start: Callable[[ImportReport, dict[str, int]], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import (or resume importing) ``source`` with ``mapping`` into the workspace.

    One run at a time per state folder (see :mod:`pipeline.lock`).
    """
    started = time.monotonic()
    path = source_path(mapping, source)
    folder = state_folder(state_dir, mapping)
    with open_source(path, mapping.source, chunk_size=chunk_size) as reader:
        columns = data_columns(reader, mapping)
        with state_lock(folder, f"an import of {mapping.path}"):
            if restart:
                _forget(folder)
            _claim_folder(folder, mapping)
            schema = await load_schema(client)
            plan = make_plan(mapping, schema, columns)
            print_ = Fingerprint.of(
                mapping,
                path,
                batch_size=batch_size,
                on_deleted=on_deleted,
                object=plan.object.name_singular,
            )
            checkpoint = _open_checkpoint(folder, mapping, print_)
            report = ImportReport(
                mapping=str(mapping.path),
                object=plan.object.name_singular,
                source=str(path),
                blank_rows=reader.info.blank_rows,
                encoding=reader.info.describe_encoding(),
                delimiter=reader.info.delimiter,
                state_dir=str(folder),
            )
            try:
                report.resumed = checkpoint.get("fingerprint") is not None
                if not report.resumed:
                    checkpoint.set_meta(
                        **print_.store(),
                        version=SCHEMA_VERSION,
                        mapping=str(mapping.path),
                        source=str(path),
                        object=plan.object.name_singular,
                        started=time.time(),
                    )
                if checkpoint.get("finished") == "true":
                    report.already_done = True
                else:
                    if on_start is not None:
                        on_start(report, checkpoint.counts())
                    await _run_import(
                        mapping,
                        plan,
                        reader,
                        client,
                        checkpoint,
                        columns=columns,
                        batch_size=batch_size,
                        concurrency=concurrency,
                        on_deleted=on_deleted,
                        progress=progress,
                        on_total=on_total,
                    )
                    checkpoint.set_meta(finished="true")
                _count(report, checkpoint)
                write_ledgers(checkpoint, folder, columns)
            except sqlite3.Error as exc:
                raise StateError(
                    f"the checkpoint in {folder} could not be written ({exc}); free space or "
                    "fix permissions, then run the same command again to resume"
                ) from None
            finally:
                checkpoint.close()
            report.calls = client.stats.as_dict()
            report.seconds = time.monotonic() - started
            report.exit_code = EXIT_REJECTED if report.rejected else 0
            _write_report(folder, report)
    return report


def _claim_folder(folder: Path, mapping: Mapping) -> None:
    """Record which mapping file the folder belongs to (see :func:`state_folder`)."""
    try:
        (folder / "mapping.path").write_text(str(mapping.path.resolve()) + "\n", encoding="utf-8")
    except OSError as exc:
        raise StateError(f"cannot write in the state folder {folder}: {exc.strerror}") from None


def _open_checkpoint(folder: Path, mapping: Mapping, print_: Fingerprint) -> Checkpoint:
    """The folder's checkpoint, if it may continue with ``print_``; else a refusal."""
    checkpoint_path = folder / "checkpoint.sqlite"
    checkpoint = Checkpoint(checkpoint_path)
    stored = checkpoint.get("fingerprint")
    if stored is None or stored == print_.digest:
        return checkpoint
    if checkpoint.get("finished") == "true":
        # The last import finished: nothing to resume, so a new file (the next
        # night's export, say) simply starts a new import.
        log.info("the last import of %s finished; starting a new one", mapping.name)
        checkpoint.close()
        _forget(folder)
        return Checkpoint(checkpoint_path)
    changed = "; ".join(print_.differences(checkpoint))
    checkpoint.close()
    raise InputError(
        f"{checkpoint_path}: an unfinished import cannot resume: {changed}. Run it again "
        "with the same mapping, source and settings to finish it, or pass --restart to "
        "start over (records already loaded are updated, not duplicated)"
    )


def _count(report: ImportReport, checkpoint: Checkpoint) -> None:
    """Fill the report from the checkpoint and check that the ledgers add up."""
    counts = checkpoint.counts()
    report.rows_read = int(checkpoint.get("rows_read") or 0)
    report.created = counts.get("created", 0)
    report.updated = counts.get("updated", 0)
    report.restored = counts.get("restored", 0)
    report.unchanged = counts.get("unchanged", 0)
    report.rejected = counts.get("rejected", 0)
    report.batches = checkpoint.batch_counts().get("done", 0)
    report.links_left_empty = checkpoint.links_left_empty()
    accounted = report.loaded + report.rejected + report.unchanged
    if accounted != report.rows_read:
        raise LedgerMismatch(
            f"the ledgers do not add up: {report.rows_read} rows read, but "
            f"{report.loaded} loaded + {report.rejected} rejected + {report.unchanged} "
            f"unchanged = {accounted}; the checkpoint {checkpoint.path} is kept"
        )


def _write_report(folder: Path, report: ImportReport) -> None:
    try:
        (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    except OSError as exc:
        raise StateError(
            f"the import finished, but {folder / 'report.json'} could not be written: "
            f"{exc.strerror}"
        ) from None


def _forget(folder: Path) -> None:
    """Remove a mapping's checkpoint and ledgers."""
    for name in (
        "checkpoint.sqlite",
        "checkpoint.sqlite-wal",
        "checkpoint.sqlite-shm",
        "success.csv",
        "rejects.csv",
        "report.json",
    ):
        (folder / name).unlink(missing_ok=True)


async def _run_import(
    mapping: Mapping,
    plan: Plan,
    reader: SourceReader,
    client: TwentyClient,
    checkpoint: Checkpoint,
    *,
    columns: list[str],
    batch_size: int,
    concurrency: int,
    on_deleted: OnDeleted,
    progress: Callable[[LoadStats, int], None] | None,
    on_total: Callable[[int], None] | None = None,
) -> None:
    """Normalize every chunk, record its rejects, and send the batches not yet done.

    ``progress`` is told about every row once (rejected, sent, or already done on a
    previous run), so its counts add up to the total given to ``on_total``.
    """
    loader = Loader(
        plan, client, checkpoint, concurrency=concurrency, on_deleted=on_deleted, progress=progress
    )

    def advance(rows: int) -> None:
        if progress is not None and rows:
            progress(loader.stats, rows)

    duplicates = DuplicateIndex.build(reader, plan, columns)
    read_rejects = read_rejects_frame(reader, columns)
    total = duplicates.rows + read_rejects.height
    checkpoint.set_meta(rows_read=total)
    if on_total is not None:
        on_total(total)
    _record_rejects(checkpoint, read_rejects, columns)
    advance(read_rejects.height)
    await loader.prepare()

    # Rows the workspace already answered for are never sent again; the rest is cut
    # into new batches. Batches are named by the rows they hold, so a resume is exact
    # whatever changed in between (chunk size, batch size after a server limit).
    checkpoint.retire_unconfirmed()
    final = checkpoint.final_rows()

    async def batches() -> AsyncIterator[Batch]:
        next_id = checkpoint.next_batch_id()
        for chunk in source_chunks(reader, columns):
            kept, rejects = prepare_chunk(chunk, plan, duplicates, mapping.on_duplicate_key)
            if final.len():
                known = _final_in(final, chunk)
                rejects = rejects.filter(~pl.col(ROW).is_in(known.implode()))
                kept = kept.filter(~pl.col(ROW).is_in(known.implode()))
                advance(known.len())
            _record_rejects(checkpoint, rejects, columns)
            advance(rejects.height)
            for batch in batches_of(kept, chunk, batch_size, next_id):
                yield batch
            next_id += -(-kept.height // batch_size)
            await asyncio.sleep(0)

    await loader.run(batches())


def _final_in(final: pl.Series, chunk: pl.DataFrame) -> pl.Series:
    """The final rows that are rows of this chunk."""
    rows = chunk[ROW]
    window = final.filter((final >= rows.min()) & (final <= rows.max()))
    return window.filter(window.is_in(rows.implode()))


def _record_rejects(checkpoint: Checkpoint, rejects: pl.DataFrame, columns: list[str]) -> None:
    """Record read / normalize rejects; recording one again on resume changes nothing."""
    if rejects.height == 0:
        return
    outcomes = [
        RowOutcome(
            int(r[ROW]),
            "rejected",
            stage=r["_stage"],
            reason=r["_reason"],
            original={c: r.get(c) for c in (*columns, "_column", "_value")},
        )
        for r in rejects.to_dicts()
    ]
    checkpoint.record_rows(outcomes)


class LedgerMismatch(PipelineError):
    """The conservation check failed: rows read != loaded + rejected + unchanged."""
