"""Salesforce's weekly Data Export (Account.csv, Contact.csv, Opportunity.csv, Note.csv).

Headers are API names (``Id``, ``AccountId``, ``StageName``); ids are 18 characters
whose first three tell the object (``001`` account, ``003`` contact, ``006``
opportunity); date-times are UTC (``2024-03-07T14:05:00.000Z``); deleted rows are in
the export with ``IsDeleted`` set; owners are user ids, turned into e-mails through
``User.csv`` when it is in the folder.
"""

from __future__ import annotations

from pipeline.presets.model import FileKind, Preset, Rule

ID = "salesforceId"
KEY = Rule(
    ID,
    ("Id",),
    {"create": {"type": "TEXT", "unique": True, "label": "Salesforce ID"}},
    "Salesforce's record id, kept so that re-runs and later syncs match",
)
CREATED = Rule("createdAt", ("CreatedDate",), {}, "Salesforce's creation date, kept")
OWNER = Rule("", ("OwnerId",), owner=True)
NOT_DELETED = {"column": "IsDeleted", "not_in": ["1", "true", "TRUE", "True"]}
COMMON = {"on_invalid": "drop_value", "where": NOT_DELETED}
# Salesforce's default opportunity stages -> Twenty's
STAGES = {
    "Prospecting": "NEW",
    "Qualification": "SCREENING",
    "Needs Analysis": "SCREENING",
    "Value Proposition": "MEETING",
    "Id. Decision Makers": "MEETING",
    "Perception Analysis": "PROPOSAL",
    "Proposal/Price Quote": "PROPOSAL",
    "Negotiation/Review": "PROPOSAL",
    "Closed Won": "CUSTOMER",
    "Closed Lost": "CLOSED_LOST",
}


def _only(prefix: str) -> list[dict[str, list[str]]]:
    """A transform that keeps ids of one object (their 3-character prefix) and blanks others."""
    a, b, c = prefix[0], prefix[1], prefix[2]
    return [{"regex": [f"^([^{a}]|{a}[^{b}]|{a}{b}[^{c}]).*$", ""]}]


ACCOUNTS = FileKind(
    step="companies",
    object="company",
    signature=(("Id",), ("Name",), ("BillingCity", "Website", "AccountNumber", "Industry")),
    file_names=("account",),
    key=KEY,
    rules=(
        Rule("name", ("Name",)),
        Rule("domainName.primaryLinkUrl", ("Website",)),
        Rule("employees", ("NumberOfEmployees",)),
        Rule(
            "annualRecurringRevenue",
            ("AnnualRevenue",),
            {"currency": "USD", "currency_column": "CurrencyIsoCode"},
            "the org's currency (CurrencyIsoCode when the org has several)",
        ),
        Rule("address.addressStreet1", ("BillingStreet",)),
        Rule("address.addressCity", ("BillingCity",)),
        Rule("address.addressState", ("BillingState",)),
        Rule("address.addressPostcode", ("BillingPostalCode",)),
        Rule("address.addressCountry", ("BillingCountry",)),
        Rule("accountOwner", OWNER.columns, owner=True),
        CREATED,
    ),
    extra=COMMON,
)

CONTACTS = FileKind(
    step="people",
    object="person",
    signature=(("Id",), ("AccountId",), ("LastName",), ("Email",)),
    file_names=("contact",),
    key=KEY,
    rules=(
        Rule("name.firstName", ("FirstName",)),
        Rule("name.lastName", ("LastName",)),
        Rule("emails.primaryEmail", ("Email",), {"transform": ["strip", "lower"]}),
        Rule(
            "phones",
            ("MobilePhone", "Phone"),
            {"country_column": "MailingCountry", "default_country": "US"},
            "the first of the phone columns that is filled, read in the mailing country",
            several=True,
        ),
        Rule("jobTitle", ("Title",)),
        Rule("city", ("MailingCity",)),
        Rule(
            "company",
            ("AccountId",),
            {"lookup": ID, "on_missing": "null"},
            "the contact's account, found by its Salesforce id",
        ),
        CREATED,
    ),
    extra=COMMON,
)

OPPORTUNITIES = FileKind(
    step="opportunities",
    object="opportunity",
    signature=(("Id",), ("StageName",), ("Name",)),
    file_names=("opportunity",),
    key=KEY,
    rules=(
        Rule("name", ("Name",)),
        Rule(
            "amount",
            ("Amount",),
            {"currency": "USD", "currency_column": "CurrencyIsoCode"},
            "the org's currency (CurrencyIsoCode when the org has several)",
        ),
        Rule("closeDate", ("CloseDate",)),
        Rule(
            "stage",
            ("StageName",),
            {"values": STAGES},
            "Salesforce's default stages; your org's own must be added to this table "
            "(values not in it are dropped from the deal, and listed in rejects.csv)",
        ),
        Rule(
            "company",
            ("AccountId",),
            {"lookup": ID, "on_missing": "null"},
            "the opportunity's account",
        ),
        Rule("owner", OWNER.columns, owner=True),
        CREATED,
    ),
    extra=COMMON,
)

NOTES = FileKind(
    step="notes",
    object="note",
    signature=(("Id",), ("ParentId",), ("Body",)),
    file_names=("note",),
    key=KEY,
    rules=(
        Rule("title", ("Title",)),
        Rule("bodyV2.markdown", ("Body",)),
        Rule(
            "targets.company",
            ("ParentId",),
            {"transform": _only("001"), "lookup": ID, "on_missing": "null"},
            "notes on an account (ParentId starting 001)",
        ),
        Rule(
            "targets.person",
            ("ParentId",),
            {"transform": _only("003"), "lookup": ID, "on_missing": "null"},
            "notes on a contact (ParentId starting 003)",
        ),
        Rule(
            "targets.opportunity",
            ("ParentId",),
            {"transform": _only("006"), "lookup": ID, "on_missing": "null"},
            "notes on an opportunity (ParentId starting 006)",
        ),
        CREATED,
    ),
    extra=COMMON,
)

USERS = ("user", "Id", "Email")
"""The users file (name, id column, e-mail column) that turns OwnerId into an e-mail."""

PRESET = Preset(
    name="salesforce",
    label="Salesforce",
    id_field=ID,
    kinds=(ACCOUNTS, CONTACTS, OPPORTUNITIES, NOTES),
    job_notes=(
        "Written by `twenty-pipeline init --from salesforce` from a Salesforce Data Export.",
        "Next: `twenty-pipeline schema apply` on this job (creates salesforceId on each "
        "object and the stage options the opportunities need), then `plan`, then `run`.",
    ),
)
