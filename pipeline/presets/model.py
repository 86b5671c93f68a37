"""What a preset is made of: the export files a CRM writes, and how each becomes a mapping.

A :class:`FileKind` recognises one of a CRM's export files by its headers (compared
without case and spacing), and turns it into a mapping: each :class:`Rule` binds the
headers the file has (the first of several alternatives, or all of them as a
first-non-empty list) to a field, with the spec keys the rule adds. Columns no rule
takes are written as commented suggestions, never dropped without a word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def header_key(name: str) -> str:
    """A header as compared: lower case, runs of spaces and underscores as one space."""
    return re.sub(r"[\s_]+", " ", name.replace("\ufeff", "")).strip().lower()


@dataclass(frozen=True)
class Rule:
    """One field of a mapping, from the first of ``columns`` the file has.

    ``several``: every one of ``columns`` the file has, as ``column: [a, b]`` (the first
    non-empty of them). ``first_id``: the cell may hold several ``;``-separated ids; the
    first is linked (the others are counted when the job is written). ``owner``: a
    column of owners, linked to workspace members by e-mail when it holds e-mails.
    """

    target: str
    columns: tuple[str, ...]
    spec: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    several: bool = False
    first_id: bool = False
    owner: bool = False
    by_name: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None
    """The cell names a record of another file (step, its name columns, its id
    columns): a ``values:`` table from that file turns names into ids."""
    unless: tuple[str, ...] = ()
    """Columns whose presence makes another rule map this field instead."""

    def present(self, headers: dict[str, str]) -> list[str]:
        """The file's own spelling of this rule's columns that it has, in rule order."""
        if any(header_key(c) in headers for c in self.unless):
            return []
        found = [headers[header_key(c)] for c in self.columns if header_key(c) in headers]
        return found if self.several else found[:1]


@dataclass(frozen=True)
class FileKind:
    """One export file of a CRM and the mapping it becomes."""

    step: str
    object: str
    signature: tuple[tuple[str, ...], ...]
    """Headers the file must have: for each entry, one of its spellings."""
    key: Rule
    rules: tuple[Rule, ...]
    file_names: tuple[str, ...] = ()
    """File names (without extension, any case) that are this kind whatever the headers."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Mapping-level keys (``on_invalid``, ``timezone``, ``where``)."""
    notes: tuple[str, ...] = ()
    """What the user must check, written at the top of the mapping."""

    def matches(self, stem: str, headers: dict[str, str]) -> bool:
        """Whether a file named ``stem`` with ``headers`` is of this kind."""
        if stem.lower() in self.file_names and header_key(self.key.columns[0]) in headers:
            return True
        return all(any(header_key(h) in headers for h in entry) for entry in self.signature)

    def used(self, headers: dict[str, str]) -> set[str]:
        """The file's columns some rule takes."""
        taken: set[str] = set()
        for rule in (self.key, *self.rules):
            taken.update(rule.present(headers))
            for name in ("country_column", "currency_column"):
                value = rule.spec.get(name)
                if isinstance(value, str) and header_key(value) in headers:
                    taken.add(headers[header_key(value)])
        where = self.extra.get("where")
        for condition in where if isinstance(where, list) else [where] if where else []:
            column = condition.get("column") if isinstance(condition, dict) else None
            if isinstance(column, str) and header_key(column) in headers:
                taken.add(headers[header_key(column)])
        return taken


@dataclass(frozen=True)
class Preset:
    """A CRM: its name, the id field its records keep in Twenty, and its export files."""

    name: str
    label: str
    id_field: str
    """The custom unique TEXT field every object gets for the CRM's own ids (``hubspotId``)."""
    kinds: tuple[FileKind, ...]
    job_notes: tuple[str, ...] = ()


def index_headers(columns: Sequence[str]) -> dict[str, str]:
    """header_key -> the file's own header (the first, when two compare equal)."""
    out: dict[str, str] = {}
    for column in columns:
        out.setdefault(header_key(column), column)
    return out
