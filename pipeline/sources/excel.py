"""XLSX workbooks, read by calamine (fastexcel) as text, numbered as the spreadsheet shows.

The header is row 1, so the first data row is ``_row`` 2: the number a person finds
in Excel. One sheet is read: the mapping's ``source.sheet``, else the first.
"""

from __future__ import annotations

import polars as pl

from pipeline.errors import InputError
from pipeline.sources.base import register_source
from pipeline.sources.files import FrameSource
from pipeline.sources.frames import as_text, numbered, one_line


class ExcelSource(FrameSource):
    """One sheet of a workbook, whole in memory (calamine reads a sheet at once)."""

    format = "xlsx"

    def _read(self) -> pl.DataFrame:
        try:
            frame = pl.read_excel(
                self.path,
                sheet_name=self.spec.sheet,
                has_header=True,
                infer_schema_length=0,
                engine="calamine",
            )
        except Exception as exc:
            raise InputError(f"{self.path}: cannot read the workbook: {one_line(exc)}") from None
        except BaseException as exc:  # a panic inside the Rust reader (pyo3 PanicException)
            if type(exc).__name__ != "PanicException":
                raise
            raise InputError(f"{self.path}: cannot read the workbook: {one_line(exc)}") from None
        self.info.columns = [str(c).strip() for c in frame.columns]
        frame = frame.rename(dict(zip(frame.columns, self.info.columns, strict=True)))
        return numbered(as_text(frame), first=2)


register_source("xlsx", ExcelSource, extensions=(".xlsx",))
