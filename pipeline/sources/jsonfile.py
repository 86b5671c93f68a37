"""JSON (an array of objects, or an object holding one) and NDJSON (one object a line).

Records are numbered from 1, in file order. Every value is text: nested objects and
lists as JSON, booleans as ``true`` / ``false``; a key missing from a record is null.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from pipeline.errors import InputError
from pipeline.sources.base import register_source
from pipeline.sources.files import FrameSource, LazySource
from pipeline.sources.frames import holds, numbered, text_value


class JsonSource(FrameSource):
    """A JSON document, parsed whole (a JSON array cannot be streamed by the standard library)."""

    format = "json"

    def _read(self) -> pl.DataFrame:
        records = self._records()
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(record))
        self.info.columns = list(columns)
        try:
            rows = {c: [text_value(r.get(c)) for r in records] for c in columns}
        except RecursionError:
            raise InputError(f"{self.path}: a JSON value is nested too deep to read") from None
        frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))
        return numbered(frame, first=1)

    def _records(self) -> list[dict[str, Any]]:
        """The objects of the document: the array itself, or the one array an object holds."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: not valid JSON: {exc}") from None
        except RecursionError:
            raise InputError(f"{self.path}: the JSON is nested too deep to read") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{self.path}: expected a JSON array of objects")
        return data


class NdjsonSource(LazySource):
    """NDJSON, scanned lazily: every value read as text, whatever its type on each line."""

    format = "ndjson"

    def _scan(self) -> pl.LazyFrame:
        # the names from the whole file, then a scan that reads each value as text,
        # nested ones as JSON text
        names = self._names()
        self.info.columns = names
        return pl.scan_ndjson(self.path, schema=dict.fromkeys(names, pl.String))

    def _may_hold_nul(self) -> bool:
        return holds(self.path, b"\\u0000")  # JSON escapes NUL

    def _names(self) -> list[str]:
        """The keys of every record, in the order they first appear."""
        try:
            return list(
                pl.scan_ndjson(self.path, infer_schema_length=None).collect_schema().names()
            )
        except pl.exceptions.PolarsError:
            return self._names_line_by_line()  # types polars cannot reconcile (a struct, a number)

    def _names_line_by_line(self) -> list[str]:
        names: dict[str, None] = {}
        with self.path.open(encoding="utf-8-sig", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{self.path}: line {number} is not valid JSON ({exc.msg})"
                    ) from None
                except RecursionError:
                    raise InputError(
                        f"{self.path}: line {number} is nested too deep to read"
                    ) from None
                if not isinstance(record, dict):
                    raise InputError(f"{self.path}: line {number} is not a JSON object")
                names.update(dict.fromkeys(record))
        return list(names)


register_source("json", JsonSource, extensions=(".json",))
register_source("ndjson", NdjsonSource, extensions=(".ndjson", ".jsonl"))
