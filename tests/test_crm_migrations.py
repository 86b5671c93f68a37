"""Leaving another CRM in three commands: init --from, schema apply, run; on the sample
exports in sample_data/<crm>/, every stored value read back and compared."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
ACTOR = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}


def members(db: Path, emails: list[str]) -> dict[str, str]:
    box = Sandbox(db)
    try:
        made = box.engine.create_many(
            box.engine.object("workspaceMember"),
            [{"name": {"firstName": e.split("@")[0]}, "userEmail": e} for e in emails],
            upsert=False,
            actor=ACTOR,
        )
        return {m["userEmail"]: m["id"] for m in made}
    finally:
        box.close()


def stored(db: Path, obj: str, key: str) -> dict[str, dict[str, Any]]:
    box = Sandbox(db)
    try:
        records = box.engine.find_many(box.engine.object(obj), limit=500).records
        return {str(r[key]): r for r in records}
    finally:
        box.close()


def migrate(tmp_path: Path, crm: str) -> tuple[Path, dict[str, str], Any]:
    export = tmp_path / "export"
    shutil.copytree(ROOT / "sample_data" / crm, export)
    env = {"TWENTY_SANDBOX": str(tmp_path / "ws.sqlite"), "TWENTY_STATE_DIR": str(tmp_path / "st")}
    runner = CliRunner()
    job = tmp_path / "job"
    wrote = runner.invoke(cli, ["init", "--from", crm, str(export), "-o", str(job)], env=env)
    assert wrote.exit_code == 0, wrote.output
    applied = runner.invoke(cli, ["schema", "apply", str(job / "job.yaml")], env=env)
    assert applied.exit_code == 0, applied.output
    return job, env, runner


def test_hubspot_export_to_twenty(tmp_path: Path) -> None:
    db = tmp_path / "ws.sqlite"
    owners = members(db, ["alice@example.com", "bob@example.com"])
    job, env, runner = migrate(tmp_path, "hubspot")
    ran = runner.invoke(cli, ["run", str(job / "job.yaml")], env=env)
    assert ran.exit_code == 3, ran.output  # a duplicate contact rejected, two values dropped

    companies = stored(db, "company", "hubspotId")
    assert sorted(companies) == ["101", "102", "103", "104", "105", "106"]
    acme = companies["101"]
    assert acme["name"] == "Acme SAS"
    assert acme["domainName"]["primaryLinkUrl"] == "https://acme.fr"
    assert acme["annualRecurringRevenue"] == {
        "amountMicros": 1_200_000_000_000,
        "currencyCode": "USD",
    }
    assert acme["createdAt"] == "2023-01-05T09:30:00.000Z"
    assert acme["accountOwnerId"] == owners["alice@example.com"]
    assert companies["105"]["accountOwnerId"] is None  # carol is no member: left empty, noted
    assert companies["106"]["name"] == "田中商事"
    assert companies["103"]["address"]["addressCity"] == "Berlin"

    people = stored(db, "person", "hubspotId")
    assert sorted(people) == ["201", "202", "203", "204", "206", "207", "208"]  # 205 = 206
    ids = {k: v["id"] for k, v in companies.items()}
    expect = {
        "201": ("Zoë", "zoe@acme.fr", ("612345678", "+33", "FR"), ids["101"], "CUSTOMER"),
        "202": ("Bob", "bob@globex.com", ("4155550199", "+1", "US"), ids["102"], "LEAD"),
        "203": (
            "Łukasz",
            "lukasz@mueller.de",
            ("309876543", "+49", "DE"),
            ids["103"],
            "OPPORTUNITY",
        ),
        "204": ("José", None, (None, None, None), None, "LEAD"),
        "206": ("Ann", "ann@initech.com", ("5125550100", "+1", "US"), ids["104"], "CUSTOMER"),
        "207": ("太郎", "tanaka@tanaka.co.jp", ("9012345678", "+81", "JP"), ids["106"], "CUSTOMER"),
        "208": ("Gus", "gus@nowhere.io", (None, None, None), None, "LEAD"),
    }
    for key, (first, email, phone, company, stage) in expect.items():
        p = people[key]
        assert p["name"]["firstName"] == first, key
        assert (p["emails"]["primaryEmail"] or None) == email, key
        got = p["phones"]
        assert (
            got["primaryPhoneNumber"] or None,
            got["primaryPhoneCallingCode"] or None,
            got["primaryPhoneCountryCode"] or None,
        ) == phone, key
        assert p["companyId"] == company, key
        assert p["lifecycleStage"] == stage, key
    assert people["206"]["jobTitle"] == "Director"
    assert people["201"]["createdAt"] == "2024-03-07T14:05:00.000Z"

    deals = stored(db, "opportunity", "hubspotId")
    assert {k: d["stage"] for k, d in deals.items()} == {
        "301": "CUSTOMER",
        "302": "MEETING",
        "303": "CLOSED_LOST",
        "304": "SCREENING",
        "305": "NEW",  # a custom pipeline's stage: dropped and listed, the default kept
    }
    assert deals["302"]["amount"] == {"amountMicros": 5_000_500_000, "currencyCode": "USD"}
    assert deals["301"]["companyId"] == ids["101"]
    assert deals["301"]["pointOfContactId"] == people["201"]["id"]
    assert deals["301"]["ownerId"] == owners["alice@example.com"]
    assert deals["304"]["companyId"] is None

    notes = stored(db, "note", "hubspotId")
    assert sorted(notes) == ["401", "402", "403"]  # 404 has no body: skipped
    assert notes["401"]["bodyV2"]["markdown"] == (
        "Called Zoë about the renewal.\nShe wants the new pricing by Friday."
    )
    targets = stored(db, "noteTarget", "id")
    links = {
        (
            t["noteId"],
            t.get("targetPersonId"),
            t.get("targetCompanyId"),
            t.get("targetOpportunityId"),
        )
        for t in targets.values()
    }
    n = {k: v["id"] for k, v in notes.items()}
    assert (n["401"], people["201"]["id"], None, None) in links
    assert (n["401"], None, ids["101"], None) in links
    assert (n["401"], None, None, deals["301"]["id"]) in links
    assert (n["402"], None, ids["102"], None) in links
    assert (n["403"], people["202"]["id"], None, None) in links  # the first of "202;201"
    assert len(links) == 5

    rejects = (tmp_path / "st" / "hubspot-migration" / "people" / "rejects.csv").read_text()
    assert "value_dropped,Phone Number / Mobile Phone Number,12," in rejects

    # the next export: two contacts edited; an incremental run updates exactly those
    contacts = tmp_path / "export" / "contacts.csv"
    text = contacts.read_text(encoding="utf-8")
    text = text.replace(",Engineer,", ",Lead Engineer,").replace(",Buyer,", ",Head Buyer,")
    contacts.write_text(text, encoding="utf-8")
    again = runner.invoke(cli, ["run", str(job / "job.yaml"), "--incremental"], env=env)
    assert "updated            2" in again.output, again.output
    people = stored(db, "person", "hubspotId")
    assert people["203"]["jobTitle"] == "Lead Engineer"
    assert people["202"]["jobTitle"] == "Head Buyer"
    assert people["201"]["jobTitle"] == "CTO"


def test_salesforce_export_to_twenty(tmp_path: Path) -> None:
    db = tmp_path / "ws.sqlite"
    owners = members(db, ["alice@example.com", "bob@example.com"])
    job, env, runner = migrate(tmp_path, "salesforce")
    ran = runner.invoke(cli, ["run", str(job / "job.yaml")], env=env)
    assert ran.exit_code == 3, ran.output  # Nina's phone "12" dropped

    accounts = stored(db, "company", "salesforceId")
    assert sorted(accounts) == [  # the IsDeleted account is skipped
        "0015g00000AbCdEAAV",
        "0015g00000BcDeFAAV",
        "0015g00000DeFgHAAV",
    ]
    acme = accounts["0015g00000AbCdEAAV"]
    assert acme["domainName"]["primaryLinkUrl"] == "https://www.acme.fr"
    assert acme["accountOwnerId"] == owners["alice@example.com"]  # OwnerId -> User.csv e-mail
    assert accounts["0015g00000DeFgHAAV"]["accountOwnerId"] is None  # an unknown user
    assert acme["createdAt"] == "2022-11-03T08:15:00.000Z"

    people = stored(db, "person", "salesforceId")
    zoe, bob = people["0035g00000ZoEmAAAV"], people["0035g00000BoBsAAAV"]
    assert zoe["phones"]["primaryPhoneNumber"] == "612345678"  # MobilePhone first
    assert zoe["phones"]["primaryPhoneCountryCode"] == "FR"
    assert zoe["companyId"] == acme["id"]
    assert bob["emails"]["primaryEmail"] == "bob@globex.com"
    assert bob["phones"]["primaryPhoneCallingCode"] == "+1"
    nina = people["0035g00000NoAcAAAV"]
    assert nina["companyId"] is None and not nina["phones"]["primaryPhoneNumber"]

    deals = stored(db, "opportunity", "salesforceId")
    assert {k[-8:]: d["stage"] for k, d in deals.items()} == {
        "RenEwAAV": "CUSTOMER",
        "PiLoTAAV": "PROPOSAL",
        "LoStXAAV": "CLOSED_LOST",
    }
    pilot = deals["0065g00000PiLoTAAV"]
    assert pilot["amount"] == {"amountMicros": 5_000_500_000, "currencyCode": "USD"}
    assert pilot["closeDate"] == "2024-07-31T00:00:00.000Z"
    assert pilot["ownerId"] == owners["bob@example.com"]

    notes = stored(db, "note", "salesforceId")
    call = notes["0025g00000NoTe1AAV"]
    assert call["title"] == "Call with Zoë"  # cp1252 read as such
    assert (
        call["bodyV2"]["markdown"]
        == "Discussed the renewal \u2013 she\u2019d like \u20ac50k\nin two instalments."
    )
    targets = stored(db, "noteTarget", "id").values()
    links = {
        (t["noteId"], t["targetPersonId"], t["targetCompanyId"], t["targetOpportunityId"])
        for t in targets
    }
    assert links == {
        (call["id"], zoe["id"], None, None),
        (notes["0025g00000NoTe2AAV"]["id"], None, accounts["0015g00000BcDeFAAV"]["id"], None),
        (notes["0025g00000NoTe3AAV"]["id"], None, None, pilot["id"]),
    }


def test_pipedrive_export_to_twenty(tmp_path: Path) -> None:
    db = tmp_path / "ws.sqlite"
    job, env, runner = migrate(tmp_path, "pipedrive")
    ran = runner.invoke(cli, ["run", str(job / "job.yaml")], env=env)
    assert ran.exit_code == 0, ran.output

    orgs = stored(db, "company", "pipedriveId")
    assert sorted(orgs) == ["1", "2", "3", "4"]
    people = stored(db, "person", "pipedriveId")
    assert people["11"]["name"] == {"firstName": "Zoë", "lastName": "Martin"}
    assert people["11"]["companyId"] is None  # "Acme SAS" names two organizations: no guess
    assert people["12"]["companyId"] == orgs["2"]["id"]
    assert people["12"]["emails"]["primaryEmail"] == "bob@home.example"  # work is empty
    assert people["12"]["phones"]["primaryPhoneNumber"] == "4155550199"
    assert people["13"]["companyId"] == orgs["3"]["id"]

    deals = stored(db, "opportunity", "pipedriveId")
    assert deals["21"]["stage"] == "PROPOSAL"
    assert deals["21"]["amount"] == {"amountMicros": 5_000_500_000, "currencyCode": "USD"}
    assert deals["22"]["amount"] == {"amountMicros": 800_000_000, "currencyCode": "EUR"}
    assert deals["21"]["pointOfContactId"] == people["12"]["id"]
    assert deals["22"]["companyId"] == orgs["3"]["id"]

    notes = stored(db, "note", "pipedriveId")
    assert (
        notes["31"]["bodyV2"]["markdown"] == "Called Zoë about the renewal.\nFollow up next week."
    )
    links = {
        (t["noteId"], t["targetPersonId"], t["targetCompanyId"], t["targetOpportunityId"])
        for t in stored(db, "noteTarget", "id").values()
    }
    assert links == {
        (notes["31"]["id"], people["11"]["id"], None, None),
        (notes["32"]["id"], None, orgs["2"]["id"], None),
        (notes["32"]["id"], None, None, deals["21"]["id"]),
    }
