"""Notes and tasks attached to records from the same row: ``targets.<object>`` fields.

A mapping of ``note`` (or ``task``, or any object with a ``<name>Target`` join object)
may map ``targets.person: {column: email, lookup: emails.primaryEmail}``: each row
becomes one note, and one ``noteTarget`` per mapped target links it to the person
(company, opportunity, custom object) found by lookup. The join object's field names
are read from the metadata (``targetPerson`` in current Twenty, ``person`` in older
releases: whichever relation of the join object points at ``person``).

The targets are written after the note batch is confirmed and before the batch is
recorded as done, so a run killed in between sends both again on resume. Their ids
are derived from (note, target), so sending them again changes nothing. A note that
was there before has the targets it no longer should have soft-deleted: a row that
moved from one person to another leaves no link to the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.twenty import TwentyClient

TARGETS_PREFIX = "targets."
NAMESPACE = uuid.UUID("6f1c3a8e-2d4b-5e7f-9a0b-1c2d3e4f5a6b")
CONTENT_FIELDS = {"note": ("bodyV2", "body"), "task": ("bodyV2", "body", "title")}
"""What a note or task is made of: a row with all of them empty has nothing to attach.

A task titled "Call Ada" with no body is a task; a note titled "Follow-up" with no
body is an empty shell (CRM exports hold many: calls and e-mails logged without text).
"""


def content_paths(obj: ObjectSchema, targets: Sequence[str]) -> tuple[str, ...]:
    """The mapped ``targets`` that are ``obj``'s content, when ``obj`` is a note or task.

    A row whose content paths are all empty is skipped, not loaded nor rejected.
    """
    heads = CONTENT_FIELDS.get(obj.name_singular, ())
    return tuple(t for t in targets if t.split(".")[0] in heads)


def join_object(schema: WorkspaceSchema, obj: ObjectSchema) -> ObjectSchema | None:
    """The join object that attaches ``obj`` (a note) to records (``noteTarget``)."""
    joined = schema.object(f"{obj.name_singular}Target")
    if joined is None or owner_field(joined, obj) is None:
        return None
    return joined


def owner_field(joined: ObjectSchema, obj: ObjectSchema) -> Field | None:
    """The join object's relation to the note (``note`` / ``noteId``)."""
    return _relation_to(joined, obj.name_singular)


def target_field(
    schema: WorkspaceSchema, obj: ObjectSchema, path: str
) -> tuple[Field, None] | None:
    """The join object's relation that ``targets.<object>`` writes (``targetPerson``)."""
    joined = join_object(schema, obj)
    if joined is None or not path.startswith(TARGETS_PREFIX):
        return None
    found = _relation_to(joined, path[len(TARGETS_PREFIX) :], exclude=obj.name_singular)
    return (found, None) if found is not None else None


def target_choices(schema: WorkspaceSchema, obj: ObjectSchema) -> list[str]:
    """Every ``targets.<object>`` path ``obj`` accepts."""
    joined = join_object(schema, obj)
    if joined is None:
        return []
    return sorted(
        TARGETS_PREFIX + f.relation.target_object
        for f in joined.fields.values()
        if f.relation is not None
        and f.relation.type == "MANY_TO_ONE"
        and f.relation.target_object != obj.name_singular
    )


def _relation_to(joined: ObjectSchema, target: str, exclude: str | None = None) -> Field | None:
    if target == exclude:
        return None
    for f in joined.fields.values():
        rel = f.relation
        if rel is not None and rel.type == "MANY_TO_ONE" and rel.target_object == target:
            return f
    return None


def join_column(f: Field) -> str:
    """The column a relation field is written through (``targetPersonId``)."""
    assert f.relation is not None
    return f.relation.join_column or f"{f.name}Id"


@dataclass
class TargetWriter:
    """Writes the join records of confirmed notes, and takes back stale ones."""

    client: TwentyClient
    obj: ObjectSchema
    joined: ObjectSchema
    batch_size: int = 60

    @classmethod
    def for_object(
        cls, client: TwentyClient, schema: WorkspaceSchema, obj: ObjectSchema
    ) -> TargetWriter | None:
        """A writer when ``obj`` has a join object, else None."""
        joined = join_object(schema, obj)
        return cls(client, obj, joined) if joined is not None else None

    @property
    def owner_column(self) -> str:
        owner = owner_field(self.joined, self.obj)
        assert owner is not None
        return join_column(owner)

    async def write(self, links: Sequence[tuple[str, dict[str, str], bool]]) -> tuple[int, int]:
        """``links``: (note id, join column -> target id, whether the note existed before).

        Returns the targets written and the stale ones taken back.
        """
        wanted = [
            {"id": link_id(note, column, target), self.owner_column: note, column: target}
            for note, targets, _ in links
            for column, target in sorted(targets.items())
        ]
        for start in range(0, len(wanted), self.batch_size):
            part = wanted[start : start + self.batch_size]
            await self.client.upsert_many(self.joined.names, part)
        earlier = [note for note, _, existed in links if existed]
        unlinked = await self._unlink_stale(earlier, {str(w["id"]) for w in wanted})
        return len(wanted), unlinked

    async def _unlink_stale(self, notes: list[str], wanted: set[str]) -> int:
        """Soft-delete the join records of ``notes`` that no row asks for any more."""
        stale: list[str] = []
        for start in range(0, len(notes), 200):
            quoted = ",".join(f'"{n}"' for n in notes[start : start + 200])
            flt = f"{self.owner_column}[in]:[{quoted}]"
            async for page in self.client.iter_pages(self.joined.names, filter=flt):
                stale.extend(
                    str(r["id"])
                    for r in page.records
                    if self._ours(r) and str(r["id"]).lower() not in wanted
                )
        unlinked = 0
        for start in range(0, len(stale), self.batch_size):
            ids = stale[start : start + self.batch_size]
            unlinked += len(await self.client.soft_delete_many(self.joined.names, ids))
        return unlinked

    def _ours(self, record: dict[str, Any]) -> bool:
        """Whether this run's tool wrote the join record (its id is derived from it).

        A link someone made by hand in Twenty is never taken back.
        """
        note = record.get(self.owner_column)
        columns = [
            join_column(joined_field)
            for joined_field in self.joined.fields.values()
            if joined_field.relation is not None and joined_field.relation.type == "MANY_TO_ONE"
        ]
        return any(
            record.get(c) and str(record.get("id")).lower() == link_id(str(note), c, str(record[c]))
            for c in columns
            if c != self.owner_column
        )


def link_id(note: str, column: str, target: str) -> str:
    """The join record's id: the same note and target always give the same id."""
    return str(uuid.uuid5(NAMESPACE, f"{note}|{column}|{target}".lower()))


def split_targets(payload: dict[str, Any]) -> dict[str, str]:
    """Take the ``targets.*`` values out of a payload: join column -> target id."""
    found = {k: payload.pop(k) for k in [k for k in payload if k.startswith(TARGETS_PREFIX)]}
    return {k[len(TARGETS_PREFIX) :]: str(v) for k, v in found.items() if v}
