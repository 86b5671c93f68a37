"""Before-images for ``--undoable``: what the records a batch is about to update hold now.

One read per batch (a page holds 200 records, a batch at most 200): the live records
whose key is one of the batch's, by an ``in`` filter on the key (``id`` when ids are
derived). Only the fields the batch writes are kept, whole (a composite field as it is,
so that putting it back restores every part), with the relations' join columns.
Records that do not exist yet (creates) have no image: undo deletes them. Records
that are soft-deleted (the upsert restores them) are read too when the batch has any:
undo puts their values back and deletes them again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.normalize import KEY_SEPARATOR, Plan
from pipeline.twenty import PAGE_SIZE, TwentyClient

Identity = Callable[[dict[str, Any]], str | None]


def written_fields(payloads: Sequence[dict[str, Any]]) -> list[str]:
    """The top-level fields a batch writes (``id`` aside: it is what matches)."""
    names: dict[str, None] = {}
    for payload in payloads:
        names.update(dict.fromkeys(k for k in payload if k != "id"))
    return list(names)


def key_filter(plan: Plan, identities: Sequence[str], ids: Sequence[str]) -> str | None:
    """A REST filter that finds the live records with these keys (None: nothing to ask)."""
    if plan.derive_id or plan.key == ("id",):
        return f"id[in]:{json.dumps(sorted(set(ids)))}" if ids else None
    if not identities:
        return None
    if len(plan.key) == 1:
        return f"{plan.key[0]}[in]:{json.dumps(sorted(set(identities)), ensure_ascii=False)}"
    parts = [i.split(KEY_SEPARATOR) for i in identities]
    wanted = [
        f"{path}[in]:{json.dumps(sorted({p[n] for p in parts}), ensure_ascii=False)}"
        for n, path in enumerate(plan.key)
    ]
    return f"and({','.join(wanted)})"


async def read_before(
    client: TwentyClient,
    plan: Plan,
    payloads: Sequence[dict[str, Any]],
    identities: Sequence[str | None],
    identity_of: Identity,
    *,
    deleted: bool = False,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Record id -> its current values of the fields ``payloads`` write; and the reads spent.

    ``deleted``: some records of the batch match soft-deleted ones (the upsert will
    restore them, and write over their values): those are read too, in a second query.
    """
    ids = [str(p["id"]) for p in payloads if p.get("id")]
    keys = [i for i in identities if i]
    flt = key_filter(plan, keys, ids)
    if flt is None:
        return {}, 0
    wanted = set(keys) | {i.lower() for i in ids}
    fields = written_fields(payloads)
    images: dict[str, dict[str, Any]] = {}
    calls = 0
    filters = [flt, f"and(deletedAt[is]:NOT_NULL,{flt})"] if deleted else [flt]
    for where in filters:
        async for page in client.iter_pages(plan.object.names, filter=where, page_size=PAGE_SIZE):
            calls += 1
            for record in page.records:
                found = identity_of(record)
                if found is None or (found not in wanted and found.lower() not in wanted):
                    continue
                images[str(record["id"])] = {f: record.get(f) for f in fields}
    return images, calls
