"""Draft a mapping from a file's headers and a sample of its rows (``init-mapping``).

Columns are matched to writable fields and sub-fields by name and label (rapidfuzz,
plus the words CRM exports commonly use), and by what the sample holds (e-mails,
phone numbers, web addresses, dates). The draft is commented YAML that ``validate``
accepts as it is. Every column appears in it: mapped, or in a closing comment that says
why not and what to do. Select labels map only to the option they equal, or are
unambiguously close to; the others are left as commented ``?`` lines for the user, since
a guessed value table would load wrong data. Headers and sample values are written as
escaped YAML strings, in comments too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rapidfuzz import fuzz

from pipeline.fields import codec_for
from pipeline.fields.dates import to_datetime
from pipeline.fields.options import option_table
from pipeline.fields.samples import KIND_FITS, SAMPLED_TYPES, new_field_type, sample_kind
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.sources import SourceReader, formats
from pipeline.yaml_text import comment_text, one_line, yaml_scalar, yaml_str

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
    "linkedinLink.primaryLinkUrl": (
        "linkedin",
        "linkedin url",
        "linkedin profile",
        "linkedin company page",
    ),
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
    "address.addressCountry": ("country", "country/region", "country region"),
    "address.addressPostcode": ("zip", "postcode", "postal code"),
    "address.addressStreet1": ("street", "address", "address line 1"),
    "createdAt": ("create date", "created", "created at", "created date", "date created"),
}
# System fields an import may still set: a migration keeps when a record was created.
KEPT_SYSTEM_FIELDS = ("createdAt",)


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
    """Every writable field and sub-field worth proposing, with the names it goes by.

    Which parts of a field are worth proposing is its codec's ``draft_paths``.
    """
    out = []
    for f in obj.fields.values():
        system = f.is_system and f.name not in KEPT_SYSTEM_FIELDS
        if not f.writable or system:
            continue
        paths = [
            f.name if sub is None else f"{f.name}.{sub}" for sub in codec_for(f.type).draft_paths
        ]
        for path in paths:
            sub = path.split(".", 1)[1] if "." in path else ""
            names = {_words(path), _words(f.label), _words(f"{f.label} {sub}")}
            names.update(SYNONYMS.get(path, ()))
            out.append(Candidate(path, f, tuple(sorted(n for n in names if n))))
    return out


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
    elif kind is not None and ftype in SAMPLED_TYPES:
        best -= 20
    return float(best)


@dataclass(frozen=True)
class Choice:
    """A column's chosen target and its match score."""

    cand: Candidate
    score: float
    why: str | None = None  # when chosen by what the column holds rather than by its name


# Column header words that name another object: such a column describes that object,
# so it maps only to a relation to it (or, in a mapping into that object, to its fields).
OTHER_OBJECTS = {"company": "company", "deal": "opportunity", "contact": "person"}
TAKEN_THRESHOLD = 65  # a column this close to a target mapped from another column is told so


