"""Sources: what an import reads, as polars frames of text in chunks, with row numbers.

Open any source with :func:`open_source` (by its declared format, else its extension).
Each format is one module of this package registering itself with
:func:`register_source`: delimited (CSV, TSV), excel (XLSX), jsonfile (JSON, NDJSON),
parquet.
"""

from pipeline.sources.base import (
    DEFAULT_CHUNK,
    ROW,
    ReadReject,
    Source,
    SourceInfo,
    SourceOpener,
    SourceReader,
    detect_format,
    formats,
    open_source,
    register_source,
    unregister_source,
)
from pipeline.sources.encoding import detect_encoding

__all__ = [
    "DEFAULT_CHUNK",
    "ROW",
    "ReadReject",
    "Source",
    "SourceInfo",
    "SourceOpener",
    "SourceReader",
    "detect_encoding",
    "detect_format",
    "formats",
    "open_source",
    "register_source",
    "unregister_source",
]
