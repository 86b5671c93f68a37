"""Metadata API (twenty-api.md §8) and the GraphQL core face (§3), cross-checked with REST."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.sandbox import Sandbox
from pipeline.schema import parse_schema
from tests.sandbox.conftest import client_for, gql

PERSON_FIELDS = (
    "id name { firstName lastName } emails { primaryEmail additionalEmails } city jobTitle "
    "phones { primaryPhoneNumber primaryPhoneCountryCode primaryPhoneCallingCode additionalPhones } "
    "linkedinLink { primaryLinkUrl primaryLinkLabel secondaryLinks } companyId position "
    "createdAt updatedAt deletedAt"
)


# ------------------------------------------------------------------ metadata


async def test_newest_objects_envelope_embeds_fields(api: httpx.AsyncClient) -> None:
    body = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()
    assert set(body) == {"data", "pageInfo", "totalCount"}
    names = {o["nameSingular"] for o in body["data"]}
    assert {
        "company",
        "person",
        "opportunity",
        "note",
        "task",
        "noteTarget",
        "taskTarget",
        "workspaceMember",
    } <= names
    person = next(o for o in body["data"] if o["nameSingular"] == "person")
    emails = next(f for f in person["fields"] if f["name"] == "emails")
    assert emails["type"] == "EMAILS" and emails["isUnique"] is True
    company = next(f for f in person["fields"] if f["name"] == "company")
    assert company["relation"]["type"] == "MANY_TO_ONE"
    assert company["relation"]["targetObjectMetadata"]["nameSingular"] == "company"
    assert company["settings"]["joinColumnName"] == "companyId"


async def test_legacy_envelope_needs_the_field_list(make_sandbox: Any) -> None:
    async with client_for(make_sandbox(profile="legacy")) as api:
        objects = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()
        assert isinstance(objects["data"]["objects"], list)
        assert "fields" not in objects["data"]["objects"][0]
        fields: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 50}
            if cursor:
                params["starting_after"] = cursor
            page = (await api.get("/rest/metadata/fields", params=params)).json()
            fields.extend(page["data"]["fields"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            cursor = page["pageInfo"]["endCursor"]
    ws = parse_schema(objects["data"]["objects"], fields)
    person = ws.object("person")
    assert person is not None and person.unique_paths == ["id", "emails.primaryEmail"]
    assert len({f["id"] for f in fields}) == len(fields)


async def test_opportunity_stage_options(api: httpx.AsyncClient) -> None:
    body = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()
    opp = next(o for o in body["data"] if o["nameSingular"] == "opportunity")
    stage = next(f for f in opp["fields"] if f["name"] == "stage")
    assert [o["value"] for o in stage["options"]] == [
        "NEW",
        "SCREENING",
        "MEETING",
        "PROPOSAL",
        "CUSTOMER",
    ]
    assert stage["isNullable"] is False and stage["defaultValue"] == "'NEW'"


async def test_custom_object_and_fields_through_rest(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/rest/metadata/objects",
        json={
            "nameSingular": "pet",
            "namePlural": "pets",
            "labelSingular": "Pet",
            "labelPlural": "Pets",
        },
    )
    assert r.status_code == 201, r.text
    pet = r.json()
    assert pet["isCustom"] is True
    r = await api.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": pet["id"],
            "type": "TEXT",
            "name": "chipId",
            "label": "Chip",
            "isUnique": True,
        },
    )
    assert r.status_code == 201 and r.json()["isUnique"] is True
    r = await api.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": pet["id"],
            "type": "SELECT",
            "name": "species",
            "label": "Species",
            "options": [
                {"value": "DOG", "label": "Dog", "position": 0, "color": "red"},
                {"value": "CAT", "label": "Cat", "position": 1, "color": "blue"},
            ],
        },
    )
    assert r.status_code == 201
    companies = next(
        o
        for o in (await api.get("/rest/metadata/objects", params={"limit": 200})).json()["data"]
        if o["nameSingular"] == "company"
    )
    r = await api.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": pet["id"],
            "type": "RELATION",
            "name": "owner",
            "label": "Owner",
            "relationCreationPayload": {
                "type": "MANY_TO_ONE",
                "targetObjectMetadataId": companies["id"],
                "targetFieldLabel": "Pets",
            },
        },
    )
    assert r.status_code == 201, r.text
    # records of the new object, upserted on the custom unique field
    company = (await api.post("/rest/companies", json={"name": "Vet"})).json()["data"][
        "createCompany"
    ]
    rows = [{"name": "Rex", "chipId": "A1", "species": "DOG", "ownerId": company["id"]}]
    first = (await api.post("/rest/batch/pets", params={"upsert": "true"}, json=rows)).json()
    rows[0]["name"] = "Rex II"
    again = (await api.post("/rest/batch/pets", params={"upsert": "true"}, json=rows)).json()
    assert first["data"]["createPets"][0]["id"] == again["data"]["createPets"][0]["id"]
    bad = await api.post("/rest/batch/pets", json=[{"species": "FISH"}])
    assert bad.json()["messages"] == ["Invalid value 'FISH' for field \"species\""]
    back = (await api.get(f"/rest/companies/{company['id']}", params={"depth": "1"})).json()
    assert [p["name"] for p in back["data"]["company"]["pets"]] == ["Rex II"]


async def test_field_creation_reports_every_problem(api: httpx.AsyncClient) -> None:
    objects = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()["data"]
    person = next(o for o in objects if o["nameSingular"] == "person")
    r = await api.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": person["id"],
            "type": "SELECT",
            "name": "city",
            "options": [{"value": "lower", "label": "x"}],
        },
    )
    assert r.status_code == 400
    message = r.json()["messages"][0]
    assert 'Name "city" is not available' in message
    assert "label is required" in message
    assert 'Value must be in UPPER_CASE and follow snake_case "lower"' in message


async def test_not_nullable_custom_field_without_default(api: httpx.AsyncClient) -> None:
    objects = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()["data"]
    note = next(o for o in objects if o["nameSingular"] == "note")
    await api.post(
        "/rest/metadata/fields",
        json={
            "objectMetadataId": note["id"],
            "type": "NUMBER",
            "name": "score",
            "label": "Score",
            "isNullable": False,
        },
    )
    r = await api.post("/rest/batch/notes", json=[{"score": None}])
    assert r.json()["messages"] == ["Field score is not nullable and has no default value."]


async def test_metadata_graphql_create_field(api: httpx.AsyncClient) -> None:
    body = (
        await api.post(
            "/metadata",
            json={
                "query": "{ objects(paging: {first: 1000}) "
                "{ edges { node { id nameSingular fields { edges "
                "{ node { name type isUnique } } } } } } }"
            },
        )
    ).json()
    nodes = [e["node"] for e in body["data"]["objects"]["edges"]]
    company = next(n for n in nodes if n["nameSingular"] == "company")
    assert {"name": "domainName", "type": "LINKS", "isUnique": True} in [
        e["node"] for e in company["fields"]["edges"]
    ]
    created = (
        await api.post(
            "/metadata",
            json={
                "query": "mutation($input: CreateOneFieldMetadataInput!) "
                "{ createOneField(input: $input) { id name type } }",
                "variables": {
                    "input": {
                        "field": {
                            "objectMetadataId": company["id"],
                            "type": "NUMBER",
                            "name": "seats",
                            "label": "Seats",
                        }
                    }
                },
            },
        )
    ).json()
    assert created["data"]["createOneField"]["name"] == "seats"
    r = await api.post("/rest/companies", json={"seats": 12})
    assert r.json()["data"]["createCompany"]["seats"] == 12


# ------------------------------------------------------------------ GraphQL core


async def test_graphql_write_reads_back_identically_through_rest(api: httpx.AsyncClient) -> None:
    data = {
        "name": {"firstName": "Grace", "lastName": "Hopper"},
        "emails": {"primaryEmail": "GRACE@navy.mil", "additionalEmails": ["g@h.io"]},
        "phones": {
            "primaryPhoneNumber": "612345678",
            "primaryPhoneCountryCode": "FR",
            "primaryPhoneCallingCode": "+33",
        },
        "linkedinLink": {"primaryLinkUrl": "HTTPS://LinkedIn.com/in/grace/"},
        "city": "Arlington",
    }
    body = await gql(
        api,
        f"mutation($d: PersonCreateInput!) {{ createPerson(data: $d) {{ {PERSON_FIELDS} }} }}",
        d=data,
    )
    via_graphql = body["data"]["createPerson"]
    via_rest = (await api.get(f"/rest/people/{via_graphql['id']}")).json()["data"]["person"]
    assert {k: via_rest[k] for k in via_graphql} == via_graphql
    assert via_rest["linkedinLink"]["primaryLinkUrl"] == "https://linkedin.com/in/grace"


async def test_rest_write_reads_back_identically_through_graphql(api: httpx.AsyncClient) -> None:
    rest = (
        await api.post(
            "/rest/people",
            json={
                "name": {"firstName": "Alan"},
                "emails": {"primaryEmail": "alan@bletchley.uk"},
                "jobTitle": "Cryptanalyst",
            },
        )
    ).json()["data"]["createPerson"]
    body = await gql(
        api,
        f"query($f: PersonFilterInput!) {{ person(filter: $f) {{ {PERSON_FIELDS} }} }}",
        f={"id": {"eq": rest["id"]}},
    )
    via_graphql = body["data"]["person"]
    assert via_graphql == {k: rest[k] for k in via_graphql}


async def test_graphql_connection_filters_order_and_cursors(api: httpx.AsyncClient) -> None:
    await api.post(
        "/rest/batch/companies",
        json=[
            {"name": n, "employees": e} for n, e in [("A", 1), ("B", 20), ("C", 300), ("D", None)]
        ],
    )
    query = (
        "query($f: CompanyFilterInput, $o: [CompanyOrderByInput], $first: Int, $after: String)"
        " { companies(filter: $f, orderBy: $o, first: $first, after: $after) { "
        "edges { node { name } cursor } pageInfo { hasNextPage hasPreviousPage startCursor "
        "endCursor } totalCount } }"
    )
    page = (
        await gql(
            api, query, f={"employees": {"gte": 10}}, o=[{"employees": "DescNullsLast"}], first=1
        )
    )["data"]["companies"]
    assert [e["node"]["name"] for e in page["edges"]] == ["C"]
    assert page["totalCount"] == 2 and page["pageInfo"]["hasNextPage"] is True
    nxt = (
        await gql(
            api,
            query,
            f={"employees": {"gte": 10}},
            o=[{"employees": "DescNullsLast"}],
            first=1,
            after=page["pageInfo"]["endCursor"],
        )
    )["data"]["companies"]
    assert [e["node"]["name"] for e in nxt["edges"]] == ["B"]
    either = (
        await gql(api, query, f={"or": [{"name": {"eq": "A"}}, {"employees": {"is": "NULL"}}]})
    )["data"]
    assert sorted(e["node"]["name"] for e in either["companies"]["edges"]) == ["A", "D"]


async def test_graphql_update_delete_destroy_restore(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    rid = (await api.post("/rest/notes", json={"title": "t"})).json()["data"]["createNote"]["id"]
    up = await gql(
        api, 'mutation($id: UUID!) { updateNote(id: $id, data: {title: "u"}) { title } }', id=rid
    )
    assert up["data"]["updateNote"]["title"] == "u"
    gone = await gql(api, "mutation($id: UUID!) { deleteNote(id: $id) { deletedAt } }", id=rid)
    assert gone["data"]["deleteNote"]["deletedAt"] is not None
    back = await gql(api, "mutation($id: UUID!) { restoreNote(id: $id) { deletedAt } }", id=rid)
    assert back["data"]["restoreNote"]["deletedAt"] is None
    await gql(api, "mutation($id: UUID!) { destroyNote(id: $id) { id } }", id=rid)
    assert sandbox.engine.count_records(sandbox.engine.object("note"), with_deleted=True) == 0
    missing = await gql(
        api, 'mutation($id: UUID!) { updateNote(id: $id, data: {title: "x"}) { id } }', id=rid
    )
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ people { edges { node { nope } } } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ people { ", "GRAPHQL_PARSE_FAILED"),
    ],
)
async def test_graphql_document_errors(api: httpx.AsyncClient, query: str, code: str) -> None:
    body = await gql(api, query)
    assert body["errors"][0]["extensions"]["code"] == code


async def test_graphql_unknown_input_field_is_bad_user_input(api: httpx.AsyncClient) -> None:
    body = await gql(
        api, "mutation($d: [PersonCreateInput!]!) { createPeople(data: $d) { id } }", d=[{"foo": 1}]
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    # graphql-core words it differently from graphql-js; both name the type and the field
    assert "PersonCreateInput" in error["message"] and "foo" in error["message"]


async def test_graphql_relations_both_ways(api: httpx.AsyncClient) -> None:
    company = (await api.post("/rest/companies", json={"name": "Acme"})).json()["data"][
        "createCompany"
    ]
    await api.post(
        "/rest/batch/people",
        json=[{"city": "X", "companyId": company["id"]}, {"city": "Y", "companyId": company["id"]}],
    )
    body = await gql(
        api,
        "{ companies { edges { node { name people { totalCount edges "
        "{ node { city company { name } } } } } } } }",
    )
    node = body["data"]["companies"]["edges"][0]["node"]
    assert node["people"]["totalCount"] == 2
    assert {e["node"]["company"]["name"] for e in node["people"]["edges"]} == {"Acme"}
