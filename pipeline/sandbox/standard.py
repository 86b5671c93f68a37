"""What a fresh Twenty workspace holds: the standard objects as metadata DTOs (§7, §8).

The sandbox seeds its workspaces with them; ``pipeline.standard`` reads the same
answer through the client's parser for ``validate --offline``. Ids are UUIDv5 of the
object and field names, so every sandbox has the same standard metadata.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pipeline.sandbox.dtos import (
    EPOCH,
    FieldRef,
    ObjectRef,
    object_dto,
    option_dto,
    relation_block,
    relation_settings,
)

NAMESPACE = uuid.UUID("6f0c3e59-7f83-4f4e-9a55-3c1f5b0e2a10")


def metadata_id(*parts: str) -> str:
    """Deterministic id of a standard object or field."""
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class F:
    """A compact field definition."""

    name: str
    type: str
    label: str = ""
    unique: bool = False
    nullable: bool = True
    system: bool = False
    default: Any = None
    options: tuple[tuple[str, str], ...] = ()
    relation: str | None = None  # MANY_TO_ONE / ONE_TO_MANY
    target: str | None = None  # target object nameSingular
    target_field: str | None = None


def _m2o(name: str, target: str, back: str, label: str = "") -> F:
    return F(name, "RELATION", label, relation="MANY_TO_ONE", target=target, target_field=back)


def _o2m(name: str, target: str, back: str, label: str = "") -> F:
    return F(name, "RELATION", label, relation="ONE_TO_MANY", target=target, target_field=back)


SYSTEM_FIELDS = (
    F("id", "UUID", "Id", nullable=False, system=True, default="uuid"),
    F("createdAt", "DATE_TIME", "Creation date", nullable=False, system=True, default="now"),
    F("updatedAt", "DATE_TIME", "Last update", nullable=False, system=True, default="now"),
    F("deletedAt", "DATE_TIME", "Deleted at", system=True),
    F("position", "POSITION", "Position", system=True),
    F("createdBy", "ACTOR", "Created by", system=True),
    F("updatedBy", "ACTOR", "Updated by", system=True),
    F("searchVector", "TS_VECTOR", "Search vector", system=True),
)

STAGES = (
    ("NEW", "New"),
    ("SCREENING", "Screening"),
    ("MEETING", "Meeting"),
    ("PROPOSAL", "Proposal"),
    ("CUSTOMER", "Customer"),
)
TASK_STATUSES = (("TODO", "To do"), ("IN_PROGRESS", "In progress"), ("DONE", "Done"))

# nameSingular -> (namePlural, labelSingular, labelPlural, isSystem, fields)
STANDARD_OBJECTS: dict[str, tuple[str, str, str, bool, tuple[F, ...]]] = {
    "company": (
        "companies",
        "Company",
        "Companies",
        False,
        (
            F("name", "TEXT", "Name"),
            F("domainName", "LINKS", "Domain", unique=True),
            F("address", "ADDRESS", "Address"),
            F("employees", "NUMBER", "Employees"),
            F("linkedinLink", "LINKS", "Linkedin"),
            F("xLink", "LINKS", "X"),
            F("annualRecurringRevenue", "CURRENCY", "ARR"),
            F("idealCustomerProfile", "BOOLEAN", "ICP", nullable=False, default=False),
            _m2o("accountOwner", "workspaceMember", "accountOwnerForCompanies", "Account owner"),
            _o2m("people", "person", "company", "People"),
            _o2m("opportunities", "opportunity", "company", "Opportunities"),
            _o2m("noteTargets", "noteTarget", "targetCompany", "Notes"),
            _o2m("taskTargets", "taskTarget", "targetCompany", "Tasks"),
        ),
    ),
    "person": (
        "people",
        "Person",
        "People",
        False,
        (
            F("name", "FULL_NAME", "Name"),
            F("emails", "EMAILS", "Emails", unique=True),
            F("linkedinLink", "LINKS", "Linkedin"),
            F("xLink", "LINKS", "X"),
            F("jobTitle", "TEXT", "Job Title"),
            F("phones", "PHONES", "Phones"),
            F("city", "TEXT", "City"),
            F("avatarUrl", "TEXT", "Avatar", system=True),
            _m2o("company", "company", "people", "Company"),
            _o2m(
                "pointOfContactForOpportunities",
                "opportunity",
                "pointOfContact",
                "Linked Opportunities",
            ),
            _o2m("noteTargets", "noteTarget", "targetPerson", "Notes"),
            _o2m("taskTargets", "taskTarget", "targetPerson", "Tasks"),
        ),
    ),
    "opportunity": (
        "opportunities",
        "Opportunity",
        "Opportunities",
        False,
        (
            F("name", "TEXT", "Name"),
            F("amount", "CURRENCY", "Amount"),
            F("closeDate", "DATE_TIME", "Close date"),
            F("stage", "SELECT", "Stage", nullable=False, default="'NEW'", options=STAGES),
            _m2o("pointOfContact", "person", "pointOfContactForOpportunities", "Point of Contact"),
            _m2o("company", "company", "opportunities", "Company"),
            _m2o("owner", "workspaceMember", "ownedOpportunities", "Owner"),
            _o2m("noteTargets", "noteTarget", "targetOpportunity", "Notes"),
            _o2m("taskTargets", "taskTarget", "targetOpportunity", "Tasks"),
        ),
    ),
    "note": (
        "notes",
        "Note",
        "Notes",
        False,
        (
            F("title", "TEXT", "Title"),
            F("bodyV2", "RICH_TEXT_V2", "Body"),
            _o2m("noteTargets", "noteTarget", "note", "Relations"),
        ),
    ),
    "task": (
        "tasks",
        "Task",
        "Tasks",
        False,
        (
            F("title", "TEXT", "Title"),
            F("bodyV2", "RICH_TEXT_V2", "Body"),
            F("dueAt", "DATE_TIME", "Due Date"),
            F("status", "SELECT", "Status", default="'TODO'", options=TASK_STATUSES),
            _m2o("assignee", "workspaceMember", "assignedTasks", "Assignee"),
            _o2m("taskTargets", "taskTarget", "task", "Relations"),
        ),
    ),
    "noteTarget": (
        "noteTargets",
        "Note Target",
        "Note Targets",
        True,
        (
            _m2o("note", "note", "noteTargets", "Note"),
            _m2o("targetPerson", "person", "noteTargets", "Person"),
            _m2o("targetCompany", "company", "noteTargets", "Company"),
            _m2o("targetOpportunity", "opportunity", "noteTargets", "Opportunity"),
        ),
    ),
    "taskTarget": (
        "taskTargets",
        "Task Target",
        "Task Targets",
        True,
        (
            _m2o("task", "task", "taskTargets", "Task"),
            _m2o("targetPerson", "person", "taskTargets", "Person"),
            _m2o("targetCompany", "company", "taskTargets", "Company"),
            _m2o("targetOpportunity", "opportunity", "taskTargets", "Opportunity"),
        ),
    ),
    "workspaceMember": (
        "workspaceMembers",
        "Workspace Member",
        "Workspace Members",
        True,
        (
            F("name", "FULL_NAME", "Name"),
            F("userEmail", "TEXT", "User Email"),
            F("userId", "UUID", "User Id"),
            _o2m("accountOwnerForCompanies", "company", "accountOwner", "Account Owner For"),
            _o2m("ownedOpportunities", "opportunity", "owner", "Opportunities"),
            _o2m("assignedTasks", "task", "assignee", "Assigned tasks"),
        ),
    ),
}


def standard_field_dto(
    object_name: str, f: F, plurals: dict[str, str], *, object_id: str | None = None
) -> dict[str, Any]:
    """The DTO of field ``f`` of ``object_name`` (twenty-api.md §8.1), relation included.

    ``object_id`` places it on a custom object (then the field gets a fresh id); by
    default the ids are those of the standard object.
    """
    dto: dict[str, Any] = {
        "id": metadata_id(object_name, f.name) if object_id is None else str(uuid.uuid4()),
        "objectMetadataId": object_id or metadata_id(object_name),
        "type": f.type,
        "name": f.name,
        "label": f.label or f.name,
        "description": None,
        "icon": None,
        "isCustom": False,
        "isActive": True,
        "isSystem": f.system,
        "isNullable": f.nullable,
        "isUnique": f.unique or f.name == "id",
        "defaultValue": f.default,
        "options": [
            option_dto(metadata_id(object_name, f.name, value), value, label, i, "gray")
            for i, (value, label) in enumerate(f.options)
        ]
        or None,
        "settings": None,
        "isLabelSyncedWithName": False,
        "createdAt": EPOCH,
        "updatedAt": EPOCH,
        "relation": None,
    }
    if f.relation and f.target:
        dto["settings"] = relation_settings(f.relation, f.name)
        dto["relation"] = relation_block(
            f.relation,
            ObjectRef(metadata_id(object_name), object_name, plurals[object_name]),
            ObjectRef(metadata_id(f.target), f.target, plurals[f.target]),
            FieldRef(metadata_id(object_name, f.name), f.name),
            FieldRef(metadata_id(f.target, f.target_field or ""), f.target_field),
        )
    return dto


def standard_metadata() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects, fields) DTOs of every standard object, the seed of a fresh workspace."""
    plurals = {name: spec[0] for name, spec in STANDARD_OBJECTS.items()}
    objects, fields = [], []
    for name, (plural, label_s, label_p, is_system, own) in STANDARD_OBJECTS.items():
        objects.append(
            object_dto(
                name,
                plural,
                label_s,
                label_p,
                is_custom=False,
                is_system=is_system,
                object_id=metadata_id(name),
            )
        )
        for f in (*SYSTEM_FIELDS, *own):
            fields.append(standard_field_dto(name, f, plurals))
    return objects, fields


def fresh_workspace_objects() -> list[dict[str, Any]]:
    """What ``GET /rest/metadata/objects`` answers for a fresh workspace (newest profile).

    Objects ordered by id (the metadata pagination key), each with all its fields.
    """
    objects, fields = standard_metadata()
    by_object: dict[str, list[dict[str, Any]]] = {}
    for dto in fields:
        by_object.setdefault(dto["objectMetadataId"], []).append(dto)
    return [{**o, "fields": by_object.get(o["id"], [])} for o in sorted(objects, key=_by_id)]


def _by_id(dto: dict[str, Any]) -> str:
    return str(dto["id"])
