"""``init --from``: a ready job for another CRM's export folder.

The folder's files are recognised by their headers (:mod:`pipeline.presets.model`);
each becomes a commented mapping, and the mappings one job. What a file holds decides
some lines: owners are linked by e-mail only when the owner column holds e-mails (or,
for Salesforce, user ids that ``User.csv`` turns into e-mails), and the rows whose
association cell names several records are counted, since only the first is linked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipeline.errors import ConfigError, PipelineError
from pipeline.presets import hubspot, pipedrive, salesforce
from pipeline.presets.model import FileKind, Preset, Rule, header_key, index_headers
from pipeline.sources import SourceReader
from pipeline.yaml_text import comment_text, one_line, yaml_str

PRESETS: dict[str, Preset] = {
    p.name: p for p in (hubspot.PRESET, salesforce.PRESET, pipedrive.PRESET)
}
SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx"}
FIRST_ID = [{"regex": ["^\\s*([^;,]+?)\\s*([;,].*)?$", "\\1"]}]
"""The first of ``;``- or ``,``-separated ids."""


@dataclass
class SourceFile:
    """One file of the export folder, read enough to be recognised and mapped."""

    path: Path
    columns: list[str]
    headers: dict[str, str]
    kind: FileKind | None = None

    def values(self, column: str) -> pl.Series:
        """Every value of ``column`` (text, nulls dropped)."""
        with SourceReader(self.path) as reader:
            parts = [chunk[column] for chunk in reader.chunks([column])]
        if not parts:
            return pl.Series(column, [], pl.String)
        texts = pl.concat(parts).drop_nulls().str.strip_chars()
        return texts.filter(texts != "")


@dataclass
class InitResult:
    """What ``init --from`` wrote and what the user should know about it."""

    folder: Path
    job: Path
    mappings: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    unrecognised: list[Path] = field(default_factory=list)


def read_folder(folder: Path) -> Iterator[SourceFile]:
    """The export files of ``folder`` (csv, tsv, txt, xlsx), by name."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; give the folder the CRM's export is in")
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        try:
            with SourceReader(path) as reader:
                columns = list(reader.columns)
        except PipelineError:
            columns = []  # not a table this tool reads: left out, listed as unrecognised
        yield SourceFile(path, columns, index_headers(columns))


def recognise(preset: Preset, files: list[SourceFile]) -> list[SourceFile]:
    """Give each file the kind it is (the first that matches); one file per kind."""
    taken: set[str] = set()
    for file in files:
        for kind in preset.kinds:
            if kind.step not in taken and kind.matches(file.path.stem, file.headers):
                file.kind = kind
                taken.add(kind.step)
                break
    return files


def write_job(preset: Preset, source: Path, out: Path, *, force: bool = False) -> InitResult:
    """Write ``out``/job.yaml and one mapping per recognised file of ``source``."""
    files = recognise(preset, list(read_folder(source)))
    known = [f for f in files if f.kind is not None]
    if not known:
        names = ", ".join(f.path.name for f in files) or "no csv/xlsx file"
        raise ConfigError(
            f"{source}: no {preset.label} export file recognised ({names}); see the README, "
            f'"Migrating from another CRM", for the files {preset.label} writes'
        )
    out.mkdir(parents=True, exist_ok=True)
    job = out / "job.yaml"
    result = InitResult(out, job)
    result.unrecognised = [f.path for f in files if f.kind is None and not _is_users(preset, f)]
    users = _users(preset, files)
    written: list[tuple[str, Path]] = []
    order = [k.step for k in preset.kinds]
    known.sort(key=lambda f: order.index(f.kind.step if f.kind else ""))
    for target in [out / f"{f.kind.step}.yaml" for f in known if f.kind] + [job]:
        _refuse_overwrite(target, force)  # all checked before anything is written
    for file in known:
        assert file.kind is not None
        target = out / f"{file.kind.step}.yaml"
        text, notices = mapping_text(preset, file, target, users, known)
        target.write_text(text, encoding="utf-8")
        result.mappings.append(target)
        result.notices += notices
        written.append((file.kind.step, target))
    job.write_text(_job_text(preset, written), encoding="utf-8")
    return result


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; choose another -o folder, or pass --force")


def _is_users(preset: Preset, file: SourceFile) -> bool:
    return preset.name == "salesforce" and file.path.stem.lower() == salesforce.USERS[0]


