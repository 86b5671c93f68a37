"""A mapping against the workspace: its fields, relations, options, key and columns.

:mod:`pipeline.mapping` reads a mapping file on its own; this module checks it against
what the workspace holds (and, when known, the source's columns), listing every
problem at once.
"""

from __future__ import annotations

from pipeline.errors import MappingError
from pipeline.mapping import FieldSpec, Mapping
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.targets import TARGETS_PREFIX, target_choices, target_field


def _did_you_mean(options: list[str]) -> str:
    return f" (did you mean {' or '.join(options)}?)" if options else ""


def check_mapping(
    mapping: Mapping, schema: WorkspaceSchema, columns: list[str] | None = None
) -> ObjectSchema:
    """Check ``mapping`` against the workspace and the source's ``columns``.

    Returns the target object; raises MappingError with every problem found.
    """
    problems: list[str] = []
    obj = schema.object(mapping.object)
    if obj is None:
        raise MappingError(
            f"{mapping.where('object')}: no object {mapping.object!r} in this workspace"
            f"{_did_you_mean(schema.suggest_object(mapping.object))}; "
            "`twenty-pipeline schema` lists them"
        )
    targets: dict[str, FieldSpec] = {}
    for spec in mapping.fields:
        where = f"{mapping.path}:{spec.line}: field {spec.target!r}"
        apply = f"`twenty-pipeline schema apply {mapping.path}`"
        if spec.create is not None and obj.field(spec.target.split(".")[0]) is None:
            problems.append(
                f"{where}: {obj.name_singular} has no field {spec.target.split('.')[0]!r} "
                f"yet: {apply} creates it (as its create: says)"
            )
            continue
        before = len(problems)
        resolved = (
            _resolve_target(spec, obj, schema, where, problems)
            if spec.target.startswith(TARGETS_PREFIX)
            else _resolve(spec, obj, where, problems)
        )
        if resolved is None:
            continue
        _check_options(spec, resolved[0], resolved[1], where, problems)
        for i in range(before, len(problems)):
            if "is not an option of" in problems[i]:
                problems[i] += f"; {apply} adds the options a values: table names"
        target, sub = resolved
        clash = next((t for t in targets if _same_field(t, spec.target, target.type, sub)), None)
        if clash is not None:
            problems.append(f"{where}: maps the same field as {clash!r}")
        targets[spec.target] = spec
        _check_relation(spec, target, schema, where, problems)
        if columns is not None:
            _check_columns(spec, columns, where, problems)
    if columns is not None:
        for condition in mapping.conditions:
            if condition.column not in columns:
                problems.append(
                    f"{mapping.where('where')}: where: the source has no column "
                    f"{condition.column!r}"
                )
    problems.extend(_check_key(mapping, obj, schema))
    if problems:
        raise MappingError(problems)
    return obj


def _resolve(
    spec: FieldSpec, obj: ObjectSchema, where: str, problems: list[str]
) -> tuple[Field, str | None] | None:
    """The field (and sub-field) a spec writes, or None with the reason in ``problems``."""
    resolved = obj.resolve_path(spec.target)
    if resolved is None:
        head = spec.target.split(".")[0]
        base = obj.field(head)
        if base is not None and base.subfields:
            problems.append(
                f"{where}: {base.name} ({base.type}) has no sub-field "
                f"{spec.target.split('.', 1)[1]!r}; its sub-fields are "
                f"{', '.join(base.subfields)}"
            )
        else:
            problems.append(
                f"{where}: no such field on {obj.name_singular}"
                f"{_did_you_mean(obj.suggest_field(spec.target))}"
            )
        return None
    if not resolved[0].writable:
        problems.append(
            f"{where}: {resolved[0].name} ({resolved[0].type}) cannot be written by an import"
        )
        return None
    return resolved


def _resolve_target(
    spec: FieldSpec, obj: ObjectSchema, schema: WorkspaceSchema, where: str, problems: list[str]
) -> tuple[Field, str | None] | None:
    """A ``targets.<object>`` spec: the join object's relation it links the record with."""
    resolved = target_field(schema, obj, spec.target)
    if resolved is not None:
        if spec.lookup is None and spec.column is not None:
            problems.append(
                f"{where}: a target needs lookup: <unique field of "
                f"{spec.target[len(TARGETS_PREFIX) :]}> (e.g. lookup: id)"
            )
        return resolved
    choices = target_choices(schema, obj)
    if not choices:
        problems.append(
            f"{where}: {obj.name_singular} has no targets (no {obj.name_singular}Target object "
            "in this workspace); targets.* attach notes and tasks to records"
        )
    else:
        problems.append(
            f"{where}: no such target; {obj.name_singular} accepts {', '.join(choices)}"
        )
    return None


def _same_field(mapped: str, target: str, kind: str, sub: str | None) -> bool:
    """Whether two target paths write the same value (a field and one of its parts)."""
    if mapped == target:
        return True
    nested = mapped.startswith(target + ".") or target.startswith(mapped + ".")
    return nested and not _adds_phones(kind, mapped, sub)


