"""Mapping files: YAML -> a validated, frozen :class:`Mapping` (design.md §3 "Mapping file").

Two checks, both reporting every problem at once with the file and line:

* :func:`load_mapping` checks the file on its own (shape, options, transforms);
* :func:`check_mapping` checks it against the workspace (object, fields, sub-fields,
  writability, select options, lookups, keys) and the source's columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import polars as pl
import yaml

from pipeline.errors import MappingError
from pipeline.mapping_forms import (
    Condition,
    CreateSpec,
    OnInvalid,
    parse_create,
    parse_on_invalid,
    parse_timezone,
    parse_where,
)

TRANSFORMS = ("strip", "lower", "upper", "title", "replace", "regex")
OnDuplicate = Literal["last", "first", "reject"]
OnMissing = Literal["reject", "null", "create"]
SPEC_KEYS = {
    "column",
    "value",
    "template",
    "transform",
    "required",
    "default",
    "split",
    "values",
    "date_format",
    "decimal",
    "currency",
    "currency_column",
    "default_country",
    "country_column",
    "lookup",
    "on_missing",
    "timezone",
    "on_invalid",
    "create",
}
DEFAULT_NULLS = ("",)


@dataclass(frozen=True)
class Transform:
    """One text transform applied to a column before typing (strip, lower, replace ...)."""

    name: str
    pattern: str | None = None
    replacement: str = ""


@dataclass(frozen=True)
class FieldSpec:
    """How one target path gets its value. Exactly one of column / value / template."""

    target: str
    line: int
    column: str | None = None
    fallbacks: tuple[str, ...] = ()
    """``column: [a, b, c]``: b, then c, when a is empty (the first non-empty)."""
    value: Any = None
    template: str | None = None
    transforms: tuple[Transform, ...] = ()
    required: bool = False
    default: Any = None
    split: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    date_format: str | None = None
    decimal: str | None = None
    currency: str | None = None
    currency_column: str | None = None
    default_country: str | None = None
    country_column: str | None = None
    lookup: str | None = None
    on_missing: OnMissing = "reject"
    timezone: str | None = None
    """Date-times without an offset are local time in this zone (default: UTC)."""
    on_invalid: OnInvalid = "reject_row"
    create: CreateSpec | None = None
    """The custom field ``schema apply`` creates when the workspace lacks it."""

    @property
    def label(self) -> str:
        """What messages name: the column (``work / mobile`` for several), else the target."""
        if self.column is None:
            return self.target
        return " / ".join((self.column, *self.fallbacks))

    @property
    def columns(self) -> list[str]:
        """Every source column this spec reads."""
        out = [c for c in (self.column, *self.fallbacks) if c]
        out += [c for c in (self.currency_column, self.country_column) if c]
        if self.template:
            out += re.findall(r"\{([^{}]+)\}", self.template)
        return out


@dataclass(frozen=True)
class SourceSpec:
    """Where the data comes from and how to read it."""

    path: Path | None = None
    format: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    null_values: tuple[str, ...] = DEFAULT_NULLS
    sheet: str | None = None


@dataclass(frozen=True)
class Mapping:
    """A validated mapping file."""

    path: Path
    object: str
    fields: tuple[FieldSpec, ...]
    source: SourceSpec = field(default_factory=SourceSpec)
    key: tuple[str, ...] = ()
    on_duplicate_key: OnDuplicate = "last"
    conditions: tuple[Condition, ...] = ()
    """Rows not meeting every condition are skipped (:mod:`pipeline.mapping_forms`)."""
    version: int = 1
    lines: MappingABC[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The mapping's name: its file name without extension (names its state folder)."""
        return self.path.stem

    def where(self, key: str) -> str:
        """``file:line`` of a top-level key, for messages."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    @property
    def source_columns(self) -> list[str]:
        """Every column the mapping reads, in order, without repeats."""
        seen: dict[str, None] = {}
        for spec in self.fields:
            for column in spec.columns:
                seen.setdefault(column, None)
        for condition in self.conditions:
            seen.setdefault(condition.column, None)
        return list(seen)


# --------------------------------------------------------------------------- YAML with lines


class _LineLoader(yaml.SafeLoader):
    """Safe YAML loader that remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    out = _Lined()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