def _users(preset: Preset, files: list[SourceFile]) -> dict[str, str]:
    """Salesforce user id -> e-mail, from User.csv when the folder has it."""
    if preset.name != "salesforce":
        return {}
    _, id_column, email_column = salesforce.USERS
    for file in files:
        if _is_users(preset, file):
            ids = file.headers.get(header_key(id_column))
            emails = file.headers.get(header_key(email_column))
            if ids is None or emails is None:
                return {}
            with SourceReader(file.path) as reader:
                frame = pl.concat(list(reader.chunks([ids, emails])))
            return {
                str(i): str(e).strip().lower()
                for i, e in frame.select(ids, emails).iter_rows()
                if i and e and "@" in str(e)
            }
    return {}


def mapping_text(
    preset: Preset,
    file: SourceFile,
    target: Path,
    users: dict[str, str],
    others: list[SourceFile] | None = None,
) -> tuple[str, list[str]]:
    """The commented mapping of one recognised file, and the notices it raises."""
    kind = file.kind
    assert kind is not None
    rel = os.path.relpath(file.path.resolve(), target.parent.resolve())
    notices: list[str] = []
    lines = [
        f"# {preset.label} {comment_text(file.path.name)} -> {kind.object}, written by "
        f"`twenty-pipeline init --from {preset.name}`.",
        "# Every choice is commented; check the ones marked CHECK before running.",
        *(f"# CHECK: {comment_text(n)}" for n in kind.notes),
        "version: 1",
        f"object: {kind.object}",
        "source:",
        f"  path: {yaml_str(rel)}",
        *_key_lines(preset, kind, file),
        "on_duplicate_key: last",
    ]
    for name, value in kind.extra.items():
        if name == "where" and header_key(str(value.get("column", ""))) not in file.headers:
            continue
        lines.append(f"{name}: {_flow(_own_spelling(value, file))}")
    lines.append("fields:")
    for rule in (kind.key, *kind.rules):
        lines += _rule_lines(rule, file, users, notices, others or [])
    unused = [c for c in file.columns if c not in kind.used(file.headers)]
    if unused:
        lines.append("# Columns not mapped (map them above, or leave them out):")
        for column in unused:
            lines.append(f"#   {yaml_str(column)}: suggestion: {_suggestion(column)}")
    return "\n".join(one_line(line) for line in lines) + "\n", notices


def _key_lines(preset: Preset, kind: FileKind, file: SourceFile) -> list[str]:
    """The CRM's id as the key; without an id column, the first field mapped (ids derived)."""
    if kind.key.present(file.headers):
        return [f"key: [{preset.id_field}]"]
    first = next((r for r in kind.rules if r.present(file.headers)), None)
    target = first.target if first else preset.id_field
    return [
        f"# CHECK: no {yaml_str(kind.key.columns[0])} column: records are identified by "
        f"{target} (their ids derived from it), so two with the same {target} are one",
        f"key: [{target}]",
    ]


def _rule_lines(
    rule: Rule,
    file: SourceFile,
    users: dict[str, str],
    notices: list[str],
    others: list[SourceFile],
) -> list[str]:
    columns = rule.present(file.headers)
    where = f"{file.path.name}"
    if not columns:
        if any(header_key(c) in file.headers for c in rule.unless):
            return []
        return [f"  # {rule.target}: no {' / '.join(map(yaml_str, rule.columns))} in this file"]
    spec: dict[str, Any] = {"column": columns if rule.several and len(columns) > 1 else columns[0]}
    spec.update(_own_spelling(rule.spec, file))
    comment = rule.why
    if rule.first_id:
        several = int(file.values(columns[0]).str.contains("[;,]").sum())
        spec["transform"] = FIRST_ID
        if several:
            rows = f"{several} row names" if several == 1 else f"{several} rows name"
            notices.append(
                f"{where}: {rows} several records in {columns[0]!r}; "
                f"{rule.target} links only the first of each"
            )
            comment += f" (CHECK: {rows} several; only the first is linked)"
    if rule.by_name is not None:
        table, shared, source = _names(rule.by_name, others)
        if source is None:
            return [
                f"  # {rule.target}: {yaml_str(columns[0])} names records of the "
                f"{rule.by_name[0]} file, which is not in this export folder"
            ]
        spec["values"] = table
        comment += f" (a table of the {_count(len(table), 'name')} in {source})"
        if shared:
            names = _count(shared, "name")
            notices.append(
                f"{where}: {source} has {names} shared by several records; "
                f"{rule.target} links none of them (counted as links left empty)"
            )
            comment += f"; CHECK: {names} shared by several records link none"
    if rule.owner:
        owner = _owner_spec(columns[0], file, users)
        if owner is None:
            return [
                f"  # {rule.target}: {yaml_str(columns[0])} holds names or ids, not e-mails: "
                "owners are matched to workspace members by e-mail; map it once it holds "
                "e-mails (or add User.csv to a Salesforce export folder)"
            ]
        spec.update(owner)
        comment = "the owner, matched to a workspace member by e-mail"
    return ([f"  # {comment_text(comment)}"] if comment else []) + _field_lines(rule.target, spec)


