"""Migrate: copy the records of one workspace into another, ids kept (fetch → map → upsert).

Objects are copied one after the other in the order their relations need (companies
before the people who point at them, notes before their targets), each in pages of 200
read by ``id`` from the source and written in batches to the target as upserts on
``id``: the ids stay the same, so every join column (``companyId``, ``noteId``) still
points at the right record, and writing a page twice changes nothing. Relations to
workspace members are matched by e-mail, since members are people with accounts, not
records to copy; a member the target lacks leaves the relation empty, counted.

**Resume.** After each page written, the cursor after it is stored
(``STATE_DIR/migrate/<object>.json``, written atomically). A killed migration run again
goes on from there; the page in flight when it stopped is written again, which the
upsert on ``id`` makes harmless.

**The data model**: custom objects and fields the target lacks are created first
(:mod:`pipeline.migrate_schema`); what cannot be is listed and nothing is written.
Soft-deleted records and attachments' files are not copied.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.fields import codec_for
from pipeline.schema import SERVER_FILLED, Field, ObjectSchema, WorkspaceSchema
from pipeline.twenty import ObjectNames, TwentyClient
from pipeline.twenty.paginate import PAGE_SIZE, Page

DEFAULT_OBJECTS = (
    "company",
    "person",
    "opportunity",
    "note",
    "task",
    "noteTarget",
    "taskTarget",
)
"""What a migration copies unless told otherwise, with every custom object."""
KEPT_AS_IS = frozenset({"createdAt"})
"""Server-filled fields copied anyway: a record keeps its creation date."""
MEMBER = "workspaceMember"
MEMBERS = ObjectNames(MEMBER, "workspaceMembers")


@dataclass
class ObjectPlan:
    """One object's copy: the fields written and the relations to members."""

    source: ObjectSchema
    fields: list[Field]
    joins: list[str]
    member_joins: list[str]
    left_out: list[str]


@dataclass
class MigrationPlan:
    """Objects in the order they are copied, and what the target lacks."""

    objects: list[ObjectPlan]
    missing: list[str]

    def lines(self) -> list[str]:
        """The plan as a person reads it."""
        out = []
        for step, plan in enumerate(self.objects, start=1):
            fields = len(plan.fields) + len(plan.joins) + len(plan.member_joins)
            line = f"{step}. {plan.source.name_singular}: {fields} fields"
            if plan.member_joins:
                line += f" ({', '.join(plan.member_joins)} matched by member e-mail)"
            out.append(line)
            if plan.left_out:
                out.append(f"   left out (not writable): {', '.join(plan.left_out)}")
        out.append("soft-deleted records and attachments' files are not copied")
        out += [f"missing: {m}" for m in self.missing]
        return out


@dataclass
class ObjectCount:
    """Records read, written and found afterwards, for one object."""

    object: str
    read: int = 0
    written: int = 0
    members_unmatched: int = 0
    source_count: int | None = None
    target_count: int | None = None


@dataclass
class MigrationReport:
    """What a migration did."""

    objects: list[ObjectCount] = field(default_factory=list)
    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each side's calls (``source``, ``target``): reads, writes, retries, 429s."""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {"objects": [vars(o) for o in self.objects], "calls": self.calls}

    @property
    def complete(self) -> bool:
        """Every object holds as many records in the target as in the source."""
        return all(
            o.target_count is not None and o.source_count == o.target_count for o in self.objects
        )


def objects_to_copy(source: WorkspaceSchema, objects: list[str] | None) -> list[str]:
    """The objects named, or the CRM's and every custom one; unknown names refused."""
    unknown = [n for n in objects or [] if source.object(n) is None]
    if unknown:
        raise ConfigError([f"--objects: the source workspace has no object {n!r}" for n in unknown])
    return objects or [
        *DEFAULT_OBJECTS,
        *(o.name_singular for o in source.objects if o.is_custom and o.is_active),
    ]


def plan_migration(
    source: WorkspaceSchema, target: WorkspaceSchema, objects: list[str] | None = None
) -> MigrationPlan:
    """The objects to copy in dependency order, and what the target lacks."""
    names = objects_to_copy(source, objects)
    problems: list[str] = []
    chosen: dict[str, ObjectPlan] = {}
    for name in names:
        obj = source.object(name)
        if obj is None:
            continue
        there = target.object(obj.name_singular)
        if there is None:
            problems.append(f"the target workspace has no object {obj.name_singular!r}")
            continue
        chosen[obj.name_singular] = _object_plan(obj, there, problems)
    return MigrationPlan(_ordered(chosen), problems)


def _object_plan(obj: ObjectSchema, there: ObjectSchema, problems: list[str]) -> ObjectPlan:
    plan = ObjectPlan(obj, [], [], [], [])
    for item in obj.fields.values():
        if not item.is_active or item.name == "id":
            continue
        other = there.field(item.name)
        if item.relation is not None:
            join = item.relation.join_column
            if item.relation.type != "MANY_TO_ONE" or not join:
                continue
            if other is None or other.relation is None:
                problems.append(f"the target's {obj.name_singular} has no relation {item.name!r}")
                continue
            if item.relation.target_object == MEMBER:
                plan.member_joins.append(join)
            else:
                plan.joins.append(join)
            continue
        if not item.writable and item.name not in KEPT_AS_IS:
            if item.name not in SERVER_FILLED:  # those the target fills itself
                plan.left_out.append(item.name)
            continue
        if other is None or other.type != item.type:
            what = "field" if other is None else f"field of type {item.type} (it has {other.type})"
            problems.append(f"the target's {obj.name_singular} has no {what} {item.name!r}")
            continue
        plan.fields.append(item)
    return plan


