"""Pipedrive's exports (organizations, people, deals, notes), as "Export data" writes them.

Headers are "<Item> - <Field>" ("Organization - Name", "Person - Email - Work",
"Deal - Stage"); related items are written by name ("Person - Organization": Acme), so
they are linked through tables the job is written with: each name found once in the
export's organizations (people, deals) file becomes that item's Pipedrive id. Stages
are the names of a pipeline's stages; owners are users' names.
"""

from __future__ import annotations

from pipeline.presets.model import FileKind, Preset, Rule

ID = "pipedriveId"
LABEL = {"create": {"type": "TEXT", "unique": True, "label": "Pipedrive ID"}}
WHY = "Pipedrive's id, kept so that re-runs and later syncs match"
COMMON = {"on_invalid": "drop_value"}
ORGS = ("companies", ("Organization - Name", "Name"), ("Organization - ID", "ID"))
PEOPLE = ("people", ("Person - Name", "Name"), ("Person - ID", "ID"))
DEALS = ("opportunities", ("Deal - Title", "Title"), ("Deal - ID", "ID"))
BY_NAME = {"lookup": ID, "on_missing": "null"}
# the stages of the pipeline Pipedrive gives a new account -> Twenty's
STAGES = {
    "Qualified": "SCREENING",
    "Contact Made": "SCREENING",
    "Demo Scheduled": "MEETING",
    "Proposal Made": "PROPOSAL",
    "Negotiations Started": "PROPOSAL",
}

ORGANIZATIONS = FileKind(
    step="companies",
    object="company",
    signature=(("Organization - ID",), ("Organization - Name",)),
    key=Rule(ID, ("Organization - ID",), LABEL, WHY),
    rules=(
        Rule("name", ("Organization - Name",)),
        Rule("domainName.primaryLinkUrl", ("Organization - Website",)),
        Rule("employees", ("Organization - Number of employees",)),
        Rule("address.addressStreet1", ("Organization - Address",)),
        Rule("accountOwner", ("Organization - Owner",), owner=True),
        Rule("createdAt", ("Organization - Organization created", "Organization - Add time")),
    ),
    extra=COMMON,
)

PERSONS = FileKind(
    step="people",
    object="person",
    signature=(("Person - ID",), ("Person - Name",)),
    key=Rule(ID, ("Person - ID",), LABEL, WHY),
    rules=(
        Rule("name.firstName", ("Person - First name",)),
        Rule("name.lastName", ("Person - Last name",)),
        Rule(
            "name",
            ("Person - Name",),
            {},
            "the whole name (no first / last name columns in this export)",
            unless=("Person - First name", "Person - Last name"),
        ),
        Rule(
            "emails.primaryEmail",
            (
                "Person - Email - Work",
                "Person - Email",
                "Person - Email - Home",
                "Person - Email - Other",
            ),
            {"transform": ["strip", "lower"]},
            "the first e-mail column that is filled",
            several=True,
        ),
        Rule(
            "phones",
            (
                "Person - Phone - Work",
                "Person - Phone - Mobile",
                "Person - Phone",
                "Person - Phone - Home",
                "Person - Phone - Other",
            ),
            {"default_country": "US"},
            "the first phone column that is filled; CHECK default_country (numbers "
            "without a +country code are read in it)",
            several=True,
        ),
        Rule("jobTitle", ("Person - Job title",)),
        Rule(
            "company",
            ("Person - Organization",),
            BY_NAME,
            "the person's organization, by its name in the organizations file",
            by_name=ORGS,
        ),
        Rule("createdAt", ("Person - Person created", "Person - Add time")),
    ),
    extra=COMMON,
)

DEALS_FILE = FileKind(
    step="opportunities",
    object="opportunity",
    signature=(("Deal - ID",), ("Deal - Title",)),
    key=Rule(ID, ("Deal - ID",), LABEL, WHY),
    rules=(
        Rule("name", ("Deal - Title",)),
        Rule(
            "amount",
            ("Deal - Value",),
            {"currency_column": "Deal - Currency", "currency": "USD"},
            "in the deal's own currency (Deal - Currency)",
        ),
        Rule("closeDate", ("Deal - Expected close date", "Deal - Won time")),
        Rule(
            "stage",
            ("Deal - Stage",),
            {"values": STAGES},
            "CHECK: the stages of Pipedrive's default pipeline; add your pipelines' own, "
            "and won / lost deals (Deal - Status) keep the stage they were in",
        ),
        Rule(
            "company",
            ("Deal - Organization",),
            BY_NAME,
            "the deal's organization, by its name",
            by_name=ORGS,
        ),
        Rule(
            "pointOfContact",
            ("Deal - Contact person",),
            BY_NAME,
            "the deal's contact, by name",
            by_name=PEOPLE,
        ),
        Rule("owner", ("Deal - Owner",), owner=True),
        Rule("createdAt", ("Deal - Deal created", "Deal - Add time")),
    ),
    extra=COMMON,
)

NOTES = FileKind(
    step="notes",
    object="note",
    signature=(("Note - Content",),),
    key=Rule(ID, ("Note - ID",), LABEL, WHY),
    rules=(
        Rule("bodyV2.markdown", ("Note - Content",)),
        Rule("targets.person", ("Note - Person",), BY_NAME, "the note's person", by_name=PEOPLE),
        Rule(
            "targets.company",
            ("Note - Organization",),
            BY_NAME,
            "the note's organization",
            by_name=ORGS,
        ),
        Rule("targets.opportunity", ("Note - Deal",), BY_NAME, "the note's deal", by_name=DEALS),
        Rule("createdAt", ("Note - Add time", "Note - Created")),
    ),
    extra=COMMON,
)

PRESET = Preset(
    name="pipedrive",
    label="Pipedrive",
    id_field=ID,
    kinds=(ORGANIZATIONS, PERSONS, DEALS_FILE, NOTES),
    job_notes=(
        "Written by `twenty-pipeline init --from pipedrive` from Pipedrive's exports.",
        "Next: `twenty-pipeline schema apply` on this job (creates pipedriveId on each "
        "object), then `plan`, then `run`.",
    ),
)