def _check_relation(
    spec: FieldSpec, target: Field, schema: WorkspaceSchema, where: str, problems: list[str]
) -> None:
    if target.relation is None:
        if spec.lookup is not None:
            problems.append(f"{where}: lookup only applies to relation fields")
        return
    if spec.split is not None:
        problems.append(
            f"{where}: split does not apply to a relation: {spec.target} links one "
            f"{target.relation.target_object} per record, so a cell such as "
            f"'a{spec.split}b' cannot be stored; map one id per row (one row per "
            "link in a separate file), or remove split"
        )
    if spec.lookup is None and spec.value is None and spec.column is not None:
        problems.append(
            f"{where}: a relation needs lookup: <unique field of "
            f"{target.relation.target_object}> "
            f"(e.g. lookup: id)"
        )
    if spec.lookup is not None:
        other = schema.object(target.relation.target_object)
        unique = other.lookup_paths if other else []
        if other is not None and spec.lookup not in unique:
            problems.append(
                f"{where}: lookup {spec.lookup!r} is not a unique field of "
                f"{other.name_singular} (unique: {', '.join(unique)})"
            )


def _check_options(
    spec: FieldSpec, target: Field, sub: str | None, where: str, problems: list[str]
) -> None:
    """values: tables, and the options that only some field types take."""
    from rapidfuzz import fuzz, process

    if spec.values and target.options:
        for label, value in spec.values:
            if target.option(value) is None:
                options = [o.value for o in target.options]
                close = process.extract(
                    value, options, scorer=fuzz.WRatio, limit=2, score_cutoff=70
                )
                problems.append(
                    f"{where}: values: {label!r} -> {value!r} is not an option "
                    f"of {target.name} ({', '.join(options)})"
                    f"{_did_you_mean([c[0] for c in close])}"
                )
    elif spec.values and not target.options and target.relation is None:
        problems.append(
            f"{where}: values only applies to SELECT, MULTI_SELECT and RATING, and to "
            "relations (the text found -> the value looked up)"
        )
    if target.type == "ADDRESS" and sub is None:
        problems.append(f"{where}: map the address sub-fields (address.addressCity, ...)")
    if spec.currency_column and spec.currency:
        problems.append(f"{where}: give currency or currency_column, not both")
    if spec.country_column and target.type != "PHONES":
        problems.append(f"{where}: country_column only applies to PHONES fields")


def _check_columns(spec: FieldSpec, columns: list[str], where: str, problems: list[str]) -> None:
    from rapidfuzz import fuzz, process

    for column in spec.columns:
        if column not in columns:
            close = process.extract(column, columns, scorer=fuzz.WRatio, limit=2, score_cutoff=70)
            problems.append(
                f"{where}: the source has no column {column!r}"
                f"{_did_you_mean([repr(c[0]) for c in close])}"
            )


def _adds_phones(kind: str, other: str, sub: str | None) -> bool:
    """A whole PHONES field (its primary number) and its additionalPhones map together."""
    if kind != "PHONES":
        return False
    if sub == "additionalPhones":
        return "." not in other
    return sub is None and other.endswith(".additionalPhones")


def _check_key(mapping: Mapping, obj: ObjectSchema, schema: WorkspaceSchema) -> list[str]:
    mapped = {s.target for s in mapping.fields}
    problems = []
    for path in mapping.key:
        if path == "id":
            if "id" not in mapped:
                problems.append(f"{mapping.where('key')}: key 'id' needs a mapped id column")
            continue
        if path.startswith(TARGETS_PREFIX):
            if target_field(schema, obj, path) is None or path not in mapped:
                problems.append(f"{mapping.where('key')}: key {path!r} is not a mapped target")
            continue
        if obj.resolve_path(path) is None:
            problems.append(
                f"{mapping.where('key')}: key {path!r} is not a field of "
                f"{obj.name_singular}{_did_you_mean(obj.suggest_field(path))}"
            )
        elif not any(
            path == t or path.startswith(t + ".") or t.startswith(path + ".") for t in mapped
        ):
            problems.append(f"{mapping.where('key')}: key {path!r} is not mapped in fields")
    if not mapping.key and not key_paths(mapping, obj):
        unique = [p for p in obj.unique_paths if p != "id"]
        problems.append(
            f"{mapping.path}: no key: declare one, e.g. key: [{unique[0] if unique else 'name'}]"
            " - it identifies records so that re-runs update instead of duplicating"
            + (f"; unique fields of {obj.name_singular}: {', '.join(unique)}" if unique else "")
        )
    return problems


def key_paths(mapping: Mapping, obj: ObjectSchema) -> tuple[str, ...]:
    """The key: declared, else the mapped unique fields (design.md "Keys")."""
    if mapping.key:
        return mapping.key
    mapped = {s.target for s in mapping.fields}
    out = []
    for path in obj.unique_paths:
        head = path.split(".")[0]
        if path in mapped or head in mapped:
            out.append(path)
    return tuple(out)


def key_is_unique(paths: tuple[str, ...], obj: ObjectSchema) -> bool:
    """Whether every key path is one Twenty's upsert matches on (else ids are derived)."""
    return bool(paths) and all(p in obj.unique_paths for p in paths)
