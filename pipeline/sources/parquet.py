"""Parquet files, scanned lazily and handed out as text, records numbered from 1."""

from __future__ import annotations

import polars as pl

from pipeline.sources.base import register_source
from pipeline.sources.files import LazySource


class ParquetSource(LazySource):
    """A Parquet file; every column cast to text as it is read, nested ones as JSON."""

    format = "parquet"

    def _scan(self) -> pl.LazyFrame:
        lazy = pl.scan_parquet(self.path)
        self.info.columns = list(lazy.collect_schema().names())
        return lazy


register_source("parquet", ParquetSource, extensions=(".parquet", ".pq"))
