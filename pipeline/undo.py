"""Undo: take a run's writes back out of the workspace.

For one run of a mapping (or each step of a job, the last step first), from what its
state store recorded:

- records the run **created** are soft-deleted, and so are the note/task links of the
  notes it created (first) and the records its ``on_missing: create`` lookups created
  (last);
- records it **restored** from soft-deleted are deleted again;
- records it **updated** get back the values they had before, when the run kept
  before-images (``--undoable``); otherwise they are listed as not undoable, untouched.

The **guard**: a record whose ``updatedAt`` is later than the one Twenty answered for the
run's write was changed since (by a person, another tool, a later run); it is left
alone and listed, unless ``force``. The plan is stored before the first call
(:mod:`pipeline.undo_store`), every call is written ahead and confirmed, so a killed
undo resumes where it stopped; an undone run is marked so, its keys are no longer
believed by incremental sync, and undoing it again does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.schema import WorkspaceSchema
from pipeline.state import Run, StateStore
from pipeline.targets import join_object, owner_field
from pipeline.twenty import PAGE_SIZE, TwentyClient
from pipeline.undo_store import Action, ActionStatus, PlannedAction, UndoStore

Wanted = dict[tuple[str, str], tuple[Action, int]]
"""(object, record id) -> (what to do, position)."""
FINAL: tuple[ActionStatus, ...] = ("done", "gone", "changed", "kept")
LINKS, OWN, LOOKUPS = 0, 1, 2  # positions: what is undone first


@dataclass
class UndoReport:
    """What an undo of one run planned and did."""

    name: str
    folder: Path
    run: int
    object: str
    actions: list[PlannedAction] = field(default_factory=list)
    already_undone: bool = False
    unconfirmed_batches: int = 0
    deletions: int = 0
    updated_links: int = 0
    interrupted: bool = False
    """The run never finished: what it did not send is not in the workspace anyway."""
    done_now: int = 0
    """Records undone by this invocation (a resumed or forced undo counts only its own)."""
    clock_guard: bool = False
    """The run predates write times: the guard compares with its end, by this clock."""
    created_at: dict[str, str] = field(default_factory=dict)
    """Record id -> its createdAt as read for the plan."""
    reads: int = 0
    writes: int = 0

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(object, action, status) -> records."""
        out: dict[tuple[str, str, str], int] = {}
        for a in self.actions:
            key = (a.object, a.action, a.status)
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def left_alone(self) -> int:
        """Records the guard kept (changed since the run)."""
        return sum(1 for a in self.actions if a.status == "changed")

    @property
    def not_undoable(self) -> int:
        """Updates without a before-image."""
        return sum(1 for a in self.actions if a.action == "not_undoable")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for undo-report.json."""
        return {
            "name": self.name,
            "run": self.run,
            "object": self.object,
            "already_undone": self.already_undone,
            "actions": [
                {"object": o, "action": a, "status": s, "records": n}
                for (o, a, s), n in sorted(self.counts().items())
            ],
            "unconfirmed_batches": self.unconfirmed_batches,
            "deletions_not_taken_back": self.deletions,
            "links_of_updated_records_not_taken_back": self.updated_links,
            "calls": {"reads": self.reads, "writes": self.writes},
        }


def choose_run(store: StateStore, run_id: int | None) -> Run:
    """The run to undo: ``run_id``, or the store's last run."""
    runs = {r.id: r for r in store.runs()}
    if not runs:
        raise ConfigError(f"{store.path}: no run recorded; nothing to undo")
    if run_id is None:
        return runs[max(runs)]
    if run_id not in runs:
        raise ConfigError(
            f"{store.path}: no run {run_id} (runs: {', '.join(map(str, sorted(runs)))})"
        )
    return runs[run_id]


async def plan_undo(
    store: StateStore,
    client: TwentyClient,
    schema: WorkspaceSchema,
    run: Run,
    *,
    name: str,
    force: bool,
) -> UndoReport:
    """What undoing ``run`` would do, read against the workspace now (reads only)."""
    undo = UndoStore(store, read_only=True)
    report = UndoReport(name, store.path.parent, run.id, run.object)
    report.unconfirmed_batches = _unconfirmed(store, run)
    report.interrupted = run.status == "running"
    report.deletions = _deletions(store, run)
    stored = undo.actions(run.id)
    if stored:  # planned by an earlier attempt: carry on with it
        report.actions = stored
        report.already_undone = run.status in ("undone", "partly_undone")
        if force:
            report.actions = [
                _replace(a, "planned") if a.status == "changed" else a for a in stored
            ]
        return report
    if run.status == "undone":
        report.already_undone = True
        return report
    wanted = _own_actions(store, undo, run)
    for obj, record_id in undo.lookup_created(run.id):
        wanted.setdefault((obj, record_id), ("delete", LOOKUPS))
    links, report.updated_links = await _links(client, schema, run, wanted, report)
    wanted.update(links)
    written = undo.written(run.id)
    report.clock_guard = bool(wanted) and not written
    report.actions = await _guarded(
        client,
        schema,
        run,
        wanted,
        written,
        undo.before_images(run.id),
        force,
        report,
        undo.sent(run.id),
    )
    report.actions = _not_older_than_the_run(report.actions, undo.checked(run.id), run, report)
    return report