def _ordered(chosen: dict[str, ObjectPlan]) -> list[ObjectPlan]:
    """Objects after those their relations point at (listed order breaks ties)."""
    needs = {
        name: {
            f.relation.target_object
            for f in plan.source.fields.values()
            if f.relation is not None
            and f.relation.type == "MANY_TO_ONE"
            and f.relation.target_object in chosen
            and f.relation.target_object != name
        }
        for name, plan in chosen.items()
    }
    ordered: list[ObjectPlan] = []
    done: set[str] = set()
    while len(done) < len(chosen):
        ready = [n for n in chosen if n not in done and needs[n] <= done]
        step = ready[0] if ready else next(n for n in chosen if n not in done)  # a cycle
        ordered.append(chosen[step])
        done.add(step)
    return ordered


def payload(record: dict[str, Any], plan: ObjectPlan, members: dict[str, str]) -> dict[str, Any]:
    """The record as the target is to receive it: same id, same values, members mapped."""
    out: dict[str, Any] = {"id": record["id"]}
    for item in plan.fields:
        value = codec_for(item.type).wire(record.get(item.name))
        if value is not None:
            out[item.name] = value
    for join in plan.joins:
        if record.get(join):
            out[join] = record[join]
    for join in plan.member_joins:
        source_member = record.get(join)
        if source_member:
            out[join] = members.get(str(source_member))
    return out


async def member_map(source: TwentyClient, target: TwentyClient) -> dict[str, str]:
    """Source member id -> target member id, matched by e-mail (case-insensitive)."""

    async def by_email(client: TwentyClient) -> dict[str, str]:
        found: dict[str, str] = {}
        pages = client.records.iter_pages(MEMBERS, order_by="id", page_size=PAGE_SIZE)
        async for page in pages:
            for member in page.records:
                email = str(member.get("userEmail") or "").strip().casefold()
                if email:
                    found[email] = str(member["id"])
        return found

    theirs = await by_email(target)
    ours = await by_email(source)
    return {ours[email]: theirs[email] for email in ours if email in theirs}


async def copy_object(
    source: TwentyClient,
    target: TwentyClient,
    plan: ObjectPlan,
    members: dict[str, str],
    state_dir: Path,
    *,
    batch_size: int,
    on_rows: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ObjectCount:
    """Copy one object page by page, storing the cursor after each page written.

    The next page is read while the current one is written (one page ahead: the two
    sides' calls overlap, and memory holds at most two pages); pages are written, and
    their cursors stored, in order.
    """
    obj = plan.source
    count = ObjectCount(obj.name_singular)
    cursor_file = state_dir / "migrate" / f"{obj.name_singular}.json"
    cursor_file.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(cursor_file.read_text()) if cursor_file.exists() else {}
    if not saved.get("done"):
        count.read = count.written = int(saved.get("written", 0))
        # pages of whole batches (180 records for batches of 60), so no write is short
        page_size = (
            batch_size * max(1, PAGE_SIZE // batch_size) if batch_size <= PAGE_SIZE else PAGE_SIZE
        )
        pages = source.records.iter_pages(
            obj.names, order_by="id", page_size=page_size, after=saved.get("cursor")
        )
        async for page in _one_ahead(pages):
            if count.source_count is None:
                count.source_count = page.total_count
                if on_total is not None and page.total_count is not None:
                    on_total(page.total_count)
            records = [payload(r, plan, members) for r in page.records]
            count.members_unmatched += sum(
                1
                for r in page.records
                for j in plan.member_joins
                if r.get(j) and not members.get(str(r[j]))
            )
            # a page's batches go side by side (the target's session bounds them)
            await _all_or_none(
                [
                    target.upsert_many(obj.names, records[start : start + batch_size])
                    for start in range(0, len(records), batch_size)
                ]
            )
            count.read += len(records)
            count.written += len(records)
            _store(cursor_file, {"cursor": page.end_cursor, "written": count.written})
            if on_rows is not None:
                on_rows(len(records))
        _store(cursor_file, {"done": True, "written": count.written})
    else:
        count.written = int(saved.get("written", 0))
    count.source_count = await _total(source, obj)
    count.target_count = await _total(target, obj)
    return count


async def _one_ahead(pages: AsyncIterator[Page]) -> AsyncIterator[Page]:
    """The pages of ``pages``, the next one read while the caller works on this one."""

    async def following() -> Page | None:
        try:
            return await anext(pages)
        except StopAsyncIteration:
            return None

    ahead = asyncio.ensure_future(following())
    try:
        while (page := await ahead) is not None:
            ahead = asyncio.ensure_future(following())
            yield page
    finally:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)


async def _all_or_none(calls: list[Coroutine[Any, Any, Any]]) -> None:
    """Run the calls side by side; if one fails, stop the others before raising."""
    tasks = [asyncio.create_task(call) for call in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _total(client: TwentyClient, obj: ObjectSchema) -> int | None:
    page = await client.find_many(obj.names, limit=1)
    return page.total_count


def _store(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
