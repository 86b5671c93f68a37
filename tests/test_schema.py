"""The metadata model: both envelopes, composite fields, unique keys, relations, options."""

from __future__ import annotations

import json
from typing import Any

import httpx

from pipeline.schema import load_schema, object_to_json, parse_schema

COMPANY_ID = "11111111-1111-4111-8111-111111111111"
PERSON_ID = "22222222-2222-4222-8222-222222222222"

FIELDS: list[dict[str, Any]] = [
    {
        "id": "f1",
        "objectMetadataId": PERSON_ID,
        "name": "id",
        "type": "UUID",
        "label": "Id",
        "isSystem": True,
        "isNullable": False,
    },
    {
        "id": "f2",
        "objectMetadataId": PERSON_ID,
        "name": "emails",
        "type": "EMAILS",
        "label": "Emails",
        "isUnique": True,
    },
    {
        "id": "f3",
        "objectMetadataId": PERSON_ID,
        "name": "name",
        "type": "FULL_NAME",
        "label": "Name",
    },
    {
        "id": "f4",
        "objectMetadataId": PERSON_ID,
        "name": "company",
        "type": "RELATION",
        "label": "Company",
        "relation": {
            "type": "MANY_TO_ONE",
            "targetObjectMetadata": {
                "id": COMPANY_ID,
                "nameSingular": "company",
                "namePlural": "companies",
            },
            "targetFieldMetadata": {"id": "f9", "name": "people"},
        },
        "settings": {"relationType": "MANY_TO_ONE", "joinColumnName": "companyId"},
    },
    {
        "id": "f5",
        "objectMetadataId": PERSON_ID,
        "name": "searchVector",
        "type": "TS_VECTOR",
        "label": "Search",
        "isSystem": True,
    },
    {
        "id": "f6",
        "objectMetadataId": PERSON_ID,
        "name": "stage",
        "type": "SELECT",
        "label": "Stage",
        "isNullable": False,
        "defaultValue": "'NEW'",
        "options": [
            {"id": "o2", "value": "WON", "label": "Closed won", "position": 1},
            {"id": "o1", "value": "NEW", "label": "New", "position": 0},
        ],
    },
    {
        "id": "f7",
        "objectMetadataId": PERSON_ID,
        "name": "oldField",
        "type": "TEXT",
        "label": "Old",
        "isActive": False,
    },
    {
        "id": "f8",
        "objectMetadataId": COMPANY_ID,
        "name": "domainName",
        "type": "LINKS",
        "label": "Domain",
        "isUnique": True,
    },
    {
        "id": "f9",
        "objectMetadataId": COMPANY_ID,
        "name": "people",
        "type": "RELATION",
        "label": "People",
        "settings": {"relationType": "ONE_TO_MANY"},
        "relation": {"type": "ONE_TO_MANY", "targetObjectMetadata": {"id": PERSON_ID}},
    },
]

OBJECTS: list[dict[str, Any]] = [
    {
        "id": PERSON_ID,
        "nameSingular": "person",
        "namePlural": "people",
        "labelSingular": "Person",
        "labelPlural": "People",
        "isCustom": False,
        "isActive": True,
    },
    {
        "id": COMPANY_ID,
        "nameSingular": "company",
        "namePlural": "companies",
        "labelSingular": "Company",
        "labelPlural": "Companies",
    },
]


def test_fields_joined_from_the_field_list() -> None:
    ws = parse_schema(OBJECTS, FIELDS)
    person = ws.object("People")
    assert person is not None and person.name_singular == "person"
    assert person.unique_paths == ["id", "emails.primaryEmail"]
    company = ws.object("company")
    assert company is not None
    assert company.unique_paths == ["id", "domainName.primaryLinkUrl"]


def test_relations_and_join_columns() -> None:
    ws = parse_schema(OBJECTS, FIELDS)
    person = ws.object("person")
    assert person is not None
    rel = person.fields["company"].relation
    assert rel is not None
    assert (rel.type, rel.target_object, rel.join_column) == ("MANY_TO_ONE", "company", "companyId")
    assert person.field("companyId") is person.fields["company"]
    assert person.fields["company"].writable
    company = ws.object("company")
    assert company is not None
    back = company.fields["people"]
    assert back.relation is not None and back.relation.target_object == "person"
    assert back.relation.join_column is None
    assert not back.writable  # one-to-many cannot be written


def test_paths_options_and_writability() -> None:
    person = parse_schema(OBJECTS, FIELDS).object("person")
    assert person is not None
    resolved = person.resolve_path("name.firstName")
    assert resolved is not None and resolved[1] == "firstName"
    assert person.resolve_path("name.middleName") is None
    assert person.resolve_path("nope") is None
    stage = person.fields["stage"]
    assert [o.value for o in stage.options] == ["NEW", "WON"]  # by position
    assert stage.option("closed WON") is not None and stage.option("closed won").value == "WON"
    assert stage.option("won") is not None
    assert stage.option("lost") is None
    assert not person.fields["searchVector"].writable
    assert not person.fields["oldField"].writable
    assert "emails.primaryEmail" in person.suggest_field("emails.primaryEmal")


def test_embedded_fields_newest_envelope() -> None:
    embedded = [dict(OBJECTS[0], fields=[f for f in FIELDS if f["objectMetadataId"] == PERSON_ID])]
    person = parse_schema(embedded).object("person")
    assert person is not None and "emails" in person.fields


def test_suggest_object() -> None:
    ws = parse_schema(OBJECTS, FIELDS)
    assert ws.suggest_object("persn") == ["person"]
    assert ws.object("persn") is None


def test_json_shape() -> None:
    person = parse_schema(OBJECTS, FIELDS).object("person")
    assert person is not None
    out = object_to_json(person)
    assert out["uniqueKeys"] == ["id", "emails.primaryEmail"]
    names = [f["name"] for f in out["fields"]]
    assert "oldField" not in names
    company = next(f for f in out["fields"] if f["name"] == "company")
    assert company["relation"] == {
        "type": "MANY_TO_ONE",
        "target": "company",
        "joinColumn": "companyId",
    }
    json.dumps(out)


async def test_load_schema_reads_fields_when_objects_do_not_embed_them(make_client: Any) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/rest/metadata/objects":
            return httpx.Response(
                200, json={"data": {"objects": OBJECTS}, "pageInfo": {"hasNextPage": False}}
            )
        return httpx.Response(200, json={"data": FIELDS, "pageInfo": {"hasNextPage": False}})

    async with make_client(handler) as client:
        ws = await load_schema(client)
    # the first call asks for the workspace's feature flags (its rate-limit bucket)
    assert calls == ["/metadata", "/rest/metadata/objects", "/rest/metadata/fields"]
    person = ws.object("person")
    assert person is not None and person.fields["emails"].is_unique