def _own_actions(store: StateStore, undo: UndoStore, run: Run) -> Wanted:
    """(object, id) -> (action, position) for the rows the run loaded."""
    images = undo.before_images(run.id)
    priority = {"created": 0, "restored": 1, "updated": 2}
    best: dict[str, str] = {}
    for record_id, outcome in store.db.execute(
        "SELECT record_id, outcome FROM rows WHERE run = ? AND record_id IS NOT NULL "
        "AND outcome IN ('created', 'updated', 'restored')",
        (run.id,),
    ):
        rid = str(record_id).lower()
        if rid not in best or priority[outcome] < priority[best[rid]]:
            best[rid] = str(outcome)
    out: Wanted = {}
    for rid, outcome in best.items():
        action: Action
        if outcome == "created":
            action = "delete"
        elif outcome == "restored":
            action = "delete_again"
        else:
            action = "restore_values" if rid in images else "not_undoable"
        out[(run.object, rid)] = (action, OWN)
    return out


async def _links(
    client: TwentyClient,
    schema: WorkspaceSchema,
    run: Run,
    wanted: Wanted,
    report: UndoReport,
) -> tuple[Wanted, int]:
    """The links (noteTargets) of the notes the run created; how many updated ones have."""
    obj = schema.object(run.object)
    joined = join_object(schema, obj) if obj is not None else None
    if obj is None or joined is None:
        return {}, 0
    owner = owner_field(joined, obj)
    assert owner is not None
    column = (owner.relation.join_column if owner.relation else None) or f"{owner.name}Id"
    created = [rid for (o, rid), (a, _) in wanted.items() if o == run.object and a == "delete"]
    updated = [
        rid
        for (o, rid), (a, _) in wanted.items()
        if o == run.object and a in ("restore_values", "not_undoable")
    ]
    links: Wanted = {}
    for rid in await _read(client, joined.names, column, created, report):
        links[(joined.name_singular, rid)] = ("delete", LINKS)
    with_links = await _read(client, joined.names, column, updated, report)
    return links, len(with_links)


async def _read(
    client: TwentyClient, names: Any, column: str, values: Sequence[str], report: UndoReport
) -> dict[str, dict[str, Any]]:
    """Live records whose ``column`` is one of ``values``, by id (pages of 200)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(values), PAGE_SIZE):
        part = sorted(values[start : start + PAGE_SIZE])
        quoted = ",".join(f'"{v}"' for v in part)
        async for page in client.iter_pages(names, filter=f"{column}[in]:[{quoted}]"):
            report.reads += 1
            for record in page.records:
                found[str(record["id"]).lower()] = record
    return found


async def _guarded(
    client: TwentyClient,
    schema: WorkspaceSchema,
    run: Run,
    wanted: Wanted,
    written: dict[tuple[str, str], str | None],
    images: dict[str, dict[str, Any]],
    force: bool,
    report: UndoReport,
    sent: dict[str, dict[str, Any]] | None = None,
) -> list[PlannedAction]:
    """Each wanted action, with the guard's verdict from the records as they are now."""
    by_object: dict[str, list[str]] = {}
    for obj, rid in wanted:
        by_object.setdefault(obj, []).append(rid)
    now: dict[tuple[str, str], dict[str, Any]] = {}
    for obj, ids in by_object.items():
        target = schema.object(obj)
        if target is None:
            raise ConfigError(f"the workspace has no object {obj!r} any more; nothing to undo")
        for rid, live in (await _read(client, target.names, "id", ids, report)).items():
            now[(obj, rid)] = live
            if isinstance(live.get("createdAt"), str):
                report.created_at[rid] = live["createdAt"]
    actions = []
    for (obj, rid), (action, position) in sorted(wanted.items(), key=lambda i: (i[1][1], i[0])):
        record = now.get((obj, rid))
        status: ActionStatus = "planned"
        detail = None
        if action == "not_undoable":
            status, detail = "kept", "updated without a before-image (run without --undoable)"
        elif record is None:
            status, detail = "gone", "not live in the workspace any more"
        elif position != LINKS:
            changed = _changed_since(record, written.get((obj, rid)), run)
            if changed:
                what = _what_changed(record, (sent or {}).get(rid, {}))
                changed += f": {what}" if what else ""
                status = "planned" if force else "changed"
                detail = changed + ("; --force: undone anyway" if force else "")
        if action == "restore_values" and rid not in images:
            status, detail = "kept", "no before-image"
        actions.append(PlannedAction(obj, rid, action, status, position, detail))
    return actions


CREATED_SLACK = 300.0
"""Seconds of clock difference allowed between this machine and the server."""


