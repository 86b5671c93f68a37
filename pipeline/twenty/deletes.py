"""Soft deletes by id: ``delete{Plural}(filter: {id: {in: [...]}})`` or its REST twin.

Twenty's REST ``DELETE`` destroys unless told ``soft_delete=true`` (twenty-api.md §2,
current code), so the flag is always sent. A soft-deleted record keeps its row (and
its unique values); an upsert on it later restores it.

An answer names the records that were live and are now deleted; a record already
deleted, or destroyed, is not in it (deleted rows are hidden from filters that do not
mention ``deletedAt``). An answer naming a record that was not asked for is a server
not to be believed, and stops the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipeline.config import ApiFlavour
from pipeline.errors import FatalApiError
from pipeline.twenty.answers import single_list
from pipeline.twenty.names import ObjectNames
from pipeline.twenty.session import Session


async def soft_delete_many(
    session: Session, api: ApiFlavour, obj: ObjectNames, ids: Sequence[str]
) -> set[str]:
    """Soft-delete the records ``ids`` in one call; return the ids Twenty deleted now."""
    if not ids:
        return set()
    asked = {i.lower() for i in ids}
    if api == "graphql":
        name = f"delete{obj.plural_type}"
        query = (
            f"mutation Delete{obj.plural_type}($filter: {obj.singular_type}FilterInput!) "
            f"{{ {name}(filter: $filter) {{ id }} }}"
        )
        path = "/graphql"
        body = {"query": query, "variables": {"filter": {"id": {"in": list(ids)}}}}

        def confirm(answer: Any) -> set[str]:
            data = answer.get("data") if isinstance(answer, dict) else None
            found = data.get(name) if isinstance(data, dict) else None
            return _deleted_ids(found, asked, f"mutation {name}")

        deleted: set[str] = await session.request(
            "write", "POST", path, json_body=body, idempotent=True, answer=confirm
        )
        return deleted
    path = f"/rest/{obj.plural}"
    params = {"filter": f"id[in]:{json.dumps(list(ids))}", "soft_delete": "true"}

    def confirm_rest(answer: Any) -> set[str]:
        data = answer.get("data") if isinstance(answer, dict) else None
        return _deleted_ids(single_list(data, what=f"DELETE {path}"), asked, f"DELETE {path}")

    deleted = await session.request(
        "write", "DELETE", path, params=params, idempotent=True, answer=confirm_rest
    )
    return deleted


def _deleted_ids(found: Any, asked: set[str], what: str) -> set[str]:
    """The ids in a delete answer, each one that was asked for."""
    if not isinstance(found, list):
        raise FatalApiError(f"{what}: the answer holds no list of deleted records")
    out: set[str] = set()
    for record in found:
        got = record.get("id") if isinstance(record, dict) else None
        if not isinstance(got, str) or not got:
            raise FatalApiError(f"{what}: a deleted record in the answer has no id")
        if got.lower() not in asked:
            raise FatalApiError(
                f"{what}: the answer names record {got}, which was not asked to be deleted; "
                "the server is not to be believed, so the run stops"
            )
        out.add(got.lower())
    return out
