"""Draft a mapping from a file's headers and a sample of its rows (``init-mapping``).

Columns are matched to writable fields and sub-fields by name and label (rapidfuzz,
plus the words CRM exports commonly use), and by what the sample holds (e-mails,
phone numbers, web addresses, dates). The draft is commented YAML that ``validate``
accepts as it is; columns left unmatched are listed at the end.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rapidfuzz import fuzz

from pipeline.mapping import FORMATS
from pipeline.normalize import EMAIL_FAST, to_datetime
from pipeline.read import SourceReader
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema

SAMPLE_ROWS = 200
THRESHOLD = 80

# Words CRM exports use for a target path, beyond its name and label.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "emails.primaryEmail": ("email", "e-mail", "mail", "email address", "work email"),
    "emails.additionalEmails": ("other emails", "secondary email", "additional emails"),
    "phones": ("phone", "telephone", "tel", "mobile", "phone number", "cell"),
    "name.firstName": ("first name", "firstname", "given name", "prenom", "forename"),
    "name.lastName": ("last name", "lastname", "surname", "family name", "nom"),
    "name": ("full name", "name", "contact name", "company name", "account name", "deal name"),
    "jobTitle": ("title", "job title", "position", "role"),
    "city": ("city", "town", "locality"),
    "linkedinLink.primaryLinkUrl": ("linkedin", "linkedin url", "linkedin profile"),
    "xLink.primaryLinkUrl": ("twitter", "x", "twitter url"),
    "domainName.primaryLinkUrl": ("domain", "website", "company domain", "url", "web site"),
    "employees": ("employees", "headcount", "number of employees", "company size"),
    "annualRecurringRevenue": ("arr", "annual revenue", "revenue"),
    "idealCustomerProfile": ("icp", "ideal customer"),
    "amount": ("amount", "deal value", "value", "deal amount"),
    "closeDate": ("close date", "closing date", "expected close"),
    "stage": ("stage", "deal stage", "pipeline stage", "status"),
    "company": (
        "company",
        "company domain",
        "company website",
        "company url",
        "account",
        "organization",
        "organisation",
    ),
    "pointOfContact": ("contact", "contact email", "point of contact"),
    "address.addressCity": ("city",),
    "address.addressCountry": ("country",),
    "address.addressPostcode": ("zip", "postcode", "postal code"),
    "address.addressStreet1": ("street", "address", "address line 1"),
}


@dataclass(frozen=True)
class Candidate:
    """A target a column could map to."""

    path: str
    field: Field
    names: tuple[str, ...]


def _words(name: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.sub(r"[_\-.]+", " ", spaced).strip().lower()


def candidates(obj: ObjectSchema) -> list[Candidate]:
    """Every writable field and sub-field worth proposing, with the names it goes by."""
    out = []
    for f in obj.fields.values():
        if not f.writable or f.is_system or f.type in ("ACTOR", "RICH_TEXT_V2"):
            continue
        paths = [f.name] if not f.subfields or f.type in ("PHONES", "CURRENCY", "FULL_NAME") else []
        if f.type in ("FULL_NAME", "EMAILS", "LINKS", "ADDRESS"):
            keep = {
                "FULL_NAME": ("firstName", "lastName"),
                "EMAILS": ("primaryEmail", "additionalEmails"),
                "LINKS": ("primaryLinkUrl",),
                "ADDRESS": (
                    "addressStreet1",
                    "addressCity",
                    "addressPostcode",
                    "addressState",
                    "addressCountry",
                ),
            }[f.type]
            paths += [f"{f.name}.{s}" for s in keep]
        for path in paths:
            sub = path.split(".", 1)[1] if "." in path else ""
            names = {_words(path), _words(f.label), _words(f"{f.label} {sub}")}
            names.update(SYNONYMS.get(path, ()))
            out.append(Candidate(path, f, tuple(sorted(n for n in names if n))))
    return out


def _sample_kind(values: list[str]) -> str | None:
    """What most sample values look like: email, phone, url, date, or nothing clear."""
    if not values:
        return None
    series = pl.Series(values, dtype=pl.String)

    def share(mask: pl.Series) -> float:
        return float(mask.fill_null(False).mean() or 0)  # type: ignore[arg-type]

    if share(series.str.contains(EMAIL_FAST)) >= 0.8:
        return "email"
    if share(series.str.contains(r"^\+?[\d\s().-]{7,20}$") & series.str.contains(r"\d{3}")) >= 0.8:
        return "phone"
    if share(series.str.contains(r"^(https?://)?[\w-]+(\.[\w-]+)+(/\S*)?$")) >= 0.8:
        return "url"
    parsed, _ = to_datetime(series, None)
    if share(parsed.is_not_null()) >= 0.8:
        return "date"
    return None


KIND_FITS = {
    "email": ("EMAILS",),
    "phone": ("PHONES",),
    "url": ("LINKS",),
    "date": ("DATE", "DATE_TIME"),
}


def _score(column: str, cand: Candidate, kind: str | None, schema: WorkspaceSchema) -> float:
    header = _words(column)
    best = max(fuzz.token_sort_ratio(header, name) for name in cand.names)
    if header in cand.names:
        best = max(best, 100)
    ftype = cand.field.type
    if cand.field.relation is not None and kind in ("email", "url"):
        target = schema.object(cand.field.relation.target_object)
        wanted = "EMAILS" if kind == "email" else "LINKS"
        if target and any(f.type == wanted and f.is_unique for f in target.fields.values()):
            best += 5
    elif kind is not None and ftype in KIND_FITS.get(kind, ()):
        best += 10
    elif kind is not None and ftype in ("EMAILS", "PHONES", "LINKS", "DATE", "DATE_TIME"):
        best -= 20
    return float(best)


def draft_mapping(
    source: Path, obj: ObjectSchema, schema: WorkspaceSchema, output: Path | None = None
) -> str:
    """Commented mapping YAML for ``source`` into ``obj``."""
    reader = SourceReader(source, chunk_size=SAMPLE_ROWS)
    try:
        columns = reader.info.columns
        sample = next(reader.chunks(), pl.DataFrame())
        fmt, delimiter = reader.format, reader.info.delimiter
    finally:
        reader.close()
    kinds = {}
    for column in columns:
        values = (
            sample[column].drop_nulls().str.strip_chars()
            if column in sample.columns
            else pl.Series([], dtype=pl.String)
        )
        kinds[column] = _sample_kind([v for v in values.to_list() if v])
    cands = candidates(obj)
    scored = sorted(
        (
            (_score(c, cand, kinds[c], schema), i, c, cand)
            for i, c in enumerate(columns)
            for cand in cands
        ),
        key=lambda t: (-t[0], t[1]),
    )
    chosen: dict[str, tuple[Candidate, float]] = {}
    used: set[str] = set()
    for score, _, column, cand in scored:
        if score < THRESHOLD or column in chosen:
            continue
        head = cand.path.split(".")[0]
        if cand.path in used or head in used or any(u.split(".")[0] == cand.path for u in used):
            continue
        chosen[column] = (cand, score)
        used.add(cand.path)
    base = output.parent if output else Path.cwd()
    rel = os.path.relpath(source.resolve(), base.resolve())
    lines = [
        f"# Draft mapping of {source.name} into {obj.name_singular} ({obj.label_plural}),",
        "# written by `twenty-pipeline init-mapping`. Check every line, then run",
        "# `twenty-pipeline validate` on it before importing.",
        "version: 1",
        f"object: {obj.name_singular}",
        "source:",
        f"  path: {_yaml_str(rel)}",
        f"  format: {fmt}" if fmt in FORMATS else "",
    ]
    if delimiter and delimiter != ",":
        lines.append(f"  delimiter: {_yaml_str(delimiter)}")
    lines = [line for line in lines if line]
    mapped = [cand.path for cand, _ in chosen.values()]
    key = _key_for(obj, mapped)
    if key:
        lines.append(f"key: [{key}]")
    else:
        # Nothing unique is mapped: propose the field that names a record, so that the
        # draft validates; record ids are then derived from it (design.md "Keys").
        plain = [p for p in mapped if _is_plain(obj, p)]
        fallback = "name" if "name" in mapped else (plain[0] if plain else None)
        unique = [p for p in obj.unique_paths if p != "id"]
        if fallback:
            lines.append(
                f"key: [{fallback}]  # not unique in Twenty: record ids are derived "
                "from it; pick the columns that identify a record"
            )
        else:
            lines.append("# key: declare the columns that identify a record, e.g. key: [name]")
        if unique:
            lines.append(f"# unique fields of {obj.name_singular}: {', '.join(unique)}")
    lines.append("on_duplicate_key: last")
    lines.append("fields:")
    for column in columns:
        if column not in chosen:
            continue
        cand, score = chosen[column]
        lines.append(
            f"  # {cand.field.label} ({_describe(cand.field)}), from '{column}' (match {score:.0f})"
        )
        lines.append(f"  {cand.path}: {_spec(column, cand, kinds[column], schema, sample)}")
    unmatched = [c for c in columns if c not in chosen]
    if unmatched:
        lines.append("# Columns not mapped (add them above, or leave them out):")
        lines.extend(f"#   {c}" for c in unmatched)
    return "\n".join(lines) + "\n"


def _is_plain(obj: ObjectSchema, path: str) -> bool:
    found = obj.field(path.split(".")[0])
    return found is not None and found.relation is None


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _describe(f: Field) -> str:
    if f.relation is not None:
        return f"relation to {f.relation.target_object}"
    if f.options:
        return f"{f.type}: {', '.join(o.value for o in f.options[:8])}"
    return f.type


def _key_for(obj: ObjectSchema, paths: list[str]) -> str | None:
    for unique in obj.unique_paths:
        if unique in paths or unique.split(".")[0] in paths:
            return unique
    return None


def _spec(
    column: str, cand: Candidate, kind: str | None, schema: WorkspaceSchema, sample: pl.DataFrame
) -> str:
    f = cand.field
    col = _yaml_str(column)
    if f.relation is not None:
        target = schema.object(f.relation.target_object)
        lookup = "id"
        if target is not None:
            wanted = {"email": "EMAILS", "url": "LINKS"}.get(kind or "")
            for path in target.unique_paths:
                head = target.fields.get(path.split(".")[0])
                if head is not None and (wanted is None or head.type == wanted):
                    lookup = path
                    if wanted:
                        break
        return f"{{column: {col}, lookup: {lookup}, on_missing: reject}}"
    if f.type == "PHONES":
        return f"{{column: {col}, default_country: US}}  # set your country"
    if f.type == "CURRENCY":
        return f"{{column: {col}, currency: USD}}  # set the currency"
    if f.type in ("DATE", "DATE_TIME") and column in sample.columns:
        values = sample[column].drop_nulls()
        _, errors = to_datetime(values, None)
        if errors.drop_nulls().str.contains("ambiguous").any():
            return f'{{column: {col}, date_format: "%d/%m/%Y"}}  # or %m/%d/%Y'
    if f.options and column in sample.columns:
        labels = sample[column].drop_nulls().str.strip_chars().unique().sort().to_list()[:20]
        unknown = [v for v in labels if v and f.option(v) is None]
        if unknown:
            pairs = ", ".join(f"{_yaml_str(v)}: {f.options[0].value}" for v in unknown[:10])
            return f"{{column: {col}, values: {{{pairs}}}}}  # fix each target value"
    if f.type == "MULTI_SELECT" or f.type == "ARRAY":
        return f'{{column: {col}, split: ","}}'
    return col
