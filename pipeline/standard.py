"""Twenty's standard objects as metadata DTOs (twenty-api.md §7, §8).

The sandbox seeds its workspaces with them, and ``validate --offline`` checks a
mapping against them when no workspace is at hand. Ids are UUIDv5 of the object and
field names, so every sandbox has the same standard metadata.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pipeline.schema import WorkspaceSchema, parse_schema

NAMESPACE = uuid.UUID("6f0c3e59-7f83-4f4e-9a55-3c1f5b0e2a10")
EPOCH = "2024-01-01T00:00:00.000Z"


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


def object_dto(
    singular: str,
    plural: str,
    label_s: str,
    label_p: str,
    *,
    is_custom: bool,
    is_system: bool,
    object_id: str | None = None,
) -> dict[str, Any]:
    """An object DTO as the metadata API returns it (without ``fields``)."""
    return {
        "id": object_id or metadata_id(singular),
        "nameSingular": singular,
        "namePlural": plural,
        "labelSingular": label_s,
        "labelPlural": label_p,
        "description": None,
        "icon": None,
        "isCustom": is_custom,
        "isActive": True,
        "isSystem": is_system,
        "labelIdentifierFieldMetadataId": None,
        "imageIdentifierFieldMetadataId": None,
        "createdAt": EPOCH,
        "updatedAt": EPOCH,
    }


def field_dto(object_name: str, f: F, plurals: dict[str, str]) -> dict[str, Any]:
    """A field DTO (twenty-api.md §8.1), relation info included."""
    dto: dict[str, Any] = {
        "id": metadata_id(object_name, f.name),
        "objectMetadataId": metadata_id(object_name),
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
            {
                "id": metadata_id(object_name, f.name, value),
                "value": value,
                "label": label,
                "position": i,
                "color": "gray",
            }
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
        dto["settings"] = {"relationType": f.relation}
        if f.relation == "MANY_TO_ONE":
            dto["settings"].update({"joinColumnName": f"{f.name}Id", "onDelete": "SET_NULL"})
        dto["relation"] = {
            "type": f.relation,
            "sourceObjectMetadata": {
                "id": metadata_id(object_name),
                "nameSingular": object_name,
                "namePlural": plurals[object_name],
            },
            "targetObjectMetadata": {
                "id": metadata_id(f.target),
                "nameSingular": f.target,
                "namePlural": plurals[f.target],
            },
            "sourceFieldMetadata": {"id": metadata_id(object_name, f.name), "name": f.name},
            "targetFieldMetadata": {
                "id": metadata_id(f.target, f.target_field or ""),
                "name": f.target_field,
            },
        }
    return dto


def standard_metadata() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects, fields) DTOs of every standard object."""
    plurals = {name: spec[0] for name, spec in STANDARD_OBJECTS.items()}
    objects, fields = [], []
    for name, (plural, label_s, label_p, is_system, own) in STANDARD_OBJECTS.items():
        objects.append(
            object_dto(name, plural, label_s, label_p, is_custom=False, is_system=is_system)
        )
        for f in (*SYSTEM_FIELDS, *own):
            fields.append(field_dto(name, f, plurals))
    return objects, fields


def standard_schema() -> WorkspaceSchema:
    """The standard objects as a workspace model (no custom objects or fields)."""
    objects, fields = standard_metadata()
    return parse_schema(objects, fields)
