"""Runs that tie the stages together: ``validate`` (read + normalize, zero writes) and
``import`` (read + normalize + load, recorded in the state store and resumable).

Both run the same pass over the source (:class:`pipeline.prepare.PreparedSource`);
the runner only sequences, records state and reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl

from pipeline.dropped_store import DroppedValues
from pipeline.errors import (
    EXIT_REJECTED,
    RESTART_STARTS_OVER,
    WRITABLE_STATE_DIR,
    InputError,
    LedgerMismatch,
    StateError,
)
from pipeline.events import emit
from pipeline.ledgers import RejectsWriter, unpublish, write_ledgers, write_report
from pipeline.load import (
    Batch,
    KnownIds,
    Loader,
    LoadStats,
    OnDeleted,
    batches_of,
    sync_hashes,
)
from pipeline.lock import state_lock
from pipeline.mapping import Mapping
from pipeline.normalize import KEY, LOOKUP_PREFIX
from pipeline.plan_policy import PlanOptions, PlanPolicy
from pipeline.plan_policy import describe as describe_plan
from pipeline.prepare import PreparedSource, source_path
from pipeline.reports import (
    ImportReport,
    LoadProgress,
    RowsProgress,
    StartHook,
    TotalHook,
    ValidationReport,
    reason_kind,
)
from pipeline.schema import WorkspaceSchema, load_schema
from pipeline.sources import ROW, open_source
from pipeline.state import (
    OLD_CHECKPOINT,
    STORE_NAME,
    RowOutcome,
    Run,
    RunFingerprint,
    StateStore,
    set_aside,
)
from pipeline.twenty import TwentyClient

log = logging.getLogger("pipeline.runner")

# --------------------------------------------------------------------------- validate


def validate(
    mapping: Mapping,
    schema: WorkspaceSchema,
    *,
    source: str | Path | None = None,
    rejects_path: Path | None = None,
    chunk_size: int = 100_000,
    progress: RowsProgress | None = None,
    sample: int = 5,
) -> ValidationReport:
    """Read and normalize the whole source; count, and write the rejects file."""
    path = source_path(mapping, source)
    with open_source(path, mapping.source, chunk_size=chunk_size) as reader:
        prepared = PreparedSource.build(reader, mapping, schema)
        report = ValidationReport(
            source=path,
            encoding=reader.info.describe_encoding(),
            delimiter=reader.info.delimiter,
            key=prepared.plan.key,
            key_is_unique=prepared.plan.key_unique,
            blank_rows=reader.info.blank_rows,
        )
        writer = RejectsWriter(rejects_path, prepared.columns) if rejects_path else None
        lookup_values: dict[str, set[str]] = {}

        def reject(frame: pl.DataFrame) -> None:
            if frame.height == 0:
                return
            report.rejected += frame.height
            for reason in frame["_reason"].to_list():
                report.by_reason[reason_kind(reason)] += 1
            if len(report.first_rejects) < sample:
                wanted = sample - len(report.first_rejects)
                report.first_rejects.extend(frame.select(ROW, "_reason").head(wanted).to_dicts())
            if writer is not None:
                writer.write(frame)

        try:
            report.rows += prepared.read_rejects.height
            reject(prepared.read_rejects)
            for part in prepared.chunks():
                report.rows += part.rows.height
                reject(part.rejects)
                if part.dropped is not None and part.dropped.height:
                    report.values_dropped += part.dropped.height
                    for reason in part.dropped["_column"].to_list():
                        report.by_reason[f"{reason}: value dropped (on_invalid)"] += 1
                    if writer is not None:
                        writer.write(
                            part.dropped.with_columns(pl.lit("value_dropped").alias("_stage"))
                        )
                report.valid += part.records.height
                report.skipped += part.skipped.height
                for column in part.records.columns:
                    if column.startswith(LOOKUP_PREFIX):
                        lookup_values.setdefault(column[len(LOOKUP_PREFIX) :], set()).update(
                            part.records[column].drop_nulls().unique().to_list()
                        )
                if progress is not None:
                    progress(part.rows.height)
        except BaseException:
            if writer is not None:
                writer.abort()  # a half-read file leaves no half a rejects file
            raise
        if writer is not None:
            writer.close()
        listed = report.rejected + report.values_dropped
        report.rejects_path = rejects_path if rejects_path and listed else None
        if rejects_path and not listed:
            rejects_path.unlink(missing_ok=True)
        report.lookups = {k: len(v) for k, v in lookup_values.items()}
    return report


def validate_rejects_path(state_dir: Path, mapping: Mapping) -> Path:
    """Where ``validate`` writes its rejects file by default."""
    return state_folder(state_dir, mapping) / "validate-rejects.csv"


# --------------------------------------------------------------------------- state folder


def state_folder(state_dir: Path, mapping: Mapping) -> Path:
    """Where a mapping's state store, ledgers and report live: ``STATE_DIR/<name>``.

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


