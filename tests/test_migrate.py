"""migrate: one workspace's records into another, ids and relations kept (issue 11)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.migrate import copy_object, member_map, plan_migration
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient

ROOT = Path(__file__).resolve().parents[1]
COMPARED_OUT = {"updatedAt", "createdBy", "updatedBy", "searchVector"}


def client_for(box: Sandbox) -> TwentyClient:
    import httpx

    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(10_000, 1),
        transport=httpx.ASGITransport(app=box.app),
    )


def add_tier(box: Sandbox) -> None:
    """A custom field on company, in a workspace's data model."""
    company = box.engine.object("company")
    box.engine.create_field(
        {"objectMetadataId": company.id, "name": "tier", "label": "Tier", "type": "TEXT"}
    )
    box.engine.reload_metadata()


async def seed(folder: Path, box: Sandbox, *, tier: bool = False) -> None:
    """The sample companies, people, deals and notes (with their targets)."""
    shutil.copytree(ROOT / "mappings", folder / "mappings")
    shutil.copytree(ROOT / "sample_data", folder / "sample_data")
    async with client_for(box) as client:
        for name in ("companies", "people", "opportunities", "notes"):
            await import_file(
                load_mapping(folder / "mappings" / f"{name}.yaml"), client, state_dir=folder / "s"
            )
        if tier:
            first = (await client.find_many(box_names(box, "company"), limit=1)).records[0]
            await client.upsert_many(
                box_names(box, "company"), [{"id": first["id"], "tier": "gold"}]
            )


def box_names(box: Sandbox, name: str) -> Any:
    from pipeline.twenty import ObjectNames

    obj = box.engine.object(name)
    return ObjectNames(obj.name_singular, obj.name_plural)


def records(box: Sandbox, name: str) -> dict[str, dict[str, Any]]:
    found = box.engine.find_many(box.engine.object(name), limit=500).records
    return {r["id"]: {k: v for k, v in r.items() if k not in COMPARED_OUT} for r in found}


@pytest.fixture
def two(tmp_path: Path) -> Any:
    boxes = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in ("a", "b")]
    yield boxes
    for box in boxes:
        box.close()


