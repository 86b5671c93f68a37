"""How Twenty names an object on the wire, and the shape of one record."""

from __future__ import annotations

from typing import Any, NamedTuple

Record = dict[str, Any]
"""One record as JSON: Twenty's field names to wire values (composites are nested dicts)."""


class ObjectNames(NamedTuple):
    """The two names under which Twenty routes an object (``person`` / ``people``)."""

    singular: str
    plural: str

    @property
    def singular_type(self) -> str:
        """GraphQL type stem: ``Person`` (first letter capitalised, as Twenty does)."""
        return self.singular[:1].upper() + self.singular[1:]

    @property
    def plural_type(self) -> str:
        """Plural stem for resolver names: ``People`` in ``createPeople``."""
        return self.plural[:1].upper() + self.plural[1:]
