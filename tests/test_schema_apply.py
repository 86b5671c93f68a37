"""schema apply: the custom fields and select options a mapping declares, created first."""

from __future__ import annotations

from pathlib import Path

import httpx
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.sandbox import Sandbox


def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "contacts.csv").write_text(
        "Record ID,Email,Lifecycle Stage\n201,zoe@x.io,customer\n202,bob@x.io,lead\n"
        "203,ann@x.io,Marketing Qualified Lead\n204,cy@x.io,\n",
        encoding="utf-8",
    )
    (tmp_path / "people.yaml").write_text(
        "version: 1\nobject: person\nsource: {path: contacts.csv}\nkey: [hubspotId]\nfields:\n"
        '  hubspotId: {column: Record ID, create: {type: TEXT, unique: true, label: "HubSpot ID"}}\n'
        "  emails.primaryEmail: Email\n"
        "  lifecycleStage: {column: Lifecycle Stage, create: {type: SELECT}}\n",
        encoding="utf-8",
    )
    (tmp_path / "deals.csv").write_text(
        "Record ID,Deal Name,Deal Stage\n301,Won,closedwon\n302,Lost,closedlost\n",
        encoding="utf-8",
    )
    (tmp_path / "deals.yaml").write_text(
        "version: 1\nobject: opportunity\nsource: {path: deals.csv}\nkey: [hubspotId]\nfields:\n"
        "  hubspotId: {column: Record ID, create: {type: TEXT, unique: true}}\n"
        "  name: Deal Name\n"
        "  stage: {column: Deal Stage, values: {closedwon: CUSTOMER, closedlost: CLOSED_LOST,"
        ' "Closed Lost": CLOSED_LOST}}\n',
        encoding="utf-8",
    )
    (tmp_path / "job.yaml").write_text(
        "version: 1\nname: hs\nsteps:\n  - mapping: people.yaml\n  - mapping: deals.yaml\n",
        encoding="utf-8",
    )
    env = {"TWENTY_SANDBOX": str(tmp_path / "ws.sqlite"), "TWENTY_STATE_DIR": str(tmp_path / "st")}
    return tmp_path, env


def fields_of(db: Path, obj: str) -> dict[str, dict[str, object]]:
    box = Sandbox(db)
    try:
        model = box.engine.object(obj)
        return {f["name"]: f for f in box.engine.field_dtos() if f["objectMetadataId"] == model.id}
    finally:
        box.close()