def _claim_folder(folder: Path, mapping: Mapping) -> None:
    """Record which mapping file the folder belongs to (see :func:`state_folder`)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mapping.path").write_text(str(mapping.path.resolve()) + "\n", encoding="utf-8")
    except OSError as exc:
        raise StateError(
            f"cannot use the state folder {folder}: {exc.strerror or exc}",
            advice=WRITABLE_STATE_DIR,
        ) from None


def fingerprint_of(mapping: Mapping, source: Path, **settings: object) -> RunFingerprint:
    """Digests of the mapping text and source content, and the batch-shaping settings."""
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    mapping_digest = hashlib.sha256(mapping.path.read_bytes()).hexdigest()
    return RunFingerprint(mapping_digest, digest.hexdigest(), dict(settings))


def open_store(folder: Path, *, restart: bool) -> StateStore:
    """The folder's state store; ``restart`` sets a damaged or older one aside."""
    path = folder / STORE_NAME
    old = folder / OLD_CHECKPOINT
    if restart:
        for stale in (old,):
            if (aside := set_aside(stale)) is not None:
                log.info("set the old checkpoint aside as %s", aside)
    elif old.exists() and not path.exists():
        StateStore(old, read_only=True).close()  # refuses: older schema, or damaged
    try:
        return StateStore(path)
    except StateError:
        if not restart:
            raise
    aside = set_aside(path)
    log.info("set the unreadable state store aside as %s", aside)
    return StateStore(path)


def _choose_run(
    store: StateStore, folder: Path, print_: RunFingerprint, restart: bool
) -> Run | None:
    """The unfinished run to resume, or None to begin a new one (or a refusal)."""
    last = store.last_run()
    if last is None or last.status != "running":
        return None
    if restart:
        store.end_run("abandoned", last.id)
        return None
    if last.fingerprint == print_.digest:
        return last
    changed = "; ".join(print_.differences(last))
    raise InputError(
        f"{folder / STORE_NAME}: an unfinished import cannot resume: {changed}. Run it again "
        "with the same mapping, source and settings to finish it",
        advice=RESTART_STARTS_OVER,
    )


