"""HubSpot's CRM exports (Contacts, Companies, Deals, Notes), as its index pages write them.

Headers are property labels ("Record ID", "First Name", "Associated Company IDs");
date-times are the account's local time without an offset; associations are ``;``-
separated record ids; owners are written as the owner's name or e-mail depending on
the export, so they are linked only when the column holds e-mails.
"""

from __future__ import annotations

from pipeline.presets.model import FileKind, Preset, Rule

ID = "hubspotId"
KEY = Rule(
    ID,
    ("Record ID", "Company ID", "Contact ID", "Deal ID"),
    {"create": {"type": "TEXT", "unique": True, "label": "HubSpot ID"}},
    "HubSpot's record id, kept so that re-runs and later syncs match",
)
CREATED = Rule("createdAt", ("Create Date", "Created Date"), {}, "HubSpot's creation date, kept")
# HubSpot's default sales pipeline (internal values and labels) -> Twenty's stages
STAGES = {
    "appointmentscheduled": "MEETING",
    "Appointment Scheduled": "MEETING",
    "qualifiedtobuy": "SCREENING",
    "Qualified To Buy": "SCREENING",
    "presentationscheduled": "MEETING",
    "Presentation Scheduled": "MEETING",
    "decisionmakerboughtin": "PROPOSAL",
    "Decision Maker Bought-In": "PROPOSAL",
    "contractsent": "PROPOSAL",
    "Contract Sent": "PROPOSAL",
    "closedwon": "CUSTOMER",
    "Closed Won": "CUSTOMER",
    "closedlost": "CLOSED_LOST",
    "Closed Lost": "CLOSED_LOST",
}
FIRST_ID = {"on_missing": "null"}
COMMON = {"on_invalid": "drop_value", "timezone": "UTC"}
TIMEZONE_NOTE = (
    "HubSpot writes date-times in the account's time zone without an offset: set "
    "`timezone:` below to that zone (Settings > Account defaults), UTC is assumed."
)

COMPANIES = FileKind(
    step="companies",
    object="company",
    signature=(("Record ID", "Company ID"), ("Company name", "Name"), ("Company Domain Name",)),
    key=KEY,
    rules=(
        Rule("name", ("Company name", "Name")),
        Rule("domainName.primaryLinkUrl", ("Company Domain Name", "Website URL")),
        Rule("employees", ("Number of Employees",)),
        Rule(
            "annualRecurringRevenue",
            ("Annual Revenue",),
            {"currency": "USD"},
            "set the currency of your HubSpot account",
        ),
        Rule("linkedinLink.primaryLinkUrl", ("LinkedIn Company Page",)),
        Rule("address.addressStreet1", ("Street Address",)),
        Rule("address.addressCity", ("City",)),
        Rule("address.addressState", ("State/Region",)),
        Rule("address.addressPostcode", ("Postal Code", "Zip")),
        Rule("address.addressCountry", ("Country/Region",)),
        Rule("accountOwner", ("Company owner",), owner=True),
        CREATED,
    ),
    extra=COMMON,
    notes=(TIMEZONE_NOTE,),
)

CONTACTS = FileKind(
    step="people",
    object="person",
    signature=(("Record ID", "Contact ID"), ("First Name",), ("Last Name",), ("Email",)),
    key=KEY,
    rules=(
        Rule("name.firstName", ("First Name",)),
        Rule("name.lastName", ("Last Name",)),
        Rule("emails.primaryEmail", ("Email",), {"transform": ["strip", "lower"]}),
        Rule(
            "phones",
            ("Phone Number", "Mobile Phone Number"),
            {"country_column": "Country/Region", "default_country": "US"},
            "the first of the phone columns that is filled; national numbers read in the "
            "row's country (set default_country for rows without one)",
            several=True,
        ),
        Rule("jobTitle", ("Job Title",)),
        Rule("city", ("City",)),
        Rule("linkedinLink.primaryLinkUrl", ("LinkedIn URL", "LinkedIn Bio")),
        Rule(
            "company",
            ("Associated Company IDs (Primary)", "Associated Company IDs", "Associated Company ID"),
            {"lookup": ID, **FIRST_ID},
            "the contact's (primary) company, found by its HubSpot id",
            first_id=True,
        ),
        Rule(
            "lifecycleStage",
            ("Lifecycle Stage",),
            {"create": {"type": "SELECT", "label": "Lifecycle stage"}},
            "a custom select with the stages found in the file",
        ),
        CREATED,
    ),
    extra=COMMON,
    notes=(TIMEZONE_NOTE,),
)

DEALS = FileKind(
    step="opportunities",
    object="opportunity",
    signature=(("Record ID", "Deal ID"), ("Deal Name",), ("Deal Stage",)),
    key=KEY,
    rules=(
        Rule("name", ("Deal Name",)),
        Rule(
            "amount",
            ("Amount", "Amount in company currency"),
            {"currency": "USD"},
            "set the currency of your deals (or currency_column:)",
        ),
        Rule("closeDate", ("Close Date",)),
        Rule(
            "stage",
            ("Deal Stage",),
            {"values": STAGES},
            "HubSpot's default pipeline; a custom pipeline's stages must be added to this "
            "table (values not in it are dropped from the deal, and listed in rejects.csv)",
        ),
        Rule(
            "company",
            ("Associated Company IDs (Primary)", "Associated Company IDs", "Associated Company ID"),
            {"lookup": ID, **FIRST_ID},
            "the deal's company, found by its HubSpot id",
            first_id=True,
        ),
        Rule(
            "pointOfContact",
            ("Associated Contact IDs", "Associated Contact ID"),
            {"lookup": ID, **FIRST_ID},
            "the deal's first contact",
            first_id=True,
        ),
        Rule("owner", ("Deal owner",), owner=True),
        CREATED,
    ),
    extra=COMMON,
    notes=(TIMEZONE_NOTE,),
)

NOTES = FileKind(
    step="notes",
    object="note",
    signature=(("Record ID", "Note ID", "Activity ID"), ("Note body", "Body")),
    key=KEY,
    rules=(
        Rule("bodyV2.markdown", ("Note body", "Body")),
        Rule(
            "targets.person",
            ("Associated Contact IDs", "Associated Contact ID"),
            {"lookup": ID, **FIRST_ID},
            "the note's first contact",
            first_id=True,
        ),
        Rule(
            "targets.company",
            ("Associated Company IDs", "Associated Company ID"),
            {"lookup": ID, **FIRST_ID},
            "the note's first company",
            first_id=True,
        ),
        Rule(
            "targets.opportunity",
            ("Associated Deal IDs", "Associated Deal ID"),
            {"lookup": ID, **FIRST_ID},
            "the note's first deal",
            first_id=True,
        ),
        Rule("createdAt", ("Activity date", "Create Date", "Created Date")),
    ),
    extra=COMMON,
    notes=(TIMEZONE_NOTE,),
)

PRESET = Preset(
    name="hubspot",
    label="HubSpot",
    id_field=ID,
    kinds=(COMPANIES, CONTACTS, DEALS, NOTES),
    job_notes=(
        "Written by `twenty-pipeline init --from hubspot` from HubSpot's CRM exports.",
        "Next: `twenty-pipeline schema apply` on this job (creates hubspotId on each object, "
        "the lifecycle stage select and the stage options the deals need), then `plan`, "
        "then `run`.",
    ),
)
