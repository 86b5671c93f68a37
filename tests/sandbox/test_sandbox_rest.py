"""REST core contract (twenty-api.md §2): envelopes, status codes, pagination, filters."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from pipeline.sandbox import Sandbox
from tests.sandbox.conftest import client_for


async def make_people(api: httpx.AsyncClient, n: int, **extra: Any) -> list[dict[str, Any]]:
    people = [
        {
            "name": {"firstName": f"P{i:03d}", "lastName": "Test"},
            "emails": {"primaryEmail": f"p{i:03d}@example.com"},
            "city": "Paris" if i % 2 else "Lyon",
            **extra,
        }
        for i in range(n)
    ]
    out: list[dict[str, Any]] = []
    for start in range(0, n, 200):
        r = await api.post("/rest/batch/people", json=people[start : start + 200])
        assert r.status_code == 201, r.text
        out.extend(r.json()["data"]["createPeople"])
    return out


# ------------------------------------------------------------------ envelopes (§2.1)


async def test_create_one_envelope_and_201(api: httpx.AsyncClient) -> None:
    r = await api.post("/rest/companies", json={"name": "Acme"})
    assert r.status_code == 201
    company = r.json()["data"]["createCompany"]
    assert company["name"] == "Acme"
    assert company["idealCustomerProfile"] is False  # not-null default
    assert company["domainName"] == {
        "primaryLinkUrl": "",
        "primaryLinkLabel": "",
        "secondaryLinks": None,
    }
    assert company["createdBy"]["source"] == "API"
    assert "searchVector" not in company


async def test_batch_envelope_keeps_input_order(api: httpx.AsyncClient) -> None:
    created = await make_people(api, 5)
    assert [p["name"]["firstName"] for p in created] == ["P000", "P001", "P002", "P003", "P004"]


async def test_get_one_update_delete_restore_envelopes(api: httpx.AsyncClient) -> None:
    (person,) = await make_people(api, 1)
    pid = person["id"]
    r = await api.get(f"/rest/people/{pid}")
    assert r.status_code == 200 and r.json()["data"]["person"]["id"] == pid
    r = await api.patch(f"/rest/people/{pid}", json={"city": "Nice"})
    assert r.status_code == 200 and r.json()["data"]["updatePerson"]["city"] == "Nice"
    r = await api.delete(f"/rest/people/{pid}", params={"soft_delete": "true"})
    assert r.status_code == 200 and r.json()["data"]["deletePerson"]["deletedAt"] is not None
    r = await api.get(f"/rest/people/{pid}")
    assert r.status_code == 404
    assert r.json() == {
        "statusCode": 404,
        "error": "NotFoundException",
        "messages": ["Record not found"],
    }
    r = await api.patch(f"/rest/restore/people/{pid}")
    assert r.status_code == 200 and r.json()["data"]["restorePerson"]["deletedAt"] is None
    r = await api.patch(f"/rest/people/{pid}/restore")  # the other restore route shape
    assert r.status_code == 404  # nothing deleted to restore any more


async def test_delete_without_soft_delete_destroys(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    (person,) = await make_people(api, 1)
    r = await api.delete(f"/rest/people/{person['id']}")
    assert r.status_code == 200
    assert sandbox.engine.count_records(sandbox.engine.object("person"), with_deleted=True) == 0


async def test_legacy_delete_is_soft(make_sandbox: Any) -> None:
    sandbox = make_sandbox(profile="legacy")
    async with client_for(sandbox) as api:
        (person,) = await make_people(api, 1)
        await api.delete(f"/rest/people/{person['id']}")
    assert sandbox.engine.count_records(sandbox.engine.object("person"), with_deleted=True) == 1


async def test_bulk_delete_needs_a_filter(api: httpx.AsyncClient) -> None:
    r = await api.delete("/rest/people")
    assert r.status_code == 400
    assert r.json()["messages"][0].startswith("Filters are mandatory for bulk delete operations.")


async def test_update_many_and_delete_many(api: httpx.AsyncClient) -> None:
    await make_people(api, 4)
    r = await api.patch(
        "/rest/people", params={"filter": "city[eq]:Paris"}, json={"jobTitle": "CTO"}
    )
    assert r.status_code == 200
    assert [p["jobTitle"] for p in r.json()["data"]["updatePeople"]] == ["CTO", "CTO"]
    r = await api.delete("/rest/people", params={"filter": "city[eq]:Paris", "soft_delete": "true"})
    assert len(r.json()["data"]["deletePeople"]) == 2
    r = await api.get("/rest/people")
    assert r.json()["totalCount"] == 2


async def test_bad_uuid_and_unknown_object(api: httpx.AsyncClient) -> None:
    r = await api.get("/rest/people/not-a-uuid")
    assert r.status_code == 400
    assert r.json()["messages"] == ["'not-a-uuid' is not a valid UUID"]
    r = await api.get("/rest/peoples")
    assert r.status_code == 400
    assert r.json()["messages"] == ["object 'peoples' not found"]


# ------------------------------------------------------------------ pagination (§2.2-2.3)


async def test_default_page_is_60_and_limit_clamps_at_200(api: httpx.AsyncClient) -> None:
    await make_people(api, 250)
    r = await api.get("/rest/people")
    body = r.json()
    assert len(body["data"]["people"]) == 60
    assert body["totalCount"] == 250
    assert set(body["pageInfo"]) == {"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}
    assert body["pageInfo"]["hasNextPage"] is True
    r = await api.get("/rest/people", params={"limit": 1000})
    assert len(r.json()["data"]["people"]) == 200


@pytest.mark.parametrize("limit", ["x", "-1", "1.5"])
async def test_invalid_limit(api: httpx.AsyncClient, limit: str) -> None:
    r = await api.get("/rest/people", params={"limit": limit})
    assert r.status_code == 400
    assert r.json()["messages"] == [f"limit '{limit}' is invalid. Should be an integer"]


async def test_cursor_walk_sees_every_record_once(api: httpx.AsyncClient) -> None:
    created = await make_people(api, 130)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 50}
        if cursor:
            params["starting_after"] = cursor
        body = (await api.get("/rest/people", params=params)).json()
        seen.extend(p["id"] for p in body["data"]["people"])
        if not body["pageInfo"]["hasNextPage"]:
            break
        cursor = body["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(p["id"] for p in created)
    assert len(seen) == len(set(seen))
    decoded = json.loads(base64.b64decode(cursor or ""))
    assert "id" in decoded


async def test_ordered_paging_forward_and_backward(api: httpx.AsyncClient) -> None:
    await make_people(api, 10)
    order = {"order_by": "name.firstName[DescNullsLast]", "limit": 4}
    first = (await api.get("/rest/people", params=order)).json()
    names = [p["name"]["firstName"] for p in first["data"]["people"]]
    assert names == ["P009", "P008", "P007", "P006"]
    second = (
        await api.get(
            "/rest/people", params={**order, "starting_after": first["pageInfo"]["endCursor"]}
        )
    ).json()
    assert [p["name"]["firstName"] for p in second["data"]["people"]] == [
        "P005",
        "P004",
        "P003",
        "P002",
    ]
    assert second["pageInfo"]["hasPreviousPage"] is True
    back = (
        await api.get(
            "/rest/people", params={**order, "ending_before": second["pageInfo"]["startCursor"]}
        )
    ).json()
    assert [p["name"]["firstName"] for p in back["data"]["people"]] == names


async def test_nulls_ordering(api: httpx.AsyncClient) -> None:
    await api.post(
        "/rest/batch/companies",
        json=[{"name": "A", "employees": 5}, {"name": "B"}, {"name": "C", "employees": 50}],
    )

    async def names(order: str) -> list[str]:
        r = await api.get("/rest/companies", params={"order_by": order})
        return [c["name"] for c in r.json()["data"]["companies"]]

    assert await names("employees[AscNullsFirst]") == ["B", "A", "C"]
    assert await names("employees[AscNullsLast]") == ["A", "C", "B"]
    assert await names("employees[DescNullsFirst]") == ["B", "C", "A"]
    assert await names("employees[DescNullsLast]") == ["C", "A", "B"]


async def test_invalid_cursor_and_depth(api: httpx.AsyncClient) -> None:
    r = await api.get("/rest/people", params={"starting_after": "%%%"})
    assert r.status_code == 400 and r.json()["messages"][0].startswith("Invalid cursor")
    r = await api.get("/rest/people", params={"depth": "2"})
    assert r.json()["messages"] == ["'depth=2' parameter invalid. Allowed values are 0, 1"]


async def test_depth_one_includes_relations(api: httpx.AsyncClient) -> None:
    company = (await api.post("/rest/companies", json={"name": "Acme"})).json()["data"][
        "createCompany"
    ]
    await api.post("/rest/people", json={"city": "Paris", "companyId": company["id"]})
    person = (await api.get("/rest/people", params={"depth": "1"})).json()["data"]["people"][0]
    assert person["companyId"] == company["id"]
    assert person["company"]["name"] == "Acme"
    plain = (await api.get("/rest/people")).json()["data"]["people"][0]
    assert "company" not in plain
    one = (await api.get(f"/rest/companies/{company['id']}", params={"depth": "1"})).json()
    assert [p["city"] for p in one["data"]["company"]["people"]] == ["Paris"]


async def test_legacy_page_info_omits_false_has_previous(make_sandbox: Any) -> None:
    async with client_for(make_sandbox(profile="legacy")) as api:
        body = (await api.get("/rest/people")).json()
    assert "hasPreviousPage" not in body["pageInfo"]


# ------------------------------------------------------------------ filters (§2.2)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("city[eq]:Paris", 3),
        ("city[neq]:Paris", 3),
        ("emails.primaryEmail[eq]:p001@example.com", 1),
        ("emails.primaryEmail[in]:[p001@example.com,p002@example.com]", 2),
        ("name.firstName[startsWith]:P00", 6),
        ("name.firstName[endsWith]:5", 1),
        ("name.firstName[like]:%00%", 6),
        ("name.firstName[like]:%p00%", 0),
        ("name.firstName[ilike]:%p00%", 6),
        ("jobTitle[is]:NULL", 5),
        ("jobTitle[is]:NOT_NULL", 1),
        ("or(city[eq]:Paris,jobTitle[eq]:CEO)", 4),
        ("and(city[eq]:Lyon,jobTitle[eq]:CEO)", 1),
        ("not(city[eq]:Paris)", 3),
        ("city[eq]:Lyon,name.firstName[in]:[P000,P002]", 2),
        ('city[eq]:"Paris"', 3),
    ],
)
async def test_filters(api: httpx.AsyncClient, flt: str, expected: int) -> None:
    created = await make_people(api, 6)
    await api.patch(f"/rest/people/{created[0]['id']}", json={"jobTitle": "CEO"})
    r = await api.get("/rest/people", params={"filter": flt})
    assert r.status_code == 200, r.text
    assert r.json()["totalCount"] == expected


async def test_numeric_and_boolean_filters(api: httpx.AsyncClient) -> None:
    await api.post(
        "/rest/batch/companies",
        json=[
            {"name": "A", "employees": 5, "idealCustomerProfile": True},
            {"name": "B", "employees": 50},
            {"name": "C", "employees": 500},
        ],
    )
    r = await api.get("/rest/companies", params={"filter": "employees[gte]:50"})
    assert r.json()["totalCount"] == 2
    r = await api.get("/rest/companies", params={"filter": "idealCustomerProfile[eq]:true"})
    assert [c["name"] for c in r.json()["data"]["companies"]] == ["A"]


async def test_soft_deleted_hidden_unless_filter_names_deleted_at(api: httpx.AsyncClient) -> None:
    created = await make_people(api, 3)
    await api.delete(f"/rest/people/{created[0]['id']}", params={"soft_delete": "true"})
    assert (await api.get("/rest/people")).json()["totalCount"] == 2
    r = await api.get("/rest/people", params={"filter": "deletedAt[is]:NOT_NULL"})
    assert [p["id"] for p in r.json()["data"]["people"]] == [created[0]["id"]]


async def test_unknown_operator_lists_the_allowed_ones(api: httpx.AsyncClient) -> None:
    r = await api.get("/rest/people", params={"filter": "city[contains]:x"})
    assert r.status_code == 400
    message = r.json()["messages"][0]
    assert message.startswith("'contains' is not a valid operator. Allowed operators are: eq, neq")


async def test_filter_on_unknown_field(api: httpx.AsyncClient) -> None:
    r = await api.get("/rest/people", params={"filter": "nope[eq]:1"})
    assert r.json()["messages"] == ['Object person doesn\'t have any "nope" field.']


async def test_updated_at_filter_for_incremental_reads(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    stamps = iter(["2025-01-01T00:00:00.000Z", "2025-06-01T00:00:00.000Z"])
    sandbox.engine.clock = lambda: next(stamps)
    await api.post("/rest/companies", json={"name": "Old"})
    await api.post("/rest/companies", json={"name": "New"})
    r = await api.get("/rest/companies", params={"filter": "updatedAt[gte]:2025-03-01"})
    assert [c["name"] for c in r.json()["data"]["companies"]] == ["New"]
