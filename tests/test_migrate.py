"""migrate: one workspace's records into another, ids and relations kept (issue 11)."""

from __future__ import annotations

import shutil
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


def test_the_plan_lists_what_the_target_lacks_and_nothing_is_written(
    tmp_path: Path, two: list[Sandbox]
) -> None:
    source = two[0]
    add_tier(source)  # the target has no tier field
    a, b = (str(tmp_path / f"{n}.sqlite") for n in ("a", "b"))
    for box in two:
        box.close()
    result = CliRunner().invoke(
        cli,
        ["migrate", "--from-sandbox", a, "--to-sandbox", b, "--state-dir", str(tmp_path / "m")],
    )
    assert result.exit_code == 2
    assert "the target's company has no field 'tier'" in result.output
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
