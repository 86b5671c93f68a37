"""Normalize: (chunk, plan) -> (records, rejects, skipped). Pure: no I/O, no API calls.

Every rule is a polars expression over the whole chunk where polars can express it;
the rules of each field type live in its codec (:mod:`pipeline.fields`). Two rules need
a library per value (phone numbers with ``phonenumbers``, unusual e-mail addresses with
``email-validator``); they run once per *distinct* value of the chunk and are joined
back, so a file of repeated values costs almost nothing.

Records come out as a frame: ``_row``, ``_key`` and one column per top-level target
field (structs for composite fields). A relation with ``lookup:`` yields the lookup
value in ``__lookup__<joinColumn>``; the loader resolves it to an id. Rejected rows come
out with ``_row``, ``_stage``, ``_column``, ``_value`` and ``_reason``, every reason of
the row joined by "; ". Skipped rows (a note whose body is empty: nothing to create)
come out with ``_row`` and ``_reason``; they are neither loaded nor rejected.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from pipeline.fields import ParseContext, Parsed, codec_for
from pipeline.fields.base import clean, err, no_error, struct_of
from pipeline.fields.composites import currency_codes, with_currency
from pipeline.fields.phones import PHONE_PARTS
from pipeline.mapping import FieldSpec, Mapping
from pipeline.mapping_check import check_mapping, key_is_unique, key_paths
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.sources import ROW
from pipeline.targets import TARGETS_PREFIX, content_paths, join_column, target_field

KEY = "_key"
LOOKUP_PREFIX = "__lookup__"
ID_NAMESPACE = uuid.UUID("1b6d7c35-5a0e-4f4e-8d2a-2f7c0c9a6e11")
KEY_SEPARATOR = "\x1f"
WORKERS = 2


@dataclass(frozen=True)
class Plan:
    """A mapping compiled against the workspace: what to produce, and the key."""

    mapping: Mapping
    object: ObjectSchema
    schema: WorkspaceSchema
    key: tuple[str, ...]
    key_unique: bool
    derive_id: bool
    nulls: tuple[str, ...]
    columns: tuple[str, ...] = field(default=())
    keys_only: bool = False
    """Set on the duplicate pre-pass: keys are computed, values are not judged."""
    content: tuple[str, ...] = ()
    """A note's or task's content paths: a row with all of them empty is skipped."""

    def key_only(self) -> Plan:
        """The same plan reduced to the fields the key is made of (duplicate pre-pass).

        The content fields stay: a skipped row has no key to collide with.
        """
        heads = {p.split(".")[0] for p in self.key}
        specs = tuple(
            s
            for s in self.mapping.fields
            if s.target.split(".")[0] in heads or s.target in self.content
        )
        mapping = replace(self.mapping, fields=specs)
        return replace(self, mapping=mapping, derive_id=False, keys_only=True)

    def resolve(self, path: str) -> tuple[Field, str | None] | None:
        """The field a target path writes: the object's, or a ``targets.*`` join field."""
        if path.startswith(TARGETS_PREFIX):
            return target_field(self.schema, self.object, path)
        return self.object.resolve_path(path)

    @property
    def lookups(self) -> list[tuple[FieldSpec, Field]]:
        """Relation specs resolved by lookup, with their field."""
        out = []
        for spec in self.mapping.fields:
            resolved = self.resolve(spec.target)
            if resolved and resolved[0].relation is not None and spec.lookup not in (None, "id"):
                out.append((spec, resolved[0]))
        return out


def make_plan(mapping: Mapping, schema: WorkspaceSchema, columns: list[str] | None = None) -> Plan:
    """Check ``mapping`` against the workspace and source columns; compile it."""
    obj = check_mapping(mapping, schema, columns)
    paths = key_paths(mapping, obj)
    unique = key_is_unique(paths, obj)
    mapped_id = any(s.target == "id" for s in mapping.fields)
    nulls = tuple(dict.fromkeys(("", *mapping.source.null_values)))
    return Plan(
        mapping,
        obj,
        schema,
        paths,
        unique,
        derive_id=not unique and not mapped_id,
        nulls=nulls,
        columns=tuple(columns or ()),
        content=content_paths(obj, [s.target for s in mapping.fields]),
    )


