"""Upsert (twenty-api.md §4) and field validation (§6), through both faces."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pipeline.sandbox import Sandbox
from tests.sandbox.conftest import client_for, gql

UPSERT_PEOPLE = (
    "mutation($data: [PersonCreateInput!]!) "
    "{ createPeople(data: $data, upsert: true) { id city emails { primaryEmail } deletedAt } }"
)


async def upsert(
    api: httpx.AsyncClient, plural: str, records: list[dict[str, Any]]
) -> httpx.Response:
    return await api.post(f"/rest/batch/{plural}", params={"upsert": "true"}, json=records)


def person(email: str, **extra: Any) -> dict[str, Any]:
    return {"emails": {"primaryEmail": email}, **extra}


async def test_upsert_matches_unique_email_after_lower_casing(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    first = (await upsert(api, "people", [person("Ada@Example.com", city="Paris")])).json()
    again = (await upsert(api, "people", [person("ada@example.COM", city="Lyon")])).json()
    a, b = first["data"]["createPeople"][0], again["data"]["createPeople"][0]
    assert a["id"] == b["id"]
    assert b["city"] == "Lyon"
    assert b["emails"]["primaryEmail"] == "ada@example.com"
    assert sandbox.engine.count_records(sandbox.engine.object("person")) == 1


async def test_upsert_matches_links_after_origin_normalisation(api: httpx.AsyncClient) -> None:
    a = (
        await upsert(
            api, "companies", [{"name": "A", "domainName": {"primaryLinkUrl": "HTTPS://ACME.com/"}}]
        )
    ).json()["data"]["createCompanies"][0]
    b = (
        await upsert(
            api, "companies", [{"name": "B", "domainName": {"primaryLinkUrl": "https://acme.com"}}]
        )
    ).json()["data"]["createCompanies"][0]
    assert a["id"] == b["id"]
    assert b["domainName"]["primaryLinkUrl"] == "https://acme.com"
    # scheme-less text is kept as given, so it is a different key (§4.5)
    c = (
        await upsert(
            api, "companies", [{"name": "C", "domainName": {"primaryLinkUrl": "acme.com"}}]
        )
    ).json()["data"]["createCompanies"][0]
    assert c["id"] != a["id"]


async def test_upsert_on_client_supplied_id(api: httpx.AsyncClient) -> None:
    rid = str(uuid.uuid4())
    await upsert(api, "notes", [{"id": rid, "title": "v1"}])
    body = (await upsert(api, "notes", [{"id": rid, "title": "v2"}])).json()
    assert body["data"]["createNotes"][0]["title"] == "v2"
    listing = (await api.get("/rest/notes")).json()
    assert listing["totalCount"] == 1


async def test_upsert_restores_a_soft_deleted_match(api: httpx.AsyncClient) -> None:
    created = (await upsert(api, "people", [person("x@example.com")])).json()
    pid = created["data"]["createPeople"][0]["id"]
    await api.delete(f"/rest/people/{pid}", params={"soft_delete": "true"})
    body = (await upsert(api, "people", [person("x@example.com", city="Back")])).json()
    restored = body["data"]["createPeople"][0]
    assert restored["id"] == pid and restored["deletedAt"] is None and restored["city"] == "Back"


async def test_plain_create_of_a_deleted_unique_value_fails(api: httpx.AsyncClient) -> None:
    pid = (await upsert(api, "people", [person("x@example.com")])).json()["data"]["createPeople"][
        0
    ]["id"]
    await api.delete(f"/rest/people/{pid}", params={"soft_delete": "true"})
    r = await api.post("/rest/batch/people", json=[person("x@example.com")])
    assert r.status_code == 400
    assert r.json()["messages"] == ["A duplicate entry was detected"]


async def test_keys_pointing_at_two_records_fail_the_whole_call(api: httpx.AsyncClient) -> None:
    a = (await upsert(api, "people", [person("a@example.com")])).json()["data"]["createPeople"][0]
    await upsert(api, "people", [person("b@example.com")])
    r = await upsert(api, "people", [{"id": a["id"], "emails": {"primaryEmail": "b@example.com"}}])
    assert r.status_code == 400
    assert r.json()["messages"][0].startswith(
        "Multiple records found with the same unique field values for"
    )
    assert r.json()["messages"][0].endswith("Cannot determine which record to update.")


async def test_duplicate_key_inside_one_batch_fails(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    r = await upsert(api, "people", [person("d@example.com"), person("D@example.com")])
    assert r.status_code == 400
    assert r.json() == {
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ["A duplicate entry was detected"],
    }
    assert sandbox.engine.count_records(sandbox.engine.object("person")) == 0


async def test_updates_apply_before_a_failing_insert(api: httpx.AsyncClient) -> None:
    """§4.8: an upsert batch can be partly applied; re-sending it must be safe."""
    await upsert(api, "people", [person("old@example.com", city="v1")])
    batch = [person("old@example.com", city="v2"), person("n@example.com"), person("n@example.com")]
    r = await upsert(api, "people", batch)
    assert r.status_code == 400
    listing = (
        await api.get("/rest/people", params={"filter": "emails.primaryEmail[eq]:old@example.com"})
    ).json()
    assert listing["data"]["people"][0]["city"] == "v2"


async def test_maximum_number_of_records(make_sandbox: Any) -> None:
    sandbox = make_sandbox(max_records=3)
    async with client_for(sandbox) as api:
        r = await upsert(api, "notes", [{"title": str(i)} for i in range(4)])
        assert r.status_code == 400
        assert r.json()["messages"] == ["Maximum number of records to upsert is 3."]
        body = await gql(
            api,
            "mutation($d:[NoteCreateInput!]!){createNotes(data:$d){id}}",
            d=[{"title": str(i)} for i in range(4)],
        )
    assert body["errors"][0]["message"] == "Maximum number of records to upsert is 3."
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_empty_and_non_array_batches(api: httpx.AsyncClient) -> None:
    assert (await api.post("/rest/batch/notes", json=[])).json()["messages"] == [
        "Input must not be empty"
    ]
    assert (await api.post("/rest/batch/notes", json={"title": "x"})).json()["messages"] == [
        "Body must be an array"
    ]


async def test_legacy_rest_batch_ignores_upsert(make_sandbox: Any) -> None:
    """§2.4a: on old servers only GraphQL upserts; REST batch answers 'Record already exists'."""
    sandbox = make_sandbox(profile="legacy")
    rid = str(uuid.uuid4())
    async with client_for(sandbox) as api:
        await upsert(api, "notes", [{"id": rid, "title": "v1"}])
        r = await upsert(api, "notes", [{"id": rid, "title": "v2"}])
        assert r.status_code == 400
        assert r.json()["messages"] == ["Record already exists"]
        body = await gql(
            api,
            "mutation($d:[NoteCreateInput!]!){createNotes(data:$d, upsert:true){title}}",
            d=[{"id": rid, "title": "v2"}],
        )
    assert body["data"]["createNotes"][0]["title"] == "v2"


async def test_graphql_upsert_same_rules(api: httpx.AsyncClient) -> None:
    one = await gql(api, UPSERT_PEOPLE, data=[person("G@x.io", city="a")])
    two = await gql(api, UPSERT_PEOPLE, data=[person("g@x.io", city="b")])
    assert one["data"]["createPeople"][0]["id"] == two["data"]["createPeople"][0]["id"]
    dup = await gql(api, UPSERT_PEOPLE, data=[person("h@x.io"), person("H@x.io")])
    assert dup["errors"][0]["message"] == "A duplicate entry was detected"
    assert dup["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_upsert_keeps_the_original_creator(api: httpx.AsyncClient) -> None:
    first = (await upsert(api, "people", [person("c@x.io", createdBy={"source": "IMPORT"})])).json()
    assert first["data"]["createPeople"][0]["createdBy"]["source"] == "IMPORT"
    again = (await upsert(api, "people", [person("c@x.io", createdBy={"source": "MANUAL"})])).json()
    assert again["data"]["createPeople"][0]["createdBy"]["source"] == "IMPORT"


# ------------------------------------------------------------------ validation (§6)


@pytest.mark.parametrize(
    ("plural", "record", "message"),
    [
        ("people", {"foo": 1}, 'Object person doesn\'t have any "foo" field.'),
        ("people", {"jobTitle": 1}, 'Invalid string value 1 for text field "jobTitle"'),
        ("companies", {"employees": "12"}, "Invalid number value '12' for field \"employees\""),
        (
            "companies",
            {"idealCustomerProfile": "yes"},
            "Invalid boolean value 'yes' for field \"idealCustomerProfile\"",
        ),
        ("opportunities", {"stage": "FOO"}, "Invalid value 'FOO' for field \"stage\""),
        (
            "opportunities",
            {"closeDate": "2024-02-31"},
            "Invalid date value '2024-02-31' for field \"closeDate\"",
        ),
        (
            "opportunities",
            {"closeDate": "2024"},
            "Invalid date value '2024' for field \"closeDate\"",
        ),
        (
            "opportunities",
            {"amount": {"amountMicros": 1, "currency": "EUR"}},
            "Invalid subfield currency for currency field",
        ),
        (
            "people",
            {"emails": {"primaryEmail": "not-an-email"}},
            "Invalid email value 'not-an-email' for field \"emails\"",
        ),
        ("people", {"companyId": "123"}, "'123' is not a valid UUID"),
        (
            "people",
            {"companyId": "00000000-0000-4000-8000-000000000000"},
            "Foreign key violation on companyId: no company with id "
            "00000000-0000-4000-8000-000000000000",
        ),
        (
            "companies",
            {"people": []},
            "One-to-many relation people field does not support write operations.",
        ),
        ("people", {"position": "123"}, "Invalid position value '123' for field \"position\""),
        ("people", {"searchVector": "x"}, "Field searchVector does not support write operations."),
    ],
)
async def test_validation_messages(
    api: httpx.AsyncClient, plural: str, record: dict[str, Any], message: str
) -> None:
    r = await api.post(f"/rest/batch/{plural}", json=[record])
    assert r.status_code == 400, r.text
    assert r.json() == {"statusCode": 400, "error": "BadRequestException", "messages": [message]}


@pytest.mark.parametrize(
    ("field", "given", "stored"),
    [
        ("closeDate", "2025-01-13", "2025-01-13T00:00:00.000Z"),
        ("closeDate", "2025-01-13T10:30:00+02:00", "2025-01-13T08:30:00.000Z"),
        ("closeDate", "01/13/2025", "2025-01-13T00:00:00.000Z"),
        ("closeDate", "Jan 13, 2025", "2025-01-13T00:00:00.000Z"),
        (
            "amount",
            {"amountMicros": "1500000000", "currencyCode": "EUR"},
            {"amountMicros": 1500000000, "currencyCode": "EUR"},
        ),
        ("amount", {"amountMicros": 12.5}, {"amountMicros": 12.5, "currencyCode": ""}),
        ("name", "", None),
        ("stage", None, "NEW"),  # not nullable, but it has a default
    ],
)
async def test_accepted_inputs_and_stored_forms(
    api: httpx.AsyncClient, field: str, given: Any, stored: Any
) -> None:
    r = await api.post("/rest/opportunities", json={field: given})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["createOpportunity"][field] == stored


async def test_emails_lower_cased_and_additional_emails(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/rest/people",
        json={"emails": {"primaryEmail": "A@B.COM", "additionalEmails": ["C@D.com"]}},
    )
    assert r.json()["data"]["createPerson"]["emails"] == {
        "primaryEmail": "a@b.com",
        "additionalEmails": ["c@d.com"],
    }


async def test_rich_text_markdown_is_converted(api: httpx.AsyncClient) -> None:
    r = await api.post("/rest/notes", json={"bodyV2": {"markdown": "hello"}})
    body = r.json()["data"]["createNote"]["bodyV2"]
    assert body["markdown"] == "hello" and "hello" in body["blocknote"]


async def test_stage_default_and_partial_composite_update(api: httpx.AsyncClient) -> None:
    opp = (await api.post("/rest/opportunities", json={"name": "Deal"})).json()["data"][
        "createOpportunity"
    ]
    assert opp["stage"] == "NEW"
    pers = (
        await api.post("/rest/people", json={"name": {"firstName": "Ada", "lastName": "L"}})
    ).json()
    pid = pers["data"]["createPerson"]["id"]
    r = await api.patch(f"/rest/people/{pid}", json={"name": {"lastName": "Lovelace"}})
    assert r.json()["data"]["updatePerson"]["name"] == {"firstName": "Ada", "lastName": "Lovelace"}


async def test_destroying_a_company_clears_the_join_column(api: httpx.AsyncClient) -> None:
    company = (await api.post("/rest/companies", json={"name": "Gone"})).json()["data"][
        "createCompany"
    ]
    pid = (await api.post("/rest/people", json={"companyId": company["id"]})).json()["data"][
        "createPerson"
    ]["id"]
    await api.delete(f"/rest/companies/{company['id']}")
    assert (await api.get(f"/rest/people/{pid}")).json()["data"]["person"]["companyId"] is None
