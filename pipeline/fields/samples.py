"""What a sample of a column's values looks like, as the field codecs judge it.

``init-mapping`` drafts a mapping from a file's headers and a sample of its rows; these
say which field types the sample fits and which type would keep it.
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.fields import CODECS

# The kinds of value a sample is tested for, in this order (an e-mail is no URL).
SAMPLE_KINDS = ("email", "phone", "url", "date")
# kind -> the field types whose values look like it, as their codecs say.
KIND_FITS = {
    kind: tuple(t for t, c in CODECS.items() if c.sample_kind == kind) for kind in SAMPLE_KINDS
}
# kind -> the field type to create for such a column (the first codec of that kind).
NEW_FIELD_TYPES = {kind: types[0] for kind, types in KIND_FITS.items()}
SAMPLED_TYPES = frozenset(t for types in KIND_FITS.values() for t in types)


def sample_kind(values: list[str]) -> str | None:
    """What most sample values look like: email, phone, url, date, or nothing clear."""
    if not values:
        return None
    series = pl.Series(values, dtype=pl.String)
    for kind in SAMPLE_KINDS:
        mask = CODECS[KIND_FITS[kind][0]].looks_like(series)
        if float(mask.fill_null(False).mean() or 0) >= 0.8:  # type: ignore[arg-type]
            return kind
    return None


def new_field_type(values: list[str], kind: str | None) -> str:
    """The field type that would keep sample ``values``."""
    if kind in NEW_FIELD_TYPES:
        return NEW_FIELD_TYPES[kind]
    if values and all(re.fullmatch(r"-?\d+([.,]\d+)?", v) for v in values):
        return "NUMBER"
    distinct = set(values)
    if values and len(distinct) <= 20 and len(distinct) * 2 <= len(values):
        return "SELECT"
    return "TEXT"