# --------------------------------------------------------------------------- import


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
    incremental: bool = False,
    chunk_size: int = 100_000,
    progress: LoadProgress | None = None,
    on_start: StartHook | None = None,
    on_total: TotalHook | None = None,
    folder: Path | None = None,
    schema: WorkspaceSchema | None = None,
    known_ids: KnownIds | None = None,
    wait: float = 0.0,
    plan_options: PlanOptions | None = None,
    undoable: bool = False,
) -> ImportReport:
    """Import (or resume importing) ``source`` with ``mapping`` into the workspace.

    One run at a time per state folder (see :mod:`pipeline.lock`; ``wait`` seconds
    for another to finish). ``incremental``
    leaves out of the batches every row whose record Twenty confirmed, under the same
    mapping, with the same content in an earlier run (outcome ``unchanged``).

    A job passes its step's ``folder`` (default: the mapping's own, under
    ``state_dir``), the ``schema`` it read once, and the ids its earlier steps wrote.
    ``plan_options`` act on what a plan would find (:mod:`pipeline.plan_policy`).
    ``undoable`` keeps the values of the records a batch updates, read before the call,
    so that ``undo`` can put them back (:mod:`pipeline.undo`).
    """
    started = time.monotonic()
    calls_before = client.stats.as_dict()  # a job's steps share one client
    path = source_path(mapping, source)
    folder = folder or state_folder(state_dir, mapping)
    with (
        open_source(path, mapping.source, chunk_size=chunk_size) as reader,
        state_lock(folder, f"an import of {mapping.path}", wait=wait),
    ):
        _claim_folder(folder, mapping)
        store = open_store(folder, restart=restart)
        try:
            schema = schema or await load_schema(client)
            prepared = PreparedSource.build(reader, mapping, schema)
            obj = prepared.plan.object.name_singular
            print_ = fingerprint_of(
                mapping,
                path,
                batch_size=batch_size,
                on_deleted=on_deleted,
                object=obj,
                **dict(describe_plan(plan_options)),
                **({"undoable": True} if undoable else {}),
            )
            report = ImportReport(
                mapping=str(mapping.path),
                object=obj,
                source=str(path),
                blank_rows=reader.info.blank_rows,
                encoding=reader.info.describe_encoding(),
                delimiter=reader.info.delimiter,
                state_dir=str(folder),
            )
            run = await _import_run(
                store,
                folder,
                prepared,
                client,
                report,
                print_,
                restart=restart,
                incremental=incremental,
                known_ids=known_ids,
                batch_size=batch_size,
                concurrency=concurrency,
                on_deleted=on_deleted,
                progress=progress,
                on_start=on_start,
                on_total=on_total,
                plan_options=plan_options,
                undoable=undoable,
            )
        except sqlite3.Error as exc:
            raise StateError(
                f"the state store in {folder} could not be written ({exc}); free space or "
                "fix permissions, then run the same command again to resume"
            ) from None
        finally:
            store.close()
        _finish_report(report, client, calls_before, started, run.id)
        write_report(folder, report, run.id)
    _import_ended(mapping, report)
    return report


def _finish_report(
    report: ImportReport,
    client: TwentyClient,
    calls_before: dict[str, int],
    started: float,
    run_id: int,
) -> None:
    """The run's own calls (a job's steps share one client), time and exit code."""
    report.calls = {
        kind: count - calls_before.get(kind, 0) for kind, count in client.stats.as_dict().items()
    }
    report.seconds = time.monotonic() - started
    report.exit_code = EXIT_REJECTED if report.rejected or report.values_dropped else 0
    report.run_id = run_id


def _import_ended(mapping: Mapping, report: ImportReport) -> None:
    """The ``import_end`` event: the run's figures for a log collector."""
    emit(
        "import_end",
        f"import {mapping.name}: {report.rows_read} rows read, {report.loaded} loaded, "
        f"{report.unchanged} unchanged, {report.skipped} skipped, {report.rejected} rejected",
        mapping=mapping.name,
        object=report.object,
        run=report.run_id,
        rows_read=report.rows_read,
        created=report.created,
        updated=report.updated,
        restored=report.restored,
        unchanged=report.unchanged,
        skipped=report.skipped,
        rejected=report.rejected,
        resumed=report.resumed,
        already_done=report.already_done,
        calls=report.calls,
        seconds=round(report.seconds, 3),
        exit_code=report.exit_code,
    )


