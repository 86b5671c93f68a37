"""Possible duplicates: records a create would look like, by Twenty's own criteria.

Twenty marks two records as duplicates by per-object criteria (person: first and
last name, LinkedIn URL, primary e-mail; company: name, domain; twenty-api.md §2.6)
and serves them on ``POST /rest/{plural}/duplicates`` with one connection per record
given. A row whose key matches nothing would be created: if the workspace holds a
record that looks like it (the same person under another e-mail), the plan says so,
with the existing record's id and which criterion matched, and the import's
``--on-possible-duplicate`` decides what happens to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pipeline.existing import Record, get_path
from pipeline.twenty import TwentyClient
from pipeline.twenty.names import ObjectNames

OnPossibleDuplicate = Literal["skip", "create", "reject"]
BATCH = 60
"""Records per duplicates call: Twenty runs one query per record given."""

CRITERIA: dict[str, tuple[tuple[str, ...], ...]] = {
    "person": (
        ("name.firstName", "name.lastName"),
        ("linkedinLink.primaryLinkUrl",),
        ("emails.primaryEmail",),
    ),
    "company": (("name",), ("domainName.primaryLinkUrl",)),
}
LABELS = {
    "name.firstName": "first name",
    "name.lastName": "last name",
    "linkedinLink.primaryLinkUrl": "LinkedIn",
    "emails.primaryEmail": "e-mail",
    "name": "name",
    "domainName.primaryLinkUrl": "domain",
    "company": "company",
}


@dataclass(frozen=True)
class PossibleDuplicate:
    """An existing record that a row to be created looks like."""

    row: int
    key: str
    record_id: str
    why: str


def has_criteria(object_name: str) -> bool:
    """Whether Twenty declares duplicate criteria for the object."""
    return object_name in CRITERIA


def probe(object_name: str, payload: Record) -> Record | None:
    """The part of a payload the duplicate criteria read; None when no group is complete."""
    out: Record = {}
    complete = False
    for group in CRITERIA.get(object_name, ()):
        values = [get_path(payload, p) for p in group]
        if all(v not in (None, "") for v in values):
            complete = True
            for path, value in zip(group, values, strict=True):
                head, _, sub = path.partition(".")
                if sub:
                    out.setdefault(head, {})[sub] = value
                else:
                    out[head] = value
    return out if complete else None


def why(object_name: str, probe_: Record, found: Record, company_id: Any = None) -> str:
    """Which criteria ``found`` shares with the probe, in words (the name says whose)."""
    same = []
    for group in CRITERIA.get(object_name, ()):
        mine = [get_path(probe_, p) for p in group]
        theirs = [get_path(found, p) for p in group]
        if all(v not in (None, "") for v in mine) and mine == theirs:
            label = "name" if group[0].startswith("name.") else LABELS[group[0]]
            same.append(f"same {label} ({' '.join(str(v) for v in mine)})")
    if company_id and found.get("companyId") == company_id:
        same.append("same company")
    return ", ".join(same) or "Twenty lists it as a duplicate"


async def find_possible_duplicates(
    client: TwentyClient, names: ObjectNames, probes: list[Record]
) -> tuple[list[list[Record]], int]:
    """The records Twenty lists as duplicates of each probe, and the calls it took."""
    out: list[list[Record]] = []
    calls = 0
    path = f"/rest/{names.plural}/duplicates"
    for start in range(0, len(probes), BATCH):
        part = probes[start : start + BATCH]
        body = await client.request("read", "POST", path, json_body={"data": part})
        calls += 1
        answers = body.get("data") if isinstance(body, dict) else None
        if not isinstance(answers, list) or len(answers) != len(part):
            answers = [{}] * len(part)
        for answer in answers:
            found: list[Record] = []
            if isinstance(answer, dict):
                for value in answer.values():
                    if isinstance(value, list):
                        found = [r for r in value if isinstance(r, dict) and r.get("id")]
            out.append(found)
    return out, calls