def test_apply_creates_fields_and_options_then_the_job_loads(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    runner = CliRunner()
    job = str(folder / "job.yaml")

    refused = runner.invoke(cli, ["run", job], env=env)
    assert refused.exit_code == 2
    assert (
        f"person has no field 'hubspotId' yet: `twenty-pipeline schema apply "
        f"{folder / 'people.yaml'}` creates it (as its create: says)"
    ) in refused.output

    stage_before = fields_of(folder / "ws.sqlite", "opportunity")["stage"]["options"]
    plan = runner.invoke(cli, ["schema", "apply", job, "--dry-run"], env=env)
    assert plan.exit_code == 0, plan.output
    assert plan.output.splitlines() == [
        "plan:",
        "  create field person.hubspotId (TEXT, unique, label 'HubSpot ID')",
        "  create field person.lifecycleStage (SELECT, label 'Lifecycle stage') with the "
        "options CUSTOMER, LEAD, MARKETING_QUALIFIED_LEAD",
        "  create field opportunity.hubspotId (TEXT, unique, label 'Hubspot id')",
        "  add to opportunity.stage the options CLOSED_LOST",
        "dry run: nothing changed",
    ]
    assert "hubspotId" not in fields_of(folder / "ws.sqlite", "person")

    done = runner.invoke(cli, ["schema", "apply", job], env=env)
    assert done.exit_code == 0, done.output
    people = fields_of(folder / "ws.sqlite", "person")
    assert people["hubspotId"]["type"] == "TEXT" and people["hubspotId"]["isUnique"] is True
    assert [(o["value"], o["label"]) for o in people["lifecycleStage"]["options"]] == [
        ("CUSTOMER", "customer"),
        ("LEAD", "lead"),
        ("MARKETING_QUALIFIED_LEAD", "Marketing Qualified Lead"),
    ]
    stage = fields_of(folder / "ws.sqlite", "opportunity")["stage"]["options"]
    assert stage[: len(stage_before)] == stage_before  # kept, ids and all
    assert (stage[-1]["value"], stage[-1]["label"]) == ("CLOSED_LOST", "Closed Lost")

    again = runner.invoke(cli, ["schema", "apply", job], env=env)
    assert again.output.strip() == f"{job}: the workspace has every field and option it needs"

    ran = runner.invoke(cli, ["run", job], env=env)
    assert ran.exit_code == 0, ran.output
    box = Sandbox(folder / "ws.sqlite")
    try:
        stored = {
            p["emails"]["primaryEmail"]: (p["hubspotId"], p["lifecycleStage"])
            for p in box.engine.find_many(box.engine.object("person"), limit=10).records
        }
        deals = {
            d["name"]: d["stage"]
            for d in box.engine.find_many(box.engine.object("opportunity"), limit=10).records
        }
    finally:
        box.close()
    assert stored == {
        "zoe@x.io": ("201", "CUSTOMER"),
        "bob@x.io": ("202", "LEAD"),
        "ann@x.io": ("203", "MARKETING_QUALIFIED_LEAD"),
        "cy@x.io": ("204", None),
    }
    assert deals == {"Won": "CUSTOMER", "Lost": "CLOSED_LOST"}


def test_a_field_of_another_type_stops_apply_before_any_change(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    mapping = folder / "people.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").replace(
            "  emails.primaryEmail: Email\n",
            "  emails.primaryEmail: Email\n  jobTitle: {column: Email, create: {type: NUMBER}}\n",
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["schema", "apply", str(mapping)], env=env)
    assert result.exit_code == 2
    assert "person.jobTitle exists as TEXT, and create: says NUMBER" in result.output
    assert "hubspotId" not in fields_of(folder / "ws.sqlite", "person")


def test_create_is_checked_when_the_mapping_is_read(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    mapping = folder / "people.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").replace(
            "create: {type: SELECT}", "create: {type: PICKLIST, colour: red}"
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["schema", "apply", str(mapping)], env=env)
    assert result.exit_code == 2
    assert "create: unknown key 'colour'" in result.output
    assert "create: type 'PICKLIST' is not one schema apply creates" in result.output


async def test_the_sandbox_checks_a_field_update_as_twenty_does(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "ws.sqlite")
    try:
        stage = next(
            f
            for f in box.engine.field_dtos()
            if f["name"] == "stage" and f["objectMetadataId"] == box.engine.object("opportunity").id
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=box.app),
            base_url="http://sandbox",
            headers={"Authorization": f"Bearer {box.api_key}"},
        ) as http:
            bad = await http.patch(
                f"/rest/metadata/fields/{stage['id']}",
                json={
                    "options": [{"value": "closed lost", "label": "x", "position": 0}],
                    "type": "TEXT",
                },
            )
            assert bad.status_code == 400
            assert bad.json()["messages"] == [
                "type cannot be updated; Value must be in UPPER_CASE and follow snake_case "
                '"closed lost"'
            ]
            twice = [
                {"value": "NEW", "label": "New", "position": 0},
                {"value": "NEW", "label": "Again", "position": 1},
            ]
            dup = await http.patch(f"/rest/metadata/fields/{stage['id']}", json={"options": twice})
            assert dup.status_code == 400 and "Options must have unique values" in dup.text
            query = (
                "mutation U($input: UpdateOneFieldMetadataInput!) "
                "{ updateOneField(input: $input) { id options } }"
            )
            options = [*stage["options"], {"value": "LOST", "label": "Lost", "position": 9}]
            answer = await http.post(
                "/metadata",
                json={
                    "query": query,
                    "variables": {"input": {"id": stage["id"], "update": {"options": options}}},
                },
            )
            updated = answer.json()["data"]["updateOneField"]
            assert [o["value"] for o in updated["options"]][-1] == "LOST"
            assert all(o["id"] for o in updated["options"])
    finally:
        box.close()


def test_a_label_twenty_refuses_stops_apply_with_the_fix(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    (folder / "contacts.csv").write_text(
        'Record ID,Email,Lifecycle Stage\n201,zoe@x.io,"Lead, hot"\n', encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["schema", "apply", str(folder / "people.yaml")], env=env)
    assert result.exit_code == 2
    assert (
        "person.lifecycleStage: the option label 'Lead, hot' has a comma or more than 63 "
        "characters, which Twenty refuses: map that text to an option with a values: table"
    ) in result.output
    assert "hubspotId" not in fields_of(folder / "ws.sqlite", "person")


def test_a_job_step_s_own_source_gives_the_options(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    (folder / "tonight.csv").write_text(
        "Record ID,Email,Lifecycle Stage\n301,vip@x.io,VIP\n", encoding="utf-8"
    )
    (folder / "nightly.yaml").write_text(
        "version: 1\nname: nightly\nsteps:\n  - mapping: people.yaml\n    source: tonight.csv\n",
        encoding="utf-8",
    )
    plan = CliRunner().invoke(
        cli, ["schema", "apply", str(folder / "nightly.yaml"), "--dry-run"], env=env
    )
    assert plan.exit_code == 0, plan.output
    assert (
        "  create field person.lifecycleStage (SELECT, label 'Lifecycle stage') with the "
        "options VIP" in plan.output.splitlines()
    )


def test_a_multi_select_written_as_json_lists_gives_its_items(tmp_path: Path) -> None:
    folder, env = project(tmp_path)
    (folder / "contacts.csv").write_text(
        'Record ID,Email,Tags\n201,zoe@x.io,"[""VIP"", ""Press""]"\n202,bob@x.io,"[""VIP""]"\n',
        encoding="utf-8",
    )
    mapping = folder / "people.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").replace(
            "  lifecycleStage: {column: Lifecycle Stage, create: {type: SELECT}}\n",
            "  tags: {column: Tags, create: {type: MULTI_SELECT}}\n",
        ),
        encoding="utf-8",
    )
    plan = CliRunner().invoke(cli, ["schema", "apply", str(mapping), "--dry-run"], env=env)
    assert plan.exit_code == 0, plan.output
    assert (
        "  create field person.tags (MULTI_SELECT, label 'Tags') with the options VIP, PRESS"
        in (plan.output.splitlines())
    )