@dataclass
class Normalized:
    """The outcome of one chunk."""

    records: pl.DataFrame
    rejects: pl.DataFrame
    skipped: pl.DataFrame
    """Rows with nothing to load (a note without a body), with ``_reason``."""
    dropped: pl.DataFrame | None = None
    """``on_invalid: drop_value``: the values left out of kept records, one line each:
    the row's text, ``_column``, ``_value``, ``_reason``."""


@dataclass(frozen=True)
class _Judged:
    """Why rows failed: the column label, its text and a reason per row (or null)."""

    label: str
    raw: pl.Series
    error: pl.Series


# --------------------------------------------------------------------------- raw text


def raw_expr(spec: FieldSpec, nulls: tuple[str, ...]) -> pl.Expr:
    """The spec's text as an expression: column / constant / template, null tokens,
    transforms, default. Empty after stripping means null."""
    tokens = list(dict.fromkeys(("", *nulls)))
    if spec.column is not None and spec.fallbacks:
        # the first of the columns that is not empty (blank or a null token)
        cells = [
            pl.col(c).cast(pl.String).str.strip_chars() for c in (spec.column, *spec.fallbacks)
        ]
        expr = pl.coalesce([pl.when(c.is_in(tokens)).then(None).otherwise(c) for c in cells])
    elif spec.column is not None:
        expr = pl.col(spec.column)
    elif spec.template is not None:
        parts = re.split(r"\{([^{}]+)\}", spec.template)
        pieces: list[pl.Expr] = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append(pl.col(part).fill_null(""))
            elif part:
                pieces.append(pl.lit(part))
        expr = pl.concat_str(pieces).str.replace_all(r"\s+", " ")
    else:
        value = spec.value
        text = (
            None
            if value is None
            else (str(value).lower() if isinstance(value, bool) else str(value))
        )
        expr = pl.lit(text, dtype=pl.String)
    expr = expr.cast(pl.String).str.strip_chars()
    expr = pl.when(expr.is_in(tokens)).then(None).otherwise(expr)
    if spec.transforms:
        for t in spec.transforms:
            if t.name == "strip":
                expr = expr.str.strip_chars()
            elif t.name == "lower":
                expr = expr.str.to_lowercase()
            elif t.name == "upper":
                expr = expr.str.to_uppercase()
            elif t.name == "title":
                expr = expr.str.to_titlecase()
            elif t.name == "replace":
                expr = expr.str.replace_all(t.pattern or "", t.replacement, literal=True)
            elif t.name == "regex":
                expr = expr.str.replace_all(t.pattern or "", t.replacement.replace("\\", "$"))
        # a transform may leave nothing but blanks
        expr = pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)
    if spec.default is not None:
        expr = expr.fill_null(pl.lit(str(spec.default)))
    return expr


def raw_texts(
    frame: pl.DataFrame, specs: Iterable[FieldSpec], nulls: tuple[str, ...]
) -> list[pl.Series]:
    """Every spec's text, in one select (polars runs the columns side by side)."""
    specs = list(specs)
    n = frame.height
    if not specs:
        return []
    out = frame.select([raw_expr(s, nulls).alias(f"r{i}") for i, s in enumerate(specs)])
    series = []
    for i in range(len(specs)):
        column = out[f"r{i}"].alias("raw")
        if column.len() != n:  # a lone constant
            column = pl.Series("raw", [column[0] if column.len() else None] * n, dtype=pl.String)
        series.append(column)
    return series


# --------------------------------------------------------------------------- typing