def _field_lines(target: str, spec: dict[str, Any]) -> list[str]:
    """A field on one line; a long one (a stage table, owners by id) in block style."""
    line = f"  {target}: {_flow(spec)}"
    if len(line) <= 120:
        return [line]
    block = yaml.safe_dump(
        {target: spec},
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
        sort_keys=False,
    )
    return [f"  {part}" for part in block.splitlines()]


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _names(
    by_name: tuple[str, tuple[str, ...], tuple[str, ...]], others: list[SourceFile]
) -> tuple[dict[str, str], int, str | None]:
    """name -> id from the recognised file of ``by_name``'s step; names found twice left out."""
    step, names, ids = by_name
    file = next((f for f in others if f.kind is not None and f.kind.step == step), None)
    if file is None:
        return {}, 0, None
    name_col = next(
        (file.headers[header_key(c)] for c in names if header_key(c) in file.headers), None
    )
    id_col = next((file.headers[header_key(c)] for c in ids if header_key(c) in file.headers), None)
    if name_col is None or id_col is None:
        return {}, 0, None
    with SourceReader(file.path) as reader:
        frame = pl.concat(list(reader.chunks([name_col, id_col])))
    pairs = frame.select(pl.col(name_col).str.strip_chars(), pl.col(id_col).str.strip_chars())
    pairs = pairs.drop_nulls().unique()
    counts = pairs.group_by(name_col).len()
    shared = counts.filter(pl.col("len") > 1)[name_col].to_list()
    table = {str(n): str(i) for n, i in pairs.filter(~pl.col(name_col).is_in(shared)).iter_rows()}
    return dict(sorted(table.items())), len(shared), file.path.name


def _owner_spec(column: str, file: SourceFile, users: dict[str, str]) -> dict[str, Any] | None:
    values = file.values(column)
    if values.len() == 0:
        return None
    if users:
        table = dict(sorted(users.items()))
        return {"values": table, "lookup": "userEmail", "on_missing": "null"}
    emails = int(values.str.contains("@").sum())
    if emails < 0.8 * values.len():
        return None
    return {"transform": ["strip", "lower"], "lookup": "userEmail", "on_missing": "null"}


def _own_spelling(value: Any, file: SourceFile) -> Any:
    """Column names in ``value`` (country_column, currency_column, where) as the file spells
    them; a column the file lacks is left out."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name in ("country_column", "currency_column", "column"):
        if name in out and isinstance(out[name], str):
            found = file.headers.get(header_key(out[name]))
            if found is None:
                del out[name]
            else:
                out[name] = found
    if "currency_column" in out:
        out.pop("currency", None)  # the file says each row's currency
    return out


def _suggestion(column: str) -> str:
    words = [w for w in "".join(c if c.isalnum() else " " for c in column).split() if w]
    name = (words[0].lower() + "".join(w.title() for w in words[1:])) if words else "field"
    if not name[0].isalpha():
        name = "f" + name
    return f"{name}: {_flow({'column': column, 'create': {'type': 'TEXT'}})}"


def _flow(value: Any) -> str:
    """``value`` as one line of flow-style YAML (a scalar as a plain or quoted scalar)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1_000_000, sort_keys=False
    )
    if not isinstance(value, dict | list):
        text = text.removesuffix("\n").removesuffix("...").strip()
    return text.strip()


def _job_text(preset: Preset, steps: list[tuple[str, Path]]) -> str:
    lines = [f"# {comment_text(n)}" for n in preset.job_notes]
    lines += [
        "version: 1",
        f"name: {preset.name}-migration",
        "# undoable: true   # keep before-images, so `twenty-pipeline undo` can take a run back",
        "steps:",
    ]
    lines += [f"  - mapping: {yaml_str(path.name)}" for _, path in steps]
    return "\n".join(lines) + "\n"