async def test_a_workspace_is_copied_with_ids_relations_and_creation_dates(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    source, target = two
    for box in two:
        add_tier(box)
    await seed(tmp_path, source, tier=True)
    async with client_for(source) as reading, client_for(target) as writing:
        plan = plan_migration(await load_schema(reading), await load_schema(writing))
        assert plan.missing == []
        order = [p.source.name_singular for p in plan.objects]
        assert order.index("company") < order.index("person") < order.index("noteTarget")
        assert order.index("note") < order.index("noteTarget")
        members = await member_map(reading, writing)
        counts = [
            await copy_object(reading, writing, p, members, tmp_path / "m", batch_size=60)
            for p in plan.objects
        ]
    for count in counts:
        assert count.written == count.source_count == count.target_count, count
    for name in ("company", "person", "opportunity", "note", "noteTarget"):
        assert records(target, name) == records(source, name), name  # createdAt included
    tiers = [r["tier"] for r in records(target, "company").values() if r.get("tier")]
    assert tiers == ["gold"]


async def test_a_stopped_migration_resumes_without_a_duplicate(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    source, target = two
    await seed(tmp_path, source)
    async with client_for(source) as reading, client_for(target) as writing:
        plan = plan_migration(await load_schema(reading), await load_schema(writing))
        members = await member_map(reading, writing)
        first = plan.objects[0]
        await copy_object(reading, writing, first, members, tmp_path / "m", batch_size=60)
        # the same objects again, as a re-run after a kill would: nothing written twice
        for step in plan.objects:
            count = await copy_object(reading, writing, step, members, tmp_path / "m", batch_size=2)
            assert count.target_count == count.source_count
    assert records(target, "company") == records(source, "company")


def test_custom_objects_and_fields_the_target_lacks_are_created_first(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    """A custom object with a text field, a select and a relation to company, and a custom
    field on company: created in the empty target, then the records copied."""
    source = two[0]
    add_tier(source)
    project = source.engine.create_object(
        {
            "nameSingular": "project",
            "namePlural": "projects",
            "labelSingular": "Project",
            "labelPlural": "Projects",
        }
    )
    company = source.engine.object("company")
    for body in (
        {"name": "code", "label": "Code", "type": "TEXT"},
        {
            "name": "phase",
            "label": "Phase",
            "type": "SELECT",
            "options": [
                {"value": "PLAN", "label": "Plan", "position": 0, "color": "blue"},
                {"value": "BUILD", "label": "Build", "position": 1, "color": "green"},
            ],
        },
        {
            "name": "client",
            "label": "Client",
            "type": "RELATION",
            "relationCreationPayload": {
                "type": "MANY_TO_ONE",
                "targetObjectMetadataId": company.id,
                "targetFieldLabel": "Projects",
                "targetFieldIcon": "IconLink",
            },
        },
    ):
        source.engine.create_field({"objectMetadataId": project["id"], **body})
    source.engine.reload_metadata()

    async def fill() -> None:
        await seed(tmp_path, source, tier=True)
        async with client_for(source) as client:
            first = (await client.find_many(box_names(source, "company"), limit=1)).records[0]
            await client.upsert_many(
                box_names(source, "project"),
                [
                    {"name": "Apollo", "code": "AP-1", "phase": "BUILD", "clientId": first["id"]},
                    {"name": "Gemini", "code": "GE-2", "phase": "PLAN"},
                ],
            )

    asyncio.run(fill())
    a, b = (str(tmp_path / f"{n}.sqlite") for n in ("a", "b"))
    for box in two:
        box.close()
    state = str(tmp_path / "m")
    dry = CliRunner().invoke(
        cli, ["migrate", "--from-sandbox", a, "--to-sandbox", b, "--state-dir", state, "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "create object project" in dry.output
    assert "create field company.tier (TEXT)" in dry.output
    assert "create field project.client (relation to company)" in dry.output
    done = CliRunner().invoke(
        cli, ["migrate", "--from-sandbox", a, "--to-sandbox", b, "--state-dir", state]
    )
    assert done.exit_code == 0, done.output
    reopened = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in "ab"]
    try:
        for name in ("company", "person", "noteTarget", "project"):
            assert records(reopened[1], name) == records(reopened[0], name), name
        phases = sorted(r["phase"] for r in records(reopened[1], "project").values())
        assert phases == ["BUILD", "PLAN"]
    finally:
        for box in reopened:
            box.close()


def test_a_field_of_another_type_in_the_target_stops_before_any_write(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    source, target = two
    add_tier(source)
    company = target.engine.object("company")
    target.engine.create_field(
        {"objectMetadataId": company.id, "name": "tier", "label": "Tier", "type": "NUMBER"}
    )
    a, b = (str(tmp_path / f"{n}.sqlite") for n in ("a", "b"))
    for box in two:
        box.close()
    result = CliRunner().invoke(
        cli,
        ["migrate", "--from-sandbox", a, "--to-sandbox", b, "--state-dir", str(tmp_path / "m")],
    )
    assert result.exit_code == 2
    assert "the target's company.tier is NUMBER, the source's TEXT" in result.output
    dry = CliRunner().invoke(
        cli,
        ["migrate", "--from-sandbox", a, "--to-sandbox", a, "--dry-run", "--objects", "compny"],
    )
    assert dry.exit_code == 2
    assert "--objects: the source workspace has no object 'compny'" in dry.output


def test_keys_and_urls_are_named_per_side() -> None:
    result = CliRunner().invoke(cli, ["migrate", "--from-url", "https://crm.example.com"])
    assert result.exit_code == 2
    assert "TWENTY_FROM_API_KEY" in result.output
    assert "--to-url" in result.output


async def test_pages_are_read_one_ahead_in_order_and_a_failed_read_stops_the_copy() -> None:
    from pipeline.migrate import _one_ahead
    from pipeline.twenty.paginate import Page

    read: list[int] = []

    async def pages(fail_at: int | None) -> AsyncIterator[Page]:
        for n in range(4):
            if n == fail_at:
                raise RuntimeError("source gone")
            read.append(n)
            yield Page([{"id": str(n)}], n < 3, str(n), 4)

    seen = []
    async for page in _one_ahead(pages(None)):
        seen.append(page.records[0]["id"])
        await asyncio.sleep(0)
        assert len(read) == min(len(seen) + 1, 4)  # the next page read meanwhile
    assert seen == ["0", "1", "2", "3"]

    read.clear()
    got = []
    with pytest.raises(RuntimeError, match="source gone"):
        async for page in _one_ahead(pages(2)):
            got.append(page.records[0]["id"])
    assert got == ["0", "1"]


def test_one_workspace_on_both_sides_is_recognised() -> None:
    from pipeline.cli.migrating import _one_workspace
    from pipeline.config import Secret, Settings

    def side(url: str, key: str) -> Settings:
        return Settings(api_url=url, api_key=Secret(key))

    assert _one_workspace(side("https://a.io", "k1"), side("https://a.io", "k1"))
    # Twenty Cloud: one address, many workspaces, one key each
    assert not _one_workspace(side("https://a.io", "k1"), side("https://a.io", "k2"))
    assert not _one_workspace(side("https://a.io", "k1"), side("https://b.io", "k1"))
    box = Path("/tmp/ws.sqlite")
    assert _one_workspace(Settings(sandbox=box), Settings(sandbox=box))
    assert not _one_workspace(Settings(sandbox=box), Settings(sandbox=Path("/tmp/other.sqlite")))


def test_options_a_target_select_lacks_are_added_before_the_copy(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    """The source added a LOST stage; the target's stage gains it (its own options kept,
    with their ids) and the deal arrives in it."""
    source, target = two
    stage = next(
        f
        for f in source.engine.field_dtos()
        if f["name"] == "stage" and f["objectMetadataId"] == source.engine.object("opportunity").id
    )
    lost = {"value": "LOST", "label": "Lost", "position": 9, "color": "red"}
    source.engine.update_field(stage["id"], {"options": [*stage["options"], lost]})
    actor = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}
    source.engine.create_many(
        source.engine.object("opportunity"),
        [{"name": "Gone", "stage": "LOST"}, {"name": "Open", "stage": "NEW"}],
        upsert=False,
        actor=actor,
    )
    target_stage = next(
        f
        for f in target.engine.field_dtos()
        if f["name"] == "stage" and f["objectMetadataId"] == target.engine.object("opportunity").id
    )
    for box in two:
        box.close()
    a, b, state = (str(tmp_path / n) for n in ("a.sqlite", "b.sqlite", "m"))
    args = ["migrate", "--from-sandbox", a, "--to-sandbox", b, "--state-dir", state]
    dry = CliRunner().invoke(cli, [*args, "--objects", "opportunity", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "add to opportunity.stage the options LOST" in dry.output
    done = CliRunner().invoke(cli, [*args, "--objects", "opportunity"])
    assert done.exit_code == 0, done.output
    reopened = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in "ab"]
    try:
        after = next(
            f
            for f in reopened[1].engine.field_dtos()
            if f["name"] == "stage"
            and f["objectMetadataId"] == reopened[1].engine.object("opportunity").id
        )
        assert after["options"][: len(target_stage["options"])] == target_stage["options"]
        assert (after["options"][-1]["value"], after["options"][-1]["label"]) == ("LOST", "Lost")
        source_lost = next(
            o
            for f in reopened[0].engine.field_dtos()
            if f["id"] == stage["id"]
            for o in f["options"]
            if o["value"] == "LOST"
        )
        assert after["options"][-1]["id"] not in (None, source_lost["id"])  # its own id
        stages = {r["name"]: r["stage"] for r in records(reopened[1], "opportunity").values()}
        assert stages == {"Gone": "LOST", "Open": "NEW"}
    finally:
        for box in reopened:
            box.close()