def evaluate(raw: pl.Series, sub: str | None, ctx: ParseContext, plan: Plan) -> Parsed:
    """One spec's text (see :func:`raw_expr`) typed: its value and its per-row error.

    Columns that repeat their values (cities, companies, stages, dates) are typed once
    per distinct value and mapped back; a phone spec with a per-row country is not.
    """
    n = raw.len()
    if ctx.countries is not None:
        return codec_for(ctx.field.type).parse(raw, sub, ctx)
    # A sample spread over the chunk (not its head: exports are often sorted) says
    # whether hashing the whole column can pay.
    sample = raw.gather_every(max(n // 500, 1)) if n >= 1000 else None
    if sample is not None and sample.n_unique() * 2 < sample.len():
        distinct = raw.unique(maintain_order=True)
        if distinct.len() * 4 < n:
            out = _evaluate(distinct, sub, ctx, plan)
            index = pl.DataFrame({"raw": raw}).join(
                pl.DataFrame({"raw": distinct}).with_row_index("i"),
                on="raw",
                how="left",
                nulls_equal=True,
                maintain_order="left",
            )["i"]
            return Parsed(out.value.gather(index), out.error.gather(index))
    return _evaluate(raw, sub, ctx, plan)


def _evaluate(raw: pl.Series, sub: str | None, ctx: ParseContext, plan: Plan) -> Parsed:
    """A relation looked up by a unique field of its target is typed as that field.

    A relation's ``values:`` table turns the cell's text into the value looked up first
    (an owner's id into its e-mail, an organization's name into its id).
    """
    f, spec = ctx.field, ctx.spec
    if f.relation is not None and spec.values:
        raw = raw.replace(dict(spec.values))
    if f.relation is not None and spec.lookup not in (None, "id"):
        target = plan.schema.object(f.relation.target_object)
        resolved = target.resolve_path(spec.lookup) if target else None
        if resolved is None:
            return Parsed(raw, no_error(raw.len()))
        lookup_field, lookup_sub = resolved
        lookup_ctx = replace(ctx, field=lookup_field, countries=None)
        return codec_for(lookup_field.type).parse(raw, lookup_sub, lookup_ctx)
    return codec_for(f.type).parse(raw, sub, ctx)


def _type_specs(chunk: pl.DataFrame, plan: Plan) -> list[tuple[FieldSpec, pl.Series, Parsed]]:
    """Every spec's text and typed value, the specs side by side on two threads."""
    raws = raw_texts(chunk, plan.mapping.fields, plan.nulls)

    def run(item: tuple[FieldSpec, pl.Series]) -> tuple[FieldSpec, pl.Series, Parsed]:
        spec, raw = item
        resolved = plan.resolve(spec.target)
        assert resolved is not None  # checked by make_plan
        country = (
            raw_texts(
                chunk, [FieldSpec(spec.target, spec.line, column=spec.country_column)], plan.nulls
            )[0]
            if spec.country_column
            else None
        )
        ctx = ParseContext(resolved[0], spec, keys_only=plan.keys_only, countries=country)
        return spec, raw, evaluate(raw, resolved[1], ctx, plan)

    # Specs are independent and polars releases the GIL while it computes, so two
    # threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(run, zip(plan.mapping.fields, raws, strict=True)))


def _required(spec: FieldSpec, out: Parsed) -> Parsed:
    """A required spec with neither a value nor another reason fails as empty."""
    if not spec.required:
        return out
    missing = out.value.is_null() & out.error.is_null()
    error = pl.select(
        pl.when(missing).then(pl.lit("required, but empty")).otherwise(out.error)
    ).to_series()
    return Parsed(out.value, error)


# --------------------------------------------------------------------------- records


@dataclass
class _Columns:
    """The record columns being built: top-level fields, composites' parts, lookups."""

    top: dict[str, pl.Series] = field(default_factory=dict)
    subs: dict[str, dict[str, pl.Series]] = field(default_factory=dict)
    lookups: dict[str, pl.Series] = field(default_factory=dict)
    implied: dict[str, pl.Series] = field(default_factory=dict)
    """Whole phone numbers, whose country and calling code fill the unmapped parts."""

    def place(self, f: Field, sub: str | None, spec: FieldSpec, value: pl.Series) -> None:
        """Put one spec's value where its target path says."""
        if f.relation is not None:
            join = f.relation.join_column or f"{f.name}Id"
            if spec.target.startswith(TARGETS_PREFIX):
                join = TARGETS_PREFIX + join  # the note's link, not a field of the note
            if spec.lookup in (None, "id"):
                self.top[join] = value
            else:
                self.lookups[join] = value
        elif sub is None:
            self.top[f.name] = value
        elif f.type == "PHONES" and sub == "primaryPhoneNumber":
            self.implied[f.name] = value  # the number with its country and calling code
        else:
            self.subs.setdefault(f.name, {})[sub] = value

    def composites(self, n: int) -> None:
        """Join each composite's parts into one struct column."""
        for name, whole in self.implied.items():
            parts = self.subs.setdefault(name, {})
            for part in ("primaryPhoneNumber", *PHONE_PARTS):  # a mapped sub-field wins
                parts.setdefault(part, whole.struct.field(part))
        for name, parts in self.subs.items():
            if name in self.top:  # the whole field and more sub-fields: phones + additionalPhones
                for part in self.top[name].struct.fields:
                    parts.setdefault(part, self.top[name].struct.field(part))
            self.top[name] = struct_of(parts, n)


def _apply_currency(
    chunk: pl.DataFrame, plan: Plan, top: dict[str, pl.Series], errors: list[_Judged]
) -> None:
    """Whole CURRENCY specs: pair the micros with the constant or column currency code."""
    n = chunk.height
    for spec in plan.mapping.fields:
        resolved = plan.resolve(spec.target)
        if resolved is None or resolved[0].type != "CURRENCY" or resolved[1] is not None:
            continue
        f = resolved[0]
        micros = top[f.name]
        if spec.currency_column:
            code, ok = currency_codes(chunk[spec.currency_column])
            bad = micros.is_not_null() & ~ok
            errors.append(
                _Judged(
                    spec.currency_column,
                    chunk[spec.currency_column],
                    err(bad, "the currency is not a 3-letter code like EUR"),
                )
            )
        else:
            code = pl.Series([spec.currency] * n, dtype=pl.String)
        top[f.name] = with_currency(micros, code)


def _key_exprs(records: pl.DataFrame, plan: Plan) -> list[pl.Expr]:
    """One text expression per key path: every key path must have a value."""
    exprs = []
    for path in plan.key:
        head, _, sub = path.partition(".")
        column = head
        if path.startswith(TARGETS_PREFIX):
            linked = plan.resolve(path)
            assert linked is not None  # checked by make_plan
            column = TARGETS_PREFIX + join_column(linked[0])
            head, sub = column, ""
            if column not in records.columns:
                column = LOOKUP_PREFIX + column
        elif head not in records.columns:
            key_field = plan.object.field(head)
            if key_field is not None and key_field.relation is not None:
                column = key_field.relation.join_column or head
                if column not in records.columns:
                    # a relation looked up by a unique field of its target: the key is
                    # the looked-up value, normalized like the target's field
                    column = LOOKUP_PREFIX + column
        expr = pl.col(column)
        if sub and isinstance(records.schema.get(column), pl.Struct):
            expr = expr.struct.field(sub)
        exprs.append(expr.cast(pl.String))
    return exprs


def _missing_key(records: pl.DataFrame, plan: Plan, errors: list[_Judged]) -> _Judged:
    """Rows with no key and no other reason: they could not be matched on re-runs."""
    n = records.height
    missing = records[KEY].is_null()
    if errors:
        earlier = pl.select(pl.any_horizontal([j.error.is_not_null() for j in errors]))
        missing = missing & ~earlier.to_series()
    key_columns = [c for s in plan.key_only().mapping.fields for c in s.columns]
    message = (
        f"empty, and it is the key ({', '.join(plan.key)}): without it the record "
        "could not be matched on re-runs"
    )
    return _Judged(
        ", ".join(dict.fromkeys(key_columns)) or "key",
        pl.Series([None] * n, dtype=pl.String),
        err(missing, message),
    )


# --------------------------------------------------------------------------- rejects


def _reasons(errors: list[_Judged], n: int) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Per row: every reason joined by "; ", the first failing column and its text."""
    if not errors:
        none = pl.Series([None] * n, dtype=pl.String)
        return none, none, none
    table = pl.DataFrame({f"e{i}": j.error for i, j in enumerate(errors)})
    failed = [pl.col(f"e{i}").is_not_null() for i in range(len(errors))]
    reason = table.select(
        pl.concat_str(
            [
                pl.when(failed[i]).then(pl.format("{}: {}", pl.lit(j.label), pl.col(f"e{i}")))
                for i, j in enumerate(errors)
            ],
            separator="; ",
            ignore_nulls=True,
        ).alias("r")
    )["r"]
    reason = pl.select(pl.when(reason == "").then(None).otherwise(reason)).to_series()
    first_col = table.select(
        pl.coalesce([pl.when(failed[i]).then(pl.lit(j.label)) for i, j in enumerate(errors)]).alias(
            "c"
        )
    )["c"]
    first_val = (
        pl.DataFrame({f"r{i}": j.raw for i, j in enumerate(errors)})
        .with_columns(table)
        .select(
            pl.coalesce(
                [pl.when(failed[i]).then(pl.col(f"r{i}")) for i in range(len(errors))]
            ).alias("v")
        )["v"]
    )
    return reason, first_col, first_val


def _derive_ids(records: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """Records keyed by non-unique fields get a deterministic id from their key."""
    if not plan.derive_id or not records.height:
        return records
    keys = records[KEY]
    unique = keys.unique().to_list()
    name = plan.object.name_singular
    ids = [str(uuid.uuid5(ID_NAMESPACE, f"{name}{KEY_SEPARATOR}{k}")) for k in unique]
    return records.with_columns(
        keys.replace_strict(unique, ids, return_dtype=pl.String).alias("id")
    )


# --------------------------------------------------------------------------- chunk


def normalize(chunk: pl.DataFrame, plan: Plan) -> Normalized:
    """Normalize one chunk of text rows into records, rejects and skipped rows."""
    n = chunk.height
    errors: list[_Judged] = []
    dropped: list[_Judged] = []
    columns = _Columns()
    empty: list[pl.Series] = []
    for spec, raw, out in _type_specs(chunk, plan):
        f, sub = plan.resolve(spec.target) or (None, None)
        assert f is not None
        if spec.target in plan.content:
            empty.append(raw.is_null())
        out = _required(spec, out)
        judged = _Judged(spec.label, raw, out.error)
        if _drops(spec, plan):
            dropped.append(judged)
            out = Parsed(
                pl.select(pl.when(out.error.is_null()).then(out.value)).to_series(), out.error
            )
        else:
            errors.append(judged)
        columns.place(f, sub, spec, out.value)
    content_skip = _skipped(empty, n)
    unmet = _unmet(chunk, plan)
    skip = content_skip | unmet.is_not_null()
    columns.composites(n)
    _apply_currency(chunk, plan, columns.top, errors)
    lookups = {LOOKUP_PREFIX + k: v for k, v in columns.lookups.items()}
    records = pl.DataFrame({ROW: chunk[ROW], **columns.top, **lookups})
    key_exprs = _key_exprs(records, plan)
    if key_exprs:
        key = records.select(pl.concat_str(key_exprs, separator=KEY_SEPARATOR).alias(KEY))
        records = records.with_columns(key[KEY])
        if plan.keys_only:  # the duplicate pre-pass wants nothing else
            return Normalized(records.filter(~skip).select(ROW, KEY), chunk.head(0), chunk.head(0))
        errors.append(_missing_key(records, plan, errors))
    else:
        records = records.with_columns(pl.lit(None, dtype=pl.String).alias(KEY))
    reason, first_col, first_val = _reasons(errors, n)
    bad = reason.is_not_null() & ~skip
    rejects = chunk.filter(bad).with_columns(
        pl.lit("normalize").alias("_stage"),
        first_col.filter(bad).alias("_column"),
        first_val.filter(bad).alias("_value"),
        reason.filter(bad).alias("_reason"),
    )
    kept = records.filter(~bad & ~skip)
    left_out = _left_out(chunk, dropped, ~bad & ~skip)
    skipped = _skip_frame(chunk, content_skip & unmet.is_null(), plan)
    if plan.mapping.conditions:
        unmet_rows = pl.DataFrame({ROW: chunk[ROW], "_reason": unmet}).drop_nulls("_reason")
        skipped = pl.concat([skipped, unmet_rows], how="vertical_relaxed").sort(ROW)
    return Normalized(_derive_ids(kept, plan), rejects, skipped, left_out)


def _drops(spec: FieldSpec, plan: Plan) -> bool:
    """A value this spec's codec refuses is dropped (the row loads) rather than the row.

    Never for a required field, nor a key's: without it the record is not the one meant.
    """
    if spec.on_invalid != "drop_value" or spec.required:
        return False
    head = spec.target.split(".")[0]
    return not any(k.split(".")[0] == head for k in plan.key)


def _left_out(chunk: pl.DataFrame, dropped: list[_Judged], kept: pl.Series) -> pl.DataFrame:
    """One line per value dropped from a kept row: the row's text, column, value, reason."""
    parts = [
        pl.DataFrame(
            {
                ROW: chunk[ROW],
                "_column": [j.label] * chunk.height,
                "_value": j.raw,
                "_reason": j.error,
            },
            schema={ROW: pl.Int64, "_column": pl.String, "_value": pl.String, "_reason": pl.String},
        ).filter(j.error.is_not_null() & kept)
        for j in dropped
    ]
    lines = [p for p in parts if p.height]
    if not lines:
        return chunk.head(0).with_columns(
            *(pl.lit(None, pl.String).alias(c) for c in ("_column", "_value", "_reason"))
        )
    found = pl.concat(lines).sort(ROW, maintain_order=True)
    return chunk.join(found, on=ROW, how="inner").sort(ROW, maintain_order=True)


def _unmet(chunk: pl.DataFrame, plan: Plan) -> pl.Series:
    """Per row, why the mapping's ``where:`` skips it (the first unmet condition), or null."""
    conditions = plan.mapping.conditions
    if not conditions:
        return pl.Series("_reason", [None] * chunk.height, dtype=pl.String)
    nulls = list(dict.fromkeys(("", *plan.mapping.source.null_values)))
    reason = pl.lit(None, dtype=pl.String)
    for condition in reversed(conditions):  # the first unmet one wins
        cell = pl.col(condition.column).cast(pl.String).str.strip_chars()
        empty = cell.is_null() | cell.is_in(nulls)
        if condition.operator == "in":
            holds = cell.is_in(list(condition.values)).fill_null(False)
        elif condition.operator == "not_in":
            holds = ~cell.is_in(list(condition.values)).fill_null(False)
        elif condition.operator == "not_empty":
            holds = ~empty
        else:
            holds = empty
        why = f"skipped: the row does not meet where: {condition.describe()}"
        reason = pl.when(holds).then(reason).otherwise(pl.lit(why))
    return chunk.select(reason.alias("_reason")).to_series()


def _skipped(empty: list[pl.Series], n: int) -> pl.Series:
    """Rows whose every content field is empty (none mapped: no row is skipped)."""
    if not empty:
        return pl.Series([False] * n, dtype=pl.Boolean)
    return pl.select(pl.all_horizontal(empty)).to_series()


def _skip_frame(chunk: pl.DataFrame, skip: pl.Series, plan: Plan) -> pl.DataFrame:
    """The skipped rows with the reason the success ledger gives for them."""
    labels = [s.column or s.target for s in plan.mapping.fields if s.target in plan.content]
    what = plan.object.name_singular
    needs = "a title or body" if "title" in plan.content else "a body"
    empty = f"{labels[0]} is empty" if len(labels) == 1 else f"{' and '.join(labels)} are empty"
    reason = f"skipped: {empty}, and a {what} without {needs} is not created"
    return chunk.filter(skip).select(ROW).with_columns(pl.lit(reason).alias("_reason"))


# --------------------------------------------------------------------------- records -> JSON


def to_payloads(records: pl.DataFrame) -> list[dict[str, Any]]:
    """Record rows -> the JSON bodies Twenty takes; nulls are left out, not sent.

    An empty cell therefore never erases what the workspace holds.
    """
    body_columns = [
        c for c in records.columns if c not in (ROW, KEY) and not c.startswith(LOOKUP_PREFIX)
    ]
    out = []
    for row in records.select(body_columns).to_dicts():
        out.append({k: v for k, v in ((k, clean(v)) for k, v in row.items()) if v is not None})
    return out