async def _import_run(
    store: StateStore,
    folder: Path,
    prepared: PreparedSource,
    client: TwentyClient,
    report: ImportReport,
    print_: RunFingerprint,
    *,
    restart: bool,
    incremental: bool,
    known_ids: KnownIds | None,
    batch_size: int,
    concurrency: int,
    on_deleted: OnDeleted,
    progress: LoadProgress | None,
    on_start: StartHook | None,
    on_total: TotalHook | None,
    plan_options: PlanOptions | None = None,
    undoable: bool = False,
) -> Run:
    """Resume the unfinished run or begin one, run it to the end, write its ledgers."""
    run = _choose_run(store, folder, print_, restart)
    if run is not None:
        store.resume_run(run)
        report.resumed = True
    else:
        last = store.last_run()
        if (
            not restart
            and not incremental
            and last is not None
            and last.finished
            and last.fingerprint == print_.digest
        ):
            # the same file, mapping and settings, imported to the end: nothing to do.
            # An incremental run goes on: unchanged rows cost no write, and rows rejected
            # last time (a lookup that missed, a refused value) are judged again.
            store.run_id = last.id
            report.already_done = True
            _count(report, store, last.rows_read or 0)
            if not all((folder / name).exists() for name in ("success.csv", "rejects.csv")):
                # killed after its last batch was recorded, before its ledgers were written
                write_ledgers(store, folder, prepared.columns, last.id)
            return last
        unpublish(folder)
        run = _begin_run(store, prepared, report, print_)
    if on_start is not None:
        on_start(report, store.counts())
    stats = await _load(
        prepared,
        client,
        store,
        incremental=print_.mapping_digest if incremental else None,
        known_ids=known_ids,
        batch_size=batch_size,
        concurrency=concurrency,
        on_deleted=on_deleted,
        progress=progress,
        on_total=on_total,
        plan_options=plan_options,
        undoable=undoable,
    )
    store.end_run("finished")
    report.targets_linked, report.targets_unlinked = stats.linked, stats.unlinked
    report.undo_reads = stats.undo_reads
    report.outcome_reads = stats.outcome_reads
    _count(report, store, prepared.total_rows)
    write_ledgers(store, folder, prepared.columns, run.id)
    return run


def _begin_run(
    store: StateStore, prepared: PreparedSource, report: ImportReport, print_: RunFingerprint
) -> Run:
    return store.begin_run(
        print_,
        mapping=str(prepared.mapping.path.resolve()),
        source=str(Path(report.source).resolve()),
        object_name=report.object,
    )


def _count(report: ImportReport, store: StateStore, rows_read: int) -> None:
    """Fill the report from the store and check that the ledgers add up."""
    counts = store.counts()
    report.rows_read = rows_read
    report.created = counts.get("created", 0)
    report.updated = counts.get("updated", 0)
    report.restored = counts.get("restored", 0)
    report.unchanged = counts.get("unchanged", 0)
    report.skipped = counts.get("skipped", 0)
    report.rejected = counts.get("rejected", 0)
    report.batches = store.batch_counts().get("done", 0)
    report.links_left_empty = store.links_left_empty()
    if store.run_id is not None:
        report.values_dropped = DroppedValues(store, read_only=True).count(store.run_id)
    accounted = report.loaded + report.rejected + report.unchanged + report.skipped
    if accounted != report.rows_read:
        raise LedgerMismatch(
            f"the ledgers do not add up: {report.rows_read} rows read, but "
            f"{report.loaded} loaded + {report.rejected} rejected + {report.unchanged} "
            f"unchanged + {report.skipped} skipped = {accounted}; the state store "
            f"{store.path} is kept"
        )


