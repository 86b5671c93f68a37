"""Why a lookup found nothing: the target's own row may have been rejected.

A person whose company is missing from the workspace is a different story when the
company's row was in the companies file but rejected there (say, its employee count
read ``N/A``): the fix is in that file, not in this one. The state stores of the other
mappings in the same state folder hold their rejected rows as read from the source;
normalizing those rows' lookup field with their own mapping gives the values that a
lookup here would have found, had the rows loaded.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import polars as pl

from pipeline.errors import PipelineError
from pipeline.mapping import load_mapping
from pipeline.normalize import KEY, make_plan, normalize
from pipeline.schema import WorkspaceSchema
from pipeline.sources import ROW
from pipeline.state import STORE_NAME, StateStore


def rejected_targets(
    state_dir: Path, schema: WorkspaceSchema, object_name: str, path: str
) -> dict[str, str]:
    """Lookup value -> "company row 5 of companies.csv was rejected: <reason>"."""
    found: dict[str, str] = {}
    for store in sorted(state_dir.glob(f"*/{STORE_NAME}")):
        try:
            found.update(_from_store(store, schema, object_name, path))
        except (sqlite3.Error, OSError, PipelineError, pl.exceptions.PolarsError, ValueError):
            continue  # another run's state we cannot read tells us nothing
    return found


def _from_store(
    path_of_store: Path, schema: WorkspaceSchema, object_name: str, path: str
) -> dict[str, str]:
    with StateStore(path_of_store, read_only=True) as store:
        run = store.last_run()
        if run is None or run.object != object_name:
            return {}
        rows = [
            (r[0], r[5], r[6])
            for r in store.iter_rows(rejected=True, run_id=run.id)
            if r[6] is not None
        ]
        meta = {"mapping": run.mapping, "source": run.source}
    if not rows:
        return {}
    mapping = load_mapping(meta["mapping"])
    if not any(s.target.split(".")[0] == path.split(".")[0] for s in mapping.fields):
        return {}
    originals = [json.loads(original) for _, _, original in rows]
    columns = [c for c in mapping.source_columns if any(c in o for o in originals)]
    frame = pl.DataFrame(
        {ROW: [int(r[0]) for r in rows], **{c: [o.get(c) for o in originals] for c in columns}},
        schema={ROW: pl.Int64, **dict.fromkeys(columns, pl.String)},
    )
    plan = make_plan(mapping, schema, columns)
    values = normalize(frame, replace(plan, key=(path,)).key_only()).records
    reasons = {int(r[0]): str(r[1]) for r in rows}
    source = Path(meta.get("source", "its source")).name
    return {
        str(value): f"{object_name} row {row} of {source} was rejected ({reasons[row]})"
        for row, value in values.select(ROW, KEY).iter_rows()
        if value is not None
    }