def _tokens(column: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", _words(column)))


def _is_id_column(column: str) -> bool:
    return bool(_tokens(column) & {"id", "ids"})


def _vetoed(column: str, cand: Candidate, obj: ObjectSchema) -> bool:
    """Targets a column must not be drafted into whatever its name's score."""
    tokens = _tokens(column)
    f = cand.field
    if _is_id_column(column) and not (f.type == "TEXT" and f.is_unique):
        # Another system's ids: only a unique text field of this object can hold them.
        return True
    if "owner" in tokens:
        return True  # owners are workspace members; see _why_not
    for word, target in OTHER_OBJECTS.items():
        other = f.relation is None or f.relation.target_object != target
        if word in tokens and obj.name_singular != target and other:
            return True
    return False


def draft_mapping(
    source: Path, obj: ObjectSchema, schema: WorkspaceSchema, output: Path | None = None
) -> str:
    """Commented mapping YAML for ``source`` into ``obj``.

    Every column of the source appears: mapped, or in a comment saying why not. Every
    header and sample value written is a quoted, escaped YAML string, so no header can
    change what the YAML says.
    """
    reader = SourceReader(source, chunk_size=SAMPLE_ROWS)
    try:
        columns = reader.info.columns
        sample = next(reader.chunks(), pl.DataFrame())
        fmt, delimiter = reader.format, reader.info.delimiter
    finally:
        reader.close()
    kinds = {column: sample_kind(_sample_values(sample, column)) for column in columns}
    cands = candidates(obj)
    chosen, used = _choose(columns, cands, kinds, obj, schema)
    base = output.parent if output else Path.cwd()
    rel = os.path.relpath(source.resolve(), base.resolve())
    lines = [
        f"# Draft mapping of {comment_text(source.name)} into {obj.name_singular} "
        f"({comment_text(obj.label_plural)}),",
        "# written by `twenty-pipeline init-mapping`. Check every line, then run",
        "# `twenty-pipeline validate` on it before importing.",
        "version: 1",
        f"object: {obj.name_singular}",
        "source:",
        f"  path: {yaml_str(rel)}",
        f"  format: {fmt}" if fmt in formats() else "",
    ]
    if delimiter and delimiter != ",":
        lines.append(f"  delimiter: {yaml_str(delimiter)}")
    lines = [line for line in lines if line]
    lines += _key_lines(obj, [choice.cand.path for choice in chosen.values()])
    lines.append("on_duplicate_key: last")
    lines.append("fields:")
    for column in columns:
        if column not in chosen:
            continue
        cand, score = chosen[column].cand, chosen[column].score
        how = chosen[column].why or f"match {score:.0f}"
        lines.append(
            f"  # {comment_text(cand.field.label)} ({_describe(cand.field)}), "
            f"from {yaml_str(column)} ({how})"
        )
        lines.extend(_spec(column, cand, kinds[column], schema, sample))
    unmatched = [c for c in columns if c not in chosen]
    if unmatched:
        lines.append("# Columns not mapped, and why (map them above, or leave them out):")
        for column in unmatched:
            why, suggestion = _why_not(column, obj, schema, used, cands, kinds, sample)
            lines.append(f"#   {yaml_str(column)}: {why}")
            if suggestion:
                lines.append(f"#     suggestion: {suggestion}")
    return "\n".join(one_line(line) for line in lines) + "\n"


def _choose(
    columns: list[str],
    cands: list[Candidate],
    kinds: dict[str, str | None],
    obj: ObjectSchema,
    schema: WorkspaceSchema,
) -> tuple[dict[str, Choice], dict[str, str]]:
    """Each column's target, best matches first: (column -> choice, target path -> column)."""
    scored = sorted(
        (
            (_score(c, cand, kinds[c], schema), i, c, cand)
            for i, c in enumerate(columns)
            for cand in cands
        ),
        key=lambda t: (-t[0], t[1]),
    )
    chosen: dict[str, Choice] = {}
    used: dict[str, str] = {}  # target path -> column
    for score, _, column, cand in scored:
        if score < THRESHOLD or column in chosen or _vetoed(column, cand, obj):
            continue
        head = cand.path.split(".")[0]
        if cand.path in used or head in used or any(u.split(".")[0] == cand.path for u in used):
            continue
        chosen[column] = Choice(cand, score)
        used[cand.path] = column
    for column in columns:
        if column in chosen or not _is_id_column(column):
            continue
        found = _id_target(column, obj, schema)
        if found is not None and found[0].path not in used:
            chosen[column] = Choice(found[0], 0, found[1])
            used[found[0].path] = column
    return chosen, used


def _key_lines(obj: ObjectSchema, mapped: list[str]) -> list[str]:
    """The draft's key: a mapped unique field, else the field that names a record."""
    key = _key_for(obj, mapped)
    if key:
        return [f"key: [{key}]"]
    # Nothing unique is mapped: propose the field that names a record, so that the
    # draft validates; record ids are then derived from it (design.md "Keys").
    plain = [p for p in mapped if _is_plain(obj, p)]
    fallback = "name" if "name" in mapped else (plain[0] if plain else None)
    unique = [p for p in obj.unique_paths if p != "id"]
    if fallback:
        lines = [
            f"key: [{fallback}]  # not unique in Twenty: record ids are derived "
            "from it; pick the columns that identify a record"
        ]
    else:
        lines = ["# key: declare the columns that identify a record, e.g. key: [name]"]
    if unique:
        lines.append(f"# unique fields of {obj.name_singular}: {', '.join(unique)}")
    return lines


def _sample_values(sample: pl.DataFrame, column: str) -> list[str]:
    """The column's non-blank sample values, stripped."""
    if column not in sample.columns:
        return []
    values = sample[column].drop_nulls().str.strip_chars()
    return [v for v in values.to_list() if v]


def _id_fields(obj: ObjectSchema | None) -> list[str]:
    """Unique text fields of ``obj``: where another system's ids can be kept."""
    if obj is None:
        return []
    return [
        f.name
        for f in obj.fields.values()
        if f.type == "TEXT" and f.is_unique and f.writable and not f.is_system
    ]


def _named_object(column: str, obj: ObjectSchema) -> str | None:
    """The other object a column's name speaks of ("Associated Company IDs": company)."""
    tokens = _tokens(column)
    others = [t for w, t in OTHER_OBJECTS.items() if w in tokens and t != obj.name_singular]
    return others[0] if others else None


def _id_target(
    column: str, obj: ObjectSchema, schema: WorkspaceSchema
) -> tuple[Candidate, str] | None:
    """Where an id column goes: the one unique text field of ``obj`` for its own ids, or
    the relation to the object it names when that object has one to look them up by."""
    target = _named_object(column, obj)
    if target is None:
        own = _id_fields(obj)
        if len(own) != 1:
            return None
        f = obj.fields[own[0]]
        return Candidate(f.name, f, ()), f"the unique text field of {obj.name_singular}"
    relation = _relation_to(obj, target)
    ids = _id_fields(schema.object(target))
    if relation is None or len(ids) != 1:
        return None
    why = f"ids of {target}, looked up by its unique text field {ids[0]}; one id a row"
    return Candidate(relation.name, relation, ()), why


def _relation_to(obj: ObjectSchema, target: str) -> Field | None:
    """A relation field of ``obj`` an import can set that points at ``target``."""
    for f in obj.fields.values():
        if f.relation is not None and f.relation.target_object == target and f.writable:
            return f
    return None


def _why_not(
    column: str,
    obj: ObjectSchema,
    schema: WorkspaceSchema,
    used: dict[str, str],
    cands: list[Candidate],
    kinds: dict[str, str | None],
    sample: pl.DataFrame,
) -> tuple[str, str | None]:
    """Why ``column`` is left out of the draft, and a line the user may add instead."""
    name = obj.name_singular
    tokens = _tokens(column)
    if _is_id_column(column):
        return _why_not_ids(column, obj, schema, used)
    named = _why_not_named(tokens, obj, schema)
    if named is not None:
        return named
    kind = new_field_type(_sample_values(sample, column), kinds[column])
    if "pipeline" in tokens and obj.field("stage") is not None:
        return (
            f"Twenty keeps one list of stages for {name}: the stages of every pipeline go "
            "through stage's values: table; create a field of type SELECT to keep the pipeline",
            None,
        )
    close = _why_not_close(column, schema, used, cands, kinds, sample, kind)
    if close is not None:
        return close
    hint = ""
    if "country" in tokens and obj.field("phones") is not None:
        hint = "; the phones mapping reads it as each row's country (country_column)"
    return f"no field of {name} matches it; create a field of type {kind} to keep it{hint}", None


def _why_not_ids(
    column: str, obj: ObjectSchema, schema: WorkspaceSchema, used: dict[str, str]
) -> tuple[str, str | None]:
    """Why an id column is left out: where another system's ids could be kept."""
    name = obj.name_singular
    col = yaml_str(column)
    target = _named_object(column, obj)
    if target is None:
        own = _id_fields(obj)
        if len(own) > 1:
            return (
                f"{name} has several unique text fields ({', '.join(own)}): "
                "map it to the one that keeps these ids",
                None,
            )
        if own and own[0] in used:
            return f"{own[0]} is mapped from {yaml_str(used[own[0]])}", None
        return (
            f"no field of {name} holds it; create a unique TEXT field such as hubspotId "
            "to keep it (and make it the key, so that re-runs match the same records)",
            None,
        )
    relation = _relation_to(obj, target)
    if relation is not None and relation.name in used:
        return (
            f"{relation.name} is mapped from {yaml_str(used[relation.name])}; "
            "swap them if this column is the better one",
            None,
        )
    if relation is None:
        return (
            f"{name} has no relation to {target} that an import can set; link them "
            f"from the {target} side, if it has one",
            None,
        )
    ids = _id_fields(schema.object(target))
    if len(ids) > 1:
        return (
            f"{target} has several unique text fields ({', '.join(ids)}): "
            f"map {relation.name} with lookup: on the one that keeps these ids",
            f"{relation.name}: {{column: {col}, lookup: {ids[0]}, on_missing: reject}}",
        )
    return (
        f"a relation to {target} by its HubSpot id needs a unique field on {target} "
        f"holding that id (e.g. hubspotId, filled from the Record ID of the {target} export); "
        f"{relation.name} takes one id a row",
        f"{relation.name}: {{column: {col}, lookup: hubspotId, on_missing: reject}}",
    )


def _why_not_named(
    tokens: set[str], obj: ObjectSchema, schema: WorkspaceSchema
) -> tuple[str, str | None] | None:
    """Why a column naming an owner or another object is left out, if it names one."""
    name = obj.name_singular
    if "owner" in tokens:
        relation = _relation_to(obj, "workspaceMember")
        if relation is None:
            return f"{name} has no owner field; create a TEXT field to keep it", None
        return (
            f"owners are workspace members, which a lookup finds by id only, and the export "
            f"holds their names; set {relation.name} in Twenty, or map a column of member ids "
            f"with {relation.name}: {{column: ..., lookup: id}}",
            None,
        )
    for word, target in OTHER_OBJECTS.items():
        if word in tokens and name != target:
            relation = _relation_to(obj, target)
            if relation is not None and "name" in tokens:
                return (
                    f"{target} names are not unique in Twenty, so {relation.name} cannot be "
                    f"looked up by them; look it up by a unique field of {target} "
                    f"({', '.join(p for p in _unique_of(schema, target) if p != 'id')}) "
                    "or by its HubSpot id",
                    None,
                )
            return (
                f"it describes the {target}, not the {name}: map it in a mapping into {target}",
                None,
            )
    return None


def _why_not_close(
    column: str,
    schema: WorkspaceSchema,
    used: dict[str, str],
    cands: list[Candidate],
    kinds: dict[str, str | None],
    sample: pl.DataFrame,
    kind: str,
) -> tuple[str, str | None] | None:
    """The targets its name comes close to, those its sample fits first, if any."""
    col = yaml_str(column)
    ranked = sorted(
        ((_score(column, cand, kinds[column], schema), cand) for cand in cands),
        key=lambda t: -t[0],
    )
    fitting = [(score, cand) for score, cand in ranked if score >= TAKEN_THRESHOLD]
    fits = KIND_FITS.get(kinds[column] or "", ())
    fitting.sort(key=lambda t: t[1].field.type not in fits)
    if fitting:
        score, best = fitting[0]
        owner = used.get(best.path) or next(
            (c for p, c in used.items() if p.split(".")[0] == best.path.split(".")[0]), None
        )
        if owner is not None and best.field.type == "PHONES":
            return (
                f"{best.path} is mapped from {yaml_str(owner)}; a second number goes "
                "into the record's additional phones",
                f"phones.additionalPhones: {{column: {col}}}",
            )
        if owner is not None:
            return (
                f"{best.path} is mapped from {yaml_str(owner)}; swap them if this column "
                "is the better one",
                None,
            )
        spec = _spec(column, best, kinds[column], schema, sample)
        return (
            f"its name is close to {best.path} but not enough to be sure (match {score:.0f} "
            f"of the {THRESHOLD} needed): map it there if that is what it holds, or create "
            f"a field of type {kind} to keep it",
            spec[0].strip() if len(spec) == 1 else None,
        )
    return None


def _unique_of(schema: WorkspaceSchema, name: str) -> list[str]:
    other = schema.object(name)
    return other.unique_paths if other is not None else []


def _is_plain(obj: ObjectSchema, path: str) -> bool:
    found = obj.field(path.split(".")[0])
    return found is not None and found.relation is None


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


def _country_column(sample: pl.DataFrame) -> str | None:
    """A column of the file that names each row's country (HubSpot's Country/Region)."""
    for name in sample.columns:
        if "country" in _words(name) and "code" not in _words(name):
            return name
    return None


def _spec(
    column: str, cand: Candidate, kind: str | None, schema: WorkspaceSchema, sample: pl.DataFrame
) -> list[str]:
    """The draft lines that map ``column`` to ``cand``."""
    f = cand.field
    col = yaml_str(column)
    first = f"  {cand.path}: "
    if f.relation is not None:
        target = schema.object(f.relation.target_object)
        lookup = "id"
        ids = _id_fields(target)
        if _is_id_column(column) and len(ids) == 1:
            lookup = ids[0]
        elif target is not None:
            wanted = {"email": "EMAILS", "url": "LINKS"}.get(kind or "")
            for path in target.unique_paths:
                head = target.fields.get(path.split(".")[0])
                if head is not None and (wanted is None or head.type == wanted):
                    lookup = path
                    if wanted:
                        break
        return [first + f"{{column: {col}, lookup: {lookup}, on_missing: reject}}"]
    if f.type == "PHONES":
        country = _country_column(sample)
        if country is not None:
            return [
                first + f"{{column: {col}, country_column: {yaml_str(country)}, "
                "default_country: US}  # each row's country first; set your default"
            ]
        return [first + f"{{column: {col}, default_country: US}}  # set your country"]
    if f.type == "CURRENCY":
        return [first + f"{{column: {col}, currency: USD}}  # set the currency"]
    if codec_for(f.type).sample_kind == "date" and column in sample.columns:
        values = sample[column].drop_nulls()
        _, errors = to_datetime(values, None)
        if errors.drop_nulls().str.contains("ambiguous").any():
            return [first + f'{{column: {col}, date_format: "%d/%m/%Y"}}  # or %m/%d/%Y']
    split = codec_for(f.type).holds_list
    if f.options:
        seen = _sample_values(sample, column)
        if split:
            seen = [item.strip() for v in seen for item in v.split(",")]
        labels = sorted({v for v in seen if v})[:40]
        table = option_table(labels, f)
        if table:
            lines = [first.rstrip(), f"    column: {col}"]
            if split:
                lines.append('    split: ","')
            known = [(label, value, why) for label, value, why in table if value is not None]
            todo = len(known) < len(table)
            lines.append(
                ("    values:" if known else "    # values:")
                + f"  # labels of the first {SAMPLE_ROWS} rows"
                + ("; replace each ? with an option and uncomment it" if todo else "")
            )
            for label, value, why in table:
                if value is not None:
                    lines.append(f"      {yaml_str(label)}: {yaml_scalar(value)}  # {why}")
            for label, value, why in table:
                if value is None:
                    lines.append(f"      # {yaml_str(label)}: ?  # {why}")
            return lines
    if split:
        return [first + f'{{column: {col}, split: ","}}']
    return [first + col]