class _Lined(dict[Any, Any]):
    """A dict with the YAML line of each key."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line(container: Any, key: Any) -> int:
    return container.lines.get(key, 0) if isinstance(container, _Lined) else 0


# --------------------------------------------------------------------------- load


def _regex_error(pattern: str) -> str | None:
    """Why polars' regex engine (the one that runs the transform) refuses ``pattern``.

    It is Rust's ``regex``, not Python's ``re``: no look-around, no back-references.
    """
    try:
        pl.Series([""], dtype=pl.String).str.replace_all(pattern, "")
    except pl.exceptions.PolarsError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("error:")]
        if lines:
            return lines[0].removeprefix("error:").strip()
        return "rejected by polars' regex engine (no look-around, no back-references)"
    return None


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file on its own; raise MappingError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc})") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(f"{where}: not valid YAML: {problem}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits, say
        reason = str(exc).split(";")[0]
        raise MappingError(f"{path}: not a usable mapping file: {reason}") from None
    except RecursionError:
        raise MappingError(f"{path}: not a usable mapping file: nested too deeply") from None
    if not isinstance(data, dict):
        raise MappingError(f"{path}: a mapping file is a YAML mapping with 'object' and 'fields'")
    return parse_mapping(data, path)


def parse_mapping(data: dict[str, Any], path: Path) -> Mapping:
    """Build a Mapping from parsed YAML (lines kept when ``data`` came from this module)."""
    problems: list[str] = []

    def problem(key: Any, message: str, container: Any = data) -> None:
        line = _line(container, key)
        problems.append(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    known = {
        "version",
        "object",
        "source",
        "key",
        "on_duplicate_key",
        "fields",
        "timezone",
        "where",
        "on_invalid",
    }
    for name in data:
        if name not in known:
            problem(name, f"unknown key {name!r} (expected one of: {', '.join(sorted(known))})")
    version = data.get("version", 1)
    if version != 1:
        problem("version", f"version {version!r} is not supported; write version: 1")
    obj = data.get("object")
    if not isinstance(obj, str) or not obj.strip():
        problem("object", "'object' must name the workspace object, e.g. object: person")
        obj = ""
    source = _parse_source(data.get("source"), path, problems, data)
    key_raw = data.get("key", [])
    key: tuple[str, ...] = ()
    if isinstance(key_raw, str):
        key = (key_raw,)
    elif isinstance(key_raw, list) and all(isinstance(k, str) for k in key_raw):
        key = tuple(key_raw)
    else:
        problem("key", "'key' is a field path or a list of them, e.g. key: [emails.primaryEmail]")
    on_dup = data.get("on_duplicate_key", "last")
    if on_dup not in ("last", "first", "reject"):
        problem("on_duplicate_key", f"on_duplicate_key {on_dup!r} must be last, first or reject")
        on_dup = "last"
    zone = parse_timezone(data.get("timezone"), f"{path}:{_line(data, 'timezone')}", problems)
    on_invalid = parse_on_invalid(
        data.get("on_invalid"), f"{path}:{_line(data, 'on_invalid')}", problems
    )
    conditions = parse_where(data.get("where"), f"{path}:{_line(data, 'where')}", problems)
    fields_raw = data.get("fields")
    specs: list[FieldSpec] = []
    if not isinstance(fields_raw, dict) or not fields_raw:
        problem(
            "fields",
            "'fields' must map target fields to source columns, e.g. fields: {jobTitle: title}",
        )
    else:
        for target, raw in fields_raw.items():
            spec = _parse_spec(str(target), raw, _line(fields_raw, target), path, problems)
            if spec is not None:
                # the mapping's defaults, where the field does not say
                spec = replace(
                    spec,
                    timezone=spec.timezone or zone,
                    on_invalid=_given(raw, "on_invalid", spec.on_invalid, on_invalid),
                )
                specs.append(spec)
    if problems:
        raise MappingError(problems)
    return Mapping(
        path=path,
        object=str(obj).strip(),
        fields=tuple(specs),
        source=source,
        key=key,
        on_duplicate_key=on_dup,
        conditions=conditions,
        version=1,
        lines=dict(data.lines) if isinstance(data, _Lined) else {},
    )


def _given(raw: Any, name: str, own: OnInvalid, default: OnInvalid | None) -> OnInvalid:
    """A field's own option when it gives one, else the mapping's, else its default."""
    if isinstance(raw, dict) and name in raw:
        return own
    return default or own


def _parse_source(raw: Any, path: Path, problems: list[str], parent: Any) -> SourceSpec:
    if raw is None:
        return SourceSpec()
    where = f"{path}:{_line(parent, 'source')}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'source' must be a mapping (path, format, delimiter, ...)")
        return SourceSpec()
    allowed = {"path", "format", "delimiter", "encoding", "null_values", "sheet"}
    for key in raw:
        if key not in allowed:
            problems.append(
                f"{path}:{_line(raw, key)}: unknown source option {key!r} "
                f"(expected one of: {', '.join(sorted(allowed))})"
            )
    src_path = None
    if raw.get("path") is not None:
        src_path = Path(str(raw["path"]))
        if not src_path.is_absolute():
            src_path = path.parent / src_path
    fmt = raw.get("format")
    if fmt is not None:
        from pipeline.sources import formats  # the sources import this module

        known = formats()
        if fmt not in known:
            problems.append(
                f"{path}:{_line(raw, 'format')}: format {fmt!r} must be one of {', '.join(known)}"
            )
    delimiter = raw.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        problems.append(f"{path}:{_line(raw, 'delimiter')}: delimiter must be one character")
    encoding = raw.get("encoding")
    if encoding is not None:
        import codecs

        try:
            codecs.lookup(str(encoding))
        except LookupError:
            problems.append(f"{path}:{_line(raw, 'encoding')}: unknown encoding {encoding!r}")
    nulls = raw.get("null_values", list(DEFAULT_NULLS))
    if not isinstance(nulls, list) or not all(isinstance(n, str) for n in nulls):
        problems.append(f"{path}:{_line(raw, 'null_values')}: null_values is a list of strings")
        nulls = list(DEFAULT_NULLS)
    return SourceSpec(
        path=src_path,
        format=fmt,
        delimiter=delimiter,
        encoding=str(encoding) if encoding else None,
        null_values=tuple(nulls),
        sheet=raw.get("sheet"),
    )


def _parse_transforms(raw: Any, where: str, problems: list[str]) -> tuple[Transform, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, str) and item in ("strip", "lower", "upper", "title"):
            out.append(Transform(item))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, arg),) = item.items()
            if (
                name in ("replace", "regex")
                and isinstance(arg, list)
                and len(arg) == 2
                and all(isinstance(a, str) for a in arg)
            ):
                if name == "regex":
                    error = _regex_error(arg[0])
                    if error is not None:
                        problems.append(f"{where}: regex {arg[0]!r} is not valid: {error}")
                        continue
                out.append(Transform(name, arg[0], arg[1]))
            else:
                problems.append(f"{where}: transform {name!r} takes [pattern, replacement]")
        else:
            problems.append(f"{where}: unknown transform {item!r} (use {', '.join(TRANSFORMS)})")
    return tuple(out)


def _parse_spec(
    target: str, raw: Any, line: int, path: Path, problems: list[str]
) -> FieldSpec | None:
    where = f"{path}:{line}: field {target!r}"
    if isinstance(raw, str):
        return FieldSpec(target=target, line=line, column=raw)
    if not isinstance(raw, dict):
        problems.append(f"{where}: give a column name or a mapping like {{column: c}}")
        return None
    for key in raw:
        if key not in SPEC_KEYS:
            problems.append(
                f"{path}:{_line(raw, key) or line}: field {target!r}: unknown option "
                f"{key!r} (expected one of: {', '.join(sorted(SPEC_KEYS))})"
            )
    sources = [k for k in ("column", "value", "template") if k in raw]
    if len(sources) != 1:
        problems.append(f"{where}: needs exactly one of column, value or template")
    column = raw.get("column")
    fallbacks: tuple[str, ...] = ()
    if isinstance(column, list) and column and all(isinstance(c, str) and c for c in column):
        column, fallbacks = column[0], tuple(column[1:])
    elif column is not None and not isinstance(column, str):
        problems.append(
            f"{where}: column must be a column name, or a list of them (the first non-empty)"
        )
        column = None
    template = raw.get("template")
    if template is not None and (not isinstance(template, str) or "{" not in template):
        problems.append(f"{where}: template must be a string with {{column}} placeholders")
        template = None
    values_raw = raw.get("values", {})
    values: tuple[tuple[str, str], ...] = ()
    if not isinstance(values_raw, dict) or not all(isinstance(v, str) for v in values_raw.values()):
        problems.append(
            f"{where}: values maps source labels to option values, "
            'e.g. values: {"Closed won": CUSTOMER}'
        )
    else:
        values = tuple((str(k), v) for k, v in values_raw.items())
    on_missing = raw.get("on_missing", "reject")
    if on_missing not in ("reject", "null", "create"):
        problems.append(f"{where}: on_missing must be reject, null or create")
        on_missing = "reject"
    if "on_missing" in raw and "lookup" not in raw:
        problems.append(f"{where}: on_missing only applies with lookup")
    formats = _format_options(raw, where, problems)
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append(f"{where}: required is true or false")
        required = False
    return FieldSpec(
        target=target,
        line=line,
        column=column,
        fallbacks=fallbacks,
        value=raw.get("value"),
        template=template,
        transforms=_parse_transforms(raw["transform"], where, problems)
        if "transform" in raw
        else (),
        required=required,
        default=raw.get("default"),
        values=values,
        currency_column=raw.get("currency_column"),
        lookup=raw.get("lookup"),
        on_missing=on_missing,
        timezone=parse_timezone(raw.get("timezone"), where, problems),
        create=parse_create(raw.get("create"), where, problems),
        on_invalid=parse_on_invalid(raw.get("on_invalid"), where, problems) or "reject_row",
        **formats,
    )


def _format_options(raw: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The options that say how a cell is written: separators, formats, codes."""
    decimal = raw.get("decimal")
    if decimal not in (None, ".", ","):
        problems.append(f'{where}: decimal must be "." or ","')
        decimal = None
    split = raw.get("split")
    if split is not None and (not isinstance(split, str) or not split):
        problems.append(f'{where}: split is the separator, e.g. split: ";"')
        split = None
    currency = raw.get("currency")
    if currency is not None and (
        not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency)
    ):
        problems.append(f"{where}: currency must be a 3-letter ISO code, e.g. EUR")
        currency = None
    date_format = raw.get("date_format")
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        problems.append(f'{where}: date_format is a strftime pattern, e.g. "%d/%m/%Y"')
        date_format = None
    country = raw.get("default_country")
    if country is not None and (
        not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country)
    ):
        problems.append(f"{where}: default_country is a 2-letter ISO code, e.g. US")
        country = None
    elif country is not None and country.upper() not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"{where}: default_country {country!r} is not a country code, e.g. US")
        country = None
    country_column = raw.get("country_column")
    if country_column is not None and not isinstance(country_column, str):
        problems.append(f"{where}: country_column must be a column name")
        country_column = None
    return {
        "split": split,
        "date_format": date_format,
        "decimal": decimal,
        "currency": currency.upper() if currency else None,
        "default_country": country.upper() if country else None,
        "country_column": country_column,
    }
