"""Load: normalized records -> batched upserts through the client, recorded per batch.

Each batch is resolved (relation lookups), written ahead as ``sent`` in the state store,
upserted, and recorded as ``done`` together with the ids Twenty answered. A batch that
Twenty refuses for its data is split in halves until the bad records are alone; they
are rejected with Twenty's own message and the rest still loads. Up to
``concurrency`` batches are in flight; the client paces their calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import polars as pl

from pipeline.before_images import read_before
from pipeline.errors import BatchRejectedError, BatchTooLargeError, UnconfirmedWriteError
from pipeline.events import emit
from pipeline.mapping import FieldSpec
from pipeline.normalize import KEY, KEY_SEPARATOR, LOOKUP_PREFIX, Plan, to_payloads
from pipeline.rejected_targets import rejected_targets
from pipeline.schema import ObjectSchema
from pipeline.sources import ROW
from pipeline.state import LOADED, Outcome, RowOutcome, StateStore, content_hash
from pipeline.targets import TARGETS_PREFIX, TargetWriter, split_targets
from pipeline.twenty import PAGE_SIZE, TwentyClient
from pipeline.undo_store import UndoStore

OnDeleted = Literal["restore", "skip", "reject"]
KnownIds: TypeAlias = Mapping[tuple[str, str], Mapping[str, str]]
"""Ids the same job wrote: (object, unique field path) -> value -> record id."""
SELECTION = "id createdAt updatedAt"
CREATED_AT = "createdAt"
PREFETCH_LIMIT = 2_000  # targets this small are read whole instead of queried per batch


@dataclass
class Batch:
    """Records sent together, with the source rows they came from."""

    id: int
    records: pl.DataFrame
    originals: pl.DataFrame

    @property
    def rows(self) -> list[int]:
        """The source row numbers of the batch."""
        return [int(r) for r in self.records[ROW].to_list()]


@dataclass
class LoadStats:
    """What the loader did, for progress and the report."""

    created: int = 0
    updated: int = 0
    restored: int = 0
    skipped: int = 0
    rejected: int = 0
    batches: int = 0
    split_calls: int = 0
    lookup_calls: int = 0
    created_targets: int = 0
    """Records created by ``on_missing: create`` lookups."""
    linked: int = 0
    """Note / task targets written (``targets.*``)."""
    unlinked: int = 0
    """Note / task targets of earlier runs taken back: their row links elsewhere now."""
    rate_limited: int = 0
    links_left_empty: int = 0
    undo_reads: int = 0
    """Reads spent on before-images (``--undoable``)."""
    outcome_reads: int = 0
    """Reads telling creates from updates in batches that send ``createdAt``."""

    @property
    def loaded(self) -> int:
        """Rows written to the workspace."""
        return self.created + self.updated + self.restored


@dataclass
class _Item:
    row: int
    key: str | None
    payload: dict[str, Any]
    original: dict[str, Any]
    identity: str | None = None
    content_hash: str | None = None
    """What incremental sync compares (see :func:`sync_hashes`)."""
    note: str | None = None
    """Why a link was left empty (on_missing: null): kept in success.csv."""
    targets: dict[str, str] = field(default_factory=dict)
    """Join column -> record id of the targets a note or task is attached to."""


def sync_hashes(records: pl.DataFrame, payloads: list[dict[str, Any]] | None = None) -> list[str]:
    """One hash per record: its payload as normalized, with its lookup values.

    The lookup values (a company's domain), not the ids they resolve to, so that the
    hash is known before any call: incremental sync compares it with the hash
    confirmed last time to leave unchanged rows out of the batches altogether.
    """
    bodies = to_payloads(records) if payloads is None else payloads
    lookups = [c for c in records.columns if c.startswith(LOOKUP_PREFIX)]
    if not lookups:
        return [content_hash(body) for body in bodies]
    values = records.select(lookups).to_dicts()
    return [
        content_hash({**body, **{k: v for k, v in links.items() if v is not None}})
        for body, links in zip(bodies, values, strict=True)
    ]


def _get_path(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


# --------------------------------------------------------------------------- lookups


@dataclass
class _Lookup:
    spec: FieldSpec
    target: ObjectSchema
    path: str
    column: str
    join_column: str
    cache: dict[str, str | None] = field(default_factory=dict)
    complete: bool = False  # the whole target was read: a miss is a real miss
    from_job: bool = False  # seeded with the ids an earlier step of the job wrote
    rejected: dict[str, str] | None = None  # values whose own row was rejected, and why


class LookupResolver:
    """Turns lookup values into record ids: cache, then the workspace (batched), else create."""

    def __init__(
        self,
        plan: Plan,
        client: TwentyClient,
        store: StateStore,
        stats: LoadStats,
        known_ids: KnownIds | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.stats = stats
        self.schema = plan.schema
        self._lock = asyncio.Lock()
        self._prepared = False
        self.lookups: list[_Lookup] = []
        for spec, f in plan.lookups:
            assert f.relation is not None and spec.lookup is not None
            target = plan.schema.object(f.relation.target_object)
            assert target is not None
            join = f.relation.join_column or f"{f.name}Id"
            if spec.target.startswith(TARGETS_PREFIX):
                join = TARGETS_PREFIX + join
            lookup = _Lookup(spec, target, spec.lookup, LOOKUP_PREFIX + join, join)
            lookup.cache.update(store.lookup_cache(target.name_singular, spec.lookup))
            written = (known_ids or {}).get((target.name_singular, spec.lookup))
            if written:
                lookup.cache.update(written)
                lookup.from_job = True
            self.lookups.append(lookup)

    async def prepare(self) -> None:
        """Read small targets whole: one paged read beats a query per batch.

        Done when the first batch with a link to resolve comes, not before: a run
        that sends nothing (an unchanged incremental sync) reads nothing for it. Not a
        target an earlier step of the job wrote: its ids are known, and only the
        values it did not write are asked for, when a batch needs them.
        """
        self._prepared = True
        for lookup in self.lookups:
            if lookup.from_job:
                continue
            page = await self.client.find_many(lookup.target.names, limit=1)
            self.stats.lookup_calls += 1
            total = page.total_count or 0
            if total > PREFETCH_LIMIT:
                continue
            found: dict[str, str | None] = {}
            async for chunk in self.client.iter_pages(lookup.target.names, page_size=PAGE_SIZE):
                self.stats.lookup_calls += 1
                for record in chunk.records:
                    value = _get_path(record, lookup.path)
                    if value not in (None, ""):
                        found[str(value)] = str(record["id"])
            lookup.cache.update(found)
            lookup.complete = True
            self.store.save_lookups(lookup.target.name_singular, lookup.path, found)

    async def _query(self, lookup: _Lookup, values: list[str]) -> None:
        found: dict[str, str | None] = dict.fromkeys(values)
        for start in range(0, len(values), PAGE_SIZE):
            part = values[start : start + PAGE_SIZE]
            quoted = ",".join('"' + v.replace('"', '\\"') + '"' for v in part)
            async for page in self.client.iter_pages(
                lookup.target.names, filter=f"{lookup.path}[in]:[{quoted}]"
            ):
                self.stats.lookup_calls += 1
                for record in page.records:
                    value = _get_path(record, lookup.path)
                    if value is not None and str(value) in found:
                        found[str(value)] = str(record["id"])
        if lookup.spec.on_missing == "create":
            missing = [v for v, i in found.items() if i is None]
            if missing:
                created = await self.client.upsert_many(
                    lookup.target.names,
                    [_nested(lookup.path, v) for v in missing],
                    selection=SELECTION,
                )
                self.stats.created_targets += len(created)
                # none of them was live (the query just looked): the run made every one
                # live, created or restored, and undo deletes them all
                UndoStore(self.store).created_by_lookup(
                    self.store.run_id or 0,
                    lookup.target.name_singular,
                    [(str(r["id"]), r.get("updatedAt")) for r in created],
                )
                found.update({v: str(r["id"]) for v, r in zip(missing, created, strict=True)})
        lookup.cache.update(found)
        self.store.save_lookups(lookup.target.name_singular, lookup.path, found)

    def _rejected(self, lookup: _Lookup) -> dict[str, str]:
        if lookup.rejected is None:
            lookup.rejected = rejected_targets(
                self.store.path.parent.parent,
                self.schema,
                lookup.target.name_singular,
                lookup.path,
            )
        return lookup.rejected

    async def resolve(self, items: list[_Item], records: pl.DataFrame) -> dict[int, str]:
        """Set the join columns of ``items``; return the rows to reject, with why."""
        rejected: dict[int, str] = {}
        for lookup in self.lookups:
            if lookup.column not in records.columns:
                continue
            values = records[lookup.column].to_list()
            async with self._lock:
                if not self._prepared:
                    await self.prepare()
                unknown = sorted({v for v in values if v is not None and v not in lookup.cache})
                if (unknown and not lookup.complete) or (
                    unknown and lookup.spec.on_missing == "create"
                ):
                    await self._query(lookup, unknown)
            for item, value in zip(items, values, strict=True):
                if value is None:
                    continue
                record_id = lookup.cache.get(value)
                if record_id is not None:
                    item.payload[lookup.join_column] = record_id
                else:
                    reason = (
                        f"{lookup.spec.label}: no "
                        f"{lookup.target.name_singular} has {lookup.path} = {value} "
                        f"(on_missing: {lookup.spec.on_missing})"
                    )
                    why = self._rejected(lookup).get(value)
                    if why:
                        reason += f"; {why}"
                    if lookup.spec.on_missing == "reject":
                        rejected[item.row] = "; ".join(
                            filter(None, [rejected.get(item.row), reason])
                        )
                    else:  # null: the record loads without this link, and says so
                        item.note = "; ".join(
                            filter(None, [item.note, f"link left empty: {reason}"])
                        )
        return rejected


# --------------------------------------------------------------------------- loader


class Loader:
    """Sends batches with ``concurrency`` in flight and records every outcome."""

    def __init__(
        self,
        plan: Plan,
        client: TwentyClient,
        store: StateStore,
        *,
        concurrency: int = 4,
        on_deleted: OnDeleted = "restore",
        progress: Callable[[LoadStats, int], None] | None = None,
        known_ids: KnownIds | None = None,
        undoable: bool = False,
    ) -> None:
        self.plan = plan
        self.client = client
        self.store = store
        self.undo = UndoStore(store)
        self.undoable = undoable
        self._answered: dict[str, str | None] = {}  # record id -> updatedAt Twenty answered
        self.concurrency = concurrency
        self.on_deleted = on_deleted
        self.progress = progress
        self.stats = LoadStats()
        self.lookups = LookupResolver(plan, client, store, self.stats, known_ids)
        self.deleted: set[str] = set()
        has_targets = any(s.target.startswith(TARGETS_PREFIX) for s in plan.mapping.fields)
        self.targets = (
            TargetWriter.for_object(client, plan.schema, plan.object) if has_targets else None
        )

    async def prepare(self) -> None:
        """Before the first batch: the soft-deleted keys (lookups prefetch on first need)."""
        await self._read_deleted()

    async def _read_deleted(self) -> None:
        """Keys of soft-deleted records: an upsert on them restores them (twenty-api.md §4)."""
        names = self.plan.object.names
        async for page in self.client.iter_pages(names, filter="deletedAt[is]:NOT_NULL"):
            for record in page.records:
                identity = self._identity_of_record(record)
                if identity:
                    self.deleted.add(identity)

    def _identity_of_record(self, record: dict[str, Any]) -> str | None:
        if self.plan.derive_id or self.plan.key == ("id",):
            return str(record.get("id"))
        parts = [_get_path(record, p) for p in self.plan.key]
        if any(p in (None, "") for p in parts):
            return None
        return KEY_SEPARATOR.join(str(p) for p in parts)

    def is_deleted(self, records: pl.DataFrame) -> list[bool]:
        """Whether each record matches one soft-deleted in the workspace."""
        return [identity in self.deleted for identity in self._identity(records)]

    def _identity(self, records: pl.DataFrame) -> list[str | None]:
        if self.plan.derive_id or self.plan.key == ("id",):
            return (
                [str(v) if v else None for v in records["id"].to_list()]
                if "id" in records.columns
                else [None] * records.height
            )
        return records[KEY].to_list()

    async def run(self, batches: AsyncIterator[Batch]) -> LoadStats:
        """Send every batch (the done ones were filtered out by the caller).

        The first failure cancels everything in flight and is raised; batches that
        were sent but not confirmed stay ``sent`` and go again on resume.
        """
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=self.concurrency * 2)
        queued = 0  # batches in the queue, each at least one call
        produced = False  # every batch is in the queue: the pacer may know what is left

        async def produce() -> None:
            nonlocal queued, produced
            async for batch in batches:
                queued += 1
                await queue.put(batch)
            produced = True
            self.client.note_backlog(queued)
            for _ in range(self.concurrency):
                await queue.put(None)

        async def work() -> None:
            nonlocal queued
            while (batch := await queue.get()) is not None:
                queued -= 1
                if produced:
                    self.client.note_backlog(queued)
                await self.send_batch(batch)

        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(work()) for _ in range(self.concurrency)]
        try:
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in finished:
                    error = task.exception()
                    if error is not None:
                        raise error
        finally:
            self.client.note_backlog(None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    async def send_batch(self, batch: Batch) -> None:
        """Resolve, write ahead, upsert (splitting around bad records), record."""
        records = batch.records
        payloads = to_payloads(records)
        originals = {int(r[ROW]): r for r in batch.originals.to_dicts()}
        identities = self._identity(records)
        hashes = sync_hashes(records, payloads)  # before lookups add their ids
        items = [
            _Item(row, key, payload, originals.get(row, {}), identity, digest)
            for row, key, payload, identity, digest in zip(
                batch.rows, records[KEY].to_list(), payloads, identities, hashes, strict=True
            )
        ]
        outcomes: list[RowOutcome] = []
        rejected = await self.lookups.resolve(items, records)
        sendable = []
        for item in items:
            item.targets = split_targets(item.payload)
            if item.row in rejected:
                outcomes.append(self._reject(item, rejected[item.row]))
            elif item.identity in self.deleted and self.on_deleted != "restore":
                if self.on_deleted == "skip":
                    self.stats.skipped += 1
                    outcomes.append(
                        RowOutcome(
                            item.row,
                            "unchanged",
                            item.key,
                            stage="load",
                            reason="matches a soft-deleted record; left deleted (on_deleted: skip)",
                        )
                    )
                else:
                    outcomes.append(
                        self._reject(item, "matches a soft-deleted record (on_deleted: reject)")
                    )
            else:
                sendable.append(item)
        existing = None
        if sendable and (self.undoable or any(CREATED_AT in i.payload for i in sendable)):
            existing = await self._read_existing(sendable)
        self.store.mark_sent(batch.id, batch.rows, [item.key for item in items])
        if sendable:
            sent = await self._send(sendable, existing)
            await self._attach(sendable, sent)
            outcomes.extend(sent)
        sent_by_row = {item.row: item.payload for item in sendable}
        written = [
            (
                str(o.record_id),
                self._answered.pop(str(o.record_id), None),
                {k: v for k, v in sent_by_row.get(o.row, {}).items() if k != "id"},
            )
            for o in outcomes
            if o.outcome in LOADED and o.record_id
        ]
        obj = self.plan.object.name_singular
        run = self.store.run_id
        assert run is not None  # a batch is sent inside a run
        read = existing is not None
        self.store.mark_done(  # after the targets: a resume sends both
            batch.id,
            outcomes,
            also=lambda: self.undo.write_times(run, obj, written, checked=read),
        )
        by_outcome: dict[str, int] = dict(Counter(str(o.outcome) for o in outcomes))
        emit(
            "batch",
            f"batch {batch.id} of {self.plan.object.name_singular}: {len(items)} rows recorded",
            object=self.plan.object.name_singular,
            batch=batch.id,
            rows=len(items),
            sent=len(sendable),
            outcomes=by_outcome,
        )
        self.stats.batches += 1
        self.stats.rate_limited = self.client.stats.rate_limited
        if self.progress is not None:
            self.progress(self.stats, len(items))

    async def _read_existing(self, items: list[_Item]) -> set[str]:
        """The ids of the live records the batch will update, read before the call.

        Kept as before-images with ``--undoable``. A batch that sends ``createdAt`` needs
        them to tell its creates from its updates: Twenty's answer then says nothing
        (the created record's createdAt is the one sent, not the time of the call).
        """
        images, calls = await read_before(
            self.client,
            self.plan,
            [i.payload for i in items],
            [i.identity for i in items],
            self._identity_of_record,
            deleted=self.undoable and any(i.identity in self.deleted for i in items),
        )
        if self.undoable:
            self.stats.undo_reads += calls
            if images and self.store.run_id is not None:
                self.undo.save_before(self.store.run_id, images)
        else:
            self.stats.outcome_reads += calls
        return {record_id.lower() for record_id in images}

    async def _attach(self, items: list[_Item], outcomes: list[RowOutcome]) -> None:
        """Write the targets of the notes (tasks) Twenty confirmed."""
        if self.targets is None:
            return
        by_row = {item.row: item for item in items}
        links = [
            (str(o.record_id), by_row[o.row].targets, o.outcome != "created")
            for o in outcomes
            if o.outcome in LOADED and o.record_id
        ]
        linked, unlinked = await self.targets.write(links)
        self.stats.linked += linked
        self.stats.unlinked += unlinked

    def _reject(self, item: _Item, reason: str) -> RowOutcome:
        self.stats.rejected += 1
        return RowOutcome(
            item.row, "rejected", item.key, stage="load", reason=reason, original=item.original
        )

    async def _send(self, items: list[_Item], existing: set[str] | None) -> list[RowOutcome]:
        try:
            answers = await self.client.upsert_many(
                self.plan.object.names, [i.payload for i in items], selection=SELECTION
            )
        except BatchTooLargeError:
            raise
        except BatchRejectedError as exc:
            if len(items) == 1:
                return [
                    self._reject(
                        items[0], f"Twenty refused the record: {exc.server_message or exc}"
                    )
                ]
            self.stats.split_calls += 1
            middle = len(items) // 2
            return [
                *await self._send(items[:middle], existing),
                *await self._send(items[middle:], existing),
            ]
        record_ids = [a.get("id") if isinstance(a, dict) else None for a in answers]
        if len(answers) != len(items) or not all(isinstance(i, str) and i for i in record_ids):
            # The client confirms every write answer; this guards the one thing that
            # must never happen whatever it returns: a row recorded as loaded without
            # the id of the record that holds it.
            raise UnconfirmedWriteError(
                f"upsert {self.plan.object.names.plural}: {len(items)} records sent, the "
                "answer does not give an id for each; the batch is not recorded as done"
            )
        out = []
        for item, answer, record_id in zip(items, answers, record_ids, strict=True):
            self._answered[str(record_id)] = answer.get("updatedAt")
            outcome: Outcome
            # a read before the call knows which records existed: it decides, not Twenty's
            # createdAt == updatedAt (a createdAt sent, or an update that changed nothing,
            # would mislead it)
            if item.identity in self.deleted:
                outcome = "restored"
                self.stats.restored += 1
            elif existing is not None and str(record_id).lower() not in existing:
                outcome = "created"
                self.stats.created += 1
            elif existing is not None:
                outcome = "updated"
                self.stats.updated += 1
            elif answer.get("createdAt") and answer.get("createdAt") == answer.get("updatedAt"):
                outcome = "created"
                self.stats.created += 1
            else:
                outcome = "updated"
                self.stats.updated += 1
            out.append(
                RowOutcome(
                    item.row,
                    outcome,
                    item.key,
                    record_id=str(record_id),
                    reason=item.note,
                    content_hash=item.content_hash,
                )
            )
            if item.note:
                self.stats.links_left_empty += 1
        return out


def batches_of(
    records: pl.DataFrame, originals: pl.DataFrame, size: int, first_id: int
) -> Iterable[Batch]:
    """Cut records into batches of ``size``, numbered from ``first_id``."""
    for start in range(0, records.height, size):
        part = records.slice(start, size)
        rows = part[ROW]
        yield Batch(
            first_id + start // size, part, originals.filter(pl.col(ROW).is_in(rows.implode()))
        )