def _not_older_than_the_run(
    actions: list[PlannedAction], checked: set[str], run: Run, report: UndoReport
) -> list[PlannedAction]:
    """A record the run counted as created from Twenty's answer alone (createdAt equal to
    updatedAt), but created before the run began, existed already: an update that changed
    nothing looks like a create. It is left alone, never deleted."""
    out = []
    for action in actions:
        created = report.created_at.get(action.record_id)
        when = _when(created)
        if (
            action.action == "delete"
            and action.position == OWN
            and action.status == "planned"
            and action.record_id not in checked
            and when is not None
            and when.timestamp() < run.started - CREATED_SLACK
        ):
            action = PlannedAction(
                action.object,
                action.record_id,
                action.action,
                "kept",
                action.position,
                f"created {created}, before the run began: it existed already (Twenty's "
                "answer made it look new); left alone",
            )
        out.append(action)
    return out


def _changed_since(record: dict[str, Any], written: str | None, run: Run) -> str | None:
    """Why ``record`` counts as changed after the run wrote it (None: it did not)."""
    now = _when(record.get("updatedAt"))
    if now is None:
        return None
    if written is not None:
        ours = _when(written)
        if ours is not None and now > ours:
            return f"changed in the workspace since the run wrote it ({record['updatedAt']})"
        return None
    # a run recorded before write times were kept: its end, by this machine's clock
    ended = run.ended or run.started
    if now.timestamp() > ended + 1:
        return (
            f"updatedAt {record['updatedAt']} is after the run ended (this run predates "
            "write times; compared with this machine's clock)"
        )
    return None


def _what_changed(record: dict[str, Any], sent: dict[str, Any]) -> str:
    """The fields whose value now is not what the run sent (three at most), in words."""
    out = []
    for name, value in sent.items():
        now = record.get(name)
        if isinstance(value, dict) and isinstance(now, dict):
            for sub, part in value.items():
                if now.get(sub) != part:
                    out.append(f"{name}.{sub} {part!r} -> {now.get(sub)!r}")
        elif now != value:
            out.append(f"{name} {value!r} -> {now!r}")
    more = f" and {len(out) - 3} more" if len(out) > 3 else ""
    return "; ".join(out[:3]) + more


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _replace(action: PlannedAction, status: ActionStatus) -> PlannedAction:
    return PlannedAction(
        action.object, action.record_id, action.action, status, action.position, action.detail
    )


def _unconfirmed(store: StateStore, run: Run) -> int:
    found = store.db.execute(
        "SELECT COUNT(*) FROM batches WHERE run = ? AND status = 'sent'", (run.id,)
    ).fetchone()
    return int(found[0])


def _deletions(store: StateStore, run: Run) -> int:
    if not store.has_table("deletions"):
        return 0
    found = store.db.execute(
        "SELECT COUNT(*) FROM deletions WHERE run = ? AND outcome = 'deleted'", (run.id,)
    ).fetchone()
    return int(found[0])


async def carry_out(
    store: StateStore,
    client: TwentyClient,
    schema: WorkspaceSchema,
    report: UndoReport,
    *,
    batch_size: int,
    progress: Any = None,
) -> None:
    """Run the plan: the first time stored whole, then each call written ahead."""
    undo = UndoStore(store)
    undo.save_plan(report.run, report.actions)  # the stored plan, with --force's changes
    todo = [a for a in report.actions if a.status in ("planned", "sent")]
    groups: dict[tuple[int, str, str], list[PlannedAction]] = {}
    for a in todo:
        groups.setdefault((a.position, a.object, a.action), []).append(a)
    images = undo.before_images(report.run)
    for (_, obj, action), items in sorted(groups.items()):
        target = schema.object(obj)
        assert target is not None
        for start in range(0, len(items), batch_size):
            part = [a.record_id for a in items[start : start + batch_size]]
            undo.mark(report.run, obj, part, "sent", None)
            report.writes += 1
            report.done_now += len(part)
            if action == "restore_values":
                answers = await client.upsert_many(
                    target.names,
                    [{"id": rid, **images[rid]} for rid in part],
                    selection="id updatedAt",
                )
                undo.mark(report.run, obj, part, "done", "values put back")
                # the values are those an earlier run wrote: that run's guard compares
                # with this write now, so undoing it next is not stopped by this undo
                undo.hand_back(
                    report.run, obj, [(str(a.get("id")), a.get("updatedAt")) for a in answers]
                )
            else:
                earlier = [{"id": rid, **images[rid]} for rid in part if rid in images]
                if earlier:  # a restored record: its values first, then deleted again
                    await client.upsert_many(target.names, earlier)
                    report.writes += 1
                deleted = await client.soft_delete_many(target.names, part)
                undo.mark(report.run, obj, [i for i in part if i in deleted], "done", None)
                gone = [i for i in part if i not in deleted]
                if gone:
                    undo.mark(report.run, obj, gone, "gone", "already deleted when asked")
            if progress is not None:
                progress(len(part))
    report.actions = undo.actions(report.run)
    if all(a.status in FINAL for a in report.actions):
        undo.finish(
            report.run,
            partly=any(a.status == "changed" for a in report.actions),
            forgotten=[
                a.record_id
                for a in report.actions
                if a.object == report.object
                and a.action in ("delete", "delete_again")
                and a.status in ("done", "gone")
            ],
            stale=[
                a.record_id
                for a in report.actions
                if a.action == "restore_values" and a.status == "done"
            ],
        )