async def _load(
    prepared: PreparedSource,
    client: TwentyClient,
    store: StateStore,
    *,
    incremental: str | None,
    known_ids: KnownIds | None,
    batch_size: int,
    concurrency: int,
    on_deleted: OnDeleted,
    progress: LoadProgress | None,
    on_total: TotalHook | None = None,
    plan_options: PlanOptions | None = None,
    undoable: bool = False,
) -> LoadStats:
    """Record the rejects of every chunk, and send the records not yet answered for.

    ``progress`` is told about every row once (rejected, skipped, sent, unchanged, or already
    done on a previous attempt), so its counts add up to the total given to
    ``on_total``. ``incremental`` is the mapping digest under which unchanged records
    are left out (None: every record is sent).
    """
    loader = Loader(
        prepared.plan,
        client,
        store,
        concurrency=concurrency,
        on_deleted=on_deleted,
        progress=progress,
        known_ids=known_ids,
        undoable=undoable,
    )

    def advance(rows: int) -> None:
        if progress is not None and rows:
            progress(loader.stats, rows)

    store.set_rows_read(prepared.total_rows)
    if on_total is not None:
        on_total(prepared.total_rows)
    _record_rejects(store, prepared.read_rejects, prepared.columns)
    advance(prepared.read_rejects.height)
    await loader.prepare()
    policy = None
    if plan_options is not None and plan_options.active:
        policy = PlanPolicy(prepared.plan, client, plan_options)
        await policy.prepare()

    # Rows the workspace already answered for are never sent again; the rest is cut
    # into new batches. Batches are named by the keys they hold and recorded with
    # their rows, so a resume is exact whatever changed in between (chunk size, the
    # batch size after a server limit).
    store.retire_unconfirmed()
    final = store.final_rows()

    async def batches() -> AsyncIterator[Batch]:
        next_id = store.next_batch_id()
        for part in prepared.chunks():
            kept, rejects, skipped = part.records, part.rejects, part.skipped
            if final.len():
                known = _final_in(final, part.rows)
                done = ~pl.col(ROW).is_in(known.implode())
                rejects, kept = rejects.filter(done), kept.filter(done)
                skipped = skipped.filter(done)
                advance(known.len())
            _record_rejects(store, rejects, prepared.columns)
            _record_skipped(store, skipped)
            if part.dropped is not None and part.dropped.height:
                DroppedValues(store).record(store.run_id or 0, part.dropped, prepared.columns)
            advance(rejects.height + skipped.height)
            if incremental is not None and kept.height:
                before = kept.height
                kept = _leave_out_unchanged(kept, store, loader, incremental)
                advance(before - kept.height)
            if policy is not None and kept.height:
                before = kept.height
                kept, held = await policy.apply(kept, part.rows, store)
                _record_rejects(store, held, prepared.columns)
                advance(before - kept.height)
            for batch in batches_of(kept, part.rows, batch_size, next_id):
                yield batch
            next_id += -(-kept.height // batch_size)
            await asyncio.sleep(0)

    return await loader.run(batches())


def _leave_out_unchanged(
    records: pl.DataFrame, store: StateStore, loader: Loader, mapping_digest: str
) -> pl.DataFrame:
    """Record as ``unchanged`` the records Twenty holds as they are; return the others."""
    keys = records[KEY].to_list()
    known = store.unchanged_since(keys, sync_hashes(records), mapping_digest)
    if not known:
        return records
    deleted = loader.is_deleted(records)  # a record deleted since must be sent again
    same = [key in known and not gone for key, gone in zip(keys, deleted, strict=True)]
    unchanged = records.filter(pl.Series(same))
    store.mark_unchanged(
        RowOutcome(
            int(row),
            "unchanged",
            key,
            record_id=known[key][0],
            reason=f"unchanged since run {known[key][1]} (incremental)",
        )
        for row, key in zip(unchanged[ROW].to_list(), unchanged[KEY].to_list(), strict=True)
    )
    return records.filter(~pl.Series(same))


def _final_in(final: pl.Series, chunk: pl.DataFrame) -> pl.Series:
    """The final rows that are rows of this chunk."""
    rows = chunk[ROW]
    window = final.filter((final >= rows.min()) & (final <= rows.max()))
    return window.filter(window.is_in(rows.implode()))


def _record_skipped(store: StateStore, skipped: pl.DataFrame) -> None:
    """Record the rows with nothing to load; recording one again on resume changes nothing."""
    if skipped.height:
        store.record_rows(
            RowOutcome(int(row), "skipped", reason=reason)
            for row, reason in skipped.select(ROW, "_reason").iter_rows()
        )


def _record_rejects(store: StateStore, rejects: pl.DataFrame, columns: list[str]) -> None:
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
    store.record_rows(outcomes)
